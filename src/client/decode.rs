//! Turns a framed daemon → client message into a typed [`Message`].

use spread::wire::client::{ByteOrder, Frame, GroupName, MembershipBody, ServiceType};

use super::message::{Cause, DataMessage, Membership, Message, RejectMessage};
use super::{Error, GroupId};

/// The byte order this host writes.
pub(crate) const NATIVE_ORDER: ByteOrder = if cfg!(target_endian = "big") {
    ByteOrder::Big
} else {
    ByteOrder::Little
};

/// The text of a group-name field up to its first NUL, lossily as UTF-8.
pub(crate) fn name_text(g: &GroupName) -> String {
    String::from_utf8_lossy(g.text()).into_owned()
}

fn illegal(what: impl Into<String>) -> Error {
    Error::IllegalMessage(what.into())
}

/// Decodes one framed message received by the session whose private group is `me`.
pub(crate) fn to_message(frame: &Frame, me: &str) -> Result<Message, Error> {
    let h = &frame.header;
    let t = h.service;
    if let Some(orig) = frame.reject_type {
        return Ok(Message::Reject(RejectMessage {
            original_type: orig.0
                & !(spread::wire::client::ENDIAN_MARKER | ServiceType::REJECT_MESS.0),
            sender: name_text(&h.sender),
            groups: frame.groups().map(|g| name_text(&g)).collect(),
            mess_type: h.hint.mess_type(),
            body: frame.body(),
        }));
    }
    if t.single_service().is_some() {
        return Ok(Message::Data(DataMessage {
            sender: name_text(&h.sender),
            groups: frame.groups().map(|g| name_text(&g)).collect(),
            service: t,
            mess_type: h.hint.mess_type(),
            endian_mismatch: h.hint.order() != NATIVE_ORDER,
            body: frame.body(),
        }));
    }
    let group = name_text(&h.sender);
    let body = frame.body();
    if t.contains(ServiceType::REG_MEMB_MESS) {
        let cause = if t.contains(ServiceType::CAUSED_BY_JOIN) {
            Cause::Join
        } else if t.contains(ServiceType::CAUSED_BY_LEAVE) {
            Cause::Leave
        } else if t.contains(ServiceType::CAUSED_BY_DISCONNECT) {
            Cause::Disconnect
        } else if t.contains(ServiceType::CAUSED_BY_NETWORK) {
            Cause::Network
        } else {
            return Err(illegal(format!("membership without a cause: {:#x}", t.0)));
        };
        let mb = MembershipBody::decode(&mut &body[..], h.order)
            .map_err(|e| illegal(format!("membership body: {e}")))?;
        let members: Vec<String> = frame.groups().map(|g| name_text(&g)).collect();
        let my_vs_set = (0..mb.vs_sets.len())
            .find(|&i| mb.offset_of_set(i) == mb.local_vs_set_offset)
            .unwrap_or(0);
        let changed_member = match cause {
            Cause::Network => None,
            _ => mb.vs_sets.first().and_then(|s| s.first()).map(name_text),
        };
        return Ok(Message::Membership(Membership {
            group,
            cause,
            group_id: mb.group_id,
            my_index: members.iter().position(|m| m == me),
            members,
            changed_member,
            vs_sets: mb
                .vs_sets
                .iter()
                .map(|s| s.iter().map(name_text).collect())
                .collect(),
            my_vs_set,
        }));
    }
    if t.contains(ServiceType::TRANSITION_MESS) {
        let group_id = GroupId::decode(&mut &body[..], h.order)
            .map_err(|e| illegal(format!("transitional body: {e}")))?;
        return Ok(Message::Transitional { group, group_id });
    }
    if t.masked(ServiceType::MEMBERSHIP_MESS) == ServiceType::CAUSED_BY_LEAVE {
        return Ok(Message::SelfLeave { group });
    }
    Err(illegal(format!("unknown message type {:#x}", t.0)))
}
