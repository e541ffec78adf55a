//! Token-ring total order with Extended Virtual Synchrony, sans-IO.
//!
//! [`Engine`] is one daemon's ring protocol: token circulation, sequence numbers and aru,
//! retransmission requests, flow control (`Window`, `PersonalWindow`), fragmentation of large
//! messages and packing of small ones, and — together with [`crate::memb`] — the membership
//! protocol (gather, form, EVS recovery, install).
//!
//! # Calling contract (quinn style)
//!
//! * inputs: [`Engine::handle`] with an [`Input`] (a datagram from a peer, or a message to
//!   order) and [`Engine::handle_timeout`] when [`Engine::poll_timeout`] is due;
//! * outputs: after every input drain [`Engine::poll_output`] until it returns `None`:
//!   [`Output::Send`] datagrams, [`Output::Deliver`] ordered messages and
//!   [`Output::Configuration`] changes;
//! * getters: [`Engine::stats`], [`Engine::state`], [`Engine::ring_id`], …
//!
//! Every method that needs the time takes `now`; the engine never reads a clock, never does
//! I/O and never iterates a hash map.
//!
//! # Boundary with the daemon (sessions and groups)
//!
//! The composite daemon feeds each client message as `Input::Submit { service, payload }`
//! (the payload is opaque here: in mbus it is the 5.0.1 message header, group names and body)
//! and takes, in this order and interleaved exactly as emitted:
//! * `Deliver(d)` — `d.ring` is the regular configuration the message belongs to;
//!   `d.transitional` says it is delivered in the transitional configuration closing it;
//! * `Configuration { kind: Transitional, .. }` then `Configuration { kind: Regular, .. }` at
//!   every membership change (every message of the old ring that will ever be delivered has
//!   been delivered before the regular configuration).
//!
//! Services are delivered by 5.0.1's rules (see the `deliver` module): RELIABLE (and
//! UNRELIABLE) packets of whole messages on receipt, FIFO/AGREED/CAUSAL in sequence order,
//! SAFE once the ring-wide aru shows every member has them, or in the transitional
//! configuration.
//!
//! # Relation to Spread 5.0.1
//!
//! On the wire: the engine receives, keeps and sends the packet types of
//! [`crate::wire::daemon`] themselves (one packet model: [`w::Packet`] for data, ALIVE, JOIN,
//! REFER and HURRY, [`w::Token`] for the regular, FORM1 and FORM2 tokens; received ones are
//! kept as this daemon's own copy — native byte order, itself as transmitter — which is what
//! it sends on). Data packets, fragments and packing, regular tokens (arq/retrans, aru rules,
//! retransmission blocks, flow control), FORM1/FORM2 tokens and the EVS token (seq 0, aru
//! climbing to the FORM seq = highest + 3333) are 5.0.1's, byte for byte. Behaviour reproduced: idle token held by the leader by 5.0.1's rule
//! (`Token_counter`: only once every member has seen every message stable, so SAFE never
//! waits for it) and re-sent every Hurry_timeout, HURRY to release it, FORM and first tokens sent twice, re-sent tokens three
//! times when retrans > 1, leader = first member in configuration order, SEG_REPs before
//! RING_REPs in FORM1, lookup JOIN every Lookup_timeout, original and Accelerated Ring. A real
//! 5.0.1 daemon and this engine form one ring (tests/it/ring_interop.rs).
//!
//! Membership ([`crate::memb`]) follows 5.0.1's state machine, several segments included:
//! SEG/REPRESENTED election by ALIVE, JOINs scast in the segment and unicast to the potential
//! representatives of the other segments, REFER, the lookup (scast with one segment, unicast
//! to every missing daemon with several), foreign packets forwarded to the leader, and the
//! wide-area extra token copy. `Dest::Segment` is 5.0.1's scast; `Dest::Broadcast` (data
//! packets only) is "every daemon of the ring", which the network layer implements (segment
//! broadcast plus ROUTED unicast copies to the other segments' relays). The token path is
//! configuration order, as in 5.0.1. FORM ring entries carry 5.0.1's commit sets, and after a
//! hole the old ring's messages of the commit set are delivered (5.0.1 `Commit_membership`).
//! Monitor control packets (STATUS, PARTITION, FC, RELOAD) never reach the engine: the node
//! handles them ([`crate::daemon::monitor`]), using [`Engine::status`] and
//! [`Engine::set_flow_control`].

//! # Guarantees checked by the simulator (`spread::sim`, feature `sim`)
//!
//! Same order of AGREED/SAFE messages at every daemon of a configuration; per-sender FIFO for
//! FIFO and stronger services; identical delivered sets for daemons moving together (RELIABLE
//! messages of a sender outside the transitional set excepted, as in 5.0.1); no duplicates, no
//! inventions; SAFE in a regular configuration only when every member has the message.

mod deliver;
mod receive;
mod reply;
mod send;
mod stable;
mod state;
pub(crate) mod token;
pub mod types;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::memb::Phase;
use crate::time::Instant;
use crate::wire::daemon as w;
pub(crate) use state::{Partial, Pending, RingState, TokenState};
pub use types::*;

/// How many passes [`Engine::handle_timeout`] makes over the timers at most.
const TIMER_PASSES: usize = 4;
/// Most messages waiting to be sent (5.0.1 blocks sessions at 500; we refuse beyond this).
pub const MAX_SEND_QUEUE: usize = 2000;
/// Largest message payload accepted by `Submit`.
pub const MAX_MESSAGE: usize = 144 * 1024;
/// Most payload bytes in the send queue (with [`MAX_SEND_QUEUE`] messages): 64 of the
/// largest messages.
pub const MAX_SEND_QUEUE_BYTES: usize = 64 * MAX_MESSAGE;
/// Highest seq may not run further than this ahead of the ring-wide aru (MAX_SEQ_GAP): bounds
/// the retransmission buffer.
pub const MAX_SEQ_GAP: u32 = 1600;
/// Most outputs queued before the shell drains them (a safety net; the shell drains after
/// every input).
pub const MAX_OUTPUTS: usize = 1 << 16;
/// Most sequence numbers this daemon asks for in one retransmission request.
pub const MAX_RTR_SEQS: usize = 512;
/// Most retransmission request blocks one token carries.
pub const MAX_RTR_BLOCKS: usize = MAX_PROCS_RING;
/// Most packets above its aru this daemon reports holding in a FORM ring entry.
pub const MAX_ENTRY_EXTRA: usize = 4096;
/// EVS gives up after this many token rounds (MAX_EVS_ROUNDS).
pub const MAX_EVS_ROUNDS: u32 = 500;
/// Time of the ring id a daemon starts with, before its first ring (5.0.1: −1): FORM ring
/// entries name it, so it must be 5.0.1's value.
pub const NO_RING_TIME: i32 = -1;
/// Gap 5.0.1 leaves between an old ring's highest seq and the EVS end marker.
pub const EVS_SEQ_GAP: u32 = 3333;

/// What [`Engine::status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingStatus {
    /// Ring-wide aru of the installed ring.
    pub aru: u32,
    /// Every seq up to this has been received.
    pub my_aru: u32,
    /// Highest seq seen in the installed ring.
    pub highest_seq: u32,
    /// Tokens processed in the installed ring.
    pub token_rounds: u32,
    /// Window in force.
    pub window: u16,
    /// PersonalWindow in force.
    pub personal_window: u16,
    /// Accelerated Ring protocol.
    pub accelerated: bool,
    /// AcceleratedWindow in force.
    pub accelerated_window: u16,
}

/// Membership state (numbers as in 5.0.1's membership.h where they exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// A ring is installed and running.
    Op,
    /// Ring lost: broadcasting ALIVEs in my segment to elect its representative.
    Seg,
    /// A daemon of my segment gathers for me (answering its JOINs with ALIVEs).
    Represented,
    /// Gathering a new membership (the ring may still run at a merging leader).
    Gather,
    /// Committed to a FORM token; waiting for FORM2.
    Form,
    /// FORM2 seen: recovering the old ring's messages before installing the new ring.
    Evs,
}

/// A bug the simulator can plant to prove the checker catches it.
#[cfg(any(test, feature = "sim"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Deliver the next message twice.
    DuplicateDelivery,
    /// Deliver the next SAFE message without waiting for the ring aru.
    EarlySafe,
    /// Deliver every non-SAFE packet of whole messages on receipt, as if RELIABLE.
    OrderlessDelivery,
    /// Mark RELIABLE packets delivered on receipt without delivering them.
    LoseReliable,
}

/// One daemon's ring + membership protocol engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    pub(crate) cfg: RingConfig,
    pub(crate) clock_base_secs: u32,
    pub(crate) last_time: u32,
    /// The membership phase and the data only it uses.
    pub(crate) phase: Phase,
    pub(crate) ring: RingState,
    pub(crate) timers: [Option<Instant>; Timer::COUNT],
    pub(crate) out: VecDeque<Output>,
    pub(crate) stats: Stats,
    pub(crate) send_q: VecDeque<Pending>,
    /// Payload bytes of the messages in `send_q` (bounded by [`MAX_SEND_QUEUE_BYTES`]).
    pub(crate) send_q_bytes: usize,
    /// 5.0.1's GROUPS down queue: the group-state exchange's messages
    /// ([`Input::SubmitExchange`]), sent before `send_q` and even while the exchange gate holds
    /// `send_q` back.
    pub(crate) exchange_q: VecDeque<Pending>,
    pub(crate) tok: TokenState,
    /// Whether holding the token for a local reply has been paying off ([`reply`]), for
    /// each [`reply::Awaited`].
    pub(crate) reply_habits: [reply::ReplyHabit; 2],
    /// Messages of other daemons delivered to local sessions since this daemon's last token
    /// visit ([`Engine::note_local_delivery`]: a local client may answer one).
    pub(crate) delivered_since_visit: u32,
    /// Own messages delivered to local sessions during this visit (one may answer).
    pub(crate) own_delivered: u32,
    /// Rep index 5.0.1 leaves in its JOINs (1 once this daemon created a FORM1).
    pub(crate) join_rep_index: i16,
    /// 5.0.1 Commit_set: me, or the members of the membership whose EVS I finished last
    /// (until the next installation); carried in FORM ring entries.
    pub(crate) commit_set: Vec<DaemonId>,
    /// The exchange gate ([`Engine::set_exchanging`]): while set, only `exchange_q` is sent
    /// and RELIABLE is delivered in order, not on receipt.
    pub(crate) exchanging: bool,
    /// Close the exchange gate at every installation ([`Engine::enable_exchange_gate`]).
    pub(crate) gate_at_install: bool,
    /// Datagrams were accepted (§1.1: hash, transmitter) before they reach this engine, by
    /// the whole daemon's network layer ([`crate::daemon::Topology`]): not checked twice.
    pub(crate) upstream_acceptance: bool,
    #[cfg(any(test, feature = "sim"))]
    pub(crate) bug: Option<PlantedBug>,
    /// Sim checker: what this daemon held of the rings it left (ring, my_aru, seqs above).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) past: VecDeque<(RingId, u32, Vec<u32>)>,
}

impl Engine {
    /// A fresh daemon (just started, or restarted after a crash). `clock_base_secs` is a
    /// wall-clock seconds value at `now`; ring ids use it plus elapsed time, forced strictly
    /// increasing.
    pub fn new(cfg: RingConfig, now: Instant, clock_base_secs: u32) -> Self {
        let me = cfg.me;
        let mut e = Self {
            cfg,
            clock_base_secs: clock_base_secs.wrapping_sub(secs(now)),
            last_time: 0,
            phase: Phase::Seg {
                heard: vec![me],
                potential: Vec::new(),
            },
            ring: RingState::new(
                RingId {
                    leader: me,
                    time: NO_RING_TIME,
                },
                vec![me],
            ),
            timers: [None; Timer::COUNT],
            out: VecDeque::new(),
            stats: Stats::default(),
            send_q: VecDeque::new(),
            send_q_bytes: 0,
            exchange_q: VecDeque::new(),
            tok: TokenState::default(),
            reply_habits: [reply::ReplyHabit::default(); 2],
            delivered_since_visit: 0,
            own_delivered: 0,
            join_rep_index: 0,
            commit_set: vec![me],
            exchanging: false,
            gate_at_install: false,
            upstream_acceptance: false,
            #[cfg(any(test, feature = "sim"))]
            bug: None,
            #[cfg(any(test, feature = "sim"))]
            past: VecDeque::new(),
        };
        e.start_membership(now);
        e
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Submit { service, payload } => self.on_submit(now, service, payload, false),
            Input::SubmitExchange {
                ring,
                service,
                payload,
            } => {
                if ring == self.ring.id {
                    self.on_submit(now, service, payload, true);
                } else {
                    self.stats.stale_exchange += 1;
                }
            }
            Input::Packet { from, port, bytes } => self.on_datagram(now, from, port, bytes),
        }
    }

    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.revisit_due();
        // A handler may arm another timer with a zero delay (5.0.1 queues such an event to run
        // at once, e.g. SEG's first ALIVE): run passes until nothing is due. Bounded, so a
        // handler that re-arms itself at `now` cannot spin (found by the daemon_stateful
        // campaign: a due timer survived the call).
        for _ in 0..TIMER_PASSES {
            let mut fired = false;
            for t in Timer::ALL {
                if self.timers[t as usize].is_some_and(|d| d <= now) {
                    self.timers[t as usize] = None;
                    self.on_timer(now, t);
                    fired = true;
                }
            }
            if !fired {
                break;
            }
        }
    }

    /// Next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.revisit_due();
        if self.out.is_empty() {
            // Every delivery of a visit that may wait for a reply has been handed out.
            self.decide_reply_hold();
        }
        self.out.pop_front()
    }

    /// Earliest armed deadline (a held token's due revisit counts as one).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .iter()
            .flatten()
            .chain(&self.tok.revisit_at)
            .min()
            .copied()
    }

    /// Visits the held token again if own messages are waiting for it
    /// ([`Engine::revisit_held_token`]).
    fn revisit_due(&mut self) {
        if let Some(at) = self.tok.revisit_at.take() {
            if self.holding_for_reply() {
                self.release_reply_hold(at);
            } else {
                self.revisit_held_token(at);
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// This daemon's id.
    pub fn id(&self) -> DaemonId {
        self.cfg.me
    }

    /// Membership state.
    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// Does the installed ring still run (OP, or a leader gathering to merge)?
    pub(crate) fn ring_alive(&self) -> bool {
        self.phase.ring_alive()
    }

    /// Id of the installed ring.
    pub fn ring_id(&self) -> RingId {
        self.ring.id
    }

    /// Members of the installed ring, configuration order.
    pub fn members(&self) -> &[DaemonId] {
        &self.ring.members
    }

    /// Figures of the installed ring for a monitor STATUS reply (fact sheet §11).
    pub fn status(&self) -> RingStatus {
        RingStatus {
            aru: self.ring.aru,
            my_aru: self.ring.my_aru,
            highest_seq: self.ring.highest,
            token_rounds: self.tok.round,
            window: self.cfg.window,
            personal_window: self.cfg.personal_window,
            accelerated: self.cfg.accelerated,
            accelerated_window: self.cfg.accelerated_window,
        }
    }

    /// Monitor FC (fact sheet §11): new `Window`, `PersonalWindow`, `AcceleratedWindow`
    /// (`None` keeps a value); used from the next token visit on.
    pub fn set_flow_control(
        &mut self,
        window: Option<u16>,
        personal_window: Option<u16>,
        accelerated_window: Option<u16>,
    ) {
        if let Some(w) = window {
            self.cfg.window = w;
        }
        if let Some(w) = personal_window {
            self.cfg.personal_window = w;
        }
        if let Some(w) = accelerated_window {
            self.cfg.accelerated_window = w;
        }
    }

    /// Messages waiting to be sent (client messages; the exchange's own are not counted).
    pub fn send_queue_len(&self) -> usize {
        self.send_q.len()
    }

    /// Payload bytes of the client messages waiting to be sent.
    pub fn send_queue_bytes(&self) -> usize {
        self.send_q_bytes
    }

    /// Exchange messages waiting to be sent.
    pub fn exchange_queue_len(&self) -> usize {
        self.exchange_q.len()
    }

    /// Has this daemon received packet `seq` of ring `ring` (sim checker hook)?
    #[cfg(any(test, feature = "sim"))]
    pub fn holds(&self, ring: RingId, seq: u32) -> bool {
        if ring == self.ring.id {
            return self.ring.holds(seq);
        }
        self.past
            .iter()
            .any(|(r, aru, above)| *r == ring && (seq <= *aru || above.contains(&seq)))
    }

    /// Sim checker: remember what was held of the ring being left.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn remember_ring(&mut self) {
        let r = &self.ring;
        let above = r
            .buf
            .range(r.my_aru.saturating_add(1)..)
            .map(|(s, _)| *s)
            .collect();
        self.past.push_back((r.id, r.my_aru, above));
        if self.past.len() > 16 {
            self.past.pop_front();
        }
    }

    /// Plants a bug (simulator canary).
    #[cfg(any(test, feature = "sim"))]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.bug = Some(bug);
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::TokenLoss | Timer::Form => self.on_token_loss(now),
            Timer::TokenHurry => self.on_hurry_timer(now),
            Timer::Join => self.on_join_timer(now),
            Timer::Gather => self.on_gather_timer(now),
            Timer::Lookup => self.on_lookup(now),
            Timer::Alive => self.on_alive_timer(now),
            Timer::Seg => self.on_seg_timer(now),
            Timer::Rep => self.on_rep_timer(now),
            Timer::ReplyWait => self.release_reply_hold(now),
        }
    }

    fn on_submit(&mut self, now: Instant, service: Service, payload: Bytes, exchange: bool) {
        let q = if exchange {
            &mut self.exchange_q
        } else {
            &mut self.send_q
        };
        let over_bytes = !exchange && self.send_q_bytes + payload.len() > MAX_SEND_QUEUE_BYTES;
        if q.len() >= MAX_SEND_QUEUE || payload.len() > MAX_MESSAGE || over_bytes {
            self.stats.queue_full += 1;
            return;
        }
        if !exchange {
            self.send_q_bytes += payload.len();
        }
        // A daemon configured alone never puts a data packet on the wire: a message of any size
        // is one packet there (one buffer entry and one delivery instead of one per 1432 bytes).
        let total = if self.configured_alone() {
            1
        } else {
            payload.len().div_ceil(w::MAX_PACKET_BODY).max(1)
        };
        let had = self.has_sendable();
        let q = if exchange {
            &mut self.exchange_q
        } else {
            &mut self.send_q
        };
        q.push_back(Pending {
            class: service.class(),
            payload,
            next: 0,
            total,
        });
        if self.holding_for_reply() && self.has_sendable() {
            // The reply the token is kept for: it leaves with it at the next output poll (with
            // every other message of the same input).
            self.tok.revisit_at = Some(now);
        } else if !had && self.has_sendable() {
            self.hurry(now);
        }
    }

    /// Something in the down queues may be sent now (the exchange gate holds `send_q`).
    pub(crate) fn has_sendable(&self) -> bool {
        !self.exchange_q.is_empty() || (!self.exchanging && !self.send_q.is_empty())
    }

    /// Asks for the token when it is (about to be) held (5.0.1 `Prot_new_message`): the
    /// leader handles it as a HURRY, others send HURRY to the leader. While the ring is busy
    /// the token comes by anyway.
    fn hurry(&mut self, now: Instant) {
        if !self.ring_alive() || !self.would_hold() {
            return;
        }
        if self.is_leader() {
            if self.tok.holding && self.has_sendable() {
                self.tok.revisit_at = Some(now);
            } else {
                self.on_hurry(now);
            }
        } else {
            let leader = self.ring.members[0];
            let p = w::Packet::hurry(self.cfg.me, self.cfg.conf_hash);
            self.send_packet(Dest::Unicast(leader), &p);
        }
    }

    /// Closes the exchange gate at every installation of a regular configuration, as 5.0.1
    /// does when its group layer starts a state exchange (`Prot_set_down_queue(GROUPS)`,
    /// delivery threshold AGREED); the daemon opens it with [`Engine::set_exchanging`] once it
    /// knows no exchange runs, or when the exchange completes. Off by default (an engine
    /// without a group layer never closes it).
    pub fn enable_exchange_gate(&mut self) {
        self.gate_at_install = true;
    }

    /// The exchange gate. While closed, only [`Input::SubmitExchange`] messages are sent
    /// (client messages wait in the send queue, unsent: 5.0.1's GROUPS down queue) and
    /// RELIABLE packets are delivered in order instead of on receipt (5.0.1's delivery
    /// threshold AGREED). Opening delivers every RELIABLE packet waiting above a hole and asks
    /// for the token if messages wait.
    pub fn set_exchanging(&mut self, now: Instant, exchanging: bool) {
        let was = std::mem::replace(&mut self.exchanging, exchanging);
        if was && !exchanging {
            let top = self.ring.highest;
            self.deliver_reliable(1..=top);
            if !self.send_q.is_empty() && self.exchange_q.is_empty() {
                self.hurry(now);
            }
        }
    }

    /// Is the exchange gate closed?
    pub fn exchanging(&self) -> bool {
        self.exchanging
    }

    // ---- helpers shared by ring and membership ----

    pub(crate) fn arm(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }

    pub(crate) fn cancel(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    /// Sends a token-port datagram.
    pub(crate) fn send_token(&mut self, to: Dest, t: &w::Token) {
        // As 5.0.1's network layer: every datagram leaves with the hash in force (a copy kept
        // from before a configuration reload carries the old one).
        let bytes = if t.header.conf_hash == self.cfg.conf_hash {
            Bytes::from(t.to_vec())
        } else {
            let mut t = t.clone();
            t.header.conf_hash = self.cfg.conf_hash;
            Bytes::from(t.to_vec())
        };
        self.emit(Output::Send {
            to,
            port: Port::Token,
            bytes,
        });
    }

    /// Sends a data-port packet.
    pub(crate) fn send_packet(&mut self, to: Dest, p: &w::Packet) {
        // A daemon configured alone: a broadcast or scast reaches nobody (5.0.1's scast sends
        // nothing when the segment has only me), so it is not even encoded.
        if matches!(to, Dest::Broadcast | Dest::Segment) && self.configured_alone() {
            return;
        }
        // Never expected (only a daemon configured alone builds packets over the wire limit,
        // and it sends none), but an oversized packet must not reach a 5.0.1 peer.
        if matches!(&p.body, w::PacketBody::Data(d) if d.encoded_len() > w::MAX_PACKET_BODY) {
            self.stats.dropped += 1;
            return;
        }
        let bytes = if p.header.conf_hash == self.cfg.conf_hash {
            Bytes::from(p.to_vec())
        } else {
            // A packet kept from before a configuration reload (retransmitted, EVS).
            let mut p = p.clone();
            p.header.conf_hash = self.cfg.conf_hash;
            Bytes::from(p.to_vec())
        };
        self.emit(Output::Send {
            to,
            port: Port::Data,
            bytes,
        });
    }

    /// No other daemon in my configuration: nothing I broadcast can be heard.
    pub(crate) fn configured_alone(&self) -> bool {
        self.cfg.daemons.len() <= 1
    }

    pub(crate) fn emit(&mut self, o: Output) {
        if self.out.len() < MAX_OUTPUTS {
            self.out.push_back(o);
        } else {
            self.stats.dropped += 1;
        }
    }

    /// Position in configuration order.
    pub(crate) fn rank(&self, d: DaemonId) -> Option<usize> {
        self.cfg.daemons.iter().position(|x| *x == d)
    }

    pub(crate) fn sort_by_rank(&self, v: &mut Vec<DaemonId>) {
        v.sort_by_key(|d| self.rank(*d).unwrap_or(usize::MAX));
        v.dedup();
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.ring.members.first() == Some(&self.cfg.me)
    }

    /// A fresh seconds-based time, strictly larger than any used before (5.0.1 keeps it in
    /// an int32; the bits are the same).
    pub(crate) fn next_time(&mut self, now: Instant) -> i32 {
        let t = self.clock_base_secs.wrapping_add(secs(now));
        self.last_time = t.max(self.last_time.wrapping_add(1)).max(1);
        self.last_time as i32
    }
}

fn secs(now: Instant) -> u32 {
    u32::try_from(now.as_micros() / 1_000_000).unwrap_or(u32::MAX)
}

/// Successor and predecessor of `me` in `members`.
pub(crate) fn neighbours(members: &[DaemonId], me: DaemonId) -> Option<(DaemonId, DaemonId)> {
    let i = members.iter().position(|d| *d == me)?;
    let n = members.len();
    Some((members[(i + 1) % n], members[(i + n - 1) % n]))
}

#[cfg(test)]
mod tests;
