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
    /// `first` (from the packet header). The walk must cover the body exactly. Padding
    /// before a packed fragment is skipped whatever it holds: 5.0.1 copies each packed
    /// fragment into a reused buffer without clearing the gap, so a real daemon's padding
    /// bytes are often not zero (a mixed ring stalled on such a packet, never retransmitted
    /// in a form we accepted).
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
            r.skip("fragment padding", pad)?;
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

    /// Where the padding before each packed fragment lies, as byte ranges of the body
    /// (what [`DataBody::encode`] writes as zeros; a real 5.0.1 daemon may leave anything).
    pub fn padding(&self) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut n = 0;
        for (i, f) in self.fragments.iter().enumerate() {
            if i > 0 {
                let pad = pad4(n);
                out.push(n..n + pad);
                n += pad + FragHeader::LEN;
            }
            n += f.data.len();
        }
        out
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

/// Cuts a whole message (48-byte header + group names + body) into the fragments 5.0.1
/// sends: pieces of at most [`MAX_PACKET_BODY`] bytes, element k (0-based) of n carrying
/// index k+1, the last one −n. An empty input gives one empty last fragment.
///
/// Messages longer than `i16::MAX` packets cannot be indexed; 5.0.1 bounds messages far
/// below that (100 KB), so callers must bound their input; the indices saturate.
pub fn split_message(msg: &Bytes) -> Vec<Fragment> {
    let n = msg.len().div_ceil(MAX_PACKET_BODY).max(1);
    let last = i16::try_from(n).map_or(i16::MIN, |v| -v);
    (0..n)
        .map(|k| {
            let start = k * MAX_PACKET_BODY;
            let end = (start + MAX_PACKET_BODY).min(msg.len());
            Fragment {
                index: if k + 1 == n {
                    last
                } else {
                    i16::try_from(k + 1).unwrap_or(i16::MAX)
                },
                data: msg.slice(start..end),
            }
        })
        .collect()
}

/// The packet class 5.0.1 gives a message of client type `mess_type`
/// (`Message_get_packet_type`): UNRELIABLE/RELIABLE → RELIABLE, FIFO → FIFO,
/// CAUSAL/AGREED → AGREED, SAFE → SAFE, JOIN/LEAVE/KILL → AGREED; first match wins.
pub fn packet_class(mess_type: u32) -> Option<u32> {
    use super::TypeBits as T;
    const UNRELIABLE_MESS: u32 = 0x1;
    const RELIABLE_MESS: u32 = 0x2;
    const FIFO_MESS: u32 = 0x4;
    const CAUSAL_MESS: u32 = 0x8;
    const AGREED_MESS: u32 = 0x10;
    const SAFE_MESS: u32 = 0x20;
    const JOIN_LEAVE_KILL: u32 = 0x0001_0000 | 0x0002_0000 | 0x0004_0000;
    let t = mess_type;
    if t & (UNRELIABLE_MESS | RELIABLE_MESS) != 0 {
        Some(T::RELIABLE)
    } else if t & FIFO_MESS != 0 {
        Some(T::FIFO)
    } else if t & (CAUSAL_MESS | AGREED_MESS) != 0 {
        Some(T::AGREED)
    } else if t & SAFE_MESS != 0 {
        Some(T::SAFE)
    } else if t & JOIN_LEAVE_KILL != 0 {
        Some(T::AGREED)
    } else {
        None
    }
}

/// Whether a message of packet class `next` may be packed into a packet of class `packet`:
/// same class, or both FIFO/AGREED (the packet keeps its first class).
pub fn can_share_packet(packet: u32, next: u32) -> bool {
    use super::TypeBits as T;
    let fa = |t: u32| t & (T::FIFO | T::AGREED) != 0;
    packet == next || (fa(packet) && fa(next))
}

impl DataBody {
    /// Appends `frag` (the single element of a small message) when it fits after padding and
    /// its inline header, as 5.0.1 packs; gives it back otherwise.
    pub fn try_pack(&mut self, frag: Fragment) -> Result<(), Fragment> {
        if self.fragments.is_empty() {
            if frag.data.len() <= MAX_PACKET_BODY {
                self.fragments.push(frag);
                return Ok(());
            }
            return Err(frag);
        }
        match self.room_for_next() {
            Some(room) if frag.data.len() <= room => {
                self.fragments.push(frag);
                Ok(())
            }
            _ => Err(frag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_5080_bytes_like_capture_d() {
        let msg = Bytes::from(vec![7u8; 5080]);
        let f = split_message(&msg);
        let idx: Vec<i16> = f.iter().map(|f| f.index).collect();
        let len: Vec<usize> = f.iter().map(|f| f.data.len()).collect();
        assert_eq!(idx, [1, 2, 3, -4]);
        assert_eq!(len, [1432, 1432, 1432, 784]);
        assert_eq!(split_message(&Bytes::from_static(b"x"))[0].index, -1);
        assert_eq!(split_message(&Bytes::new()).len(), 1);
    }

    #[test]
    fn packing_like_capture_i_and_l() {
        // Six 380-byte messages → 380 + (4+380) + (4+380) = 1148, then the fourth doesn't fit.
        let m = || split_message(&Bytes::from(vec![1u8; 380])).remove(0);
        let mut b = DataBody::default();
        for _ in 0..3 {
            assert!(b.try_pack(m()).is_ok());
        }
        assert_eq!(b.encoded_len(), 1148);
        assert!(b.try_pack(m()).is_err());
        // Four 181-byte ones with 3-byte padding → 745.
        let m = || split_message(&Bytes::from(vec![2u8; 181])).remove(0);
        let mut b = DataBody::default();
        for _ in 0..4 {
            assert!(b.try_pack(m()).is_ok());
        }
        assert_eq!(b.encoded_len(), 745);
    }

    #[test]
    fn padding_left_over_by_5_0_1_is_skipped_not_refused() {
        // Seen from a real 5.0.1 daemon packing small AGREED messages: the three bytes between
        // a 5-byte fragment and the next fragment header held old buffer contents.
        let mut body = Vec::new();
        body.extend_from_slice(b"hello");
        body.extend_from_slice(&[0xde, 0xad, 0xbe]);
        body.extend_from_slice(&(-1i16).to_le_bytes());
        body.extend_from_slice(&2i16.to_le_bytes());
        body.extend_from_slice(b"ok");
        let first = FragHeader { index: -1, len: 5 };
        let b = DataBody::decode(&mut &body[..], first, Endian::Little).expect("decodes");
        assert_eq!(b.fragments.len(), 2);
        assert_eq!(&b.fragments[0].data[..], b"hello");
        assert_eq!(&b.fragments[1].data[..], b"ok");
        assert_eq!(b.padding(), vec![5..8]);
        let mut again = Vec::new();
        b.encode(&mut again, Endian::Little);
        body[5..8].fill(0);
        assert_eq!(again, body, "re-encoded with zero padding");
    }

    #[test]
    fn packet_classes() {
        assert_eq!(packet_class(0x1), Some(super::super::TypeBits::RELIABLE));
        assert_eq!(packet_class(0x8), Some(super::super::TypeBits::AGREED));
        assert_eq!(packet_class(0x20), Some(super::super::TypeBits::SAFE));
        assert_eq!(
            packet_class(0x0004_0020),
            Some(super::super::TypeBits::SAFE)
        );
        assert_eq!(
            packet_class(0x0001_0000),
            Some(super::super::TypeBits::AGREED)
        );
        assert_eq!(
            packet_class(0x0008_0002),
            Some(super::super::TypeBits::RELIABLE)
        );
        assert_eq!(
            packet_class(0x0008_0010),
            Some(super::super::TypeBits::AGREED)
        );
        assert_eq!(packet_class(0x40), None);
        assert!(can_share_packet(
            super::super::TypeBits::FIFO,
            super::super::TypeBits::AGREED
        ));
        assert!(!can_share_packet(
            super::super::TypeBits::SAFE,
            super::super::TypeBits::AGREED
        ));
    }
}
