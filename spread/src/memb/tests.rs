//! Unit tests of the membership rules (5.0.1's rep ordering and insertion).

use super::*;
use crate::ring::RingConfig;
use crate::time::Instant;

fn rep(id: u32, rep_type: RepType, seg: i16) -> RepInfo {
    RepInfo {
        proc_id: DaemonId(id),
        rep_type,
        seg_index: seg,
    }
}

fn engine() -> Engine {
    // e1 e2 | w1 w2 in configuration order.
    let ids = vec![DaemonId(10), DaemonId(11), DaemonId(20), DaemonId(21)];
    let mut cfg = RingConfig::lan(DaemonId(10), ids);
    cfg.segments = vec![0, 0, 1, 1];
    Engine::new(cfg, Instant(1_000_000), 1000)
}

#[test]
fn seg_reps_sort_before_ring_reps_and_by_segment() {
    let e = engine();
    let mut v = vec![
        rep(20, RepType::RING, 1),
        rep(11, RepType::RING, 0),
        rep(21, RepType::SEG, 1),
        rep(10, RepType::SEG, 0),
    ];
    e.sort_reps(&mut v);
    let ids: Vec<u32> = v.iter().map(|r| r.proc_id.0).collect();
    assert_eq!(ids, vec![10, 21, 11, 20]);
}

#[test]
fn insert_rep_follows_5_0_1() {
    let mut v = vec![rep(20, RepType::POTENTIAL, 1)];
    // A potential for a listed segment is not added.
    assert!(!insert_rep(&mut v, rep(21, RepType::POTENTIAL, 1)));
    // A SEG_REP replaces the potential of its segment.
    assert!(insert_rep(&mut v, rep(21, RepType::SEG, 1)));
    assert_eq!(v, vec![rep(21, RepType::SEG, 1)]);
    // Another SEG_REP of that segment is kept too; the same one is not added twice.
    assert!(insert_rep(&mut v, rep(20, RepType::SEG, 1)));
    assert!(!insert_rep(&mut v, rep(20, RepType::SEG, 1)));
    // A SEG_REP that gains a ring becomes a RING_REP in place.
    assert!(insert_rep(&mut v, rep(21, RepType::RING, 1)));
    assert_eq!(v[0], rep(21, RepType::RING, 1));
    assert_eq!(v.len(), 2);
}

#[test]
fn start_up_potential_reps_are_the_other_segments_first_daemons() {
    let e = engine();
    assert_eq!(e.state(), crate::ring::State::Seg);
    assert_eq!(e.phase.potential(), vec![rep(20, RepType::POTENTIAL, 1)]);
    assert!(e.multi_segment());
}

#[test]
fn form_ring_entries_carry_5_0_1_commit_sets() {
    use crate::ring::RingId;
    let ids = vec![DaemonId(10), DaemonId(11), DaemonId(20), DaemonId(21)];
    let engine_of = |me: u32, commit: &[u32]| {
        let cfg = RingConfig::lan(DaemonId(me), ids.clone());
        let mut e = Engine::new(cfg, Instant(1_000_000), 1000);
        // Same old ring at both (as after a membership that failed after their EVS).
        e.ring.id = RingId {
            leader: DaemonId(10),
            time: 7,
        };
        e.commit_set = commit.iter().copied().map(DaemonId).collect();
        e
    };
    let mut rings = Vec::new();
    // First visitor: trans = itself, commit rest = its commit set without itself.
    engine_of(10, &[10, 11, 20]).add_entry(&mut rings);
    assert_eq!(rings[0].trans, vec![DaemonId(10)]);
    assert_eq!(rings[0].commit_rest, vec![DaemonId(11), DaemonId(20)]);
    // Second visitor of the same old ring: joins trans; its commit set adds what is new.
    engine_of(11, &[11, 21]).add_entry(&mut rings);
    assert_eq!(rings[0].trans, vec![DaemonId(10), DaemonId(11)]);
    assert_eq!(rings[0].commit_rest, vec![DaemonId(20), DaemonId(21)]);
    // Fresh daemons carry no commit rest.
    let mut fresh = Vec::new();
    engine_of(20, &[20]).add_entry(&mut fresh);
    assert!(fresh[0].commit_rest.is_empty());
}
