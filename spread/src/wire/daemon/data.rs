//! Data packet bodies: message fragments and packing (§7.2).
//!
//! A body holds one or more fragments. The first one's `{index, len}` header lives in the
//! packet header (offset 36); each further fragment is preceded by zero padding up to a
//! multiple of 4 and its own inline 4-byte header.

use bytes::{Buf, BufMut, Bytes};

use super::codec::{Reader, Writer};
use super::header::FragHeader;
use super::{DecodeError, Endian, MAX_PACKET_BODY};

/// Most fragments one packet body can hold (each inline one takes at least 4 bytes).
pub const MAX_FRAGMENTS_PER_PACKET: usize = 1 + MAX_PACKET_BODY / FragHeader::LEN;

/// One fragment (element) of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Fragment {
    /// k+1 (> 0) if element k of a message with more elements following; −(number of
    /// elements) if this is the last one (−1 for a one-packet message).
    pub index: i16,
    /// The fragment's bytes.
    pub data: Bytes,
}

impl Fragment {
    /// Its `{index, len}` header.
    pub fn header(&self) -> FragHeader {
        FragHeader {
            index: self.index,
            len: i16::try_from(self.data.len()).unwrap_or(i16::MAX),
        }
    }

    /// True when this is the last element of its message.
    pub fn is_last(&self) -> bool {
        self.index < 0
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// The fragments of one data packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataBody {
    /// Fragments in body order (at least one in every packet 5.0.1 sends).
    pub fragments: Vec<Fragment>,
}

impl DataBody {
    /// Decodes a body of exactly `buf.remaining()` bytes whose first fragment header is
    /// `first` (from the packet header). The walk must cover the body exactly and padding
    /// must be zero (5.0.1 never sends anything else).
    pub fn decode(
        buf: &mut impl Buf,
        first: FragHeader,
        endian: Endian,
    ) -> Result<Self, DecodeError> {
        let data_len = buf.remaining();
        if data_len > MAX_PACKET_BODY {
            return Err(DecodeError::TooLong {
                what: "data_len",
                len: data_len,
                max: MAX_PACKET_BODY,
            });
        }
        let mut r = Reader::new(buf, endian);
        let first_len = super::codec::check_count("fragment_len", i64::from(first.len), data_len)?;
        let mut fragments = vec![Fragment {
            index: first.index,
            data: r.bytes("fragment", first_len)?,
        }];
        let mut done = first_len;
        // Bounded: every inline fragment consumes at least its 4-byte header.
        while done < data_len {
            if fragments.len() >= MAX_FRAGMENTS_PER_PACKET {
                return Err(DecodeError::Malformed("too many fragments"));
            }
            let pad = pad4(done);
            r.zeros("fragment padding", pad)?;
            let h = FragHeader::read(&mut r)?;
            done += pad + FragHeader::LEN;
            let len = super::codec::check_count("fragment_len", i64::from(h.len), data_len - done)?;
            fragments.push(Fragment {
                index: h.index,
                data: r.bytes("fragment", len)?,
            });
            done += len;
        }
        Ok(Self { fragments })
    }

    /// Header of the first fragment (goes into the packet header); (0, 0) if empty.
    pub fn first_header(&self) -> FragHeader {
        self.fragments
            .first()
            .map(Fragment::header)
            .unwrap_or_default()
    }

    /// Encoded size (the packet's `data_len`).
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        for (i, f) in self.fragments.iter().enumerate() {
            if i > 0 {
                n += pad4(n) + FragHeader::LEN;
            }
            n += f.data.len();
        }
        n
    }

    /// Bytes left for one more packed message, as 5.0.1 computes it: padding to 4 and a
    /// 4-byte fragment header are reserved. `None` if nothing fits.
    pub fn room_for_next(&self) -> Option<usize> {
        let n = self.encoded_len();
        MAX_PACKET_BODY.checked_sub(n + pad4(n) + FragHeader::LEN)
    }

    /// Writes the body (without the first fragment's header, which is in the packet header).
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        let mut n = 0;
        for (i, f) in self.fragments.iter().enumerate() {
            if i > 0 {
                let pad = pad4(n);
                w.zeros(pad);
                f.header().write(&mut w);
                n += pad + FragHeader::LEN;
            }
            w.slice(&f.data);
            n += f.data.len();
        }
    }
}
