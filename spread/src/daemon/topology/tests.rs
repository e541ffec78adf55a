//! The network layer's rules on a two-segment configuration: e1, e2 in segment 0 and w1 alone
//! in segment 1.

use super::*;
use crate::wire::daemon::HEADER_LEN;
use bytes::BufMut;

const HASH: u32 = 0x1234_5678;
const E1: DaemonId = DaemonId(1);
const E2: DaemonId = DaemonId(2);
const W1: DaemonId = DaemonId(3);

fn topology(me: DaemonId, broadcast: bool) -> Topology {
    let mut ring = RingConfig::lan(me, vec![E1, E2, W1]);
    ring.segments = vec![0, 0, 1];
    ring.conf_hash = HASH;
    Topology::from_ring(&ring, broadcast)
}

/// A data packet of class `kind` with a 4-byte body, transmitted by `from` (sender `from`).
fn data(kind: u32, from: DaemonId, hash: u32) -> Bytes {
    let mut h = PacketHeader::new(kind, DaemonId(from.0), hash);
    h.data_len = 4;
    let mut v = Vec::new();
    h.encode(&mut v);
    v.put_slice(b"body");
    assert_eq!(v.len(), HEADER_LEN + 4);
    v.into()
}

fn header(b: &[u8]) -> PacketHeader {
    PacketHeader::decode(&mut &b[..]).unwrap()
}

fn collect<T>(f: impl FnOnce(&mut dyn FnMut(Transmit)) -> T) -> (T, Vec<Transmit>) {
    let mut out = Vec::new();
    let r = f(&mut |t| out.push(t));
    (r, out)
}

#[test]
fn routed_packet_is_relayed_to_my_segment_with_my_id_and_processed_plain() {
    let mut t = topology(E1, true);
    let (got, sent) = collect(|out| {
        t.accept(
            W1,
            Port::Data,
            data(TypeBits::AGREED | TypeBits::ROUTED, W1, HASH),
            &mut |x| out(x),
        )
    });
    let Some(Accept::Protocol(plain)) = got else {
        panic!("accepted: {got:?}");
    };
    assert_eq!(header(&plain).kind.0, TypeBits::AGREED, "ROUTED cleared");
    assert_eq!(
        header(&plain).transmiter_id,
        DaemonId(W1.0),
        "processed as received"
    );
    assert_eq!(sent.len(), 1, "one relayed copy: {sent:?}");
    assert_eq!(sent[0].to, Target::Segment);
    let h = header(&sent[0].bytes);
    assert_eq!(h.kind.0, TypeBits::AGREED);
    assert_eq!(h.transmiter_id, DaemonId(E1.0));
    assert_eq!(h.proc_id, DaemonId(W1.0));
    assert_eq!(t.stats().relayed, 1);
}

#[test]
fn routed_packet_with_wrong_hash_or_transmitter_is_dropped_not_relayed() {
    let mut t = topology(E1, true);
    for (from, bytes) in [
        (W1, data(TypeBits::AGREED | TypeBits::ROUTED, W1, HASH ^ 1)),
        // Claims e2 but came from w1's address.
        (W1, data(TypeBits::AGREED | TypeBits::ROUTED, E2, HASH)),
    ] {
        let (got, sent) = collect(|out| t.accept(from, Port::Data, bytes, &mut |x| out(x)));
        assert!(got.is_none() && sent.is_empty());
    }
    assert_eq!(t.stats().relayed, 0);
    assert_eq!(t.stats().rejected_total(), 2);
}

#[test]
fn daemon_alone_in_its_segment_neither_relays_nor_scasts() {
    let mut t = topology(W1, true);
    let (got, sent) = collect(|out| {
        t.accept(
            E2,
            Port::Data,
            data(TypeBits::AGREED | TypeBits::ROUTED, E2, HASH),
            &mut |x| out(x),
        )
    });
    assert!(matches!(got, Some(Accept::Protocol(_))));
    assert!(sent.is_empty());
    let (_, sent) = collect(|out| {
        t.route(
            &[E1, E2, W1],
            Dest::Segment,
            Port::Data,
            data(TypeBits::AGREED, W1, HASH),
            &mut |x| out(x),
        )
    });
    assert!(sent.is_empty(), "scast alone in the segment sends nothing");
}

#[test]
fn data_broadcast_goes_routed_to_each_other_segments_relay_then_to_my_segment() {
    let mut t = topology(E2, true);
    let (own, sent) = collect(|out| {
        t.route(
            &[E1, E2, W1],
            Dest::Broadcast,
            Port::Data,
            data(TypeBits::SAFE, E2, HASH),
            &mut |x| out(x),
        )
    });
    assert!(own.is_none());
    let to: Vec<Target> = sent.iter().map(|s| s.to).collect();
    assert_eq!(to, vec![Target::Daemon(W1), Target::Segment]);
    assert_ne!(header(&sent[0].bytes).kind.0 & TypeBits::ROUTED, 0);
    assert_eq!(header(&sent[1].bytes).kind.0 & TypeBits::ROUTED, 0);
    // A segment with no member in the installed ring gets no copy.
    let (_, sent) = collect(|out| {
        t.route(
            &[E1, E2],
            Dest::Broadcast,
            Port::Data,
            data(TypeBits::SAFE, E2, HASH),
            &mut |x| out(x),
        )
    });
    assert_eq!(
        sent.iter().map(|s| s.to).collect::<Vec<_>>(),
        vec![Target::Segment]
    );
}

#[test]
fn loopback_segment_scast_is_a_unicast_to_each_other_daemon_of_my_segment() {
    let mut t = topology(E1, false);
    let (_, sent) = collect(|out| {
        t.route(
            &[E1],
            Dest::Segment,
            Port::Data,
            data(TypeBits::SAFE, E1, HASH),
            &mut |x| out(x),
        )
    });
    assert_eq!(
        sent.iter().map(|s| s.to).collect::<Vec<_>>(),
        vec![Target::Daemon(E2)]
    );
}

#[test]
fn a_unicast_to_myself_is_handed_back_not_sent() {
    let mut t = topology(E1, true);
    let (own, sent) = collect(|out| {
        t.route(
            &[E1],
            Dest::Unicast(E1),
            Port::Token,
            Bytes::from_static(b"tok"),
            &mut |x| out(x),
        )
    });
    assert_eq!(own.as_deref(), Some(&b"tok"[..]));
    assert!(sent.is_empty());
    assert_eq!(t.stats().looped, 1);
}

#[test]
fn own_broadcast_is_dropped_but_a_control_packet_from_myself_is_accepted() {
    let mut t = topology(E1, true);
    let (got, _) = collect(|out| {
        t.accept(E1, Port::Data, data(TypeBits::AGREED, E1, HASH), &mut |x| {
            out(x)
        })
    });
    assert!(got.is_none());
    let (got, _) = collect(|out| {
        t.accept(E1, Port::Data, data(TypeBits::STATUS, E1, HASH), &mut |x| {
            out(x)
        })
    });
    assert!(matches!(got, Some(Accept::Control(_))));
}
