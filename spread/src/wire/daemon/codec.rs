//! Byte-order aware primitive readers and writers shared by the daemon codecs.
//!
//! Every read checks `remaining()` first and reports what was being read; every
//! count is checked against a named maximum before anything is allocated.

use bytes::{Buf, BufMut};

use super::{DecodeError, Endian};

/// A `Buf` together with the byte order of the packet being read.
pub(crate) struct Reader<'a, B: Buf> {
    pub(crate) buf: &'a mut B,
    pub(crate) endian: Endian,
}

impl<'a, B: Buf> Reader<'a, B> {
    pub(crate) fn new(buf: &'a mut B, endian: Endian) -> Self {
        Self { buf, endian }
    }

    pub(crate) fn need(&self, what: &'static str, need: usize) -> Result<(), DecodeError> {
        let have = self.buf.remaining();
        if have < need {
            return Err(DecodeError::Truncated { what, need, have });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(what, 1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(what, 2)?;
        Ok(match self.endian {
            Endian::Little => self.buf.get_u16_le(),
            Endian::Big => self.buf.get_u16(),
        })
    }

    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.need(what, 2)?;
        Ok(match self.endian {
            Endian::Little => self.buf.get_i16_le(),
            Endian::Big => self.buf.get_i16(),
        })
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(what, 4)?;
        Ok(match self.endian {
            Endian::Little => self.buf.get_u32_le(),
            Endian::Big => self.buf.get_u32(),
        })
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.need(what, 4)?;
        Ok(match self.endian {
            Endian::Little => self.buf.get_i32_le(),
            Endian::Big => self.buf.get_i32(),
        })
    }

    /// A signed 16-bit count, checked to be in `0..=max`.
    pub(crate) fn count16(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let v = self.i16(what)?;
        check_count(what, i64::from(v), max)
    }

    /// A signed 32-bit count, checked to be in `0..=max`.
    pub(crate) fn count32(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let v = self.i32(what)?;
        check_count(what, i64::from(v), max)
    }

    /// Exactly `n` bytes as a (zero-copy when `B` is `Bytes`) slice.
    pub(crate) fn bytes(
        &mut self,
        what: &'static str,
        n: usize,
    ) -> Result<bytes::Bytes, DecodeError> {
        self.need(what, n)?;
        Ok(self.buf.copy_to_bytes(n))
    }

    /// Skips `n` bytes whatever they hold (padding: 5.0.1 leaves whatever its reused
    /// packet buffer held there, so it is not always zero).
    pub(crate) fn skip(&mut self, what: &'static str, n: usize) -> Result<(), DecodeError> {
        self.need(what, n)?;
        self.buf.advance(n);
        Ok(())
    }
}

/// Checks a decoded count against `0..=max`.
pub(crate) fn check_count(
    what: &'static str,
    value: i64,
    max: usize,
) -> Result<usize, DecodeError> {
    if value < 0 {
        return Err(DecodeError::Negative { what, value });
    }
    let v = usize::try_from(value).map_err(|_| DecodeError::TooLong {
        what,
        len: usize::MAX,
        max,
    })?;
    if v > max {
        return Err(DecodeError::TooLong { what, len: v, max });
    }
    Ok(v)
}

/// Writes primitives in a chosen byte order.
pub(crate) struct Writer<'a, B: BufMut> {
    pub(crate) buf: &'a mut B,
    pub(crate) endian: Endian,
}

impl<'a, B: BufMut> Writer<'a, B> {
    pub(crate) fn new(buf: &'a mut B, endian: Endian) -> Self {
        Self { buf, endian }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        match self.endian {
            Endian::Little => self.buf.put_u16_le(v),
            Endian::Big => self.buf.put_u16(v),
        }
    }

    pub(crate) fn i16(&mut self, v: i16) {
        match self.endian {
            Endian::Little => self.buf.put_i16_le(v),
            Endian::Big => self.buf.put_i16(v),
        }
    }

    pub(crate) fn u32(&mut self, v: u32) {
        match self.endian {
            Endian::Little => self.buf.put_u32_le(v),
            Endian::Big => self.buf.put_u32(v),
        }
    }

    pub(crate) fn i32(&mut self, v: i32) {
        match self.endian {
            Endian::Little => self.buf.put_i32_le(v),
            Endian::Big => self.buf.put_i32(v),
        }
    }

    /// A length known to be small (bounded by a named maximum when built) as an int16.
    pub(crate) fn len16(&mut self, n: usize) {
        self.i16(i16::try_from(n).unwrap_or(i16::MAX));
    }

    /// A length as an int32.
    pub(crate) fn len32(&mut self, n: usize) {
        self.i32(i32::try_from(n).unwrap_or(i32::MAX));
    }

    pub(crate) fn slice(&mut self, s: &[u8]) {
        self.buf.put_slice(s);
    }

    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.put_bytes(0, n);
    }
}
