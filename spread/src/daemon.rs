//! [`Daemon`]: one whole Spread 5.0.1-compatible daemon, sans-IO — client sessions and group
//! state (`Clients`) on top of the token ring and membership protocol ([`Engine`]), the
//! network layer's rules ([`topology`]: acceptance, relays, where each datagram goes) and the
//! monitor ([`monitor`]). A one-host configuration is a one-daemon ring: the same code path,
//! its token handed back to itself without a socket.
//!
//! # Calling contract (quinn style)
//!
//! * build it in one step from the configuration file and the own host
//!   ([`Daemon::from_config`]), or from explicit [`Settings`] ([`Daemon::new`]);
//! * inputs: [`Daemon::handle`] with an [`Input`] (a client event, or a datagram from a
//!   configured daemon's address) and [`Daemon::handle_timeout`] when [`Daemon::poll_timeout`]
//!   is due; every method that needs the time takes `now`;
//! * outputs: drain [`Daemon::poll_output`] after every input: bytes for client sessions,
//!   sessions to close, datagrams to send ([`Transmit`]: to a configured daemon or to my
//!   segment's broadcast address — the shell only maps them to socket addresses), monitor
//!   replies.
//!
//! Inside, every client request becomes a 5.0.1 message submitted to the engine; the engine's
//! deliveries and configuration changes go back to the client side in the order emitted. The
//! two are pumped until both are quiet, so one input's effects are complete when `handle`
//! returns.
//!
//! Monitor control packets (`spmonitor`'s STATUS, PARTITION, FC, RELOAD) arriving on the data
//! port are answered here ([`monitor`]), not by the engine; a PARTITION set by the monitor
//! drops every other packet and token from daemons of another component before the engine
//! sees it.
//!
//! With the secure ring on ([`Settings::link`], mbus extension), every datagram is opened
//! ([`link::Link::open`]: authentic and fresh, else dropped and counted) before the network
//! layer sees it, and every [`Output::Transmit`] is sealed as [`Daemon::poll_output`] hands
//! it out; plain mode is 5.0.1's wire unchanged.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::clients::{self, Clients, DaemonConfig};
use crate::config::{Config, HostId};
use crate::ring::{self, DaemonId, Engine, Port, RingConfig};
use crate::time::Instant;

pub mod link;
pub mod memb_log;
pub mod metrics;
pub mod monitor;
pub mod reload;
pub mod topology;
pub use link::{Keyring, Link, LinkSettings, LinkStats};
pub use memb_log::MembershipLogEvent;
pub use metrics::{ExchangeTimes, Metrics, QueueDepths};
pub use monitor::{MonitorConfig, MonitorOutput, MonitorStats};
pub use reload::{ReloadOutcome, ReloadStats};
pub use topology::{Target, Topology, TopologyStats, Transmit};

/// The ring settings of host `me` of `config` ([`RingConfig::from_config`]: daemon ids in
/// configuration order, timeout table, windows, ring protocol, configuration hash).
pub fn ring_config(config: &Config, me: HostId) -> RingConfig {
    let name = config.host(me).map_or("", |h| h.name.as_str());
    RingConfig::from_config(config, name).unwrap_or_else(|| {
        let daemons: Vec<DaemonId> = config.hosts().map(|(_, h)| DaemonId(h.vid)).collect();
        RingConfig::lan(DaemonId(0), daemons)
    })
}

/// Submissions handed to the engine while its send queue is shorter than this; the rest wait
/// here in order (5.0.1 stops reading sessions instead; the engine refuses beyond
/// [`ring::MAX_SEND_QUEUE`]).
const ENGINE_BACKLOG: usize = ring::MAX_SEND_QUEUE / 2;
/// ... and while it holds fewer payload bytes than this.
const ENGINE_BACKLOG_BYTES: usize = ring::MAX_SEND_QUEUE_BYTES / 2;
/// Most submissions waiting for the engine; beyond it new ones are dropped and counted.
pub const MAX_WAITING: usize = 100_000;
/// Most payload bytes waiting for the engine; beyond it new submissions are dropped and
/// counted. Never reached while the shell honours [`Daemon::accepts_client_input`].
pub const MAX_WAITING_BYTES: usize = 256 << 20;
/// Client messages waiting for the ring (not yet sent by the engine) at which the daemon
/// takes no client input until the ring has sent some (5.0.1's `WATER_MARK`: it stops reading
/// sessions while its protocol queue is this long).
pub const WATER_MARK: usize = 500;
/// The same mark in payload bytes (an mbus bound: 500 messages of 100 KB would hold 50 MB;
/// 4 MiB is still dozens of token rotations of work ahead of the ring).
pub const WATER_MARK_BYTES: usize = 4 << 20;

/// Bound on pump rounds per input (each round drains both queues; the client side only adds
/// submissions in answer to a delivery, and a singleton ring's token comes back once per
/// round, so a bounded number of rounds per input suffices; what is left waits for
/// [`Daemon::poll_timeout`], which is then `now`).
const MAX_PUMP_ROUNDS: usize = 64;

/// Everything a [`Daemon`] is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This daemon's name, id, session limits and authentication.
    pub clients: DaemonConfig,
    /// Ring and membership settings.
    pub ring: RingConfig,
    /// Monitor settings (`DangerousMonitor`).
    pub monitor: MonitorConfig,
    /// The configured daemons as the network layer sees them.
    pub topology: Topology,
    /// The secure ring (mbus extension): `None` is 5.0.1's plain wire.
    pub link: Option<LinkSettings>,
}

impl Settings {
    /// The settings of host `me` of a parsed configuration; `clock_secs` is the wall clock
    /// (Unix seconds). IP allow rules (`spread.access_ip`) are the caller's to add.
    pub fn from_config(config: &Config, me: HostId, clock_secs: u32) -> Self {
        let ring = ring_config(config, me);
        Self {
            clients: DaemonConfig::from_config(config, me, clock_secs as i32),
            monitor: MonitorConfig::from_config(config, me),
            topology: Topology::from_config(config, me, &ring),
            ring,
            link: None,
        }
    }

    /// A daemon alone in its configuration (an embedded one-daemon ring, no file): `name`, id
    /// `proc_id`, 5.0.1's defaults.
    pub fn single(name: &str, proc_id: u32) -> Self {
        Self::from_parts(
            DaemonConfig::new(name, proc_id as i32, 0),
            RingConfig::lan(DaemonId(proc_id), vec![DaemonId(proc_id)]),
        )
    }

    /// From explicit client and ring settings (one segment as the ring settings say, its
    /// address broadcasting, `DangerousMonitor` off).
    pub fn from_parts(clients: DaemonConfig, ring: RingConfig) -> Self {
        Self {
            clients,
            monitor: MonitorConfig::from_ring(&ring),
            topology: Topology::from_ring(&ring, true),
            ring,
            link: None,
        }
    }
}

/// An input to a [`Daemon`].
#[derive(Debug, Clone)]
pub enum Input {
    /// A client-session event.
    Client(clients::SessionInput),
    /// A datagram that came from configured daemon `from`'s address (the shell drops
    /// datagrams from other addresses).
    Packet {
        /// Sending daemon.
        from: DaemonId,
        /// Port it arrived on.
        port: Port,
        /// The datagram.
        bytes: Bytes,
    },
}

/// An output of a [`Daemon`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// For a client session.
    Client(clients::SessionOutput),
    /// A datagram to send.
    Transmit(Transmit),
    /// An answer to a monitor control packet ([`monitor`]).
    Monitor(MonitorOutput),
}

/// A whole daemon. See the module documentation.
#[derive(Debug)]
pub struct Daemon {
    clients: Clients,
    engine: Engine,
    topology: Topology,
    out: VecDeque<Output>,
    /// Datagrams to myself (a singleton ring's token), handed back without a socket.
    looped: VecDeque<(Port, Bytes)>,
    /// Submissions waiting for room in the engine's send queue, in order.
    waiting: VecDeque<(ring::Service, Bytes)>,
    /// Payload bytes in `waiting`.
    waiting_bytes: usize,
    /// Submissions dropped because [`MAX_WAITING`] were waiting.
    dropped: u64,
    /// Monitor control packets and the simulated partition.
    monitor: monitor::Monitor,
    /// The secure ring, when on.
    link: Option<Link>,
    /// When the daemon started (`poll_timeout` is at least this).
    now: Instant,
    /// Times the group-state exchanges ([`Daemon::metrics`]).
    exchange_clock: metrics::ExchangeClock,
    /// Live reconfiguration: a reload waiting for OP, the singleton state ([`reload`]).
    reload: reload::ReloadState,
    /// The membership log (`-l y`), when enabled ([`memb_log`]).
    memb_log: Option<Box<memb_log::MembLog>>,
    /// Simulator canary: the exchange gate is never closed ([`Daemon::plant_no_exchange_gate`]).
    #[cfg(any(test, feature = "sim"))]
    no_gate: bool,
    /// Simulator tap: copies of the engine's deliveries and configuration changes, in the
    /// order the client side got them ([`Daemon::tap_ring_events`]).
    #[cfg(any(test, feature = "sim"))]
    tap: Option<VecDeque<ring::Output>>,
}

impl Daemon {
    /// Host `me` of `config`, started at `now`; `clock_secs` is the wall clock (Unix seconds)
    /// at `now`, for ring ids.
    pub fn from_config(config: &Config, me: HostId, now: Instant, clock_secs: u32) -> Self {
        let mut d = Self::new(
            Settings::from_config(config, me, clock_secs),
            now,
            clock_secs,
        );
        d.set_config(config);
        d
    }

    /// A freshly started daemon with these settings; `clock_secs` is the wall clock (Unix
    /// seconds) at `now`, for ring ids.
    pub fn new(settings: Settings, now: Instant, clock_secs: u32) -> Self {
        let Settings {
            clients: config,
            ring,
            monitor,
            topology,
            link,
        } = settings;
        let link = link.map(|l| Link::new(ring.me, l));
        let clients = Clients::new(config, ring.me, ring.daemons.clone());
        let monitor = monitor::Monitor::new(monitor, now);
        let mut engine = Engine::new(ring, now, clock_secs);
        engine.enable_exchange_gate();
        // §1.1 is applied once, by the topology, before any datagram reaches the engine.
        engine.upstream_acceptance = true;
        let mut n = Self {
            clients,
            engine,
            topology,
            out: VecDeque::new(),
            looped: VecDeque::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            dropped: 0,
            monitor,
            link,
            now,
            exchange_clock: metrics::ExchangeClock::default(),
            reload: reload::ReloadState::default(),
            memb_log: None,
            #[cfg(any(test, feature = "sim"))]
            no_gate: false,
            #[cfg(any(test, feature = "sim"))]
            tap: None,
        };
        n.pump(now);
        n
    }

    /// A daemon alone in its configuration (`config` names it; [`Settings::from_parts`] of a
    /// one-daemon ring), run on a virtual clock from `start` until its singleton ring is
    /// installed and its group state exchanged (5.0.1's timeouts: about 1.75 s); returns it
    /// and the time it got there. Its outputs until then (none for clients) are dropped. For
    /// tests, fuzzing and the simulator.
    #[cfg(any(test, feature = "sim", feature = "fuzzing"))]
    pub fn settled_alone(config: DaemonConfig, start: Instant, clock_secs: u32) -> (Self, Instant) {
        let me = DaemonId(config.proc_id as u32);
        let settings = Settings::from_parts(config, RingConfig::lan(me, vec![me]));
        let mut d = Self::new(settings, start, clock_secs);
        let mut now = start;
        for _ in 0..10_000 {
            while d.poll_output().is_some() {}
            if d.engine.state() == ring::State::Op && !d.clients.exchanging() {
                break;
            }
            now = d.poll_timeout().map_or(now, |t| t.max(now));
            d.handle_timeout(now);
        }
        (d, now)
    }

    /// Simulator canary: client messages are sent during the group-state exchange, as a
    /// daemon that does not hold them would (the 5.0.1-state checker must notice).
    #[cfg(any(test, feature = "sim"))]
    pub fn plant_no_exchange_gate(&mut self, now: Instant) {
        self.no_gate = true;
        self.engine.set_exchanging(now, false);
    }

    #[cfg(any(test, feature = "sim"))]
    fn gate_planted_off(&self) -> bool {
        self.no_gate
    }

    /// Simulator: from now on keep a copy of every delivery and configuration change the
    /// engine hands the client side ([`Daemon::take_ring_event`]), for the EVS checker.
    #[cfg(any(test, feature = "sim"))]
    pub fn tap_ring_events(&mut self) {
        self.tap.get_or_insert_with(VecDeque::new);
    }

    /// Simulator: the next tapped delivery or configuration change.
    #[cfg(any(test, feature = "sim"))]
    pub fn take_ring_event(&mut self) -> Option<ring::Output> {
        self.tap.as_mut()?.pop_front()
    }

    /// Simulator: plants a bug in the engine (canaries).
    #[cfg(any(test, feature = "sim"))]
    pub fn plant_bug(&mut self, bug: ring::PlantedBug) {
        self.engine.plant_bug(bug);
    }

    #[cfg(any(test, feature = "sim"))]
    fn tapped(&mut self, o: &ring::Output) {
        if let Some(t) = &mut self.tap {
            t.push_back(o.clone());
        }
    }

    #[cfg(not(any(test, feature = "sim")))]
    fn tapped(&mut self, _: &ring::Output) {}

    #[cfg(not(any(test, feature = "sim")))]
    fn gate_planted_off(&self) -> bool {
        false
    }

    /// The session / group side (simulator, fuzz targets, tests).
    #[cfg(any(test, feature = "sim", feature = "fuzzing"))]
    pub(crate) fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Counters of the client sessions.
    pub fn client_stats(&self) -> &clients::ClientStats {
        self.clients.stats()
    }

    /// Counters of the group layer on the ring (exchanges, 5.0.1-fatal deliveries).
    pub fn group_stats(&self) -> clients::RingStats {
        self.clients.ring_stats()
    }

    /// Group state: groups, their ids and members.
    pub fn groups(&self) -> &crate::groups::Groups {
        self.clients.groups()
    }

    /// Sessions past the hello (what the quota counts).
    pub fn session_count(&self) -> usize {
        self.clients.session_count()
    }

    /// True while a group-state exchange runs (5.0.1's GGATHER or GGT).
    pub fn exchanging(&self) -> bool {
        self.clients.exchanging()
    }

    /// 5.0.1's group-layer state name (GOP, GTRANS, GGATHER, GGT).
    pub fn group_state(&self) -> &'static str {
        self.clients.group_state()
    }

    /// Deliveries a 5.0.1 daemon in the same group state would have aborted on (see the
    /// simulator's 5.0.1-state checker).
    pub fn interop_violations(&self) -> &[String] {
        self.clients.interop_violations()
    }

    /// The ring side.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Counters of the network layer (§1.1 drops, relays).
    pub fn topology_stats(&self) -> TopologyStats {
        self.topology.stats()
    }

    /// Counters of the secure ring (`None`: plain mode).
    pub fn link_stats(&self) -> Option<LinkStats> {
        self.link.as_ref().map(Link::stats)
    }

    /// The secure ring's keys (`None`: plain mode).
    pub fn link_keys(&self) -> Option<&Keyring> {
        self.link.as_ref().map(Link::keys)
    }

    /// Replaces the secure ring's keys (a rollover step); false in plain mode (the secure
    /// ring is chosen at start and cannot be turned on or off while running).
    pub fn set_link_keys(&mut self, keys: Keyring) -> bool {
        match &mut self.link {
            Some(l) => {
                l.set_keys(keys);
                true
            }
            None => false,
        }
    }

    /// Submissions waiting for room in the engine, and submissions dropped because too many
    /// were waiting.
    pub fn backlog(&self) -> (usize, u64) {
        (self.waiting.len(), self.dropped)
    }

    /// Client messages waiting to be sent by the ring (waiting here plus the engine's send
    /// queue): the shell stops reading clients while this is at 5.0.1's `WATER_MARK`.
    pub fn unsent(&self) -> usize {
        self.waiting.len() + self.engine.send_queue_len()
    }

    /// Payload bytes of the client messages waiting to be sent by the ring.
    pub fn unsent_bytes(&self) -> usize {
        self.waiting_bytes + self.engine.send_queue_bytes()
    }

    /// The ring's flow control: may the shell hand in more client input now? No while
    /// [`WATER_MARK`] messages or [`WATER_MARK_BYTES`] bytes wait to be sent (ring packets,
    /// timers and session writes go on). This is what bounds the daemon's queues of client
    /// messages in bytes.
    pub fn accepts_client_input(&self) -> bool {
        self.unsent() < WATER_MARK && self.unsent_bytes() < WATER_MARK_BYTES
    }

    /// Applies one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = now;
        self.log_input();
        match input {
            Input::Client(i) => self.clients.handle(now, i),
            Input::Packet {
                from,
                port,
                mut bytes,
            } => {
                if let Some(link) = &mut self.link {
                    match link.open(now, from, port, &bytes) {
                        Ok(plain) => bytes = plain,
                        Err(_) => return,
                    }
                }
                let out = &mut self.out;
                let accepted = self.topology.accept(from, port, bytes, &mut |t| {
                    out.push_back(Output::Transmit(t));
                });
                match accepted {
                    Some(topology::Accept::Control(b)) => self.on_control(now, from, &b),
                    // 5.0.1's In_my_component: after the network checks, before the protocol.
                    Some(topology::Accept::Protocol(bytes)) if self.monitor.admit(from) => {
                        self.engine
                            .handle(now, ring::Input::Packet { from, port, bytes });
                    }
                    Some(topology::Accept::Protocol(_)) | None => {}
                }
            }
        }
        self.pump(now);
    }

    /// Fires what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.log_input();
        self.monitor.handle_timeout(now);
        self.clients.handle_timeout(now);
        self.engine.handle_timeout(now);
        self.pump(now);
    }

    /// The next output (a datagram sealed on the way when the secure ring is on).
    pub fn poll_output(&mut self) -> Option<Output> {
        let o = self.out.pop_front()?;
        match (o, &mut self.link) {
            (Output::Transmit(mut t), Some(link)) => {
                t.bytes = link.seal_transmit(&t);
                Some(Output::Transmit(t))
            }
            (o, _) => Some(o),
        }
    }

    /// When [`Daemon::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.looped.is_empty() {
            return Some(self.now);
        }
        [
            self.clients.poll_timeout(),
            self.engine.poll_timeout(),
            self.monitor.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn pump(&mut self, now: Instant) {
        for _ in 0..MAX_PUMP_ROUNDS {
            let mut busy = false;
            while let Some((ring, service, payload)) = self.clients.poll_exchange_submission() {
                busy = true;
                self.engine.handle(
                    now,
                    ring::Input::SubmitExchange {
                        ring,
                        service,
                        payload,
                    },
                );
            }
            while let Some(sub) = self.clients.poll_submission() {
                let bytes = self.waiting_bytes + sub.1.len();
                if self.waiting.len() < MAX_WAITING && bytes <= MAX_WAITING_BYTES {
                    self.waiting_bytes = bytes;
                    self.waiting.push_back(sub);
                } else {
                    self.dropped += 1;
                }
            }
            while self.engine.send_queue_len() < ENGINE_BACKLOG
                && self.engine.send_queue_bytes() < ENGINE_BACKLOG_BYTES
            {
                let Some((service, payload)) = self.waiting.pop_front() else {
                    break;
                };
                self.waiting_bytes = self.waiting_bytes.saturating_sub(payload.len());
                busy = true;
                self.engine
                    .handle(now, ring::Input::Submit { service, payload });
            }
            while let Some(o) = self.engine.poll_output() {
                busy = true;
                if !matches!(o, ring::Output::Send { .. }) {
                    self.tapped(&o);
                }
                match o {
                    ring::Output::Send { to, port, bytes } => {
                        let out = &mut self.out;
                        let members = self.engine.members();
                        if let Some(own) = self.topology.route(members, to, port, bytes, &mut |t| {
                            out.push_back(Output::Transmit(t));
                        }) {
                            self.looped.push_back((port, own));
                        }
                    }
                    ring::Output::Deliver(d) => {
                        let was = self.clients.exchanging();
                        let (own, transitional) = (d.sender == self.engine.id(), d.transitional);
                        self.clients.on_delivery(d);
                        if !transitional {
                            // Who may answer it: the token may wait (`ring::reply`).
                            let sessions = self.clients.answerers();
                            self.engine.note_local_delivery(own, sessions);
                        }
                        if was && !self.clients.exchanging() && !self.gate_planted_off() {
                            // The exchange completed: 5.0.1 returns to the normal down queue
                            // and lowers the delivery threshold.
                            self.engine.set_exchanging(now, false);
                        }
                        if was && !self.clients.exchanging() {
                            self.exchange_clock.stop(now);
                        }
                    }
                    ring::Output::Configuration(c) => {
                        let regular = c.kind == ring::ConfigKind::Regular;
                        if regular {
                            self.reload_on_install(now, &c.members);
                            self.log_membership(c.ring.time, &c.members);
                        }
                        self.clients.on_configuration(c);
                        if regular {
                            // The engine closed the gate at installation; it stays closed
                            // while the group-state exchange of this configuration runs.
                            let closed = self.clients.exchanging() && !self.gate_planted_off();
                            self.engine.set_exchanging(now, closed);
                            if self.clients.exchanging() {
                                self.exchange_clock.start(now);
                            }
                        }
                    }
                }
            }
            while let Some(o) = self.clients.poll_output() {
                busy = true;
                self.out.push_back(Output::Client(o));
            }
            // Datagrams to myself, in the order sent; what they cause is pumped next round.
            let me = self.engine.id();
            for _ in 0..self.looped.len() {
                let Some((port, bytes)) = self.looped.pop_front() else {
                    break;
                };
                busy = true;
                self.engine.handle(
                    now,
                    ring::Input::Packet {
                        from: me,
                        port,
                        bytes,
                    },
                );
            }
            if !busy {
                self.reload_if_pending(now);
                self.log_sessions();
                return;
            }
        }
        self.log_sessions();
    }
}

#[cfg(test)]
mod tests;
