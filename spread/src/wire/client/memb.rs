//! Bodies of membership messages: the 12-byte group id, the vs-sets of a regular membership,
//! and the body of a transitional one (the ending view's group id alone).
//!
//! Integers are in the daemon's byte order (the header's order); names are never swapped.

use bytes::{Buf, BufMut};

use super::header::{check, ByteOrder, GroupName};
use super::{DecodeError, GROUP_NAME_LEN, MAX_DELIVERED_GROUPS};

/// Identifies one view of a group: the daemon-ring membership id it was formed in
/// (representative daemon id, formation time) and a counter of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct GroupId {
    /// Id of the daemon that formed the ring configuration.
    pub proc_id: i32,
    /// Formation time of that configuration (Unix seconds).
    pub time: i32,
    /// Number of changes of the group in that configuration (first join = 1).
    pub index: i32,
}

impl GroupId {
    /// Encoded length.
    pub const LEN: usize = 12;

    /// Reads a group id.
    pub fn decode(buf: &mut impl Buf, order: ByteOrder) -> Result<Self, DecodeError> {
        check(buf, Self::LEN)?;
        Ok(Self {
            proc_id: order.get_u32(buf) as i32,
            time: order.get_u32(buf) as i32,
            index: order.get_u32(buf) as i32,
        })
    }

    /// Writes a group id.
    pub fn encode(&self, buf: &mut impl BufMut, order: ByteOrder) {
        order.put_u32(buf, self.proc_id as u32);
        order.put_u32(buf, self.time as u32);
        order.put_u32(buf, self.index as u32);
    }
}

/// Body of a REG_MEMB_MESS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipBody {
    /// The new view's group id.
    pub group_id: GroupId,
    /// Byte offset, from body offset 20, of the vs-set holding the receiver.
    pub local_vs_set_offset: u32,
    /// The vs-sets in order (for join/leave/disconnect: one set with the changed member).
    pub vs_sets: Vec<Vec<GroupName>>,
}

impl MembershipBody {
    /// Encoded length.
    pub fn len(&self) -> usize {
        GroupId::LEN
            + 8
            + self
                .vs_sets
                .iter()
                .map(|s| 4 + GROUP_NAME_LEN * s.len())
                .sum::<usize>()
    }

    /// True if there are no vs-sets (never the case on the wire).
    pub fn is_empty(&self) -> bool {
        self.vs_sets.is_empty()
    }

    /// Offset (from body offset 20) of vs-set `i`.
    pub fn offset_of_set(&self, i: usize) -> u32 {
        self.vs_sets
            .iter()
            .take(i)
            .map(|s| 4 + GROUP_NAME_LEN * s.len())
            .sum::<usize>() as u32
    }

    /// Writes the body.
    pub fn encode(&self, buf: &mut impl BufMut, order: ByteOrder) {
        self.group_id.encode(buf, order);
        order.put_u32(buf, self.vs_sets.len() as u32);
        order.put_u32(buf, self.local_vs_set_offset);
        for set in &self.vs_sets {
            order.put_u32(buf, set.len() as u32);
            for m in set {
                m.encode(buf);
            }
        }
    }

    /// Reads a body of exactly `buf.remaining()` bytes.
    pub fn decode(buf: &mut impl Buf, order: ByteOrder) -> Result<Self, DecodeError> {
        let group_id = GroupId::decode(buf, order)?;
        check(buf, 8)?;
        let num_sets = order.get_u32(buf) as usize;
        let local_vs_set_offset = order.get_u32(buf);
        // Each set needs at least 4 bytes: bound the count by the bytes left before allocating.
        if num_sets > buf.remaining() / 4 {
            return Err(DecodeError::BadMembershipBody("num_vs_sets exceeds body"));
        }
        let mut vs_sets = Vec::with_capacity(num_sets);
        for _ in 0..num_sets {
            check(buf, 4)?;
            let count = order.get_u32(buf) as usize;
            if count > MAX_DELIVERED_GROUPS || count * GROUP_NAME_LEN > buf.remaining() {
                return Err(DecodeError::BadMembershipBody("vs-set count exceeds body"));
            }
            let mut set = Vec::with_capacity(count);
            for _ in 0..count {
                set.push(GroupName::decode(buf)?);
            }
            vs_sets.push(set);
        }
        Ok(Self {
            group_id,
            local_vs_set_offset,
            vs_sets,
        })
    }

    /// The vs-set at `local_vs_set_offset`, if the offset points at a set.
    pub fn local_set(&self) -> Option<&[GroupName]> {
        (0..self.vs_sets.len())
            .find(|&i| self.offset_of_set(i) == self.local_vs_set_offset)
            .and_then(|i| self.vs_sets.get(i))
            .map(|s| &s[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn captured_join_body() {
        // bob joins a group alice is in (two_clients_join_leave.hex).
        let mut body = Vec::new();
        let b = MembershipBody {
            group_id: GroupId {
                proc_id: 0x1cc5_9726,
                time: 0x6b05_e7de,
                index: 2,
            },
            local_vs_set_offset: 0,
            vs_sets: vec![vec![GroupName::new(b"#bob#localhost")]],
        };
        b.encode(&mut body, ByteOrder::Little);
        assert_eq!(body.len(), 56);
        assert_eq!(b.len(), 56);
        assert_eq!(
            &body[..24],
            &[
                0x26, 0x97, 0xc5, 0x1c, 0xde, 0xe7, 0x05, 0x6b, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                1, 0, 0, 0
            ]
        );
        assert_eq!(
            MembershipBody::decode(&mut &body[..], ByteOrder::Little).unwrap(),
            b
        );
        assert_eq!(b.local_set().unwrap().len(), 1);
    }

    #[test]
    fn hostile_counts_are_refused() {
        let mut body = Vec::new();
        GroupId::default().encode(&mut body, ByteOrder::Little);
        body.put_u32_le(u32::MAX);
        body.put_u32_le(0);
        assert!(MembershipBody::decode(&mut &body[..], ByteOrder::Little).is_err());
        body.truncate(12);
        body.put_u32_le(1);
        body.put_u32_le(0);
        body.put_u32_le(1_000_000);
        assert!(MembershipBody::decode(&mut &body[..], ByteOrder::Little).is_err());
    }

    proptest! {
        #[test]
        fn body_round_trips(
            ids in any::<(i32, i32, i32)>(),
            sets in proptest::collection::vec(proptest::collection::vec(any::<[u8; 32]>(), 0..4), 1..4),
            le in any::<bool>(),
        ) {
            let order = if le { ByteOrder::Little } else { ByteOrder::Big };
            let b = MembershipBody {
                group_id: GroupId { proc_id: ids.0, time: ids.1, index: ids.2 },
                local_vs_set_offset: 0,
                vs_sets: sets.into_iter().map(|s| s.into_iter().map(GroupName).collect()).collect(),
            };
            let mut out = Vec::new();
            b.encode(&mut out, order);
            prop_assert_eq!(out.len(), b.len());
            let mut slice = &out[..];
            prop_assert_eq!(MembershipBody::decode(&mut slice, order).unwrap(), b);
            prop_assert_eq!(slice.len(), 0);
        }

        #[test]
        fn body_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MembershipBody::decode(&mut &b[..], ByteOrder::Little);
            let _ = MembershipBody::decode(&mut &b[..], ByteOrder::Big);
        }
    }
}
