//! Structure-aware targets: the fuzz crate builds these inputs with `arbitrary` (its own
//! dependency) and calls the functions here; the stable replay of their corpora is
//! `fuzz/tests/replay_structured.rs`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::client::{
    decode_frame, encode_header, ByteOrder, Direction, GroupName, Hint, MessageHeader, ServiceType,
    GROUP_NAME_LEN, HEADER_LEN, MAX_DATA_PLUS_GROUPS, MAX_GROUPS_PER_MESSAGE, MAX_WIRE_MESSAGE,
};
use crate::wire::daemon::{
    split_message, DaemonId, DataBody, Endian, Packet, PacketBody, RingId, Seq, TypeBits,
    MAX_PACKET_SIZE,
};

/// Most messages one packing run takes.
const MAX_PACKED_MESSAGES: usize = 32;
/// Largest message one packing run takes (bytes).
const MAX_PACKED_MESSAGE: usize = 8 * 1024;
/// Most groups a structured client message names.
const MAX_SPEC_GROUPS: usize = 128;
/// Largest body of a structured client message.
const MAX_SPEC_BODY: usize = 4096;

/// A client↔daemon message described field by field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageSpec {
    /// `type` without the endian marker.
    pub service: u32,
    /// Sender field text (cut to 32 bytes).
    pub sender: Vec<u8>,
    /// Group names (each cut to 32 bytes; at most 128 are used).
    pub groups: Vec<Vec<u8>>,
    /// Application message type.
    pub mess_type: i16,
    /// Body (at most 4096 bytes are used).
    pub body: Vec<u8>,
    /// Written by a big-endian host.
    pub big_endian: bool,
    /// For a REJECT_MESS to a client: the refused request's `type` word.
    pub reject_type: u32,
}

/// Builds the message a writer of `spec` sends and checks that the framer returns exactly
/// those fields in both directions: daemon→client always frames it (its limits are far
/// above), client→daemon frames it exactly when it is within 5.0.1's limits. Then runs the
/// byte-level [`super::client_message`] checks on the same bytes.
pub fn client_message_structured(spec: &MessageSpec) {
    let order = if spec.big_endian {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
    let groups: Vec<GroupName> = spec
        .groups
        .iter()
        .take(MAX_SPEC_GROUPS)
        .map(|g| GroupName::new(g))
        .collect();
    let body = spec.body.get(..MAX_SPEC_BODY).unwrap_or(&spec.body);
    let header = MessageHeader {
        service: ServiceType(spec.service & !crate::wire::client::ENDIAN_MARKER),
        sender: GroupName::new(&spec.sender),
        num_groups: i32::try_from(groups.len()).unwrap_or(i32::MAX),
        hint: Hint::new(spec.mess_type, order),
        data_len: i32::try_from(body.len()).unwrap_or(i32::MAX),
        order,
    };
    let is_reject = header.service.intersects(ServiceType::REJECT_MESS);
    let build = |with_reject: bool| {
        let mut out = BytesMut::new();
        encode_header(&header, &mut out);
        if with_reject {
            order.put_u32(&mut out, spec.reject_type);
        }
        for g in &groups {
            g.encode(&mut out);
        }
        out.put_slice(body);
        out
    };
    assert_eq!(
        header.hint.mess_type(),
        spec.mess_type,
        "mess_type lost in the hint"
    );

    // Daemon → client: always within limits here.
    let mut to_client = build(is_reject);
    let wire = to_client.clone().freeze();
    let f = decode_frame(&mut to_client, Direction::ToClient)
        .expect("a well-formed message frames")
        .expect("a whole message is complete");
    assert!(to_client.is_empty());
    assert_eq!(f.header, header);
    assert_eq!(f.groups().collect::<Vec<_>>(), groups);
    assert_eq!(&f.body()[..], body);
    if is_reject {
        assert_eq!(f.reject_type.map(|t| t.0), Some(spec.reject_type));
    }
    super::client_message(&wire);

    // Client → daemon: no REJECT extra word; refused exactly beyond the 5.0.1 limits.
    let mut to_daemon = build(false);
    let total = to_daemon.len();
    let within = groups.len() <= MAX_GROUPS_PER_MESSAGE
        && body.len() + GROUP_NAME_LEN * groups.len() <= MAX_DATA_PLUS_GROUPS
        && total <= MAX_WIRE_MESSAGE;
    match decode_frame(&mut to_daemon, Direction::ToDaemon) {
        Ok(Some(f)) => {
            assert!(within, "framed a message beyond the limits");
            assert_eq!(f.header, header);
            assert_eq!(
                f.raw.len(),
                HEADER_LEN + GROUP_NAME_LEN * groups.len() + body.len()
            );
        }
        Ok(None) => panic!("a whole message reported incomplete"),
        Err(_) => assert!(!within, "refused a message within the limits"),
    }
}

/// Messages a daemon sends in one burst, described as their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackingSpec {
    /// Written by a big-endian daemon.
    pub big_endian: bool,
    /// Packet class selector (`% 4`: RELIABLE, FIFO, AGREED, SAFE).
    pub class: u8,
    /// The messages (each cut to 8 KiB; at most 32 are used).
    pub messages: Vec<Vec<u8>>,
}

/// Cuts messages into fragments and packs them into data packets as 5.0.1 does
/// (`split_message`, `DataBody::try_pack`), encodes every packet, decodes every datagram and
/// reassembles: the messages must come back whole, in order, and no datagram may exceed the
/// UDP payload limit.
pub fn packing_structured(spec: &PackingSpec) {
    let kind = [
        TypeBits::RELIABLE,
        TypeBits::FIFO,
        TypeBits::AGREED,
        TypeBits::SAFE,
    ][usize::from(spec.class % 4)];
    let endian = if spec.big_endian {
        Endian::Big
    } else {
        Endian::Little
    };
    let messages: Vec<Bytes> = spec
        .messages
        .iter()
        .take(MAX_PACKED_MESSAGES)
        .map(|m| Bytes::copy_from_slice(m.get(..MAX_PACKED_MESSAGE).unwrap_or(m)))
        .collect();
    // Pack as a sender does: a message that fits in one fragment joins the open packet if
    // there is room; every other fragment gets a packet of its own.
    let mut bodies: Vec<DataBody> = Vec::new();
    let mut open = DataBody::default();
    for m in &messages {
        let frags = split_message(m);
        if let [single] = &frags[..] {
            if let Err(f) = open.try_pack(single.clone()) {
                bodies.push(std::mem::take(&mut open));
                open.try_pack(f)
                    .expect("a single fragment fits an empty packet");
            }
        } else {
            if !open.fragments.is_empty() {
                bodies.push(std::mem::take(&mut open));
            }
            for f in frags {
                bodies.push(DataBody { fragments: vec![f] });
            }
        }
    }
    if !open.fragments.is_empty() {
        bodies.push(open);
    }
    // Encode, decode, reassemble.
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let seq = Seq(u32::try_from(i + 1).unwrap_or(u32::MAX));
        let memb = RingId {
            leader: DaemonId(0x5c8d_7aef),
            time: 1_795_549_150,
        };
        let mut p = Packet::data(kind, DaemonId(0x5c8d_7aef), 0x9f2a_d697, memb, seq, 7, body);
        p.header.endian = endian;
        let wire = p.to_vec();
        assert!(
            wire.len() <= MAX_PACKET_SIZE,
            "a {}-byte datagram",
            wire.len()
        );
        let q = Packet::from_datagram(&wire).expect("an encoded data packet decodes");
        // `data_len` and `first_frag` are recomputed by `encode`; everything else must survive.
        assert_eq!(q.body, p.body);
        assert_eq!(q.header.seq, p.header.seq);
        assert_eq!(q.header.endian, endian);
        let PacketBody::Data(d) = q.body else {
            panic!("a data packet decoded as something else");
        };
        for f in d.fragments {
            partial.extend_from_slice(&f.data);
            if f.is_last() {
                out.push(std::mem::take(&mut partial));
            }
        }
    }
    assert!(partial.is_empty(), "a message was left unfinished");
    let expected: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
    assert_eq!(out, expected, "packing lost or reordered bytes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_samples() {
        client_message_structured(&MessageSpec {
            service: 0x10,
            sender: b"#alice#localhost".to_vec(),
            groups: vec![b"grp1".to_vec(), b"g2".to_vec()],
            mess_type: -2,
            body: b"hello".to_vec(),
            big_endian: true,
            reject_type: 0,
        });
        client_message_structured(&MessageSpec {
            service: 0x40_0010,
            groups: vec![vec![b'x'; 40]; 101],
            reject_type: 0x1_0000,
            ..MessageSpec::default()
        });
        packing_structured(&PackingSpec {
            big_endian: false,
            class: 2,
            messages: vec![
                vec![1; 380],
                vec![2; 380],
                vec![3; 5000],
                vec![],
                vec![4; 181],
            ],
        });
    }
}
