//! The group-state exchange's states (5.0.1 GOP / GTRANS / GGATHER / GGT), driven by hand:
//! configuration changes and GROUPS deliveries as the engine hands them to the daemon.

use bytes::Bytes;

use super::*;
use crate::ring::{Class, ConfigChange, ConfigKind, DaemonId, Delivery, RingId};
use crate::wire::client::{encode_header, ByteOrder, GroupName, Hint, MessageHeader, ServiceType};
use crate::wire::daemon::groups::{GroupsBody, Message};
use crate::wire::daemon::Endian;

const A: DaemonId = DaemonId(0x0a00_0001);
const B: DaemonId = DaemonId(0x0a00_0002);
const C: DaemonId = DaemonId(0x0a00_0003);

fn ring(t: i32) -> RingId {
    RingId { leader: A, time: t }
}

/// Clients A of the configuration A, B, C, fresh.
fn daemon_a() -> Clients {
    Clients::new(DaemonConfig::new("a", A.0 as i32, 0), A, vec![A, B, C])
}

fn trans(d: &mut Clients, r: RingId, members: &[DaemonId]) {
    d.on_configuration(ConfigChange {
        kind: ConfigKind::Transitional,
        ring: r,
        id: r,
        members: members.to_vec(),
    });
}

fn regular(d: &mut Clients, r: RingId, members: &[DaemonId]) {
    d.on_configuration(ConfigChange {
        kind: ConfigKind::Regular,
        ring: r,
        id: r,
        members: members.to_vec(),
    });
}

/// The last (AGREED) GROUPS message of the set `synced` led by `sender`, for ring `r`, with
/// no groups.
fn groups(sender: DaemonId, r: RingId, synced: &[DaemonId]) -> Delivery {
    let body = GroupsBody {
        memb_id: r,
        synced_set: Some(synced.iter().map(|d| DaemonId(d.0)).collect()),
        groups: Vec::new(),
    };
    let m = Message::groups("x", synced.len() as u32, true, &body, Endian::Little);
    let mut out = Vec::new();
    m.encode(&mut out);
    Delivery {
        sender,
        class: Class::Agreed,
        payload: Bytes::from(out),
        ring: r,
        transitional: false,
        seq: 1,
    }
}

/// The synced-set sizes of the GROUPS messages A submitted since the last call.
fn sent_sizes(d: &mut Clients) -> Vec<u32> {
    std::iter::from_fn(|| d.poll_exchange_submission())
        .map(|(_, _, payload)| {
            let m = Message::decode(&mut &payload[..]).expect("GROUPS");
            m.header.groups_synced_size()
        })
        .collect()
}

fn join(sender: DaemonId, r: RingId, who: &str, group: &str) -> Delivery {
    let mut out = bytes::BytesMut::new();
    encode_header(
        &MessageHeader {
            service: ServiceType::JOIN_MESS,
            sender: GroupName::new(who.as_bytes()),
            num_groups: 1,
            hint: Hint::DAEMON,
            data_len: 0,
            order: ByteOrder::Little,
        },
        &mut out,
    );
    GroupName::new(group.as_bytes()).encode(&mut out);
    Delivery {
        sender,
        class: Class::Agreed,
        payload: out.freeze(),
        ring: r,
        transitional: false,
        seq: 2,
    }
}

#[test]
fn a_fresh_daemon_joining_others_exchanges_and_completes_on_the_sum() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B]);
    assert!(d.exchanging());
    assert_eq!(d.group_state(), "GGATHER");
    assert_eq!(sent_sizes(&mut d), vec![1], "A leads {{A}}");
    d.on_delivery(groups(A, ring(10), &[A]));
    assert!(d.exchanging(), "1 of 2 announced");
    d.on_delivery(groups(B, ring(10), &[B]));
    assert!(!d.exchanging());
    assert_eq!(d.group_state(), "GOP");
    assert!(
        d.interop_violations().is_empty(),
        "{:?}",
        d.interop_violations()
    );
}

#[test]
fn a_fresh_daemon_alone_does_not_exchange() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A]);
    assert!(!d.exchanging());
    assert_eq!(d.group_state(), "GOP");
    assert!(sent_sizes(&mut d).is_empty());
}

#[test]
fn a_subtractive_change_needs_no_exchange() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B, C]);
    d.on_delivery(groups(A, ring(10), &[A]));
    d.on_delivery(groups(B, ring(10), &[B]));
    d.on_delivery(groups(C, ring(10), &[C]));
    assert_eq!(d.group_state(), "GOP");
    trans(&mut d, ring(10), &[A, B]);
    assert_eq!(d.group_state(), "GTRANS");
    regular(&mut d, ring(20), &[A, B]);
    assert_eq!(d.group_state(), "GOP", "|trans| = |reg|: no exchange");
    assert!(
        sent_sizes(&mut d).len() == 1,
        "only ring 10's GROUPS were ever sent"
    );
}

#[test]
fn an_exchange_cut_by_a_new_membership_always_starts_again() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B]);
    assert_eq!(sent_sizes(&mut d), vec![1]);
    d.on_delivery(groups(A, ring(10), &[A]));
    trans(&mut d, ring(10), &[A, B]);
    assert_eq!(d.group_state(), "GGT");
    assert!(d.exchanging(), "GGT holds client traffic too");
    regular(&mut d, ring(20), &[A, B]);
    // 5.0.1 in GGT always exchanges, even though |trans| = |reg|; B's set never completed,
    // so A still leads only {A}.
    assert_eq!(d.group_state(), "GGATHER");
    assert_eq!(sent_sizes(&mut d), vec![1]);
    // GROUPS of the old ring no longer count.
    d.on_delivery(groups(B, ring(10), &[B]));
    assert!(d.exchanging());
    d.on_delivery(groups(A, ring(20), &[A]));
    d.on_delivery(groups(B, ring(20), &[B]));
    assert_eq!(d.group_state(), "GOP");
    assert!(
        d.interop_violations().is_empty(),
        "{:?}",
        d.interop_violations()
    );
}

#[test]
fn an_exchange_completed_in_the_transitional_configuration_goes_back_to_gtrans() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B]);
    let _ = sent_sizes(&mut d);
    d.on_delivery(groups(A, ring(10), &[A]));
    trans(&mut d, ring(10), &[A, B]);
    // B's last GROUPS message is delivered in the transitional configuration.
    d.on_delivery(groups(B, ring(10), &[B]));
    assert_eq!(d.group_state(), "GTRANS");
    assert!(!d.exchanging());
    assert_eq!(d.ring_stats().completed_in_transition, 1);
    regular(&mut d, ring(20), &[A, B]);
    assert_eq!(
        d.group_state(),
        "GOP",
        "decided by the GTRANS rule: nothing joined"
    );
    assert!(sent_sizes(&mut d).is_empty());
}

#[test]
fn a_cut_exchange_merges_the_sets_that_completely_arrived() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B, C]);
    let _ = sent_sizes(&mut d);
    d.on_delivery(groups(A, ring(10), &[A]));
    d.on_delivery(groups(B, ring(10), &[B]));
    trans(&mut d, ring(10), &[A, B]);
    regular(&mut d, ring(20), &[A, B]);
    // A's own set and B's arrived: B joins A's synced set, and A now leads {A, B}.
    assert_eq!(sent_sizes(&mut d), vec![2]);
    d.on_delivery(groups(A, ring(20), &[A, B]));
    assert_eq!(d.group_state(), "GOP", "A's set covers the whole ring");
}

#[test]
fn groups_outside_an_exchange_are_reported_as_fatal_for_5_0_1() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A]);
    d.on_delivery(groups(B, ring(10), &[B]));
    assert_eq!(d.ring_stats().fatal_for_5_0_1, 1);
    assert!(
        d.interop_violations()[0].contains("GROUPS"),
        "{:?}",
        d.interop_violations()
    );
}

#[test]
fn a_join_during_the_exchange_is_held_and_reported_as_fatal_for_5_0_1() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B]);
    d.on_delivery(join(B, ring(10), "#u#b", "grp"));
    assert_eq!(d.ring_stats().held, 1);
    assert!(
        d.interop_violations()[0].contains("JOIN"),
        "{:?}",
        d.interop_violations()
    );
    d.on_delivery(groups(A, ring(10), &[A]));
    d.on_delivery(groups(B, ring(10), &[B]));
    let g = GroupName::new(b"grp").key();
    assert_eq!(
        d.groups().members(&g).len(),
        1,
        "the held JOIN applied after the exchange"
    );
}

/// A member that sends client messages before its GROUPS (a lying peer: mbus-fuzz-net's
/// peer mode held a daemon in GGATHER this way for a minute) counts from then on as a set of
/// its own with no groups: the exchange completes when the others are in, and its message
/// is applied after it.
#[test]
fn a_member_skipping_its_groups_counts_as_an_empty_set_and_the_exchange_completes() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B, C]);
    d.on_delivery(join(B, ring(10), "#u#b", "grp"));
    assert!(d.exchanging(), "A's and C's tables are not in yet");
    d.on_delivery(groups(A, ring(10), &[A]));
    assert!(d.exchanging());
    d.on_delivery(groups(C, ring(10), &[C]));
    assert!(!d.exchanging());
    assert_eq!(d.group_state(), "GOP");
    assert_eq!(d.ring_stats().exchanges_forfeited, 1);
    let g = GroupName::new(b"grp").key();
    assert_eq!(
        d.groups().members(&g).len(),
        1,
        "the held JOIN applied after"
    );
    // B's late GROUPS is outside any exchange: counted, not applied.
    d.on_delivery(groups(B, ring(10), &[B]));
    assert_eq!(d.ring_stats().unexpected_groups, 1);
}

/// A set size that overshoots the ring (a lying peer: mbus-fuzz-net's peer mode found a
/// daemon held in GGATHER by one) is reported as fatal for 5.0.1 and completes the exchange
/// at once, so client traffic is not held until the next configuration change.
#[test]
fn announced_sizes_past_the_ring_complete_the_exchange_and_are_reported() {
    let mut d = daemon_a();
    regular(&mut d, ring(10), &[A, B]);
    d.on_delivery(groups(A, ring(10), &[A]));
    d.on_delivery(groups(B, ring(10), &[B, C]));
    assert!(!d.exchanging());
    assert_eq!(d.group_state(), "GOP");
    assert!(!d.interop_violations().is_empty());
}
