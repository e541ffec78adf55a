//! Targets for the client library: the receive decoder (`crate::client::decode`, a framed
//! daemon → client message to a typed [`Message`]) and the console endpoint syntax
//! (`crate::console::client::Endpoint`).

use bytes::{BufMut, BytesMut};
use spread::wire::client::{
    decode_frame, encode_header, ByteOrder, Direction, GroupName, Hint, MembershipBody,
    MessageHeader, ServiceType, ENDIAN_MARKER, GROUP_NAME_LEN, HEADER_LEN,
};

use crate::client::decode::{to_message, NATIVE_ORDER};
use crate::client::{Cause, Error, Message};
use crate::console::client::{Endpoint, DEFAULT_SOCKET};

/// Most messages taken from one input.
const MAX_MESSAGES: usize = 64;
/// Longest text a 32-byte name field decodes to (each byte may become U+FFFD, 3 bytes).
const MAX_NAME_TEXT: usize = 3 * GROUP_NAME_LEN;

/// The client library's receive path: frames a daemon → client stream and turns every frame
/// into a typed [`Message`] as `Mailbox::receive` does. Input: a length byte `n`, `n % 33`
/// bytes of this session's private group name, then the stream (messages in either byte
/// order).
///
/// Checks: bytes consumed ≤ bytes given, and nothing consumed when a frame is incomplete or
/// refused; sizes of the typed message are bounded by the frame (names ≤ 96 bytes of text, one
/// member per group field, vs-sets within the body, body = the frame's body); `my_index`
/// names this session and `my_vs_set` a set; decode → encode → decode: the message re-encoded
/// as a daemon sends it decodes to the same message (when its names fit a name field);
/// errors are `IllegalMessage` with a text.
pub fn client_receive(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (me, stream) = rest.split_at(usize::from(n % 33).min(rest.len()));
    let me = String::from_utf8_lossy(GroupName::new(me).text()).into_owned();
    let mut buf = BytesMut::from(stream);
    for _ in 0..MAX_MESSAGES {
        let before = buf.len();
        let frame = match decode_frame(&mut buf, Direction::ToClient) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => {
                assert_eq!(
                    buf.len(),
                    before,
                    "an incomplete or refused frame consumed bytes"
                );
                return;
            }
        };
        let used = before - buf.len();
        assert!(used <= before, "consumed {used} of {before} bytes");
        assert_eq!(used, frame.raw.len());
        match to_message(&frame, &me) {
            Ok(m) => {
                check_bounds(&m, &frame, &me);
                round_trip(&m, &me);
            }
            Err(Error::IllegalMessage(why)) => assert!(!why.is_empty(), "an error without text"),
            Err(e) => panic!("receive decoder failed with {e:?}, not IllegalMessage"),
        }
    }
}

fn check_bounds(m: &Message, frame: &spread::wire::client::Frame, me: &str) {
    let names_ok = |v: &[String]| v.iter().all(|s| s.len() <= MAX_NAME_TEXT);
    let body_len = frame.body().len();
    match m {
        Message::Data(d) => {
            assert!(d.sender.len() <= MAX_NAME_TEXT);
            assert_eq!(d.groups.len(), frame.num_groups());
            assert!(names_ok(&d.groups));
            assert_eq!(d.body.len(), body_len);
        }
        Message::Reject(r) => {
            assert!(r.sender.len() <= MAX_NAME_TEXT);
            assert_eq!(r.groups.len(), frame.num_groups());
            assert!(names_ok(&r.groups));
            assert_eq!(r.body.len(), body_len);
            assert_eq!(
                r.original_type & (ENDIAN_MARKER | ServiceType::REJECT_MESS.0),
                0
            );
        }
        Message::Membership(mb) => {
            assert!(mb.group.len() <= MAX_NAME_TEXT);
            assert_eq!(mb.members.len(), frame.num_groups());
            assert!(names_ok(&mb.members));
            let in_sets: usize = mb.vs_sets.iter().map(Vec::len).sum();
            assert!(
                4 * mb.vs_sets.len() + GROUP_NAME_LEN * in_sets <= body_len,
                "vs-sets larger than the body"
            );
            assert!(mb.vs_sets.iter().all(|s| names_ok(s)));
            assert!(mb.my_vs_set < mb.vs_sets.len().max(1));
            if let Some(i) = mb.my_index {
                assert_eq!(mb.members.get(i).map(String::as_str), Some(me));
            } else {
                assert!(!mb.members.iter().any(|x| x == me));
            }
            match mb.cause {
                Cause::Network => assert_eq!(mb.changed_member, None),
                _ => assert_eq!(
                    mb.changed_member.as_ref(),
                    mb.vs_sets.first().and_then(|s| s.first())
                ),
            }
        }
        Message::Transitional { group, .. } | Message::SelfLeave { group } => {
            assert!(group.len() <= MAX_NAME_TEXT);
        }
        Message::Reconnected(_) => panic!("the decoder made a Reconnected message"),
    }
}

/// A name field for `text`, if it fits (the decoder stops at the first NUL, so a text never
/// holds one).
fn field(text: &str) -> Option<GroupName> {
    (text.len() <= GROUP_NAME_LEN).then(|| GroupName::new(text.as_bytes()))
}

fn fields(texts: &[String]) -> Option<Vec<GroupName>> {
    texts.iter().map(|t| field(t)).collect()
}

/// The message as a daemon sends it: header (in `order`), then for REJECT_MESS the original
/// type, group names, body.
struct Wire {
    service: ServiceType,
    sender: GroupName,
    groups: Vec<GroupName>,
    hint: Hint,
    reject: Option<u32>,
    body: Vec<u8>,
    order: ByteOrder,
}

impl Wire {
    fn encode(&self) -> BytesMut {
        let header = MessageHeader {
            service: self.service,
            sender: self.sender,
            num_groups: i32::try_from(self.groups.len()).unwrap_or(i32::MAX),
            hint: self.hint,
            data_len: i32::try_from(self.body.len()).unwrap_or(i32::MAX),
            order: self.order,
        };
        let mut out = BytesMut::with_capacity(HEADER_LEN + 4 + 32 * self.groups.len());
        encode_header(&header, &mut out);
        if let Some(t) = self.reject {
            self.order.put_u32(&mut out, t);
        }
        for g in &self.groups {
            g.encode(&mut out);
        }
        out.put_slice(&self.body);
        out
    }
}

fn other(order: ByteOrder) -> ByteOrder {
    match order {
        ByteOrder::Little => ByteOrder::Big,
        ByteOrder::Big => ByteOrder::Little,
    }
}

/// Encodes `m` as a daemon would and decodes it again: the same message.
fn round_trip(m: &Message, me: &str) {
    let Some(wire) = to_wire(m) else {
        return;
    };
    let mut bytes = wire.encode();
    let frame = decode_frame(&mut bytes, Direction::ToClient)
        .expect("a re-encoded message frames")
        .expect("a re-encoded message is complete");
    assert!(bytes.is_empty(), "re-encoded message left bytes behind");
    let again = to_message(&frame, me).expect("a re-encoded message decodes");
    assert_eq!(&again, m, "decode → encode → decode changed the message");
}

fn to_wire(m: &Message) -> Option<Wire> {
    Some(match m {
        Message::Data(d) => {
            let order = if d.endian_mismatch {
                other(NATIVE_ORDER)
            } else {
                NATIVE_ORDER
            };
            Wire {
                service: d.service,
                sender: field(&d.sender)?,
                groups: fields(&d.groups)?,
                hint: Hint::new(d.mess_type, order),
                reject: None,
                body: d.body.to_vec(),
                order,
            }
        }
        Message::Reject(r) => Wire {
            service: ServiceType::REJECT_MESS,
            sender: field(&r.sender)?,
            groups: fields(&r.groups)?,
            hint: Hint::new(r.mess_type, NATIVE_ORDER),
            reject: Some(r.original_type),
            body: r.body.to_vec(),
            order: NATIVE_ORDER,
        },
        Message::Membership(mb) => {
            let cause = match mb.cause {
                Cause::Join => ServiceType::CAUSED_BY_JOIN,
                Cause::Leave => ServiceType::CAUSED_BY_LEAVE,
                Cause::Disconnect => ServiceType::CAUSED_BY_DISCONNECT,
                Cause::Network => ServiceType::CAUSED_BY_NETWORK,
            };
            let vs_sets: Vec<Vec<GroupName>> = mb
                .vs_sets
                .iter()
                .map(|s| fields(s))
                .collect::<Option<_>>()?;
            let mut body = MembershipBody {
                group_id: mb.group_id,
                local_vs_set_offset: 0,
                vs_sets,
            };
            body.local_vs_set_offset = body.offset_of_set(mb.my_vs_set);
            let mut bytes = Vec::with_capacity(body.len());
            body.encode(&mut bytes, NATIVE_ORDER);
            Wire {
                service: ServiceType::REG_MEMB_MESS | cause,
                sender: field(&mb.group)?,
                groups: fields(&mb.members)?,
                hint: Hint::DAEMON,
                reject: None,
                body: bytes,
                order: NATIVE_ORDER,
            }
        }
        Message::Transitional { group, group_id } => {
            let mut body = Vec::with_capacity(12);
            group_id.encode(&mut body, NATIVE_ORDER);
            Wire {
                service: ServiceType::TRANSITION_MESS,
                sender: field(group)?,
                groups: Vec::new(),
                hint: Hint::DAEMON,
                reject: None,
                body,
                order: NATIVE_ORDER,
            }
        }
        Message::SelfLeave { group } => Wire {
            service: ServiceType::CAUSED_BY_LEAVE,
            sender: field(group)?,
            groups: Vec::new(),
            hint: Hint::DAEMON,
            reject: None,
            body: Vec::new(),
            order: NATIVE_ORDER,
        },
        // Made by `ReconnectingMailbox`, never on the wire.
        Message::Reconnected(_) => return None,
    })
}

/// Longest endpoint text tried (`ec_console`'s argument; longer texts are not interesting).
const MAX_ENDPOINT: usize = 4096;

/// The `remoteaddr` argument of `ec_console` (input: UTF-8 text): a socket path, a bare port
/// (`/tmp/<port>`), `host:port` or `[ipv6]:port`.
///
/// Checks: parse → render → parse gives the same endpoint, and rendering is a fixed point;
/// a Unix endpoint is an absolute path (the default socket for empty text); a TCP endpoint
/// ends in `:<u16 port>`, keeps the text as given and is never an authenticated
/// (`user@host`, its own kind) or SSH endpoint; an error names the text it refuses, and is one line when
/// the text is.
pub fn console_endpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > MAX_ENDPOINT {
        return;
    }
    match Endpoint::parse(text) {
        Ok(ep) => {
            let rendered = ep.to_string();
            let again = Endpoint::parse(&rendered)
                .unwrap_or_else(|e| panic!("rendered {rendered:?} does not parse: {e}"));
            assert_eq!(again, ep, "parse → render → parse changed {text:?}");
            assert_eq!(
                again.to_string(),
                rendered,
                "rendering is not a fixed point"
            );
            match &ep {
                Endpoint::Unix(path) => {
                    assert!(path.starts_with('/'), "relative socket path {path:?}");
                    if text.is_empty() {
                        assert_eq!(path, DEFAULT_SOCKET);
                    } else if !text.starts_with('/') {
                        assert_eq!(path, &format!("/tmp/{text}"), "a bare port");
                    } else {
                        assert_eq!(path, text);
                    }
                }
                Endpoint::Login { user, addr } => {
                    assert_eq!(
                        format!("{user}@{addr}"),
                        text,
                        "a login endpoint keeps its text"
                    );
                    assert!(!user.is_empty() && !user.contains(':'));
                    let (_, port) = addr.rsplit_once(':').expect("host:port has a colon");
                    assert!(port.parse::<u16>().is_ok(), "port {port:?}");
                }
                Endpoint::Tcp(addr) => {
                    assert_eq!(addr, text, "a TCP endpoint keeps its text");
                    assert!(!addr.contains('@') && !addr.starts_with("ssh://"));
                    let (_, port) = addr.rsplit_once(':').expect("host:port has a colon");
                    assert!(port.parse::<u16>().is_ok(), "port {port:?}");
                }
            }
        }
        Err(e) => {
            assert!(e.contains(text), "error {e:?} does not name {text:?}");
            assert!(
                text.contains('\n') || !e.contains('\n'),
                "multi-line error {e:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The daemon's REG_MEMB reply to `#alice#localhost` joining `grp1` (`join_one_group.hex`)
    /// decodes, is bounded and round-trips; so does a data message in the other byte order.
    #[test]
    fn captured_membership_round_trips() {
        const MEMB: &str = "801100806772703100000000000000000000000000000000000000000000000000000000010000008000008038000000\
23616c696365236c6f63616c686f7374000000000000000000000000000000002697c51cdee7056b0100000001000000000000000100000023616c696365236c6f63616c686f737400000000000000000000000000000000";
        let me = b"#alice#localhost";
        let mut input = vec![u8::try_from(me.len()).unwrap()];
        input.extend_from_slice(me);
        input.extend(hex(MEMB));
        client_receive(&input);
        let mut buf = BytesMut::from(&hex(MEMB)[..]);
        let frame = decode_frame(&mut buf, Direction::ToClient)
            .unwrap()
            .unwrap();
        let m = to_message(&frame, "#alice#localhost").unwrap();
        let mb = m.as_membership().unwrap();
        assert_eq!(mb.my_index, Some(0));
        assert_eq!(mb.cause, Cause::Join);
        assert!(to_wire(&m).is_some());
    }

    #[test]
    fn endpoints() {
        for t in [
            "",
            "2030",
            "/tmp/x",
            "localhost:2025",
            "[::1]:2025",
            "a@b:1",
            "host",
            ":1",
        ] {
            console_endpoint(t.as_bytes());
        }
    }
}
