//! Every counter of the snapshot reaches the exposition.

use super::*;
use spread::daemon::{
    ExchangeTimes, LinkStats, MonitorStats, QueueDepths, ReloadStats, TopologyStats,
};
use spread::ids::{DaemonId, RingId};
use spread::ring::{RingStatus, State, Stats};
use spread::{ClientStats, GroupStats as RingStats};

/// Hands out distinct values; the exhaustive struct literals below (no `..Default`) make a
/// new counter a compile error here until it is given a value, which the test then looks
/// for in the exposition.
struct Values(u64, Vec<u64>);

impl Values {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.1.push(self.0);
        self.0
    }
    fn arr<const N: usize>(&mut self) -> [u64; N] {
        std::array::from_fn(|_| self.next())
    }
    /// Microseconds shown as whole seconds (`N.0`), not in the integer list.
    fn us(&mut self, secs: &mut Vec<u64>) -> u64 {
        self.0 += 1;
        secs.push(self.0);
        self.0 * 1_000_000
    }
}

#[test]
fn every_counter_of_the_snapshot_is_in_the_exposition() {
    let mut v = Values(1000, Vec::new());
    let mut secs = Vec::new();
    let clients = ClientStats {
        connections: v.next(),
        accepted: v.next(),
        rejects: v.arr(),
        hello_timeouts: v.next(),
        violations: v.arr(),
        slow_reader_kills: v.next(),
        rejected_joins: v.next(),
        requests: v.next(),
        messages_out: v.next(),
        unknown_session_inputs: v.next(),
        messages_in: v.arr(),
        bytes_in: v.arr(),
        messages_delivered: v.arr(),
        bytes_delivered: v.arr(),
        killed_by_request: v.next(),
        closed_by_peer: v.next(),
    };
    let groups = RingStats {
        malformed: v.next(),
        ignored: v.next(),
        groups_sent: v.next(),
        exchanges: v.next(),
        held: v.next(),
        unexpected_groups: v.next(),
        exchanges_cut: v.next(),
        exchanges_forfeited: v.next(),
        completed_in_transition: v.next(),
        fatal_for_5_0_1: v.next(),
    };
    let engine = Stats {
        dropped: v.next(),
        malformed: v.next(),
        retransmitted: v.next(),
        duplicates: v.next(),
        packets_sent: v.next(),
        delivered: v.next(),
        queue_full: v.next(),
        stale_exchange: v.next(),
        installs: v.next(),
        token_losses: v.next(),
        packets_received: v.next(),
        token_hurry: v.next(),
        token_revisits: v.next(),
        reply_holds: v.next(),
        reply_hits: v.next(),
        reply_misses: v.next(),
        stalls: v.next(),
        wild_tokens: v.next(),
        retrans_requested: v.next(),
        token_rotations: v.next(),
        rotation_time_us: v.us(&mut secs),
        last_rotation_us: v.us(&mut secs),
    };
    let topology = TopologyStats {
        rejected: v.arr(),
        relayed: v.next(),
        looped: v.next(),
    };
    let monitor = MonitorStats {
        status_replies: v.next(),
        denied: v.next(),
        ignored: v.next(),
        partitions: v.next(),
        flow_changes: v.next(),
        reloads_unsupported: v.next(),
        partition_drops: v.next(),
    };
    let net = NetStats {
        unknown_source: v.next(),
        send_drops: v.next(),
        sent: v.next(),
        send_calls: v.next(),
        deferred: v.next(),
        segmented: v.next(),
    };
    let small = |v: &mut Values| v.next() as u32;
    let core = Metrics {
        me: DaemonId(small(&mut v)),
        state: State::Op,
        group_state: "GOP",
        ring: RingId {
            leader: DaemonId(small(&mut v)),
            time: small(&mut v) as i32,
        },
        ring_members: v.next() as usize,
        ring_status: RingStatus {
            aru: small(&mut v),
            my_aru: small(&mut v),
            highest_seq: small(&mut v),
            token_rounds: small(&mut v),
            window: small(&mut v) as u16,
            personal_window: small(&mut v) as u16,
            accelerated: true,
            accelerated_window: small(&mut v) as u16,
        },
        engine,
        clients,
        groups,
        topology,
        monitor,
        sessions: v.next() as usize,
        group_count: v.next() as usize,
        group_members: v.next() as usize,
        queues: QueueDepths {
            waiting: v.next() as usize,
            send_queue: v.next() as usize,
            unsent_bytes: v.next() as usize,
            session_messages: v.next() as usize,
            session_bytes: v.next() as usize,
        },
        waiting_dropped: v.next(),
        exchange: ExchangeTimes {
            count: v.next(),
            total_us: v.us(&mut secs),
            last_us: v.us(&mut secs),
        },
        interop_violations: v.next() as usize,
        reload: ReloadStats {
            requests: v.next(),
            applied: v.next(),
            deferred: v.next(),
            singletons: v.next(),
            remerges: v.next(),
            exits: v.next(),
        },
        link: Some(LinkStats {
            sealed: v.next(),
            opened: v.next(),
            plain: v.next(),
            malformed: v.next(),
            unknown_key: v.next(),
            forged: v.next(),
            replayed: v.next(),
            misdirected: v.next(),
            stale_boot: v.next(),
        }),
    };
    let text = render(&Snapshot { core, net });
    let values: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(_, v)| v))
        .collect();
    for n in &v.1 {
        assert!(
            values.contains(&n.to_string().as_str()),
            "{n} not exported:\n{text}"
        );
    }
    for n in &secs {
        assert!(
            values.contains(&format!("{n}.0").as_str()),
            "{n} s not exported:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}
