//! Control-socket framing (fact sheet §7.4).
//!
//! ```text
//! request : u16 BE type = 1 | u16 BE length | command bytes
//! response: u16 BE type | type 1: u16 BE length | payload
//!                       | type 2: u32 BE length | payload   (output longer than 65535 bytes)
//! ```
//! Authentication (our own extension, §8 item 12): a client sends
//! `u16 BE type = 3 | u16 BE length | user NUL password` and gets a type 1 response.
//!
//! Decoders are pure functions over a byte slice: `Ok(None)` means "need more bytes",
//! `Err` means the stream is corrupt (the server closes only that connection).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame type of a request and of a short (16-bit length) response.
pub const TYPE_SHORT: u16 = 1;
/// Frame type of a long (32-bit length) response.
pub const TYPE_LONG: u16 = 2;
/// Frame type of a login request (`user NUL password`).
pub const TYPE_AUTH: u16 = 3;
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
    /// A login frame is not `user NUL password` with a valid user name.
    #[error("malformed login frame")]
    BadAuth,
}

/// A decoded client frame.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A command line.
    Command(Bytes),
    /// A login.
    Auth {
        /// User name (valid per [`super::auth::valid_user`]).
        user: String,
        /// Password (at most [`super::auth::MAX_PASSWORD`] bytes).
        password: String,
    },
}

impl std::fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Command(b) => f.debug_tuple("Command").field(b).finish(),
            Self::Auth { user, .. } => f
                .debug_struct("Auth")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
        }
    }
}

/// Decodes one client frame (command or login) and how many bytes it used.
pub fn decode_client(mut buf: &[u8]) -> Result<Option<(ClientFrame, usize)>, FrameError> {
    if buf.remaining() < 4 {
        return Ok(None);
    }
    let ty = buf.get_u16();
    if ty != TYPE_SHORT && ty != TYPE_AUTH {
        return Err(FrameError::BadType(ty));
    }
    let len = usize::from(buf.get_u16());
    if buf.remaining() < len {
        return Ok(None);
    }
    let body = &buf[..len];
    if ty == TYPE_SHORT {
        return Ok(Some((
            ClientFrame::Command(Bytes::copy_from_slice(body)),
            4 + len,
        )));
    }
    let (user, password) = parse_auth(body).ok_or(FrameError::BadAuth)?;
    Ok(Some((ClientFrame::Auth { user, password }, 4 + len)))
}

fn parse_auth(body: &[u8]) -> Option<(String, String)> {
    let nul = body.iter().position(|b| *b == 0)?;
    let user = std::str::from_utf8(&body[..nul]).ok()?;
    let password = std::str::from_utf8(&body[nul + 1..]).ok()?;
    (super::auth::valid_user(user) && password.len() <= super::auth::MAX_PASSWORD)
        .then(|| (user.to_string(), password.to_string()))
}

/// Encodes a login frame.
pub fn encode_auth(user: &str, password: &str, out: &mut BytesMut) -> Result<(), FrameError> {
    if !super::auth::valid_user(user) || password.len() > super::auth::MAX_PASSWORD {
        return Err(FrameError::BadAuth);
    }
    let len = user.len() + 1 + password.len();
    out.reserve(4 + len);
    out.put_u16(TYPE_AUTH);
    out.put_u16(u16::try_from(len).map_err(|_| FrameError::BadAuth)?);
    out.put_slice(user.as_bytes());
    out.put_u8(0);
    out.put_slice(password.as_bytes());
    Ok(())
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

    #[test]
    fn login_frames_roundtrip_and_bad_ones_are_refused() {
        let mut b = BytesMut::new();
        encode_auth("alice", "p w", &mut b).unwrap();
        assert_eq!(&b[..], b"\x00\x03\x00\x09alice\x00p w");
        let (f, used) = decode_client(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(
            f,
            ClientFrame::Auth {
                user: "alice".into(),
                password: "p w".into()
            }
        );
        assert!(
            !format!("{f:?}").contains("p w"),
            "passwords never reach logs"
        );
        assert_eq!(
            decode_client(b"\x00\x03\x00\x03abc"),
            Err(FrameError::BadAuth)
        );
        assert_eq!(
            decode_client(b"\x00\x03\x00\x02\x00x"),
            Err(FrameError::BadAuth)
        );
        assert_eq!(decode_client(b"\x00\x03\x00\x09alice"), Ok(None));
        assert!(encode_auth("a:b", "x", &mut b).is_err());
        let (f, _) = decode_client(b"\x00\x01\x00\x01v").unwrap().unwrap();
        assert_eq!(f, ClientFrame::Command(Bytes::from_static(b"v")));
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
