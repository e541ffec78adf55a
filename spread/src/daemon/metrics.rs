//! One snapshot of every counter and gauge a [`Daemon`] keeps ([`Daemon::metrics`]), for an
//! operator's metrics endpoint (the shell renders it; nothing here knows the exposition
//! format), and the group-state exchange clock.

use super::{Daemon, MonitorStats, TopologyStats};
use crate::clients::{ClientStats, RingStats};
use crate::ids::{DaemonId, RingId};
use crate::ring::{self, RingStatus, State};
use crate::time::Instant;

/// How long group-state exchanges took: from the regular configuration that started one to
/// its completion (5.0.1's GGATHER/GGT back to GOP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeTimes {
    /// Exchanges timed (completed).
    pub count: u64,
    /// Their total time, microseconds.
    pub total_us: u64,
    /// The last one's time, microseconds.
    pub last_us: u64,
}

/// Starts and stops the exchange timer (kept by [`Daemon`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExchangeClock {
    since: Option<Instant>,
    times: ExchangeTimes,
}

impl ExchangeClock {
    /// A regular configuration was installed at `now` and an exchange runs.
    pub(crate) fn start(&mut self, now: Instant) {
        self.since = Some(now);
    }

    /// The exchange completed at `now`.
    pub(crate) fn stop(&mut self, now: Instant) {
        if let Some(t0) = self.since.take() {
            let us = u64::try_from(now.saturating_since(t0).as_micros()).unwrap_or(u64::MAX);
            self.times.count += 1;
            self.times.total_us = self.times.total_us.saturating_add(us);
            self.times.last_us = us;
        }
    }
}

/// Lengths of the queues between clients and the ring at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Client submissions waiting for room in the engine ([`Daemon::backlog`]).
    pub waiting: usize,
    /// Messages in the engine's send queue.
    pub send_queue: usize,
    /// Payload bytes of the client messages waiting for the ring ([`Daemon::unsent_bytes`]).
    pub unsent_bytes: usize,
    /// Messages queued for local sessions, not yet written.
    pub session_messages: usize,
    /// Bytes of [`QueueDepths::session_messages`].
    pub session_bytes: usize,
}

/// Every counter and gauge of a [`Daemon`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// This daemon.
    pub me: DaemonId,
    /// Membership state.
    pub state: State,
    /// 5.0.1's group-layer state name (GOP, GTRANS, GGATHER, GGT).
    pub group_state: &'static str,
    /// The installed ring.
    pub ring: RingId,
    /// Its members.
    pub ring_members: usize,
    /// Figures of the installed ring (aru, highest seq, token rounds, windows).
    pub ring_status: RingStatus,
    /// The engine's counters (packets, retransmissions, rotations, installs, drops).
    pub engine: ring::Stats,
    /// Client sessions' counters.
    pub clients: ClientStats,
    /// The group layer's counters (exchanges, malformed or foreign deliveries).
    pub groups: RingStats,
    /// The network layer's counters (§1.1 drops, relays).
    pub topology: TopologyStats,
    /// The monitor's counters.
    pub monitor: MonitorStats,
    /// Sessions past the hello.
    pub sessions: usize,
    /// Groups with members.
    pub group_count: usize,
    /// Group memberships (members of all groups added up).
    pub group_members: usize,
    /// Queue lengths.
    pub queues: QueueDepths,
    /// Client submissions dropped because too many were waiting ([`super::MAX_WAITING`]).
    pub waiting_dropped: u64,
    /// Group-state exchange times.
    pub exchange: ExchangeTimes,
    /// Deliveries a 5.0.1 daemon would have aborted on (descriptions kept).
    pub interop_violations: usize,
    /// Live reconfiguration counters.
    pub reload: super::ReloadStats,
    /// The secure ring's counters (`None`: plain 5.0.1 wire).
    pub link: Option<super::LinkStats>,
}

impl Daemon {
    /// Every counter and gauge now (see [`Metrics`]).
    pub fn metrics(&self) -> Metrics {
        let (session_messages, session_bytes) = self.clients.session_backlog();
        let (waiting, waiting_dropped) = self.backlog();
        Metrics {
            me: self.engine.id(),
            state: self.engine.state(),
            group_state: self.group_state(),
            ring: self.engine.ring_id(),
            ring_members: self.engine.members().len(),
            ring_status: self.engine.status(),
            engine: self.engine.stats(),
            clients: self.client_stats().clone(),
            groups: self.group_stats(),
            topology: self.topology_stats(),
            monitor: self.monitor_stats(),
            sessions: self.session_count(),
            group_count: self.groups().len(),
            group_members: self.groups().membership_count(),
            queues: QueueDepths {
                waiting,
                send_queue: self.engine.send_queue_len(),
                unsent_bytes: self.unsent_bytes(),
                session_messages,
                session_bytes,
            },
            waiting_dropped,
            exchange: self.exchange_clock.times,
            interop_violations: self.interop_violations().len(),
            reload: self.reload_stats(),
            link: self.link_stats(),
        }
    }
}
