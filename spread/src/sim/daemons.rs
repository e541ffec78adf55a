//! Whole-daemon simulator: N complete daemons ([`Daemon`]: client sessions, group state, the
//! group-state exchange, ring and membership — what `spread` runs) on the simulated network
//! of [`super::Sim`] (same [`Fault`]s), with simulated clients that connect, join, leave,
//! multicast with every service, send KILL and close at random moments: while the first ring
//! forms, during merges, partitions, crashes and restarts.
//!
//! Checked after every step:
//! * the **5.0.1-state checker**: no daemon is delivered anything that a Spread 5.0.1 daemon
//!   in the same group state would abort on ([`crate::Daemon::interop_violations`];
//!   `docs/interop.md` rows G1–G7). Every simulated daemon runs 5.0.1's group state machine,
//!   so a real 5.0.1 daemon in any position of the ring would have survived the run;
//! * at the clients: no message received twice; the ordered services (CAUSAL, AGREED, SAFE)
//!   in one order at every client (pairwise, over the messages both received).
//!
//! After the plan the cluster is healed; within a bound every daemon must be in one ring with
//! no exchange running, and a probe group joined by a fresh client on every daemon must carry
//! one AGREED message from each to all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::links::Links;
use super::{sim_ring_config, Failure, Fault, Options, Rng, Step};
use crate::clients::{DaemonConfig, SessionInput, SessionOutput};
use crate::daemon::{Daemon, Input, Output, Settings, Target};
use crate::ring::{DaemonId, Port, State};
use crate::session::{Peer, SessionId};
use crate::time::Instant;
use crate::wire::client::{
    decode_frame, encode_hello, encode_message, Direction, GroupName, Hello, ServiceType,
};

/// The groups clients use.
const GROUPS: [&str; 3] = ["ga", "gb", "gc"];
/// How long a simulated client takes to answer what it read.
const ANSWER_AFTER: Duration = Duration::from_micros(60);
/// Most clients connected to one daemon at once.
const MAX_CLIENTS: usize = 4;
/// The group of the final probe.
const PROBE: &str = "probe";

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// A new client connects (and joins a group at once).
    Connect,
    /// Client `k` (modulo the connected ones) joins group `g`.
    Join(u8, u8),
    /// Client `k` leaves group `g`.
    Leave(u8, u8),
    /// Client `k` multicasts to group `g` with service index `s` (0–5: UNRELIABLE,
    /// RELIABLE, FIFO, CAUSAL, AGREED, SAFE).
    Send(u8, u8, u8),
    /// Client `k` sends KILL for itself.
    Kill(u8),
    /// Client `k`'s socket closes.
    Close(u8),
}

/// A timed client action at one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// When, ms after start.
    pub at_ms: u32,
    /// Daemon.
    pub node: u8,
    /// What.
    pub act: Act,
}

/// A whole-daemon scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonScenario {
    /// Number of daemons.
    pub nodes: u8,
    /// Seed for packet-level chance.
    pub seed: u64,
    /// Accelerated Ring.
    pub accelerated: bool,
    /// Number of segments (≥ 1).
    pub segments: u8,
    /// Daemons that start late: (node, ms after start).
    pub late: Vec<(u8, u32)>,
    /// Crashes timed to the group-state exchange: (ms after start, node): from that time on,
    /// the first moment any daemon runs an exchange (5.0.1 GGATHER), the node crashes (it
    /// comes back at the heal, or by a `Restart`). This drives cascades: exchanges cut by a
    /// new membership (GGT), completed in the transitional configuration or not.
    pub exchange_crashes: Vec<(u32, u8)>,
    /// Fault plan.
    pub faults: Vec<Step>,
    /// Client actions.
    pub actions: Vec<Action>,
}

impl fmt::Display for DaemonScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "daemons={} segments={} seed={:#x} accelerated={} late={:?} exchange_crashes={:?}",
            self.nodes,
            self.segments,
            self.seed,
            self.accelerated,
            self.late,
            self.exchange_crashes
        )?;
        for s in &self.faults {
            writeln!(f, "  fault  @{}ms {:?}", s.at_ms, s.fault)?;
        }
        for a in &self.actions {
            writeln!(f, "  client @{}ms d{} {:?}", a.at_ms, a.node, a.act)?;
        }
        Ok(())
    }
}

/// What a whole-daemon run observed.
#[derive(Debug, Clone, Default)]
pub struct DaemonReport {
    /// Simulated time at the end.
    pub end: Instant,
    /// Events processed.
    pub events: u64,
    /// Data messages received by clients.
    pub received: u64,
    /// Client actions applied.
    pub actions: u64,
    /// Group-state exchanges completed (all daemons).
    pub exchanges: u64,
    /// Client messages held during an exchange (all daemons).
    pub held: u64,
    /// Exchanges completed in a transitional configuration (5.0.1 GGT).
    pub completed_in_transition: u64,
    /// Exchanges cut by a new configuration change (5.0.1 GGT), all daemons.
    pub exchanges_cut: u64,
    /// Tokens kept for a local client's answer (`ring::reply`), all daemons.
    pub reply_holds: u64,
    /// Kept tokens that left with an answer, all daemons.
    pub reply_hits: u64,
}

#[derive(Debug)]
enum Event {
    Net {
        to: usize,
        from: DaemonId,
        port: Port,
        bytes: Bytes,
    },
    Wake(usize),
    Fault(Fault),
    Start(usize),
    Client(usize, Act),
    /// The first client of daemon `.0` answers what it read from another daemon: an AGREED
    /// multicast to group `GROUPS[.2]` from session `.1` (if still connected).
    Answer(usize, SessionId, usize),
    /// Arm a crash of this node for the next exchange.
    ArmExchangeCrash(usize),
}

#[derive(Debug)]
struct Client {
    session: SessionId,
    user: String,
    groups: BTreeSet<&'static str>,
}

/// Per simulated client: its data messages in arrival order (body text, ordered service).
#[derive(Debug, Default)]
struct Inbox {
    got: Vec<(String, bool)>,
    /// Size of the last regular membership of each group.
    members: BTreeMap<GroupName, i32>,
}

#[derive(Debug)]
struct Host {
    node: Option<Daemon>,
    inc: u32,
    wake: Option<Instant>,
    clients: Vec<Client>,
}

/// The simulated cluster of whole daemons.
#[derive(Debug)]
pub struct DaemonSim {
    now: Instant,
    ids: Vec<DaemonId>,
    hosts: Vec<Host>,
    queue: BTreeMap<(Instant, u64), Event>,
    next_seq: u64,
    rng: Rng,
    opts: Options,
    links: Links,
    no_gate: bool,
    next_session: u64,
    /// Every client ever connected, by (daemon, session).
    inboxes: BTreeMap<(usize, u64), Inbox>,
    sent: u64,
    events: u64,
    actions: u64,
    violations: Vec<String>,
    /// Nodes to crash as soon as some daemon runs an exchange.
    armed: Vec<usize>,
    /// Per daemon: the last (ring, group state) seen, and the changes with their times.
    seen: Vec<(Option<RingAndGstate>, Vec<String>)>,
}

/// A daemon's ring and 5.0.1 group state, for the history of a failed case.
type RingAndGstate = (crate::ring::RingId, &'static str);

fn daemon_name(i: usize) -> String {
    format!("d{}", i + 1)
}

const SERVICES: [ServiceType; 6] = [
    ServiceType::UNRELIABLE,
    ServiceType::RELIABLE,
    ServiceType::FIFO,
    ServiceType::CAUSAL,
    ServiceType::AGREED,
    ServiceType::SAFE,
];

impl DaemonSim {
    /// `n` daemons, none started yet ([`DaemonSim::start`]). `no_gate` plants the canary:
    /// no daemon holds client messages during the exchange.
    pub fn new(n: usize, seed: u64, opts: Options, no_gate: bool) -> Self {
        let ids: Vec<DaemonId> = (0..n)
            .map(|i| DaemonId(0x1000_0000 + 0x0101 * u32::try_from(i).unwrap_or(0)))
            .collect();
        Self {
            now: Instant(1_000_000),
            hosts: (0..n)
                .map(|_| Host {
                    node: None,
                    inc: 0,
                    wake: None,
                    clients: Vec::new(),
                })
                .collect(),
            ids,
            queue: BTreeMap::new(),
            next_seq: 0,
            rng: Rng::new(seed),
            links: Links::new(n, opts.latency),
            opts,
            no_gate,
            next_session: 1,
            inboxes: BTreeMap::new(),
            sent: 0,
            events: 0,
            actions: 0,
            violations: Vec::new(),
            armed: Vec::new(),
            seen: (0..n).map(|_| (None, Vec::new())).collect(),
        }
    }

    fn push(&mut self, at: Instant, ev: Event) {
        self.queue.insert((at, self.next_seq), ev);
        self.next_seq += 1;
    }

    /// Starts (or restarts with fresh state) daemon `i`.
    pub fn start(&mut self, i: usize) {
        let inc = self.hosts[i].inc + 1;
        let clock = 1_000 + 100_000 * inc;
        let ring = sim_ring_config(&self.ids, i, &self.opts);
        let cfg = DaemonConfig::new(&daemon_name(i), self.ids[i].0 as i32, 0);
        let mut node = Daemon::new(Settings::from_parts(cfg, ring), self.now, clock);
        if self.no_gate {
            node.plant_no_exchange_gate(self.now);
        }
        let h = &mut self.hosts[i];
        h.node = Some(node);
        h.inc = inc;
        h.wake = None;
        h.clients.clear();
        self.after_input(i);
    }

    /// Schedules a scenario relative to now; daemons not starting late start now.
    pub fn schedule(&mut self, sc: &DaemonScenario) {
        let base = self.now;
        let n = self.hosts.len();
        let late: BTreeMap<usize, u32> = sc
            .late
            .iter()
            .map(|(i, ms)| (usize::from(*i) % n, *ms))
            .collect();
        for i in 0..n {
            match late.get(&i) {
                Some(ms) => {
                    let at = base + Duration::from_millis(u64::from(*ms));
                    self.push(at, Event::Start(i));
                }
                None => self.start(i),
            }
        }
        for s in &sc.faults {
            let at = base + Duration::from_millis(u64::from(s.at_ms));
            self.push(at, Event::Fault(s.fault.clone()));
        }
        for a in &sc.actions {
            let at = base + Duration::from_millis(u64::from(a.at_ms));
            self.push(at, Event::Client(usize::from(a.node) % n, a.act));
        }
        for (ms, node) in &sc.exchange_crashes {
            let at = base + Duration::from_millis(u64::from(*ms));
            self.push(at, Event::ArmExchangeCrash(usize::from(*node) % n));
        }
    }

    /// Current simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Runs until `until`, or until a check fails.
    pub fn run_until(&mut self, until: Instant) -> Result<(), Failure> {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now = at;
            self.events += 1;
            self.step(ev);
            if !self.violations.is_empty() {
                return Err(Failure {
                    reasons: self.violations.clone(),
                    at: self.now,
                });
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    fn step(&mut self, ev: Event) {
        match ev {
            Event::Net {
                to,
                from,
                port,
                bytes,
            } => {
                let now = self.now;
                let Some(node) = self.hosts[to].node.as_mut() else {
                    return;
                };
                node.handle(now, Input::Packet { from, port, bytes });
                self.after_input(to);
            }
            Event::Wake(i) => {
                let now = self.now;
                if self.hosts[i].wake.is_some_and(|w| w <= now) {
                    self.hosts[i].wake = None;
                }
                let Some(node) = self.hosts[i].node.as_mut() else {
                    return;
                };
                if node.poll_timeout().is_some_and(|d| d <= now) {
                    node.handle_timeout(now);
                }
                self.after_input(i);
            }
            Event::Fault(f) => self.apply(f),
            Event::Start(i) => {
                if self.hosts[i].node.is_none() {
                    self.start(i);
                }
            }
            Event::Client(i, act) => self.client_act(i, act),
            Event::Answer(i, session, g) => {
                if self.hosts[i].node.is_some() {
                    if let Some(k) = self.hosts[i]
                        .clients
                        .iter()
                        .position(|c| c.session == session)
                    {
                        self.answer(i, k, GROUPS[g]);
                    }
                }
            }
            Event::ArmExchangeCrash(i) => self.armed.push(i),
        }
        if !self.armed.is_empty()
            && self
                .hosts
                .iter()
                .flat_map(|h| h.node.as_ref())
                .any(|n| n.clients().group_state() == "GGATHER")
        {
            for i in std::mem::take(&mut self.armed) {
                self.hosts[i].node = None;
                self.hosts[i].clients.clear();
            }
        }
    }

    fn apply(&mut self, f: Fault) {
        if self.links.apply(&f) {
            return;
        }
        let n = self.hosts.len();
        match f {
            Fault::Crash(x) => {
                let i = usize::from(x) % n;
                self.hosts[i].node = None;
                self.hosts[i].clients.clear();
            }
            Fault::Restart(x) => {
                let i = usize::from(x) % n;
                if self.hosts[i].node.is_none() {
                    self.start(i);
                }
            }
            _ => {}
        }
    }

    fn input(&mut self, i: usize, input: SessionInput) {
        let now = self.now;
        if let Some(node) = self.hosts[i].node.as_mut() {
            node.handle(now, Input::Client(input));
        }
        self.after_input(i);
    }

    fn client_act(&mut self, i: usize, act: Act) {
        if self.hosts[i].node.is_none() {
            return;
        }
        self.actions += 1;
        let pick = |k: u8, h: &Host| -> Option<usize> {
            (!h.clients.is_empty()).then(|| usize::from(k) % h.clients.len())
        };
        match act {
            Act::Connect => {
                if self.hosts[i].clients.len() < MAX_CLIENTS {
                    let g = GROUPS[usize::from(self.actions as u8) % GROUPS.len()];
                    if let Some(k) = self.connect(i) {
                        self.join(i, k, g);
                    }
                }
            }
            Act::Join(k, g) => {
                if let Some(k) = pick(k, &self.hosts[i]) {
                    self.join(i, k, GROUPS[usize::from(g) % GROUPS.len()]);
                }
            }
            Act::Leave(k, g) => {
                if let Some(k) = pick(k, &self.hosts[i]) {
                    let g = GROUPS[usize::from(g) % GROUPS.len()];
                    if self.hosts[i].clients[k].groups.remove(g) {
                        self.request(i, k, ServiceType::LEAVE_MESS, &[g], &[]);
                    }
                }
            }
            Act::Send(k, g, s) => {
                if let Some(k) = pick(k, &self.hosts[i]) {
                    let g = GROUPS[usize::from(g) % GROUPS.len()];
                    let service = SERVICES[usize::from(s) % SERVICES.len()];
                    self.multicast(i, k, service, g);
                }
            }
            Act::Kill(k) => {
                if let Some(k) = pick(k, &self.hosts[i]) {
                    let me = self.private(i, k);
                    let c = self.hosts[i].clients.remove(k);
                    self.raw_request(i, c.session, &c.user, ServiceType::KILL_MESS, &[&me], &[]);
                }
            }
            Act::Close(k) => {
                if let Some(k) = pick(k, &self.hosts[i]) {
                    let c = self.hosts[i].clients.remove(k);
                    self.input(i, SessionInput::Closed { session: c.session });
                }
            }
        }
    }

    /// Connects a client (handshake with NULL authentication); its index.
    fn connect(&mut self, i: usize) -> Option<usize> {
        let session = SessionId(self.next_session);
        self.next_session += 1;
        let user = format!("u{}", session.0);
        self.input(
            i,
            SessionInput::Connected {
                session,
                peer: Peer::Unix,
            },
        );
        let mut hello = Vec::new();
        encode_hello(&Hello::new(user.as_bytes(), true, false), &mut hello);
        self.input(
            i,
            SessionInput::Bytes {
                session,
                data: hello.into(),
            },
        );
        let mut auth = b"NULL".to_vec();
        auth.resize(90, 0);
        self.input(
            i,
            SessionInput::Bytes {
                session,
                data: auth.into(),
            },
        );
        // What arrived so far is the handshake.
        self.inboxes.insert((i, session.0), Inbox::default());
        let h = &mut self.hosts[i];
        h.node.as_ref()?;
        h.clients.push(Client {
            session,
            user,
            groups: BTreeSet::new(),
        });
        Some(h.clients.len() - 1)
    }

    fn private(&self, i: usize, k: usize) -> String {
        format!("#{}#{}", self.hosts[i].clients[k].user, daemon_name(i))
    }

    fn join(&mut self, i: usize, k: usize, g: &'static str) {
        if self.hosts[i].clients[k].groups.insert(g) {
            self.request(i, k, ServiceType::JOIN_MESS, &[g], &[]);
        }
    }

    fn multicast(&mut self, i: usize, k: usize, service: ServiceType, g: &str) {
        self.sent += 1;
        let body = format!(
            "{}{}:{}:{}",
            if is_ordered(service) { 'O' } else { 'U' },
            i,
            self.hosts[i].clients[k].session.0,
            self.sent
        );
        self.request(i, k, service, &[g], body.as_bytes());
    }

    fn request(&mut self, i: usize, k: usize, service: ServiceType, groups: &[&str], body: &[u8]) {
        let c = &self.hosts[i].clients[k];
        let (session, user) = (c.session, c.user.clone());
        self.raw_request(i, session, &user, service, groups, body);
    }

    fn raw_request(
        &mut self,
        i: usize,
        session: SessionId,
        user: &str,
        service: ServiceType,
        groups: &[&str],
        body: &[u8],
    ) {
        let sender = format!("#{user}#{}", daemon_name(i));
        let groups: Vec<GroupName> = groups
            .iter()
            .map(|g| GroupName::new(g.as_bytes()))
            .collect();
        let mut out = BytesMut::new();
        encode_message(
            service,
            GroupName::new(sender.as_bytes()),
            &groups,
            body,
            &mut out,
        );
        self.input(
            i,
            SessionInput::Bytes {
                session,
                data: out.freeze(),
            },
        );
    }

    /// Drains daemon `i`'s outputs (clients, network) and checks it; re-arms its wake-up.
    fn after_input(&mut self, i: usize) {
        let now = self.now;
        let mut sends = Vec::new();
        let mut to_clients = Vec::new();
        let mut closed = Vec::new();
        loop {
            let Some(node) = self.hosts[i].node.as_mut() else {
                return;
            };
            let Some(o) = node.poll_output() else {
                break;
            };
            match o {
                Output::Client(SessionOutput::Send { session, data }) => {
                    node.handle(
                        now,
                        Input::Client(SessionInput::Drained {
                            session,
                            messages: 1,
                        }),
                    );
                    to_clients.push((session, data));
                }
                Output::Client(SessionOutput::Close { session }) => closed.push(session),
                Output::Transmit(t) => sends.push((t.to, t.port, t.bytes)),
                Output::Monitor(_) => {}
            }
        }
        self.hosts[i]
            .clients
            .retain(|c| !closed.contains(&c.session));
        for (session, data) in to_clients {
            self.client_receives(i, session, &data);
        }
        let Some(node) = self.hosts[i].node.as_ref() else {
            return;
        };
        let now_state = (node.engine().ring_id(), node.clients().group_state());
        let seen = &mut self.seen[i];
        if seen.0 != Some(now_state) {
            seen.0 = Some(now_state);
            if seen.1.len() < 64 {
                seen.1.push(format!(
                    "{}ms {} {}",
                    now.as_micros() / 1000,
                    now_state.0,
                    now_state.1
                ));
            }
        }
        let v = node.clients().interop_violations();
        if !v.is_empty() {
            self.violations.extend(
                v.iter()
                    .map(|x| format!("d{}: {x} (5.0.1-state checker)", i + 1)),
            );
        }
        let next = node.poll_timeout();
        let from = self.ids[i];
        for (to, port, bytes) in sends {
            // The core decided where each datagram goes (relays, ROUTED copies, scast): a
            // segment broadcast reaches the other daemons of the sender's configured segment.
            let targets: Vec<usize> = match to {
                Target::Segment => (0..self.ids.len())
                    .filter(|j| {
                        *j != i
                            && super::segment_of(*j, self.ids.len(), self.opts.segments)
                                == super::segment_of(i, self.ids.len(), self.opts.segments)
                    })
                    .collect(),
                Target::Daemon(d) => self.ids.iter().position(|x| *x == d).into_iter().collect(),
            };
            for (j, delay) in self.links.route(&mut self.rng, i, targets) {
                let ev = Event::Net {
                    to: j,
                    from,
                    port,
                    bytes: bytes.clone(),
                };
                self.push(now + delay, ev);
            }
        }
        if let Some(t) = next {
            if self.hosts[i].wake.is_none_or(|w| t < w) {
                self.hosts[i].wake = Some(t);
                self.push(t, Event::Wake(i));
            }
        }
    }

    /// A message for a client: data messages are recorded and checked for duplicates.
    fn client_receives(&mut self, i: usize, session: SessionId, data: &[u8]) {
        let Some(inbox) = self.inboxes.get_mut(&(i, session.0)) else {
            return;
        };
        let mut buf = BytesMut::from(data);
        let Ok(Some(frame)) = decode_frame(&mut buf, Direction::ToClient) else {
            return;
        };
        let t = frame.header.service;
        if t.intersects(ServiceType::REG_MEMB_MESS) {
            inbox
                .members
                .insert(frame.header.sender.key(), frame.header.num_groups);
            return;
        }
        if t.intersects(ServiceType::MEMBERSHIP_MESS) || !t.intersects(ServiceType::REGULAR_MESS) {
            return;
        }
        let body = String::from_utf8_lossy(&frame.body()).into_owned();
        if inbox.got.iter().any(|(b, _)| *b == body) {
            self.violations.push(format!(
                "client {} at d{} received {body} twice",
                session.0,
                i + 1
            ));
        }
        inbox.got.push((body.clone(), body.starts_with('O')));
        // Request/response traffic: the first client of a daemon answers what it reads from
        // other daemons (not answers) a little later, so tokens kept for a local answer
        // (`ring::reply`) get topped up amid the faults.
        let from_elsewhere = body
            .get(1..)
            .and_then(|b| b.split(':').next())
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n != i);
        let first = self.hosts[i]
            .clients
            .first()
            .is_some_and(|c| c.session == session);
        let group = frame
            .group(0)
            .and_then(|g| GROUPS.iter().position(|x| g.text() == x.as_bytes()));
        if let (true, true, false, Some(g)) = (from_elsewhere, first, body.ends_with(":a"), group) {
            self.push(self.now + ANSWER_AFTER, Event::Answer(i, session, g));
        }
    }

    /// An answer (AGREED, marked so that nobody answers it in turn).
    fn answer(&mut self, i: usize, k: usize, g: &str) {
        self.sent += 1;
        let body = format!(
            "O{}:{}:{}:a",
            i, self.hosts[i].clients[k].session.0, self.sent
        );
        self.request(i, k, ServiceType::AGREED, &[g], body.as_bytes());
    }

    /// The ordered messages both clients received appear in the same order at both.
    pub fn check_order(&self) -> Result<(), Failure> {
        let lists: Vec<(&(usize, u64), Vec<&str>)> = self
            .inboxes
            .iter()
            .map(|(k, ib)| {
                (
                    k,
                    ib.got
                        .iter()
                        .filter(|(_, o)| *o)
                        .map(|(b, _)| b.as_str())
                        .collect(),
                )
            })
            .collect();
        for (a, (ka, la)) in lists.iter().enumerate() {
            let pos: BTreeMap<&str, usize> = la.iter().enumerate().map(|(p, b)| (*b, p)).collect();
            for (kb, lb) in lists.iter().skip(a + 1) {
                let mut last = None;
                for b in lb {
                    let Some(&p) = pos.get(b) else { continue };
                    if last.is_some_and(|l| p < l) {
                        return Err(Failure {
                            reasons: vec![format!(
                                "clients {ka:?} and {kb:?} received ordered messages in different orders (at {b})"
                            )],
                            at: self.now,
                        });
                    }
                    last = Some(p);
                }
            }
        }
        Ok(())
    }

    /// Heals links and restarts crashed daemons.
    pub fn heal_all(&mut self) {
        self.links.heal_all();
        self.armed.clear();
        self.queue
            .retain(|_, ev| !matches!(ev, Event::ArmExchangeCrash(_)));
        for i in 0..self.hosts.len() {
            if self.hosts[i].node.is_none() {
                self.start(i);
            }
        }
    }

    /// Every daemon up, operational, in one ring of all, no exchange running.
    pub fn converged(&self) -> bool {
        let mut ring = None;
        self.hosts.iter().all(|h| {
            h.node.as_ref().is_some_and(|n| {
                let e = n.engine();
                let same = *ring.get_or_insert(e.ring_id()) == e.ring_id();
                same && e.state() == State::Op
                    && e.members() == self.ids.as_slice()
                    && !n.clients().exchanging()
            })
        })
    }

    fn states(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| match &h.node {
                None => "down".to_owned(),
                Some(n) => format!(
                    "{:?} {:?} {:?} {} {} members={} exchanges={} gate_closed={} send_q={} exchange_q={} waiting={:?} clients={}",
                    n.engine().status(),
                    n.engine().stats(),
                    n.engine().state(),
                    n.engine().ring_id(),
                    n.clients().group_state(),
                    n.engine().members().len(),
                    n.clients().ring_stats().exchanges,
                    n.engine().exchanging(),
                    n.engine().send_queue_len(),
                    n.engine().exchange_queue_len(),
                    n.backlog(),
                    h.clients.len(),
                ),
            })
            .collect()
    }

    /// A report of the run so far.
    pub fn report(&self) -> DaemonReport {
        let (stats, engines): (Vec<_>, Vec<_>) = self
            .hosts
            .iter()
            .filter_map(|h| h.node.as_ref())
            .map(|n| (n.clients().ring_stats(), n.engine().stats()))
            .unzip();
        DaemonReport {
            end: self.now,
            events: self.events,
            received: self.inboxes.values().map(|i| i.got.len() as u64).sum(),
            actions: self.actions,
            exchanges: stats.iter().map(|s| s.exchanges).sum(),
            held: stats.iter().map(|s| s.held).sum(),
            completed_in_transition: stats.iter().map(|s| s.completed_in_transition).sum(),
            exchanges_cut: stats.iter().map(|s| s.exchanges_cut).sum(),
            reply_holds: engines.iter().map(|s| s.reply_holds).sum(),
            reply_hits: engines.iter().map(|s| s.reply_hits).sum(),
        }
    }
}

fn is_ordered(s: ServiceType) -> bool {
    s.intersects(ServiceType::CAUSAL)
        || s.intersects(ServiceType::AGREED)
        || s.intersects(ServiceType::SAFE)
}

/// Plays a whole-daemon scenario: the plan, then heal, converge, probe. `no_gate` plants the
/// canary (client messages not held during the exchange).
pub fn run_daemons(
    sc: &DaemonScenario,
    mut opts: Options,
    no_gate: bool,
) -> Result<DaemonReport, Failure> {
    opts.accelerated |= sc.accelerated;
    opts.segments = sc.segments.max(opts.segments);
    let n = usize::from(sc.nodes.max(1));
    let bound = opts.converge_bound;
    let mut sim = DaemonSim::new(n, sc.seed, opts, no_gate);
    sim.schedule(sc);
    let plan_end = sc
        .faults
        .iter()
        .map(|s| s.at_ms)
        .chain(sc.actions.iter().map(|a| a.at_ms))
        .chain(sc.late.iter().map(|l| l.1))
        .chain(sc.exchange_crashes.iter().map(|c| c.0))
        .max()
        .unwrap_or(0);
    let end = sim.now() + Duration::from_millis(u64::from(plan_end) + 500);
    sim.run_until(end)?;
    sim.heal_all();
    let deadline = sim.now() + bound;
    while !sim.converged() {
        if sim.now() >= deadline {
            return Err(Failure {
                reasons: vec![format!(
                    "no convergence within {bound:?} of healing: {:?}",
                    sim.states()
                )],
                at: sim.now(),
            });
        }
        let t = sim.now() + Duration::from_millis(100);
        sim.run_until(t)?;
    }
    // Probe: a fresh client on every daemon joins, then each sends one AGREED message.
    let sessions: Vec<(usize, u64)> = (0..n)
        .filter_map(|i| {
            let k = sim.connect(i)?;
            sim.join(i, k, PROBE);
            Some((i, sim.hosts[i].clients[k].session.0))
        })
        .collect();
    // Each probe client waits until it sees all of them in the group (the ring may still
    // re-form once: a token lost just before the heal).
    let probe = GroupName::new(PROBE.as_bytes()).key();
    let deadline = sim.now() + Duration::from_secs(15);
    loop {
        let t = sim.now() + Duration::from_millis(20);
        sim.run_until(t)?;
        let all = sessions.len() == n
            && sessions.iter().all(|key| {
                sim.inboxes
                    .get(key)
                    .and_then(|ib| ib.members.get(&probe))
                    .is_some_and(|m| *m as usize == n)
            });
        if all {
            break;
        }
        if sim.now() >= deadline {
            return Err(Failure {
                reasons: vec![format!(
                    "probe clients never all joined: {:?}; history {:?}",
                    sim.states(),
                    sim.seen.iter().map(|s| &s.1).collect::<Vec<_>>()
                )],
                at: sim.now(),
            });
        }
    }
    for &(i, session) in &sessions {
        if let Some(k) = sim.hosts[i]
            .clients
            .iter()
            .position(|c| c.session.0 == session)
        {
            sim.multicast(i, k, ServiceType::AGREED, PROBE);
        }
    }
    let deadline = sim.now() + Duration::from_secs(5);
    loop {
        let t = sim.now() + Duration::from_millis(20);
        sim.run_until(t)?;
        let all = sessions.iter().all(|key| {
            sim.inboxes
                .get(key)
                .is_some_and(|ib| ib.got.iter().filter(|(b, _)| b.starts_with('O')).count() >= n)
        });
        if all && sessions.len() == n {
            break;
        }
        if sim.now() >= deadline {
            return Err(Failure {
                reasons: vec![format!(
                    "probe messages not received by every probe client {:?}: {:?}; history {:?}; daemons {:?}",
                    sessions
                        .iter()
                        .map(|k| sim.inboxes.get(k).map(|ib| ib.got.clone()))
                        .collect::<Vec<_>>(),
                    sim.states(),
                    sim.seen.iter().map(|s| &s.1).collect::<Vec<_>>(),
                    (0..n)
                        .map(|i| sim.hosts[i].node.as_ref().map(|x| {
                            let g = GroupName::new(PROBE.as_bytes()).key();
                            (
                                x.clients().groups().members(&g).to_vec(),
                                x.clients().groups().group_id(&g),
                            )
                        }))
                        .collect::<Vec<_>>()
                )],
                at: sim.now(),
            });
        }
    }
    sim.check_order()?;
    Ok(sim.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three daemons start together; clients on each connect and join at once, while the
    /// first ring forms, and multicast with every service.
    fn formation(seed: u64) -> DaemonScenario {
        let mut actions = Vec::new();
        for k in 0..30u32 {
            let node = (k % 3) as u8;
            let act = match k % 5 {
                0 | 1 => Act::Connect,
                2 => Act::Join((k % 4) as u8, (k % 3) as u8),
                _ => Act::Send((k % 4) as u8, (k % 3) as u8, (k % 6) as u8),
            };
            actions.push(Action {
                at_ms: 5 + k * 60,
                node,
                act,
            });
        }
        DaemonScenario {
            nodes: 3,
            seed,
            accelerated: false,
            segments: 1,
            late: vec![(2, 900)],
            exchange_crashes: vec![],
            faults: vec![],
            actions,
        }
    }

    #[test]
    fn clients_joining_while_the_ring_forms_never_reach_a_daemon_in_the_exchange() {
        let sc = formation(1);
        let r = run_daemons(&sc, Options::default(), false).unwrap_or_else(|f| panic!("{sc}{f}"));
        eprintln!("{r:?}");
        assert!(r.exchanges >= 3, "{r:?}");
        assert!(r.received > 0, "{r:?}");
    }

    #[test]
    fn regression_probe_after_a_partition_heals() {
        use super::super::Step;
        let a = |at_ms, node, act| Action { at_ms, node, act };
        let sc = DaemonScenario {
            nodes: 2,
            seed: 0x15,
            accelerated: true,
            segments: 1,
            late: vec![(4, 274), (2, 1877)],
            exchange_crashes: vec![],
            faults: vec![
                Step {
                    at_ms: 6371,
                    fault: Fault::Partition(vec![0, 2, 0, 1, 0, 0, 0]),
                },
                Step {
                    at_ms: 3960,
                    fault: Fault::Restart(2),
                },
            ],
            actions: vec![
                a(5539, 0, Act::Connect),
                a(419, 1, Act::Send(3, 2, 4)),
                a(2186, 1, Act::Connect),
                a(2265, 4, Act::Send(3, 2, 1)),
                a(208, 0, Act::Leave(1, 0)),
                a(176, 2, Act::Join(2, 2)),
                a(638, 0, Act::Kill(2)),
                a(1998, 0, Act::Send(3, 0, 5)),
                a(1459, 0, Act::Leave(0, 2)),
                a(1427, 4, Act::Send(3, 0, 5)),
                a(6537, 1, Act::Leave(3, 1)),
                a(773, 1, Act::Connect),
                a(39, 0, Act::Send(1, 2, 5)),
                a(926, 1, Act::Kill(2)),
                a(1647, 1, Act::Send(3, 1, 0)),
                a(6552, 3, Act::Connect),
                a(559, 3, Act::Join(3, 1)),
                a(1048, 4, Act::Kill(1)),
                a(358, 3, Act::Close(2)),
                a(3252, 2, Act::Send(3, 0, 2)),
                a(2435, 2, Act::Kill(3)),
                a(363, 1, Act::Join(2, 1)),
                a(880, 0, Act::Join(1, 0)),
                a(1930, 0, Act::Send(1, 1, 5)),
                a(6549, 3, Act::Kill(2)),
                a(2466, 2, Act::Connect),
                a(1743, 0, Act::Close(0)),
                a(245, 2, Act::Leave(2, 2)),
                a(1123, 0, Act::Connect),
                a(2384, 0, Act::Close(1)),
            ],
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        run_daemons(&sc, Options::default(), false).unwrap_or_else(|f| panic!("{sc}{f}"));
    }

    #[test]
    fn canary_without_the_exchange_gate_the_checker_fails() {
        let sc = formation(1);
        let f = run_daemons(&sc, Options::default(), true)
            .expect_err("client messages sent during the exchange must be caught");
        assert!(
            f.reasons.iter().any(|r| r.contains("5.0.1-state checker")),
            "{f}"
        );
    }
}
