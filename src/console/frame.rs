//! Control-socket framing (fact sheet §7.4).
//!
//! ```text
//! request : u16 BE type = 1 | u16 BE length | command bytes
//! response: u16 BE type | type 1: u16 BE length | payload
//!                       | type 2: u32 BE length | payload   (output longer than 65535 bytes)
//! ```
//! Decoders are pure functions over a byte slice: `Ok(None)` means "need more bytes",
//! `Err` means the stream is corrupt (the server closes only that connection).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame type of a request and of a short (16-bit length) response.
pub const TYPE_SHORT: u16 = 1;
/// Frame type of a long (32-bit length) response.
pub const TYPE_LONG: u16 = 2;
/// Largest response payload a client accepts (bounds its memory).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A corrupt control stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame type is not one this side accepts.
    #[error("bad frame type {0}")]
    BadType(u16),
    /// The declared length exceeds the limit.
    #[error("frame length {0} exceeds the limit")]
    TooLarge(u64),
}

/// A decoded frame and how many input bytes it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The payload.
    pub payload: Bytes,
    /// Bytes consumed from the input.
    pub consumed: usize,
}

/// Decodes one request from the start of `buf`.
pub fn decode_request(mut buf: &[u8]) -> Result<Option<Decoded>, FrameError> {
    if buf.remaining() < 4 {
        return Ok(None);
    }
    let ty = buf.get_u16();
    if ty != TYPE_SHORT {
        return Err(FrameError::BadType(ty));
    }
    let len = usize::from(buf.get_u16());
    if buf.remaining() < len {
        return Ok(None);
    }
    Ok(Some(Decoded {
        payload: Bytes::copy_from_slice(&buf[..len]),
        consumed: 4 + len,
    }))
}

/// Decodes one response from the start of `buf`.
pub fn decode_response(mut buf: &[u8]) -> Result<Option<Decoded>, FrameError> {
    if buf.remaining() < 2 {
        return Ok(None);
    }
    let ty = buf.get_u16();
    let (len, head) = match ty {
        TYPE_SHORT if buf.remaining() >= 2 => (usize::from(buf.get_u16()), 4),
        TYPE_LONG if buf.remaining() >= 4 => {
            let len = buf.get_u32();
            let len = usize::try_from(len).map_err(|_| FrameError::TooLarge(u64::from(len)))?;
            if len > MAX_RESPONSE {
                return Err(FrameError::TooLarge(len as u64));
            }
            (len, 6)
        }
        TYPE_SHORT | TYPE_LONG => return Ok(None),
        other => return Err(FrameError::BadType(other)),
    };
    if buf.remaining() < len {
        return Ok(None);
    }
    Ok(Some(Decoded {
        payload: Bytes::copy_from_slice(&buf[..len]),
        consumed: head + len,
    }))
}

/// Encodes a request; commands longer than 65535 bytes cannot be framed.
pub fn encode_request(cmd: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    let len = u16::try_from(cmd.len()).map_err(|_| FrameError::TooLarge(cmd.len() as u64))?;
    out.reserve(4 + cmd.len());
    out.put_u16(TYPE_SHORT);
    out.put_u16(len);
    out.put_slice(cmd);
    Ok(())
}

/// Encodes a response, choosing the 32-bit form for payloads above 65535 bytes.
/// Payloads above `u32::MAX` are truncated (never produced: replies are bounded far lower).
pub fn encode_response(text: &[u8], out: &mut BytesMut) {
    if let Ok(len) = u16::try_from(text.len()) {
        out.reserve(4 + text.len());
        out.put_u16(TYPE_SHORT);
        out.put_u16(len);
        out.put_slice(text);
    } else {
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        let text = &text[..len as usize];
        out.reserve(6 + text.len());
        out.put_u16(TYPE_LONG);
        out.put_u32(len);
        out.put_slice(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_roundtrip_and_partial() {
        let mut b = BytesMut::new();
        encode_request(b"version", &mut b).unwrap();
        assert_eq!(&b[..], b"\x00\x01\x00\x07version");
        for cut in 0..b.len() {
            assert_eq!(decode_request(&b[..cut]), Ok(None));
        }
        let d = decode_request(&b).unwrap().unwrap();
        assert_eq!((&d.payload[..], d.consumed), (&b"version"[..], 11));
        assert_eq!(
            decode_request(b"\x00\x02\x00\x00"),
            Err(FrameError::BadType(2))
        );
        assert!(encode_request(&vec![b'x'; 70_000], &mut b).is_err());
    }

    #[test]
    fn response_uses_long_form_above_64k() {
        let mut b = BytesMut::new();
        encode_response(&vec![b'a'; 65_535], &mut b);
        assert_eq!(&b[..4], b"\x00\x01\xff\xff");
        let mut b = BytesMut::new();
        let big = vec![b'b'; 65_536];
        encode_response(&big, &mut b);
        assert_eq!(&b[..6], b"\x00\x02\x00\x01\x00\x00");
        let d = decode_response(&b).unwrap().unwrap();
        assert_eq!(d.payload.len(), 65_536);
        assert_eq!(d.consumed, b.len());
        assert_eq!(
            decode_response(b"\x00\x02\x7f\xff\xff\xff"),
            Err(FrameError::TooLarge(0x7fff_ffff))
        );
        assert_eq!(decode_response(b"\x00\x07"), Err(FrameError::BadType(7)));
    }

    proptest! {
        #[test]
        fn decoders_never_panic_and_stay_in_bounds(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some(d)) = decode_request(&data) {
                prop_assert!(d.consumed <= data.len());
                prop_assert_eq!(d.consumed, d.payload.len() + 4);
            }
            if let Ok(Some(d)) = decode_response(&data) {
                prop_assert!(d.consumed <= data.len());
            }
        }

        #[test]
        fn response_roundtrip(text in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut b = BytesMut::new();
            encode_response(&text, &mut b);
            let d = decode_response(&b).unwrap().unwrap();
            prop_assert_eq!(&d.payload[..], &text[..]);
            prop_assert_eq!(d.consumed, b.len());
        }
    }
}
