//! The 48-byte message header, its `type` bits, the `hint` word and group-name fields.
//!
//! Byte order: `type`, `num_groups` and `data_len` are written in the writer's order, which the
//! endian marker bits `0x80000080` of `type` reveal (set = little-endian). `hint` carries its
//! own marker and is never swapped by a daemon, so it is kept as the raw wire bytes ([`Hint`]).

use bytes::{Buf, BufMut};

use super::{DecodeError, ENDIAN_MARKER, GROUP_NAME_LEN, HEADER_LEN};

/// Byte order of a header's integers (or of a membership body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ByteOrder {
    /// Little-endian: marker bits set.
    Little,
    /// Big-endian: marker bits clear.
    Big,
}

impl ByteOrder {
    /// Order of a word whose marker bits were read as a little-endian `u32` `le_value`:
    /// both marker bits set means a little-endian writer, anything else a big-endian one
    /// (the receiver swaps whenever the marker differs from its own, as libspread does).
    pub fn from_marker(le_value: u32) -> Self {
        if le_value & ENDIAN_MARKER == ENDIAN_MARKER {
            Self::Little
        } else {
            Self::Big
        }
    }

    /// Reads a `u32` in this order.
    pub fn get_u32(self, buf: &mut impl Buf) -> u32 {
        match self {
            Self::Little => buf.get_u32_le(),
            Self::Big => buf.get_u32(),
        }
    }

    /// Writes a `u32` in this order.
    pub fn put_u32(self, buf: &mut impl BufMut, v: u32) {
        match self {
            Self::Little => buf.put_u32_le(v),
            Self::Big => buf.put_u32(v),
        }
    }

    /// The marker bits a writer of this order sets in `type` and `hint`.
    pub fn marker(self) -> u32 {
        match self {
            Self::Little => ENDIAN_MARKER,
            Self::Big => 0,
        }
    }
}

/// The `type` word of a header without its endian marker: service, membership and request
/// bits (`sp.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ServiceType(pub u32);

impl ServiceType {
    /// Unreliable data.
    pub const UNRELIABLE: Self = Self(0x0000_0001);
    /// Reliable data.
    pub const RELIABLE: Self = Self(0x0000_0002);
    /// FIFO data.
    pub const FIFO: Self = Self(0x0000_0004);
    /// Causal data.
    pub const CAUSAL: Self = Self(0x0000_0008);
    /// Agreed (total order) data.
    pub const AGREED: Self = Self(0x0000_0010);
    /// Safe data.
    pub const SAFE: Self = Self(0x0000_0020);
    /// Mask of the six services.
    pub const REGULAR_MESS: Self = Self(0x0000_003f);
    /// With a service: do not deliver to the sender.
    pub const SELF_DISCARD: Self = Self(0x0000_0040);
    /// Membership reason: join.
    pub const CAUSED_BY_JOIN: Self = Self(0x0000_0100);
    /// Membership reason: leave (alone: self-leave).
    pub const CAUSED_BY_LEAVE: Self = Self(0x0000_0200);
    /// Membership reason: disconnect.
    pub const CAUSED_BY_DISCONNECT: Self = Self(0x0000_0400);
    /// Membership reason: network change.
    pub const CAUSED_BY_NETWORK: Self = Self(0x0000_0800);
    /// Regular membership message.
    pub const REG_MEMB_MESS: Self = Self(0x0000_1000);
    /// Transitional membership message.
    pub const TRANSITION_MESS: Self = Self(0x0000_2000);
    /// Mask of the membership bits.
    pub const MEMBERSHIP_MESS: Self = Self(0x0000_3f00);
    /// Client request: join a group.
    pub const JOIN_MESS: Self = Self(0x0001_0000);
    /// Client request: leave a group.
    pub const LEAVE_MESS: Self = Self(0x0002_0000);
    /// Client request: disconnect.
    pub const KILL_MESS: Self = Self(0x0004_0000);
    /// Daemon → client: the request was refused (4 extra bytes follow the header).
    pub const REJECT_MESS: Self = Self(0x0040_0000);
    /// Mask of the three request bits.
    pub const REQUEST_MASK: Self = Self(0x0007_0000);

    /// True if any bit of `other` is set in `self`.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// True if every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits of `self` that are in `mask`.
    pub fn masked(self, mask: Self) -> Self {
        Self(self.0 & mask.0)
    }

    /// The six-service bits of `self` if exactly one is set (a data message).
    pub fn single_service(self) -> Option<Self> {
        let s = self.0 & Self::REGULAR_MESS.0;
        (s.count_ones() == 1).then_some(Self(s))
    }

    /// The request bit of `self` if exactly one is set (JOIN, LEAVE or KILL).
    pub fn single_request(self) -> Option<Self> {
        let r = self.0 & Self::REQUEST_MASK.0;
        (r.count_ones() == 1).then_some(Self(r))
    }

    /// The 5.0.1 header check: exactly one service bit or exactly one request bit, not both.
    pub fn is_valid_request_kind(self) -> bool {
        let services = (self.0 & Self::REGULAR_MESS.0).count_ones();
        let requests = (self.0 & Self::REQUEST_MASK.0).count_ones();
        (services == 1 && requests == 0) || (services == 0 && requests == 1)
    }
}

impl std::ops::BitOr for ServiceType {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The raw `hint` word as it travels (never swapped by a daemon): endian marker plus the
/// application's 16-bit `mess_type` in bits 8..23.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hint(pub [u8; 4]);

impl Hint {
    /// What a little-endian daemon puts in the hint of the messages it generates.
    pub const DAEMON: Self = Self([0x80, 0, 0, 0x80]);

    /// The hint a writer of byte order `order` sends for `mess_type`.
    pub fn new(mess_type: i16, order: ByteOrder) -> Self {
        let v = order.marker() | ((u32::from(mess_type as u16)) << 8);
        match order {
            ByteOrder::Little => Self(v.to_le_bytes()),
            ByteOrder::Big => Self(v.to_be_bytes()),
        }
    }

    /// Byte order of the writer, from the hint's own marker.
    pub fn order(self) -> ByteOrder {
        ByteOrder::from_marker(u32::from_le_bytes(self.0))
    }

    /// The word in its writer's order.
    pub fn value(self) -> u32 {
        match self.order() {
            ByteOrder::Little => u32::from_le_bytes(self.0),
            ByteOrder::Big => u32::from_be_bytes(self.0),
        }
    }

    /// The application's `mess_type` (bits 8..23, sign-extended).
    pub fn mess_type(self) -> i16 {
        ((self.value() >> 8) & 0xffff) as u16 as i16
    }

    /// The 5.0.1 check: no bit outside `0x80ffff80` (symmetric under byte swap).
    pub fn is_legal(self) -> bool {
        u32::from_le_bytes(self.0) & !0x80ff_ff80 == 0
    }
}

/// One 32-byte group-name field exactly as on the wire (NUL padded; bytes after the first NUL
/// are kept so data messages can be forwarded unchanged, but they are not significant).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(pub [u8; GROUP_NAME_LEN]);

impl Default for GroupName {
    fn default() -> Self {
        Self([0; GROUP_NAME_LEN])
    }
}

impl std::fmt::Debug for GroupName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupName({:?})", String::from_utf8_lossy(self.text()))
    }
}

impl GroupName {
    /// A field holding `text` (truncated to 32 bytes), zero padded.
    pub fn new(text: &[u8]) -> Self {
        let mut f = [0; GROUP_NAME_LEN];
        for (d, s) in f.iter_mut().zip(text) {
            *d = *s;
        }
        Self(f)
    }

    /// The significant text: bytes up to the first NUL (all 32 if there is none).
    pub fn text(&self) -> &[u8] {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(GROUP_NAME_LEN);
        self.0.get(..end).unwrap_or(&self.0)
    }

    /// The field with everything after the first NUL zeroed: two fields name the same group
    /// exactly when their keys are equal.
    pub fn key(&self) -> Self {
        Self::new(self.text())
    }

    /// True if the field contains a NUL (the name has at most 31 characters).
    pub fn is_terminated(&self) -> bool {
        self.0.contains(&0)
    }

    /// True if the name is empty.
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    /// True if the name is in the private-group namespace (starts with `#`).
    pub fn is_private(&self) -> bool {
        self.0[0] == b'#'
    }

    /// libspread's rule for `SP_join`/`SP_leave`: 1..=31 bytes, each in `0x24..=0x7E`.
    pub fn is_valid_for_client(text: &[u8]) -> bool {
        (1..GROUP_NAME_LEN).contains(&text.len())
            && text.iter().all(|&b| (0x24..=0x7e).contains(&b))
    }

    /// Reads one field.
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        check(buf, GROUP_NAME_LEN)?;
        let mut f = [0; GROUP_NAME_LEN];
        buf.copy_to_slice(&mut f);
        Ok(Self(f))
    }

    /// Writes the field.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

/// A decoded 48-byte message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// `type` with the endian marker removed.
    pub service: ServiceType,
    /// Sender's private group (data, requests) or the group's name (membership).
    pub sender: GroupName,
    /// Number of 32-byte names after the header (signed on the wire).
    pub num_groups: i32,
    /// The raw hint (its own byte order).
    pub hint: Hint,
    /// Body length (signed on the wire).
    pub data_len: i32,
    /// Byte order of `type`, `num_groups` and `data_len`.
    pub order: ByteOrder,
}

/// Checks that `buf` has at least `needed` bytes left.
pub(crate) fn check(buf: &impl Buf, needed: usize) -> Result<(), DecodeError> {
    let have = buf.remaining();
    if have < needed {
        return Err(DecodeError::Truncated { needed, have });
    }
    Ok(())
}

/// Reads a 48-byte header in either byte order.
pub fn decode_header(buf: &mut impl Buf) -> Result<MessageHeader, DecodeError> {
    check(buf, HEADER_LEN)?;
    let type_le = buf.get_u32_le();
    let order = ByteOrder::from_marker(type_le);
    let raw_type = match order {
        ByteOrder::Little => type_le,
        ByteOrder::Big => type_le.swap_bytes(),
    };
    let sender = GroupName::decode(buf)?;
    let num_groups = order.get_u32(buf) as i32;
    let mut hint = [0; 4];
    buf.copy_to_slice(&mut hint);
    let data_len = order.get_u32(buf) as i32;
    Ok(MessageHeader {
        service: ServiceType(raw_type & !ENDIAN_MARKER),
        sender,
        num_groups,
        hint: Hint(hint),
        data_len,
        order,
    })
}

/// Writes a 48-byte header in `header.order` (the marker is set or cleared to match).
pub fn encode_header(header: &MessageHeader, buf: &mut impl BufMut) {
    let order = header.order;
    order.put_u32(buf, (header.service.0 & !ENDIAN_MARKER) | order.marker());
    header.sender.encode(buf);
    order.put_u32(buf, header.num_groups as u32);
    buf.put_slice(&header.hint.0);
    order.put_u32(buf, header.data_len as u32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hint_examples_from_the_fact_sheet() {
        let cases: [(i16, [u8; 4]); 4] = [
            (0x1234, [0x80, 0x34, 0x12, 0x80]),
            (0x7fff, [0x80, 0xff, 0x7f, 0x80]),
            (-1, [0x80, 0xff, 0xff, 0x80]),
            (-32768, [0x80, 0x00, 0x80, 0x80]),
        ];
        for (mt, bytes) in cases {
            let h = Hint::new(mt, ByteOrder::Little);
            assert_eq!(h.0, bytes);
            assert_eq!(h.mess_type(), mt);
            assert!(h.is_legal());
        }
        let big = Hint([0x00, 0x12, 0x34, 0x00]);
        assert_eq!(big.order(), ByteOrder::Big);
        assert_eq!(big.mess_type(), 0x1234);
        assert_eq!(Hint::new(0x1234, ByteOrder::Big), big);
        assert!(!Hint([0x81, 0, 0, 0x80]).is_legal());
    }

    #[test]
    fn big_endian_header_decodes() {
        // AGREED from a big-endian writer: type 00 00 00 10, num_groups 1, data_len 8.
        let mut b = vec![0, 0, 0, 0x10];
        b.extend_from_slice(&GroupName::new(b"#big#localhost").0);
        b.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x12, 0x34, 0x00, 0, 0, 0, 8]);
        let h = decode_header(&mut &b[..]).unwrap();
        assert_eq!(h.order, ByteOrder::Big);
        assert_eq!(h.service, ServiceType::AGREED);
        assert_eq!((h.num_groups, h.data_len), (1, 8));
        let mut out = Vec::new();
        encode_header(&h, &mut out);
        assert_eq!(out, b);
        let le = MessageHeader {
            order: ByteOrder::Little,
            ..h
        };
        out.clear();
        encode_header(&le, &mut out);
        assert_eq!(&out[..4], &[0x90, 0, 0, 0x80]);
        assert_eq!(&out[40..44], &[0x00, 0x12, 0x34, 0x00]);
    }

    #[test]
    fn group_name_text_and_key() {
        let mut raw = [0u8; 32];
        raw[..4].copy_from_slice(b"grp1");
        raw[10] = 0xc4; // garbage after the NUL (real libspread does this)
        let g = GroupName(raw);
        assert_eq!(g.text(), b"grp1");
        assert_eq!(g.key(), GroupName::new(b"grp1"));
        assert!(g.is_terminated());
        assert!(!GroupName([b'X'; 32]).is_terminated());
        assert_eq!(GroupName([b'X'; 32]).text().len(), 32);
        assert!(GroupName::is_valid_for_client(b"grp1"));
        assert!(!GroupName::is_valid_for_client(b"a b"));
        assert!(!GroupName::is_valid_for_client(b""));
        assert!(!GroupName::is_valid_for_client(&[b'x'; 32]));
    }

    #[test]
    fn request_kind_check() {
        assert!(ServiceType::AGREED.is_valid_request_kind());
        assert!((ServiceType::AGREED | ServiceType::SELF_DISCARD).is_valid_request_kind());
        assert!(ServiceType::JOIN_MESS.is_valid_request_kind());
        assert!(!(ServiceType::AGREED | ServiceType::SAFE).is_valid_request_kind());
        assert!(!(ServiceType::AGREED | ServiceType::JOIN_MESS).is_valid_request_kind());
        assert!(!ServiceType(0).is_valid_request_kind());
        assert!(!(ServiceType::JOIN_MESS | ServiceType::KILL_MESS).is_valid_request_kind());
    }

    #[test]
    fn short_input_is_truncated() {
        let b = [0u8; 47];
        assert_eq!(
            decode_header(&mut &b[..]),
            Err(DecodeError::Truncated {
                needed: 48,
                have: 47
            })
        );
    }

    fn arb_header() -> impl Strategy<Value = MessageHeader> {
        (
            any::<u32>(),
            any::<[u8; 32]>(),
            any::<i32>(),
            any::<i16>(),
            any::<bool>(),
            any::<i32>(),
            any::<bool>(),
        )
            .prop_map(|(t, s, ng, mt, hint_le, dl, le)| {
                let order = if le {
                    ByteOrder::Little
                } else {
                    ByteOrder::Big
                };
                let hint_order = if hint_le {
                    ByteOrder::Little
                } else {
                    ByteOrder::Big
                };
                MessageHeader {
                    service: ServiceType(t & !ENDIAN_MARKER),
                    sender: GroupName(s),
                    num_groups: ng,
                    hint: Hint::new(mt, hint_order),
                    data_len: dl,
                    order,
                }
            })
    }

    proptest! {
        #[test]
        fn header_round_trips(h in arb_header()) {
            let mut out = Vec::new();
            encode_header(&h, &mut out);
            prop_assert_eq!(out.len(), HEADER_LEN);
            let back = decode_header(&mut &out[..]).unwrap();
            prop_assert_eq!(back, h);
        }

        #[test]
        fn header_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let r = decode_header(&mut &b[..]);
            prop_assert_eq!(r.is_ok(), b.len() >= HEADER_LEN);
        }

        #[test]
        fn hint_round_trips(mt in any::<i16>(), le in any::<bool>()) {
            let order = if le { ByteOrder::Little } else { ByteOrder::Big };
            let h = Hint::new(mt, order);
            prop_assert_eq!(h.order(), order);
            prop_assert_eq!(h.mess_type(), mt);
            prop_assert!(h.is_legal());
        }
    }
}
