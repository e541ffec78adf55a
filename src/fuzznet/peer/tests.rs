//! Peer-mode unit tests.

use bytes::Bytes;
use spread::ids::DaemonId;
use spread::wire::daemon::{Fragment, MessageHeader, PacketBody, PacketHeader, TypeBits};

use super::mutate::apply;
use super::*;

#[test]
fn events_round_trip_as_text() {
    let ev = Event {
        class: Class::Groups,
        nth: 3,
        mutation: Mutation::Retype,
        subseed: 99,
    };
    assert_eq!(ev.to_string().parse::<Event>().unwrap(), ev);
    let (seed, eps) = parse_steps(&["seed 5".into(), "episode 2".into(), ev.to_string()]).unwrap();
    assert_eq!((seed, eps), (5, vec![(2, vec![ev])]));
}

#[test]
fn a_retyped_groups_message_becomes_a_join() {
    use spread::wire::daemon::{DataBody, Packet};
    let mut msg = Vec::new();
    let h = MessageHeader {
        endian: spread::wire::daemon::Endian::NATIVE,
        kind: 0x0008_0000,
        sender: [0; 32],
        num_groups: 0,
        hint: [0; 4],
        data_len: 4,
    };
    h.encode(&mut msg);
    msg.extend([1, 2, 3, 4]);
    let p = Packet {
        header: PacketHeader::new(TypeBits::RELIABLE, DaemonId(7), 0x1234),
        body: PacketBody::Data(DataBody {
            fragments: vec![Fragment {
                index: -1,
                data: Bytes::from(msg),
            }],
        }),
    };
    let bytes = Bytes::from(p.to_vec());
    assert_eq!(Class::of(false, &bytes), Class::Groups);
    // Find a sub-seed that picks JOIN and check the result.
    let ids = [DaemonId(1), DaemonId(7)];
    let joined = (0..200u64).find_map(|s| {
        let out = apply(Mutation::Retype, s, false, &bytes, ids);
        (Class::of(false, &out[0].1) == Class::Request).then_some(out)
    });
    assert!(joined.is_some(), "no sub-seed retypes to a request");
}

#[test]
fn a_captured_datagram_replaces_one_as_this_daemons() {
    let p = spread::wire::daemon::Packet::alive(DaemonId(7), 0x1234, vec![DaemonId(7)]);
    let bytes = Bytes::from(p.to_vec());
    let out = apply(
        Mutation::Capture,
        3,
        false,
        &bytes,
        [DaemonId(1), DaemonId(7)],
    );
    let h = PacketHeader::decode(&mut &out[0].1[..]).unwrap();
    assert_eq!((h.conf_hash, h.transmiter_id), (0x1234, DaemonId(7)));
    assert_ne!(out[0].1, bytes);
}
