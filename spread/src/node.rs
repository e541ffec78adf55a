//! [`Node`]: one whole daemon of a ring — client sessions and group state ([`Daemon`]) on
//! top of the token ring and membership protocol ([`Engine`]), sans-IO.
//!
//! # Calling contract (quinn style, as its parts)
//!
//! * inputs: [`Node::handle`] with a [`NodeInput`] (a client event, or a datagram from a
//!   configured daemon) and [`Node::handle_timeout`] when [`Node::poll_timeout`] is due;
//! * outputs: drain [`Node::poll_output`] after every input: bytes for client sessions,
//!   sessions to close, datagrams to send.
//!
//! Inside, every client request becomes a 5.0.1 message submitted to the engine
//! ([`Daemon::poll_submission`]); the engine's deliveries and configuration changes go back to
//! the daemon in the order emitted ([`Daemon::on_delivery`], [`Daemon::on_configuration`]).
//! The two are pumped until both are quiet, so one input's effects are complete when
//! `handle` returns.
//!
//! Monitor control packets (`spmonitor`'s STATUS, PARTITION, FC, RELOAD) arriving on the data
//! port are answered here ([`monitor`]), not by the engine; a PARTITION set by the monitor
//! drops every other packet and token from daemons of another component before the engine
//! sees it. The shell should call [`Node::configure_monitor`] with
//! [`MonitorConfig::from_config`] (segments, `DangerousMonitor`).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::config::{Config, HostId};
use crate::daemon::{self, Daemon, DaemonConfig};
use crate::ring::{self, DaemonId, Dest, Engine, Port, RingConfig};
use crate::time::Instant;

pub mod monitor;
pub use monitor::{MonitorConfig, MonitorOutput, MonitorStats};

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
/// Most submissions waiting for the engine; beyond it new ones are dropped and counted.
pub const MAX_WAITING: usize = 100_000;

/// Bound on pump rounds per input (each round drains both queues; the daemon only adds
/// submissions in answer to a delivery, so a handful of rounds suffice).
const MAX_PUMP_ROUNDS: usize = 64;

/// An input to a [`Node`].
#[derive(Debug, Clone)]
pub enum NodeInput {
    /// A client-session event.
    Client(daemon::Input),
    /// A datagram from configured daemon `from`.
    Packet {
        /// Sending daemon.
        from: DaemonId,
        /// Port it arrived on.
        port: Port,
        /// The datagram.
        bytes: Bytes,
    },
}

/// An output of a [`Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    /// For a client session.
    Client(daemon::Output),
    /// A datagram to send.
    Send {
        /// Destination.
        to: Dest,
        /// Port.
        port: Port,
        /// The datagram.
        bytes: Bytes,
    },
    /// An answer to a monitor control packet ([`monitor`]).
    Monitor(MonitorOutput),
}

/// A daemon of a ring. See the module documentation.
#[derive(Debug)]
pub struct Node {
    daemon: Daemon,
    engine: Engine,
    out: VecDeque<NodeOutput>,
    /// Submissions waiting for room in the engine's send queue, in order.
    waiting: VecDeque<(ring::Service, Bytes)>,
    /// Submissions dropped because [`MAX_WAITING`] were waiting.
    dropped: u64,
    /// Monitor control packets and the simulated partition.
    monitor: monitor::Monitor,
    /// Simulator canary: the exchange gate is never closed ([`Node::plant_no_exchange_gate`]).
    #[cfg(any(test, feature = "sim"))]
    no_gate: bool,
}

impl Node {
    /// A freshly started daemon: `ring.me` among `ring.daemons`; `clock_secs` is the wall
    /// clock (Unix seconds) at `now`, for ring ids.
    pub fn new(config: DaemonConfig, ring: RingConfig, now: Instant, clock_secs: u32) -> Self {
        let mut daemon = Daemon::new(config);
        daemon.enable_ring(ring.me, ring.daemons.clone());
        let monitor = monitor::Monitor::new(MonitorConfig::from_ring(&ring), now);
        let mut engine = Engine::new(ring, now, clock_secs);
        engine.enable_exchange_gate();
        let mut n = Self {
            daemon,
            engine,
            out: VecDeque::new(),
            waiting: VecDeque::new(),
            dropped: 0,
            monitor,
            #[cfg(any(test, feature = "sim"))]
            no_gate: false,
        };
        n.pump(now);
        n
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

    #[cfg(not(any(test, feature = "sim")))]
    fn gate_planted_off(&self) -> bool {
        false
    }

    /// The session / group side.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// The ring side.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Submissions waiting for room in the engine, and submissions dropped because too many
    /// were waiting.
    pub fn backlog(&self) -> (usize, u64) {
        (self.waiting.len(), self.dropped)
    }

    /// Applies one input.
    pub fn handle(&mut self, now: Instant, input: NodeInput) {
        match input {
            NodeInput::Client(i) => self.daemon.handle(now, i),
            NodeInput::Packet { from, port, bytes } => {
                if port == Port::Data && monitor::is_control(&bytes) {
                    self.on_control(now, from, &bytes);
                } else if self.monitor.admit(from) {
                    self.engine
                        .handle(now, ring::Input::Packet { from, port, bytes });
                }
            }
        }
        self.pump(now);
    }

    /// Fires what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.monitor.handle_timeout(now);
        self.daemon.handle_timeout(now);
        self.engine.handle_timeout(now);
        self.pump(now);
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<NodeOutput> {
        self.out.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.daemon.poll_timeout(),
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
            while let Some((ring, service, payload)) = self.daemon.poll_exchange_submission() {
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
            while let Some(sub) = self.daemon.poll_submission() {
                if self.waiting.len() < MAX_WAITING {
                    self.waiting.push_back(sub);
                } else {
                    self.dropped += 1;
                }
            }
            while self.engine.send_queue_len() < ENGINE_BACKLOG {
                let Some((service, payload)) = self.waiting.pop_front() else {
                    break;
                };
                busy = true;
                self.engine
                    .handle(now, ring::Input::Submit { service, payload });
            }
            while let Some(o) = self.engine.poll_output() {
                busy = true;
                match o {
                    ring::Output::Send { to, port, bytes } => {
                        self.out.push_back(NodeOutput::Send { to, port, bytes });
                    }
                    ring::Output::Deliver(d) => {
                        let was = self.daemon.exchanging();
                        self.daemon.on_delivery(d);
                        if was && !self.daemon.exchanging() && !self.gate_planted_off() {
                            // The exchange completed: 5.0.1 returns to the normal down queue
                            // and lowers the delivery threshold.
                            self.engine.set_exchanging(now, false);
                        }
                    }
                    ring::Output::Configuration(c) => {
                        let regular = c.kind == ring::ConfigKind::Regular;
                        self.daemon.on_configuration(c);
                        if regular {
                            // The engine closed the gate at installation; it stays closed
                            // while the group-state exchange of this configuration runs.
                            let closed = self.daemon.exchanging() && !self.gate_planted_off();
                            self.engine.set_exchanging(now, closed);
                        }
                    }
                }
            }
            while let Some(o) = self.daemon.poll_output() {
                busy = true;
                self.out.push_back(NodeOutput::Client(o));
            }
            if !busy {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
