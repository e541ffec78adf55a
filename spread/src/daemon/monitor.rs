//! Monitor / status control packets (fact sheet §11): what a [`Daemon`] does with the
//! STATUS, PARTITION, FC and RELOAD packets that 5.0.1's `spmonitor` sends to a daemon's data
//! port, and the simulated partition they set up.
//!
//! # What 5.0.1 does, and what this does
//!
//! * Acceptance (§1.1): a control packet must pass the usual network checks — exact length,
//!   our configuration hash, a configured `transmiter_id` whose configured address is the UDP
//!   source — but is accepted even when it carries our own id (the monitor runs on a daemon's
//!   machine and uses that daemon's id). So only someone who can send from a configured
//!   daemon's address with the ring's configuration reaches these handlers.
//! * STATUS (never gated): answer with one STATUS packet (header: type STATUS, `proc_id` = me,
//!   `data_len` 96, every other field 0) plus the 96-byte [`StatusRecord`], to the configured
//!   address of the request's `proc_id`, at the UDP port the monitor put in `seq`. 5.0.1 sends
//!   it from a separate socket; any local port will do (the monitor does not check it).
//! * PARTITION and FC are obeyed only with `DangerousMonitor = yes`; otherwise they are
//!   logged and ignored, as 5.0.1 does.
//! * PARTITION: one int16 component per configured daemon (configuration order); from then on
//!   packets and tokens from daemons of another component are dropped, until 60 s after the
//!   last PARTITION (the monitor re-sends it while active; an all-zero one cancels it). A
//!   component of −1 for this daemon means "exit": [`MonitorOutput::Exit`].
//! * FC: `(daemons + 1)` pairs of int16; pair `[me]` = {PersonalWindow, AcceleratedWindow},
//!   the last pair's first value = Window; −1 keeps a value. Applied to the ring engine at
//!   once. (5.0.1 takes any other value as is; negative values other than −1 are kept here
//!   too as "keep", since a negative window would stop the ring.)
//! * RELOAD: obeyed only with `DangerousMonitor = yes` (an mbus choice: 5.0.1's source hands
//!   RELOAD to its protocol layer whatever `DangerousMonitor` says); otherwise logged, ignored
//!   and counted ([`MonitorStats::reloads_unsupported`]). Obeyed, it becomes
//!   [`MonitorOutput::Reload`]: the shell re-reads the configuration file and hands it to
//!   [`Daemon::reload`](super::Daemon::reload) ([`super::reload`]: applied in OP, may form a
//!   singleton ring first). During a reload's singleton state a PARTITION is refused, as
//!   5.0.1's `Net_set_partition` refuses it.

use bytes::Bytes;
use tracing::{info, warn};

use super::{Daemon, Output};
use crate::config::{Config, HostId};
use crate::ring::{DaemonId, RingConfig, State};
use crate::time::Instant;
use crate::wire::daemon::{
    FcBody, Packet, PacketBody, PacketHeader, PartitionBody, StatusRecord, TypeBits,
};
use core::time::Duration;

/// How long a PARTITION stays in force after the last one (5.0.1's Partition_timeout).
pub const PARTITION_TIMEOUT: Duration = Duration::from_secs(60);

/// Version reported in STATUS replies (what this daemon speaks).
pub const VERSION: (i16, i16, i16) = (5, 0, 1);

/// 5.0.1's membership state numbers (membership.h).
const STATE_OP: i32 = 1;
const STATE_SEG: i32 = 2;
const STATE_REPRESENTED: i32 = 3;
const STATE_GATHER: i32 = 4;
const STATE_FORM: i32 = 5;
const STATE_EVS: i32 = 6;
/// 5.0.1's group-layer states (groups.h): GOP, and GGATHER while exchanging group state.
const GSTATE_OP: i32 = 1;
const GSTATE_GATHER: i32 = 3;

/// What the monitor handlers need to know of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// This daemon.
    pub me: DaemonId,
    /// Every configured daemon in configuration order, with its segment index.
    pub daemons: Vec<(DaemonId, usize)>,
    /// Configuration hash control packets must carry.
    pub conf_hash: u32,
    /// `DangerousMonitor`: obey PARTITION and FC.
    pub dangerous: bool,
}

impl MonitorConfig {
    /// From the ring settings alone: their segments, `DangerousMonitor` off.
    pub fn from_ring(ring: &RingConfig) -> Self {
        Self {
            me: ring.me,
            daemons: ring
                .daemons
                .iter()
                .enumerate()
                .map(|(i, d)| (*d, usize::from(ring.segments.get(i).copied().unwrap_or(0))))
                .collect(),
            conf_hash: ring.conf_hash,
            dangerous: false,
        }
    }

    /// For host `me` of a parsed configuration (segments, hash, `DangerousMonitor`).
    pub fn from_config(config: &Config, me: HostId) -> Self {
        let ring = super::ring_config(config, me);
        Self {
            me: ring.me,
            daemons: config
                .hosts()
                .map(|(id, h)| (DaemonId(h.vid), id.segment))
                .collect(),
            conf_hash: ring.conf_hash,
            dangerous: config.dangerous_monitor(),
        }
    }

    fn index(&self, d: DaemonId) -> Option<usize> {
        self.daemons.iter().position(|(x, _)| *x == d)
    }
}

/// Counters of the monitor side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// STATUS replies produced.
    pub status_replies: u64,
    /// PARTITION / FC refused because `DangerousMonitor` is off.
    pub denied: u64,
    /// Control packets accepted but unusable (too short a body, unknown requester).
    pub ignored: u64,
    /// PARTITION packets applied.
    pub partitions: u64,
    /// FC packets applied.
    pub flow_changes: u64,
    /// RELOAD requests refused (`DangerousMonitor` is off).
    pub reloads_unsupported: u64,
    /// Packets and tokens dropped because their sender is in another partition component.
    pub partition_drops: u64,
}

/// A monitor outcome for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorOutput {
    /// A STATUS reply: send `bytes` to daemon `to`'s configured address at UDP port `port`
    /// (from any local port).
    StatusReply {
        /// Daemon whose address the reply goes to (the request's `proc_id`).
        to: DaemonId,
        /// UDP port (the request's `seq`).
        port: u16,
        /// The 136-byte reply.
        bytes: Bytes,
    },
    /// A PARTITION put this daemon in component −1, or a configuration reload removed this
    /// daemon or changed its own parameters: 5.0.1 exits at once.
    Exit,
    /// A RELOAD was obeyed: re-read the configuration file and hand it to
    /// [`Daemon::reload`](super::Daemon::reload) (a shell without a file ignores it).
    Reload,
}

/// Monitor state of a node: configuration, partition map, counters.
#[derive(Debug)]
pub(crate) struct Monitor {
    cfg: MonitorConfig,
    /// Component per configured daemon (configuration order); all 0 = no partition.
    partition: Vec<i16>,
    /// When the partition is cleared.
    partition_until: Option<Instant>,
    /// When the node started (STATUS `sec`).
    started: Instant,
    stats: MonitorStats,
}

impl Monitor {
    pub(crate) fn new(cfg: MonitorConfig, started: Instant) -> Self {
        let n = cfg.daemons.len();
        Self {
            cfg,
            partition: vec![0; n],
            partition_until: None,
            started,
            stats: MonitorStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> MonitorStats {
        self.stats
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.partition_until
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.partition_until.is_some_and(|t| t <= now) {
            self.partition_until = None;
            self.partition.iter_mut().for_each(|c| *c = 0);
            info!("monitor partition timed out; cleared");
        }
    }

    /// New settings after a configuration reload: the partition is cleared (5.0.1
    /// `Net_signal_conf_reload`), sized for the new daemon list.
    pub(crate) fn reconfigure(&mut self, cfg: MonitorConfig) {
        self.partition = vec![0; cfg.daemons.len()];
        self.partition_until = None;
        self.cfg = cfg;
    }

    /// A reload's singleton state: every configured daemon in a component of its own.
    pub(crate) fn partition_alone(&mut self) {
        for (i, c) in self.partition.iter_mut().enumerate() {
            *c = i16::try_from(i + 1).unwrap_or(i16::MAX);
        }
        self.partition_until = None;
    }

    /// Removes the partition.
    pub(crate) fn clear_partition(&mut self) {
        self.partition.iter_mut().for_each(|c| *c = 0);
        self.partition_until = None;
    }

    /// Whether packets from `from` pass the partition (5.0.1's In_my_component); counts the
    /// drops.
    pub(crate) fn admit(&mut self, from: DaemonId) -> bool {
        let mine = self.component(self.cfg.me);
        let ok = mine.is_some() && mine == self.component(from);
        if !ok {
            self.stats.partition_drops += 1;
        }
        ok
    }

    fn component(&self, d: DaemonId) -> Option<i16> {
        self.cfg
            .index(d)
            .and_then(|i| self.partition.get(i).copied())
    }
}

/// What an accepted control packet asks for.
enum Request {
    Status { to: DaemonId, port: u16 },
    Partition(PartitionBody),
    Fc(FcBody),
    Reload,
}

impl Daemon {
    /// Counters of the monitor side.
    pub fn monitor_stats(&self) -> MonitorStats {
        self.monitor.stats()
    }

    /// The STATUS record this daemon would send at `now`. Figures 5.0.1 counts that we do
    /// not have the same way: `packet_delivered` is messages (not packets) delivered by the
    /// ring, `message_delivered` is messages written to clients (membership messages
    /// included), `s_retrans` / `b_retrans` are 0 (every retransmission is unicast), and
    /// `token_rounds` counts tokens of the installed ring only.
    pub fn status_record(&self, now: Instant) -> StatusRecord {
        let e = &self.engine;
        let s = e.stats();
        let r = e.status();
        let members = e.members();
        let segs = {
            let mut v: Vec<usize> = members
                .iter()
                .filter_map(|m| {
                    let cfg = &self.monitor.cfg;
                    cfg.daemons.iter().find(|(d, _)| d == m).map(|(_, s)| *s)
                })
                .collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        let i32_of = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
        let i16_of = |v: usize| i16::try_from(v).unwrap_or(i16::MAX);
        let u16_i16 = |v: u16| i16::try_from(v).unwrap_or(i16::MAX);
        StatusRecord {
            sec: i32_of(now.saturating_since(self.monitor.started).as_secs()),
            state: match e.state() {
                State::Op => STATE_OP,
                State::Seg => STATE_SEG,
                State::Represented => STATE_REPRESENTED,
                State::Gather => STATE_GATHER,
                State::Form => STATE_FORM,
                State::Evs => STATE_EVS,
            },
            gstate: if self.clients.exchanging() {
                GSTATE_GATHER
            } else {
                GSTATE_OP
            },
            packet_sent: i32_of(s.packets_sent),
            packet_recv: i32_of(s.packets_received),
            packet_delivered: i32_of(s.delivered),
            retrans: i32_of(s.retransmitted),
            u_retrans: i32_of(s.retransmitted),
            s_retrans: 0,
            b_retrans: 0,
            aru: r.aru as i32,
            my_aru: r.my_aru as i32,
            highest_seq: r.highest_seq as i32,
            token_hurry: i32_of(s.token_hurry),
            token_rounds: r.token_rounds as i32,
            my_id: e.id().0 as i32,
            leader_id: e.ring_id().leader.0 as i32,
            message_delivered: i32_of(self.clients.stats().messages_out),
            membership_changes: i16::try_from(s.installs).unwrap_or(i16::MAX),
            num_procs: i16_of(members.len()),
            num_segments: i16_of(segs),
            window: u16_i16(r.window),
            personal_window: u16_i16(r.personal_window),
            accelerated_ring: i16::from(r.accelerated),
            accelerated_window: u16_i16(r.accelerated_window),
            num_sessions: i16_of(self.clients.session_count()),
            num_groups: i16_of(self.clients.groups().len()),
            major_version: VERSION.0,
            minor_version: VERSION.1,
            patch_version: VERSION.2,
        }
    }

    /// A control datagram from configured daemon `from` (the address it came from).
    pub(crate) fn on_control(&mut self, now: Instant, from: DaemonId, datagram: &[u8]) {
        let Some(req) = self.accept_control(from, datagram) else {
            return;
        };
        match req {
            Request::Status { to, port } => {
                let mut v = Vec::with_capacity(40 + StatusRecord::LEN);
                // As 5.0.1: only type, proc_id and data_len are set.
                let mut h = PacketHeader::new(TypeBits::STATUS, DaemonId(0), 0);
                h.proc_id = DaemonId(self.engine.id().0);
                Packet {
                    header: h,
                    body: PacketBody::Status(Some(self.status_record(now))),
                }
                .encode(&mut v);
                self.monitor.stats.status_replies += 1;
                self.out
                    .push_back(Output::Monitor(MonitorOutput::StatusReply {
                        to,
                        port,
                        bytes: v.into(),
                    }));
            }
            Request::Partition(_) if self.reload.singleton => {
                self.monitor.stats.ignored += 1;
                warn!("monitor partition refused: a daemon configuration change is in progress");
            }
            Request::Partition(p) => self.apply_partition(now, &p),
            Request::Fc(f) => self.apply_fc(&f),
            Request::Reload if self.reload.requested => {
                info!(%from, "monitor RELOAD request: a reload is already under way");
            }
            Request::Reload => {
                info!(%from, "monitor RELOAD request: re-reading the configuration file");
                self.reload.requested = true;
                self.out.push_back(Output::Monitor(MonitorOutput::Reload));
            }
        }
    }

    /// DangerousMonitor and body sizes (§1.1 was checked by [`super::topology`]); `None`:
    /// dropped (counted, logged).
    fn accept_control(&mut self, from: DaemonId, datagram: &[u8]) -> Option<Request> {
        let m = &mut self.monitor;
        let Ok(p) = Packet::from_datagram(datagram) else {
            m.stats.ignored += 1;
            return None;
        };
        let kind = p.header.kind;
        let dangerous = kind.has(TypeBits::PARTITION) || kind.has(TypeBits::FC);
        if dangerous && !m.cfg.dangerous {
            m.stats.denied += 1;
            warn!(%from, "monitor request to set a partition or flow control denied: \
                          DangerousMonitor is off");
            return None;
        }
        if kind.has(TypeBits::RELOAD) && !m.cfg.dangerous {
            m.stats.denied += 1;
            m.stats.reloads_unsupported += 1;
            warn!(%from, "monitor request to reload the configuration denied: \
                          DangerousMonitor is off");
            return None;
        }
        let requester = DaemonId(p.header.proc_id.0);
        let n = m.cfg.daemons.len();
        let req = match p.body {
            PacketBody::Partition(b) if b.components.len() >= n => Some(Request::Partition(b)),
            PacketBody::Fc(b) if b.entries.len() > n && m.cfg.index(requester).is_some() => {
                Some(Request::Fc(b))
            }
            PacketBody::Status(_) if m.cfg.index(requester).is_some() => {
                let port = u16::try_from(p.header.seq.0 & 0xffff).unwrap_or(0);
                Some(Request::Status {
                    to: requester,
                    port,
                })
            }
            PacketBody::Reload => Some(Request::Reload),
            _ => None,
        };
        if req.is_none() {
            m.stats.ignored += 1;
            warn!(%from, kind = %format_args!("{:#010x}", kind.0), "illegal monitor request ignored");
        }
        req
    }

    fn apply_partition(&mut self, now: Instant, p: &PartitionBody) {
        let m = &mut self.monitor;
        let n = m.partition.len();
        m.partition.copy_from_slice(&p.components[..n]);
        m.partition_until = Some(now + PARTITION_TIMEOUT);
        m.stats.partitions += 1;
        let mine = m.component(m.cfg.me).unwrap_or(0);
        if mine == -1 {
            warn!("instructed to exit by the monitor");
            self.out.push_back(Output::Monitor(MonitorOutput::Exit));
            return;
        }
        info!(component = mine, "got a monitor partition message");
    }

    fn apply_fc(&mut self, f: &FcBody) {
        let m = &mut self.monitor;
        let me = m.cfg.index(m.cfg.me).unwrap_or(0);
        let n = m.cfg.daemons.len();
        let keep = |v: i16| u16::try_from(v).ok();
        let window = f.entries.get(n).and_then(|e| keep(e[0]));
        let personal = f.entries.get(me).and_then(|e| keep(e[0]));
        let accelerated = f.entries.get(me).and_then(|e| keep(e[1]));
        m.stats.flow_changes += 1;
        self.engine.set_flow_control(window, personal, accelerated);
        let r = self.engine.status();
        info!(
            window = r.window,
            personal = r.personal_window,
            accelerated = r.accelerated_window,
            "monitor flow control applied"
        );
    }
}

#[cfg(test)]
mod tests;
