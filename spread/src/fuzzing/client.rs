//! Targets for the client↔daemon codecs (`crate::wire::client`).

use bytes::{BufMut, BytesMut};

use crate::wire::client::{
    decode_accept, decode_auth_choice, decode_auth_list, decode_frame, decode_hello, encode_accept,
    encode_auth_choice, encode_auth_list, encode_header, encode_hello, AcceptReply, AuthListReply,
    Direction, Frame, GroupId, MembershipBody, ServiceType, Version, AUTH_CHOICE_LEN,
    GROUP_NAME_LEN, HEADER_LEN, MAX_AUTH_METHODS, MAX_AUTH_NAME, MAX_DELIVERED_DATA_LEN,
    MAX_DELIVERED_GROUPS, MAX_GROUPS_PER_MESSAGE, MAX_WIRE_MESSAGE,
};

/// Most frames taken from one input (the rest is ignored).
const MAX_FRAMES: usize = 64;
/// Most bytes a framer may reserve for one announced message: the largest daemon→client
/// message (groups + body + the REJECT_MESS extra word) plus the header.
const MAX_RESERVE: usize =
    HEADER_LEN + 4 + MAX_DELIVERED_GROUPS * GROUP_NAME_LEN + MAX_DELIVERED_DATA_LEN;
/// Client versions the accept is decoded for: without patch byte, with patch byte but no
/// authentication exchange, and current.
const CLIENT_VERSIONS: [Version; 3] = [
    Version {
        major: 3,
        minor: 14,
        patch: 0,
    },
    Version {
        major: 3,
        minor: 15,
        patch: 2,
    },
    Version::V5_0_1,
];

/// One connect-handshake piece. Input: a selector byte (`% 4`: 0 client hello as the daemon
/// reads it, 1 authentication list or reject byte as the client reads it, 2 the 90-byte
/// authentication choice as the daemon reads it, 3 accept or reject as the client reads it,
/// for each client version of 3.14, 3.15 and 5.0.1), then the bytes.
///
/// Checks: bytes consumed ≤ bytes given; re-encoding what was decoded gives exactly the bytes
/// consumed (where the encoder can express the value) and decodes to the same value.
pub fn client_handshake(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => hello(bytes),
        1 => auth_list(bytes),
        2 => auth_choice(bytes),
        _ => accept(bytes),
    }
}

fn hello(bytes: &[u8]) {
    let Ok(Some((hello, used))) = decode_hello(bytes) else {
        return;
    };
    assert!(
        used <= bytes.len(),
        "hello consumed {used} of {} bytes",
        bytes.len()
    );
    let mut out = Vec::new();
    encode_hello(&hello, &mut out);
    assert_eq!(
        Some(&out[..]),
        bytes.get(..used),
        "hello does not re-encode to its bytes"
    );
    assert_eq!(decode_hello(&out), Ok(Some((hello, used))));
}

fn auth_list(bytes: &[u8]) {
    let Some((reply, used)) = decode_auth_list(bytes) else {
        return;
    };
    assert!(
        used <= bytes.len(),
        "auth list consumed {used} of {} bytes",
        bytes.len()
    );
    match reply {
        AuthListReply::Rejected(code) => {
            assert_eq!(used, 1);
            assert_eq!(bytes.first(), Some(&(code as u8)));
        }
        AuthListReply::Methods(methods) => {
            // What the encoder can express: at most 3 names of at most 30 bytes.
            if methods.len() <= MAX_AUTH_METHODS && methods.iter().all(|m| m.len() <= MAX_AUTH_NAME)
            {
                let mut out = Vec::new();
                encode_auth_list(&methods, &mut out);
                let again = decode_auth_list(&out).map(|(r, _)| r);
                assert_eq!(again, Some(AuthListReply::Methods(methods)));
            }
        }
    }
}

fn auth_choice(bytes: &[u8]) {
    let Some(choice) = bytes.get(..AUTH_CHOICE_LEN) else {
        return;
    };
    let mut fixed = [0u8; AUTH_CHOICE_LEN];
    fixed.copy_from_slice(choice);
    let names = decode_auth_choice(&fixed);
    assert!(names.len() <= MAX_AUTH_METHODS);
    assert!(names
        .iter()
        .all(|n| !n.is_empty() && n.len() <= MAX_AUTH_NAME));
    // The encoder keeps a NUL in every slot, so it can express names of up to 29 bytes.
    if names.iter().all(|n| n.len() < MAX_AUTH_NAME) {
        let mut out = Vec::new();
        encode_auth_choice(&names, &mut out);
        let mut again = [0u8; AUTH_CHOICE_LEN];
        again.copy_from_slice(&out);
        assert_eq!(decode_auth_choice(&again), names);
    }
}

fn accept(bytes: &[u8]) {
    for client in CLIENT_VERSIONS {
        let Some((reply, used)) = decode_accept(bytes, client) else {
            continue;
        };
        assert!(
            used <= bytes.len(),
            "accept consumed {used} of {} bytes",
            bytes.len()
        );
        match reply {
            AcceptReply::Accepted {
                daemon,
                private_group,
            } => {
                assert!(private_group.len() < GROUP_NAME_LEN);
                let mut out = Vec::new();
                encode_accept(daemon, client, &private_group, &mut out);
                assert_eq!(
                    Some(&out[..]),
                    bytes.get(..used),
                    "accept does not re-encode"
                );
            }
            AcceptReply::Rejected(code) => assert_eq!(bytes.first(), Some(&(code as u8))),
            AcceptReply::Malformed => {}
        }
    }
}

/// Whole client↔daemon messages. Input: the bytes of one or more messages (48-byte header,
/// `32 * num_groups` group names, body), in either byte order, framed both as a daemon reads
/// them ([`Direction::ToDaemon`]) and as a client reads them ([`Direction::ToClient`]).
///
/// Checks per frame: the bytes taken equal the announced length and never exceed what was
/// there; the group and body accessors add up to the frame; re-encoding the header in front of
/// the same groups and body frames to the same header (decode → encode → decode); membership
/// bodies (REG_MEMB_MESS / TRANSITION_MESS) decode → encode → decode to the same value. When
/// more bytes are needed nothing is consumed and the reservation stays below the named maxima.
pub fn client_message(data: &[u8]) {
    check_messages(data);
}

/// [`client_message`]; returns how many frames were checked.
fn check_messages(data: &[u8]) -> usize {
    let mut checked = 0;
    for dir in [Direction::ToDaemon, Direction::ToClient] {
        let mut buf = BytesMut::from(data);
        for _ in 0..MAX_FRAMES {
            let before = buf.len();
            match decode_frame(&mut buf, dir) {
                Ok(Some(frame)) => {
                    assert_eq!(
                        before - buf.len(),
                        frame.raw.len(),
                        "frame length accounting"
                    );
                    check_frame(&frame, dir);
                    checked += 1;
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                    assert!(
                        buf.capacity() <= MAX_RESERVE + data.len(),
                        "reserved too much"
                    );
                    break;
                }
                Err(_) => {
                    assert_eq!(buf.len(), before, "a refused frame consumed bytes");
                    break;
                }
            }
        }
    }
    checked
}

fn check_frame(frame: &Frame, dir: Direction) {
    let h = &frame.header;
    let num_groups = frame.num_groups();
    let data_len = usize::try_from(h.data_len).expect("framed data_len is not negative");
    if dir == Direction::ToDaemon {
        assert!(num_groups <= MAX_GROUPS_PER_MESSAGE);
        assert!(frame.raw.len() <= MAX_WIRE_MESSAGE);
    }
    let extra = if frame.reject_type.is_some() { 4 } else { 0 };
    assert_eq!(
        frame.raw.len(),
        HEADER_LEN + extra + GROUP_NAME_LEN * num_groups + data_len
    );
    assert_eq!(frame.groups().count(), num_groups);
    assert_eq!(frame.groups_raw().len(), GROUP_NAME_LEN * num_groups);
    assert_eq!(frame.body().len(), data_len);

    // decode → encode → decode: the header re-encoded in front of the same rest.
    let mut out = BytesMut::new();
    encode_header(h, &mut out);
    assert_eq!(out.len(), HEADER_LEN);
    out.put_slice(frame.raw.get(HEADER_LEN..).unwrap_or_default());
    let again = decode_frame(&mut out, dir)
        .expect("re-encoded frame decodes")
        .expect("re-encoded frame is complete");
    assert_eq!(&again.header, h);
    assert_eq!(again.reject_type, frame.reject_type);
    assert!(out.is_empty(), "re-encoded frame left bytes behind");
    // Only the endian-marker bits of `type` may differ (a non-canonical marker is normalised).
    assert_eq!(again.raw.get(4..), frame.raw.get(4..));

    if h.service.intersects(ServiceType::REG_MEMB_MESS) {
        let body = frame.body();
        if let Ok(m) = MembershipBody::decode(&mut &body[..], h.order) {
            assert!(
                m.len() <= body.len(),
                "membership body longer than its bytes"
            );
            let mut enc = Vec::new();
            m.encode(&mut enc, h.order);
            assert_eq!(enc.len(), m.len());
            assert_eq!(
                Some(&enc[..]),
                body.get(..enc.len()),
                "membership body re-encoding"
            );
            assert_eq!(MembershipBody::decode(&mut &enc[..], h.order), Ok(m));
        }
    } else if h.service.intersects(ServiceType::TRANSITION_MESS) {
        let body = frame.body();
        if let Ok(id) = GroupId::decode(&mut &body[..], h.order) {
            let mut enc = Vec::new();
            id.encode(&mut enc, h.order);
            assert_eq!(Some(&enc[..]), body.get(..enc.len()));
        }
    }
}

/// The stream framer fed in pieces. Input: a chunk-size byte (`chunk = byte + 1`), then a
/// byte stream of messages. Checks that framing the stream chunk by chunk gives exactly the
/// frames (and the same error, if any) that framing it in one piece gives, for both directions.
pub fn client_stream(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk) + 1;
    for dir in [Direction::ToDaemon, Direction::ToClient] {
        let whole = frame_all(stream, stream.len().max(1), dir);
        let pieces = frame_all(stream, chunk, dir);
        assert_eq!(whole, pieces, "framing depends on how the stream is cut");
    }
}

/// Frames `stream` fed `chunk` bytes at a time: the frames, then the error that stopped it.
fn frame_all(
    stream: &[u8],
    chunk: usize,
    dir: Direction,
) -> (Vec<Frame>, Option<crate::wire::client::DecodeError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            if frames.len() >= MAX_FRAMES {
                return (frames, None);
            }
            match decode_frame(&mut buf, dir) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
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

    /// The captured JOIN of `grp1` and the daemon's REG_MEMB reply (`join_one_group.hex`).
    const JOIN: &str = "8000018023616c696365236c6f63616c686f7374000000000000000000000000000000000100000080000080000000006772703100000000000000000000000000000000000000000000000000000000";
    const MEMB: &str = "801100806772703100000000000000000000000000000000000000000000000000000000010000008000008038000000\
23616c696365236c6f63616c686f7374000000000000000000000000000000002697c51cdee7056b0100000001000000000000000100000023616c696365236c6f63616c686f737400000000000000000000000000000000";

    #[test]
    fn captured_messages_are_framed_and_checked() {
        let mut two = hex(JOIN);
        two.extend(hex(MEMB));
        // Both messages in both directions.
        assert_eq!(check_messages(&two), 4);
        client_stream(&[[4u8].as_slice(), &two].concat());
    }

    #[test]
    fn captured_handshake_pieces_pass() {
        client_handshake(&[[0u8].as_slice(), &hex("0500010105616c696365")].concat());
        client_handshake(&hex("01054e554c4c20"));
        client_handshake(
            &[
                [3u8].as_slice(),
                &hex("010500011023616c696365236c6f63616c686f7374"),
            ]
            .concat(),
        );
        let mut choice = vec![2u8];
        choice.extend(b"NULL");
        choice.resize(91, 0);
        client_handshake(&choice);
    }
}
