//! Targets for the daemon↔daemon codecs (`crate::wire::daemon`).

use bytes::{Buf, Bytes};

use crate::wire::daemon::groups::{GROUPS_MESS, MAX_GROUPS_BODY, MAX_MESSAGE_GROUPS};
use crate::wire::daemon::{
    split_message, Fragment, GroupsBody, Message, Packet, PacketBody, Token, TokenBody, HEADER_LEN,
    MAX_FORM_REPS, MAX_PACKET_BODY, MAX_PROCS_RING, MAX_REPS, MAX_TOKEN_BODY,
};

/// Largest whole message reassembled from one input's fragments (5.0.1: 100 fragments).
const MAX_REASSEMBLY: usize = 100 * MAX_PACKET_BODY;

/// One data-port datagram that carries messages (data packets, possibly packed, and HURRY).
/// Input: the UDP payload.
///
/// Checks: the generic packet properties (see `check_packet`); every fragment lies inside the
/// body; every message that is complete in this packet (and the run of fragments that
/// reassembles in body order) decodes → encodes → decodes to the same value and bytes; GROUPS
/// bodies inside such messages too; re-fragmenting a message with `split_message` gives
/// fragments that concatenate to it.
pub fn daemon_packet(data: &[u8]) {
    let Some(p) = check_packet(data) else {
        return;
    };
    if let PacketBody::Data(body) = &p.body {
        assert!(!body.fragments.is_empty(), "a data body without fragments");
        let total: usize = body.fragments.iter().map(|f| f.data.len()).sum();
        assert!(
            total <= MAX_PACKET_BODY,
            "fragments larger than a packet body"
        );
        reassemble(&body.fragments);
    }
}

/// One token-port datagram that is a regular token (retransmission requests). Input: the UDP
/// payload. Checks the generic token properties (`check_token`) and that every request
/// block lies inside the body.
pub fn token(data: &[u8]) {
    let Some(t) = check_token(data) else {
        return;
    };
    if let TokenBody::Regular(blocks) = &t.body {
        assert!(
            blocks.len() <= MAX_TOKEN_BODY / 16,
            "more request blocks than bytes"
        );
    }
}

/// One membership datagram: ALIVE / JOIN / REFER (data port) or a FORM1 / FORM2 token (token
/// port). Input: the UDP payload, decoded both as a data-port packet and as a token (the type
/// bits choose the body). Checks the generic properties and the protocol maxima of every list.
pub fn membership(data: &[u8]) {
    if let Some(p) = check_packet(data) {
        match &p.body {
            PacketBody::Alive(a) => check_members(a.members.len(), 0),
            PacketBody::Join(j) => {
                check_members(j.members.members.len(), 0);
                assert!(j.reps.len() <= MAX_REPS);
            }
            _ => {}
        }
    }
    if let Some(t) = check_token(data) {
        match &t.body {
            TokenBody::Form1(f) => {
                check_members(f.members.members.len(), f.members.pending.len());
                assert!(f.reps.reps.len() <= MAX_REPS);
                assert!(f.rings.len() <= MAX_FORM_REPS);
            }
            TokenBody::Form2(f) => {
                check_members(f.members.members.len(), f.members.pending.len());
                assert!(f.rings.len() <= MAX_FORM_REPS);
            }
            TokenBody::Regular(_) => {}
        }
    }
}

fn check_members(members: usize, pending: usize) {
    assert!(
        members + pending <= MAX_PROCS_RING,
        "{members}+{pending} daemons in one list"
    );
}

/// One monitor / control datagram: STATUS request or reply, PARTITION, FC, RELOAD. Input: the
/// UDP payload. Checks the generic packet properties.
pub fn monitor(data: &[u8]) {
    let Some(p) = check_packet(data) else {
        return;
    };
    if let PacketBody::Partition(b) = &p.body {
        assert!(2 * b.components.len() <= MAX_PACKET_BODY);
    }
    if let PacketBody::Fc(b) = &p.body {
        assert!(4 * b.entries.len() <= MAX_PACKET_BODY);
    }
}

/// One GROUPS message as reassembled from its fragments: 48-byte message header, group names,
/// body. Input: the message bytes. Checks: decode → encode gives exactly the bytes consumed
/// and decodes again to the same value; the GROUPS body (when the header says GROUPS) does the
/// same within [`MAX_GROUPS_BODY`]; `split_message` of the message concatenates back to it.
pub fn groups(data: &[u8]) {
    let mut buf = data;
    if let Ok(m) = Message::decode(&mut buf) {
        let used = data.len() - buf.remaining();
        check_message(&m, data.get(..used).unwrap_or_default());
    }
    // Also the bare body, so the fuzzer reaches the GROUPS decoder without a valid header.
    for endian in [
        crate::wire::daemon::Endian::Little,
        crate::wire::daemon::Endian::Big,
    ] {
        check_groups_body(data, endian);
    }
}

/// Decodes a data-port datagram and checks: bytes consumed ≤ bytes given and = 40 +
/// `data_len`; encoding gives exactly the bytes consumed but for the padding before packed
/// fragments, which is written as zeros (5.0.1 leaves old buffer bytes there; lengths are
/// recomputed from the body); the encoding decodes to the same value; `from_datagram` agrees
/// with `decode`.
fn check_packet(data: &[u8]) -> Option<Packet> {
    let mut buf = data;
    let decoded = Packet::decode(&mut buf);
    let exact = Packet::from_datagram(data);
    let p = match decoded {
        Ok(p) => p,
        Err(_) => {
            assert!(exact.is_err(), "from_datagram accepts what decode refuses");
            return None;
        }
    };
    let used = data.len() - buf.remaining();
    assert!(used <= data.len());
    assert_eq!(
        used,
        HEADER_LEN + usize::from(p.header.data_len),
        "packet length accounting"
    );
    assert_eq!(
        exact.is_ok(),
        used == data.len(),
        "from_datagram disagrees with decode"
    );
    let enc = p.to_vec();
    assert_eq!(enc.len(), p.encoded_len());
    let mut expect = data.get(..used).unwrap_or_default().to_vec();
    if let crate::wire::daemon::PacketBody::Data(b) = &p.body {
        for r in b.padding() {
            if let Some(pad) = expect.get_mut(HEADER_LEN + r.start..HEADER_LEN + r.end) {
                pad.fill(0);
            }
        }
    }
    assert_eq!(
        enc, expect,
        "packet does not re-encode to its bytes (padding zeroed)"
    );
    assert_eq!(
        Packet::from_datagram(&enc).as_ref(),
        Ok(&p),
        "re-encoded packet differs"
    );
    Some(p)
}

/// The token counterpart of [`check_packet`] (`rtr_len` instead of `data_len`).
fn check_token(data: &[u8]) -> Option<Token> {
    let mut buf = data;
    let decoded = Token::decode(&mut buf);
    let exact = Token::from_datagram(data);
    let t = match decoded {
        Ok(t) => t,
        Err(_) => {
            assert!(exact.is_err(), "from_datagram accepts what decode refuses");
            return None;
        }
    };
    let used = data.len() - buf.remaining();
    assert_eq!(
        used,
        HEADER_LEN + usize::from(t.header.rtr_len),
        "token length accounting"
    );
    assert_eq!(
        exact.is_ok(),
        used == data.len(),
        "from_datagram disagrees with decode"
    );
    let enc = t.to_vec();
    assert_eq!(enc.len(), t.encoded_len());
    assert_eq!(
        Some(&enc[..]),
        data.get(..used),
        "token does not re-encode to its bytes"
    );
    assert_eq!(
        Token::from_datagram(&enc).as_ref(),
        Ok(&t),
        "re-encoded token differs"
    );
    Some(t)
}

/// Reassembles runs of fragments in body order (k+1, …, −n) and checks each whole message.
fn reassemble(fragments: &[Fragment]) {
    let mut current: Vec<u8> = Vec::new();
    let mut expected_next = 1i32;
    for f in fragments {
        let idx = i32::from(f.index);
        if idx == expected_next || idx == -expected_next {
            if current.len() + f.data.len() > MAX_REASSEMBLY {
                current.clear();
                expected_next = 1;
                continue;
            }
            current.extend_from_slice(&f.data);
            if idx < 0 {
                let mut buf = &current[..];
                if let Ok(m) = Message::decode(&mut buf) {
                    let used = current.len() - buf.remaining();
                    check_message(&m, current.get(..used).unwrap_or_default());
                }
                current.clear();
                expected_next = 1;
            } else {
                expected_next += 1;
            }
        } else {
            current.clear();
            expected_next = 1;
        }
    }
}

fn check_message(m: &Message, bytes: &[u8]) {
    assert!(m.groups.len() <= MAX_MESSAGE_GROUPS);
    let mut enc = Vec::new();
    m.encode(&mut enc);
    assert_eq!(enc.len(), m.encoded_len());
    assert_eq!(&enc[..], bytes, "message does not re-encode to its bytes");
    assert_eq!(Message::decode(&mut &enc[..]).as_ref(), Ok(m));
    let whole = Bytes::from(enc);
    let pieces = split_message(&whole);
    let joined: Vec<u8> = pieces.iter().flat_map(|f| f.data.iter().copied()).collect();
    assert_eq!(&joined[..], &whole[..], "split_message lost bytes");
    assert!(pieces.iter().all(|f| f.data.len() <= MAX_PACKET_BODY));
    let n = i16::try_from(pieces.len()).unwrap_or(i16::MAX);
    assert_eq!(
        pieces.last().map(|f| f.index),
        Some(-n),
        "last fragment index"
    );
    if m.header.kind & GROUPS_MESS != 0 {
        check_groups_body(&m.body, m.header.endian);
    }
}

fn check_groups_body(body: &[u8], endian: crate::wire::daemon::Endian) {
    let mut buf = body;
    let Ok(g) = GroupsBody::decode(&mut buf, endian) else {
        return;
    };
    assert!(body.len() <= MAX_GROUPS_BODY);
    let used = body.len() - buf.remaining();
    let mut enc = Vec::new();
    g.encode(&mut enc, endian);
    assert_eq!(enc.len(), g.encoded_len());
    assert_eq!(
        Some(&enc[..]),
        body.get(..used),
        "GROUPS body does not re-encode"
    );
    assert_eq!(GroupsBody::decode(&mut &enc[..], endian).as_ref(), Ok(&g));
    if let Some(set) = &g.synced_set {
        assert!(set.len() <= MAX_PROCS_RING);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("cap-"))
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// The capture seeds are real 5.0.1 datagrams: every one must decode (so the targets
    /// check the properties on them rather than bailing out early).
    #[test]
    fn every_captured_seed_decodes() {
        for data in seeds("daemon_packet").iter().chain(&seeds("monitor")) {
            assert!(check_packet(data).is_some(), "{data:02x?}");
        }
        for data in seeds("token") {
            assert!(check_token(&data).is_some(), "{data:02x?}");
        }
        for data in seeds("membership") {
            assert!(check_packet(&data).is_some() || check_token(&data).is_some());
        }
        for data in seeds("groups") {
            let m = Message::decode(&mut &data[..]).unwrap();
            assert!(m.header.kind & GROUPS_MESS != 0);
            GroupsBody::decode(&mut &m.body[..], m.header.endian).unwrap();
        }
    }
}
