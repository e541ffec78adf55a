//! The bytes of daemon-generated messages, laid out exactly as 5.0.1 sends them (always in
//! little-endian order with the marker set; `hint` = marker only).

use bytes::{BufMut, Bytes, BytesMut};

use super::{Cause, Change, Member};
use crate::wire::client::{
    encode_header, ByteOrder, GroupId, GroupName, Hint, MembershipBody, MessageHeader, ServiceType,
    GROUP_NAME_LEN, HEADER_LEN,
};

/// The byte order of everything this daemon writes.
pub const DAEMON_ORDER: ByteOrder = ByteOrder::Little;

fn header(
    service: ServiceType,
    group: GroupName,
    num_groups: usize,
    data_len: usize,
) -> MessageHeader {
    MessageHeader {
        service,
        sender: group,
        num_groups: num_groups as i32,
        hint: Hint::DAEMON,
        data_len: data_len as i32,
        order: DAEMON_ORDER,
    }
}

/// The `type` of a regular membership with `cause`.
pub fn regular_type(cause: Cause) -> ServiceType {
    ServiceType::REG_MEMB_MESS
        | match cause {
            Cause::Join => ServiceType::CAUSED_BY_JOIN,
            Cause::Leave => ServiceType::CAUSED_BY_LEAVE,
            Cause::Disconnect => ServiceType::CAUSED_BY_DISCONNECT,
            Cause::Network => ServiceType::CAUSED_BY_NETWORK,
        }
}

/// The REG_MEMB_MESS for `change` as seen by a receiver whose vs-set is number `local_set`.
pub fn regular(change: &Change, local_set: usize) -> Bytes {
    let body = MembershipBody {
        group_id: change.group_id,
        local_vs_set_offset: 0,
        vs_sets: change
            .vs_sets
            .iter()
            .map(|s| s.iter().map(|m: &Member| m.name).collect())
            .collect(),
    };
    let body = MembershipBody {
        local_vs_set_offset: body.offset_of_set(local_set),
        ..body
    };
    let n = change.members.len();
    let mut out = BytesMut::with_capacity(HEADER_LEN + GROUP_NAME_LEN * n + body.len());
    encode_header(
        &header(regular_type(change.cause), change.group, n, body.len()),
        &mut out,
    );
    for e in &change.members {
        e.member.name.encode(&mut out);
    }
    body.encode(&mut out, DAEMON_ORDER);
    out.freeze()
}

/// The self-leave message: `CAUSED_BY_LEAVE` alone, group name, no groups, no body.
pub fn self_leave(group: GroupName) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN);
    encode_header(&header(ServiceType::CAUSED_BY_LEAVE, group, 0, 0), &mut out);
    out.freeze()
}

/// The TRANSITION_MESS of `group`: no groups, body = the ending view's group id.
pub fn transition(group: GroupName, old_id: GroupId) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + GroupId::LEN);
    encode_header(
        &header(ServiceType::TRANSITION_MESS, group, 0, GroupId::LEN),
        &mut out,
    );
    old_id.encode(&mut out, DAEMON_ORDER);
    out.freeze()
}

/// A REJECT_MESS for a refused request (5.0.1 §5.6): `original` is the request's raw bytes
/// (header, groups, body) and `requester` its private group.
pub fn reject(
    original: &MessageHeader,
    groups: &[GroupName],
    body: &[u8],
    requester: GroupName,
) -> Bytes {
    let mut kept: Vec<GroupName> = groups.to_vec();
    if kept.len() >= crate::wire::client::MAX_GROUPS_PER_MESSAGE {
        kept.pop();
    }
    kept.push(requester);
    let mut orig_type = original.service;
    if orig_type.intersects(ServiceType::JOIN_MESS) {
        orig_type =
            ServiceType((orig_type.0 & !ServiceType::JOIN_MESS.0) | ServiceType::CAUSED_BY_JOIN.0);
    }
    if orig_type.intersects(ServiceType::LEAVE_MESS) {
        orig_type = ServiceType(
            (orig_type.0 & !ServiceType::LEAVE_MESS.0) | ServiceType::CAUSED_BY_LEAVE.0,
        );
    }
    let service = ServiceType::REJECT_MESS | original.service.masked(ServiceType::SELF_DISCARD);
    let h = MessageHeader {
        service,
        sender: requester,
        num_groups: kept.len() as i32,
        hint: original.hint,
        data_len: original.data_len,
        order: DAEMON_ORDER,
    };
    let mut out =
        BytesMut::with_capacity(HEADER_LEN + 4 + GROUP_NAME_LEN * kept.len() + body.len());
    encode_header(&h, &mut out);
    DAEMON_ORDER.put_u32(&mut out, orig_type.0 | DAEMON_ORDER.marker());
    for g in &kept {
        g.encode(&mut out);
    }
    out.put_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{Entry, Groups, RingId};
    use crate::session::SessionId;
    use crate::wire::client::{decode_frame, Direction};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn captured_membership_bytes() {
        let mut gs = Groups::new(RingId {
            leader: crate::ids::DaemonId(0x1cc5_9726),
            time: 0x6b05_e7de,
        });
        let g = GroupName::new(b"grp1");
        let e = |n: &[u8], s| Entry {
            member: Member {
                daemon: 0,
                name: GroupName::new(n),
            },
            session: Some(SessionId(s)),
        };
        let c = gs.join(e(b"#alice#localhost", 1), &g).unwrap();
        let want = hex(concat!(
            "801100806772703100000000000000000000000000000000000000000000000000000000010000008000008038000000",
            "23616c696365236c6f63616c686f737400000000000000000000000000000000",
            "2697c51cdee7056b0100000001000000000000000100000023616c696365236c6f63616c686f737400000000000000000000000000000000"
        ));
        assert_eq!(&regular(&c, 0)[..], &want[..]);
        assert_eq!(
            &self_leave(g)[..],
            &hex("800200806772703100000000000000000000000000000000000000000000000000000000000000008000008000000000")[..]
        );
        let t = transition(g, c.group_id);
        assert_eq!(t.len(), 60);
        assert_eq!(&t[..4], &[0x80, 0x20, 0x00, 0x80]);
    }

    #[test]
    fn reject_layout_decodes() {
        let h = MessageHeader {
            service: ServiceType::JOIN_MESS,
            sender: GroupName::new(b"#a#d"),
            num_groups: 1,
            hint: Hint::DAEMON,
            data_len: 0,
            order: ByteOrder::Little,
        };
        let r = reject(&h, &[GroupName::new(b"g")], b"", GroupName::new(b"#a#d"));
        let mut buf = BytesMut::from(&r[..]);
        let f = decode_frame(&mut buf, Direction::ToClient)
            .unwrap()
            .unwrap();
        assert_eq!(f.num_groups(), 2);
        assert_eq!(
            f.reject_type,
            Some(ServiceType(0x8000_0080 | ServiceType::CAUSED_BY_JOIN.0))
        );
    }
}
