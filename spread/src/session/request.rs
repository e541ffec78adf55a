//! Requests of an open session: header validation (fact sheet §4.1, in 5.0.1's order, plus
//! our group-name rules) and framing into [`Request`]s.

use bytes::BytesMut;
use thiserror::Error;

use crate::wire::client::frame::check_lengths;
use crate::wire::client::{
    decode_frame, decode_header, DecodeError, Direction, Frame, GroupName, ServiceType,
    GROUP_NAME_LEN, HEADER_LEN, MAX_GROUPS_PER_MESSAGE,
};

/// One request from an open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// JOIN of the first listed group (the frame is kept for a REJECT_MESS).
    Join(GroupName, Frame),
    /// LEAVE of the first listed group.
    Leave(GroupName),
    /// KILL: disconnect.
    Kill,
    /// A data message (any mix of groups and private groups).
    Multicast(Frame),
}

/// A protocol violation by a session: it is killed, nothing is sent to it. Counted in the
/// daemon's stats; the session's state is discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Violation {
    /// Not exactly one service bit or exactly one JOIN/LEAVE/KILL bit.
    #[error("bad type bits")]
    TypeBits,
    /// The sender field is not this session's private group.
    #[error("sender is not the session's private group")]
    Sender,
    /// `num_groups` outside 0..=100 (or 0 for JOIN/LEAVE).
    #[error("bad num_groups")]
    NumGroups,
    /// A `hint` bit outside `0x80ffff80`.
    #[error("bad hint bits")]
    Hint,
    /// `data_len` negative or over the limits (including the real 143200-byte capacity).
    #[error("bad length")]
    Length,
    /// A group name without NUL, or an empty / `#` name in JOIN/LEAVE (our rule, see
    /// [`crate::wire::client`]).
    #[error("bad group name")]
    GroupName,
    /// Bytes sent during or after the handshake that do not belong there.
    #[error("unexpected bytes")]
    Unexpected,
}

impl Violation {
    /// Index into the per-kind counters of [`crate::clients::ClientStats`].
    pub fn index(self) -> usize {
        match self {
            Self::TypeBits => 0,
            Self::Sender => 1,
            Self::NumGroups => 2,
            Self::Hint => 3,
            Self::Length => 4,
            Self::GroupName => 5,
            Self::Unexpected => 6,
        }
    }

    /// Number of kinds.
    pub const COUNT: usize = 7;

    /// A short name of each kind, by [`Violation::index`] (metric labels).
    pub const LABELS: [&'static str; Self::COUNT] = [
        "type_bits",
        "sender",
        "num_groups",
        "hint",
        "length",
        "group_name",
        "unexpected",
    ];
}

/// True if a header's sender field names `own` (5.0.1 forces a NUL at byte 31 first).
fn sender_ok(field: &GroupName, own: &GroupName) -> bool {
    let mut f = *field;
    f.0[GROUP_NAME_LEN - 1] = 0;
    f.key() == *own
}

/// Takes the next request off `inbuf`. `Ok(None)`: not complete yet. `Err`: the session must
/// be killed (the header is judged as soon as its 48 bytes are in, before the body arrives).
pub fn next_request(inbuf: &mut BytesMut, own: &GroupName) -> Result<Option<Request>, Violation> {
    let Some(head) = inbuf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let h = decode_header(&mut &head[..]).map_err(|_| Violation::Length)?;
    if !h.service.is_valid_request_kind() {
        return Err(Violation::TypeBits);
    }
    if !sender_ok(&h.sender, own) {
        return Err(Violation::Sender);
    }
    if !(0..=MAX_GROUPS_PER_MESSAGE as i32).contains(&h.num_groups) {
        return Err(Violation::NumGroups);
    }
    if !h.hint.is_legal() {
        return Err(Violation::Hint);
    }
    let total = check_lengths(&h, Direction::ToDaemon).map_err(|e| match e {
        DecodeError::BadNumGroups(_) => Violation::NumGroups,
        _ => Violation::Length,
    })?;
    if inbuf.len() < total {
        // Room for the whole frame at once (bounded by the checked lengths): the rest of a
        // large message is appended without regrowing (and copying) the buffer per read.
        inbuf.reserve(total - inbuf.len());
        return Ok(None);
    }
    let request_bit = h.service.single_request();
    if request_bit.is_some_and(|r| r != ServiceType::KILL_MESS) && h.num_groups == 0 {
        // JOIN/LEAVE with no group: 5.0.1 reads a stale buffer; refuse.
        return Err(Violation::NumGroups);
    }
    let Some(frame) = decode_frame(inbuf, Direction::ToDaemon).map_err(|_| Violation::Length)?
    else {
        return Ok(None);
    };
    match request_bit {
        Some(ServiceType::KILL_MESS) => Ok(Some(Request::Kill)),
        Some(bit) => {
            let g = frame.group(0).ok_or(Violation::NumGroups)?;
            if !g.is_terminated() || g.is_empty() {
                return Err(Violation::GroupName);
            }
            if bit == ServiceType::JOIN_MESS {
                if g.is_private() {
                    return Err(Violation::GroupName);
                }
                Ok(Some(Request::Join(g.key(), frame)))
            } else {
                Ok(Some(Request::Leave(g.key())))
            }
        }
        None => {
            if frame.groups().any(|g| !g.is_terminated()) {
                return Err(Violation::GroupName);
            }
            Ok(Some(Request::Multicast(frame)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::client::{encode_header, ByteOrder, Hint, MessageHeader};
    use bytes::BufMut;

    fn own() -> GroupName {
        GroupName::new(b"#alice#localhost")
    }

    fn msg(
        service: u32,
        sender: &[u8],
        groups: &[[u8; 32]],
        hint: Hint,
        data_len: i32,
        body: usize,
    ) -> BytesMut {
        let mut out = BytesMut::new();
        encode_header(
            &MessageHeader {
                service: ServiceType(service),
                sender: GroupName::new(sender),
                num_groups: groups.len() as i32,
                hint,
                data_len,
                order: ByteOrder::Little,
            },
            &mut out,
        );
        for g in groups {
            out.put_slice(g);
        }
        out.put_bytes(b'x', body);
        out
    }

    fn g(s: &[u8]) -> [u8; 32] {
        GroupName::new(s).0
    }

    #[test]
    fn every_header_check_kills() {
        let a = b"#alice#localhost";
        let h = Hint::DAEMON;
        let cases: Vec<(BytesMut, Violation)> = vec![
            (msg(0x30, a, &[g(b"g")], h, 0, 0), Violation::TypeBits),
            (msg(0x10010, a, &[g(b"g")], h, 0, 0), Violation::TypeBits),
            (msg(0, a, &[g(b"g")], h, 0, 0), Violation::TypeBits),
            (
                msg(0x10, b"#bob#localhost", &[g(b"g")], h, 0, 0),
                Violation::Sender,
            ),
            (
                msg(0x10, b"#alice#other", &[g(b"g")], h, 0, 0),
                Violation::Sender,
            ),
            (
                msg(0x10, a, &[g(b"g")], Hint([0x81, 0, 0, 0x80]), 0, 0),
                Violation::Hint,
            ),
            (msg(0x10, a, &[g(b"g")], h, -1, 0), Violation::Length),
            (msg(0x10, a, &[g(b"g")], h, 143_921, 0), Violation::Length),
            (msg(0x10, a, &[g(b"g")], h, 143_121, 0), Violation::Length),
            (msg(0x10000, a, &[], h, 0, 0), Violation::NumGroups),
            (
                msg(0x10000, a, &[[b'X'; 32]], h, 0, 0),
                Violation::GroupName,
            ),
            (msg(0x10000, a, &[g(b"")], h, 0, 0), Violation::GroupName),
            (
                msg(0x10000, a, &[g(b"#bob#localhost")], h, 0, 0),
                Violation::GroupName,
            ),
            (
                msg(0x10, a, &[g(b"g"), [b'X'; 32]], h, 0, 0),
                Violation::GroupName,
            ),
        ];
        for (i, (mut b, v)) in cases.into_iter().enumerate() {
            assert_eq!(next_request(&mut b, &own()), Err(v), "case {i}");
        }
        let mut many = msg(0x10, a, &[], h, 0, 0);
        many[36..40].copy_from_slice(&101i32.to_le_bytes());
        assert_eq!(next_request(&mut many, &own()), Err(Violation::NumGroups));
    }

    #[test]
    fn valid_requests() {
        let a = b"#alice#localhost";
        let h = Hint::DAEMON;
        let mut b = msg(0x10000, a, &[g(b"a b")], h, 0, 0);
        b.extend(msg(0x20000, a, &[g(b"a b")], h, 0, 0));
        b.extend(msg(0x40000, a, &[g(a)], h, 0, 0));
        let data = msg(
            0x50,
            a,
            &[g(b"g1"), g(b"#bob#localhost")],
            Hint::new(3, ByteOrder::Little),
            5,
            5,
        );
        let tail = data.len();
        b.extend(data);
        // Incomplete body: nothing yet, nothing consumed.
        let mut partial = BytesMut::from(&b[..b.len() - 1]);
        assert!(matches!(
            next_request(&mut partial, &own()),
            Ok(Some(Request::Join(g, _))) if g == GroupName::new(b"a b")
        ));
        assert_eq!(
            next_request(&mut partial, &own()),
            Ok(Some(Request::Leave(GroupName::new(b"a b"))))
        );
        assert_eq!(next_request(&mut partial, &own()), Ok(Some(Request::Kill)));
        assert_eq!(next_request(&mut partial, &own()), Ok(None));
        assert_eq!(partial.len(), tail - 1);
        for _ in 0..3 {
            next_request(&mut b, &own()).unwrap().unwrap();
        }
        let Some(Request::Multicast(f)) = next_request(&mut b, &own()).unwrap() else {
            panic!("expected multicast");
        };
        assert_eq!(f.num_groups(), 2);
        assert_eq!(f.body().len(), 5);
        assert!(b.is_empty());
    }
}
