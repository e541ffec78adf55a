//! [`Clients`]: the sans-IO composite of sessions, group state and delivery.
//!
//! # Calling contract (as quinn's `Connection`)
//!
//! * **Inputs**: [`Clients::handle`] with an [`SessionInput`] (a connection opened, bytes read, the
//!   peer closed, bytes written), and [`Clients::handle_timeout`] when [`Clients::poll_timeout`]
//!   is due. Every method that needs the time takes `now`.
//! * **Outputs**: after every input, drain [`Clients::poll_output`] until `None`: bytes to write
//!   to a session ([`SessionOutput::Send`], one message per item, in order) and sessions to close
//!   ([`SessionOutput::Close`]: close it now, dropping whatever its socket does not take at once).
//! * **Back-pressure**: report written messages with [`SessionInput::Drained`] and a socket that
//!   refused bytes with [`SessionInput::Blocked`]; a session whose socket is blocked with
//!   `max_session_messages` messages not yet written is killed (5.0.1's slow-reader rule:
//!   only messages the socket refused count, not messages merely in flight to the writer),
//!   and so is one whose unwritten bytes would pass `max_session_messages` ×
//!   [`crate::session::LARGEST_MESSAGE`] (see [`crate::session::backlog`]). The daemon never
//!   asks the caller to slow down: other sessions go on at their own pace.
//!
//! Requests leave as 5.0.1 messages for the token ring ([`Clients::poll_submission`]) and
//! come back from it in the agreed order ([`Clients::on_delivery`]), from every daemon of the
//! ring, where they are applied as [`Event`]s. There is no other ordering path: a daemon alone
//! is a one-daemon ring ([`crate::Daemon`] drives this part).

mod exchange;
#[cfg(test)]
mod exchange_tests;
mod handshake;
mod ring;
#[cfg(test)]
mod slow_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pword;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace};

use crate::groups::{message, Change, Entry, Groups, Member, RingId};
use crate::ring::DaemonId;
use crate::session::{
    next_request, AuthConfig, AuthMethod, Peer, Phase, Request, Session, SessionId, Violation,
};
use crate::time::Instant;
use crate::wire::client::{
    encode_header, ByteOrder, Frame, GroupName, MessageHeader, RejectCode, ServiceType, HEADER_LEN,
    MAX_PROC_NAME,
};
pub use ring::RingStats;

/// 5.0.1's `MAX_SESSIONS`: `(2000 - 5) / 2`.
pub const DEFAULT_MAX_SESSIONS: usize = 997;
/// 5.0.1's default `MaxSessionMessages`.
pub const DEFAULT_MAX_SESSION_MESSAGES: usize = 1000;
/// 5.0.1's `MAX_LOCAL_GROUP_MEMBERS`: a JOIN beyond it gets a REJECT_MESS (reachable only
/// with `MaxSessions` raised above it).
pub const MAX_LOCAL_GROUP_MEMBERS: usize = 3122;
/// Bound on attempts to invent a unique name for a session that asked for none.
const MAX_NAME_ATTEMPTS: usize = 10_000;

/// What the daemon needs to know about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The daemon's name (config entry / `-n`), at most 19 bytes (longer is cut).
    pub name: String,
    /// The daemon's id (5.0.1 derives it from its address), word 1 of group ids.
    pub proc_id: i32,
    /// Position of this daemon in the configuration (member sort key).
    pub position: u16,
    /// Formation time of the first ring configuration (Unix seconds), word 2 of group ids.
    pub ring_time: i32,
    /// Session quota (`REJECT_QUOTA` beyond it).
    pub max_sessions: usize,
    /// Messages queued for a session before it is killed as a slow reader.
    pub max_session_messages: usize,
    /// Authentication methods.
    pub auth: AuthConfig,
    /// Seed of the generator used for invented private names.
    pub seed: u64,
}

impl DaemonConfig {
    /// A config with 5.0.1's defaults for daemon `name`.
    pub fn new(name: &str, proc_id: i32, ring_time: i32) -> Self {
        Self {
            name: name.to_owned(),
            proc_id,
            position: 0,
            ring_time,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_session_messages: DEFAULT_MAX_SESSION_MESSAGES,
            auth: AuthConfig::default(),
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl DaemonConfig {
    /// The settings of host `me` in a parsed configuration file: its name, id (`VirtualID` or
    /// derived from the name), position, `MaxSessions`, `MaxSessionMessages` and the
    /// authentication lists (unknown method names are ignored; `PWORD` users come from
    /// `spread.access_pword`, which the caller reads).
    /// IP allow rules come from `spread.access_ip` ([`crate::session::auth::parse_access_ip`]),
    /// which the caller reads.
    pub fn from_config(
        config: &crate::config::Config,
        me: crate::config::HostId,
        ring_time: i32,
    ) -> Self {
        let (position, host) = config
            .hosts()
            .enumerate()
            .find(|(_, (id, _))| *id == me)
            .map(|(pos, (_, h))| (pos, Some(h)))
            .unwrap_or((0, None));
        let name = host.map_or("localhost", |h| h.name.as_str());
        let proc_id = host.map_or(0, |h| h.vid as i32);
        let methods = |list: &Option<Vec<String>>| -> Option<Vec<AuthMethod>> {
            list.as_ref().map(|l| {
                l.iter()
                    .filter_map(|m| AuthMethod::from_name(m.as_bytes()))
                    .collect()
            })
        };
        let mut cfg = Self::new(name, proc_id, ring_time);
        cfg.position = u16::try_from(position).unwrap_or(u16::MAX);
        cfg.max_sessions = config.max_sessions() as usize;
        cfg.max_session_messages = config.max_session_messages() as usize;
        if let Some(allowed) = methods(&config.options.allowed_auth_methods) {
            cfg.auth.allowed = allowed;
        }
        if let Some(required) = methods(&config.options.required_auth_methods) {
            cfg.auth.required = required;
        }
        cfg
    }
}

/// An input to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInput {
    /// A client connected (TCP, Unix socket or in-process).
    Connected {
        /// Its id, unique while connected.
        session: SessionId,
        /// Where from.
        peer: Peer,
    },
    /// Bytes read from a session (any split).
    Bytes {
        /// From whom.
        session: SessionId,
        /// What.
        data: Bytes,
    },
    /// The peer closed (or the connection failed).
    Closed {
        /// Which.
        session: SessionId,
    },
    /// The shell wrote this many of the session's [`SessionOutput::Send`] messages.
    Drained {
        /// Which.
        session: SessionId,
        /// How many messages were written completely.
        messages: usize,
    },
    /// The session's socket refused bytes (it is full): the messages not yet written wait
    /// for it. Cleared by the next [`SessionInput::Drained`] for the session.
    Blocked {
        /// Which.
        session: SessionId,
    },
}

/// An output of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutput {
    /// Write these bytes (one whole message, or one handshake reply) to the session.
    Send {
        /// To whom.
        session: SessionId,
        /// What.
        data: Bytes,
    },
    /// Close the session now. Queued bytes its socket takes at once may still go out (a
    /// reject byte, the last replies); the rest is dropped, as 5.0.1 frees a killed
    /// session's queue. The daemon has forgotten it.
    Close {
        /// Which.
        session: SessionId,
    },
}

/// An ordered event, applied to the group state in the agreed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A member joins a group.
    Join(Entry, GroupName),
    /// A member leaves a group.
    Leave(Member, GroupName),
    /// A member is gone.
    Disconnect(Member),
    /// A data message from a member.
    Data(Member, Frame),
}

/// Counters; "dropped and counted" is observable here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections seen.
    pub connections: u64,
    /// Sessions accepted.
    pub accepted: u64,
    /// Connect-time rejects sent, per code: quota, illegal name, not unique, version, auth.
    pub rejects: [u64; 5],
    /// Connections closed silently for not sending a hello in time.
    pub hello_timeouts: u64,
    /// Sessions killed for a protocol violation, per [`Violation::index`].
    pub violations: [u64; Violation::COUNT],
    /// Sessions killed for not reading.
    pub slow_reader_kills: u64,
    /// JOINs refused with REJECT_MESS (group full of local members).
    pub rejected_joins: u64,
    /// Requests processed.
    pub requests: u64,
    /// Messages handed out for writing.
    pub messages_out: u64,
    /// Inputs naming an unknown session (ignored).
    pub unknown_session_inputs: u64,
    /// Data messages received from local clients, per service ([`crate::ring::Service::index`]).
    pub messages_in: [u64; crate::ring::Service::COUNT],
    /// Bytes of [`ClientStats::messages_in`] (whole client frames).
    pub bytes_in: [u64; crate::ring::Service::COUNT],
    /// Data messages ordered by the ring and applied here (from every daemon), per service.
    pub messages_delivered: [u64; crate::ring::Service::COUNT],
    /// Bytes of [`ClientStats::messages_delivered`] (whole client frames).
    pub bytes_delivered: [u64; crate::ring::Service::COUNT],
    /// Sessions ended by their own KILL request.
    pub killed_by_request: u64,
    /// Sessions whose peer closed the connection.
    pub closed_by_peer: u64,
}

impl ClientStats {
    /// Total protocol violations (each closed only the offending session).
    pub fn protocol_violations(&self) -> u64 {
        self.violations.iter().sum()
    }

    fn count_reject(&mut self, code: RejectCode) {
        let i = match code {
            RejectCode::Quota => 0,
            RejectCode::IllegalName | RejectCode::NoName => 1,
            RejectCode::NotUnique => 2,
            RejectCode::Version => 3,
            _ => 4,
        };
        if let Some(c) = self.rejects.get_mut(i) {
            *c += 1;
        }
    }
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    /// It sent KILL.
    Kill,
    /// The peer closed.
    PeerClosed,
    /// It broke the protocol.
    Violation(Violation),
    /// It did not read.
    SlowReader,
}

/// A session accepted (`true`) or ended, for the membership log: session, peer, private
/// group, messages still queued to it.
pub(crate) type SessionLogEntry = (bool, SessionId, crate::session::Peer, GroupName, usize);

/// The daemon core. See the module doc for the calling contract.
#[derive(Debug)]
pub(crate) struct Clients {
    config: DaemonConfig,
    sessions: BTreeMap<SessionId, Session>,
    /// Private group names in use (reserved at hello, as 5.0.1).
    names: BTreeMap<GroupName, SessionId>,
    groups: Groups,
    outputs: VecDeque<SessionOutput>,
    timers: BTreeSet<(Instant, SessionId)>,
    /// Sessions to kill once the current event is applied.
    doomed: Vec<(SessionId, EndReason)>,
    rng: u64,
    delivery_seq: u64,
    /// Sessions other than its sender's that the last delivery from the ring went to (who may
    /// answer it: `ring::reply`); reset by each [`Clients::on_delivery`].
    answerers: usize,
    stats: ClientStats,
    /// The ring side: submissions, the group-state exchange.
    ring: Box<ring::RingSide>,
    /// Sessions accepted and ended, for the membership log (`-l y`), when enabled.
    pub(crate) session_log: Option<VecDeque<SessionLogEntry>>,
}

impl Clients {
    /// The client side of daemon `me` among `daemons` (configuration order; `me`'s index is
    /// its position, the member sort key), with no sessions.
    pub(crate) fn new(mut config: DaemonConfig, me: DaemonId, daemons: Vec<DaemonId>) -> Self {
        if let Some(p) = daemons.iter().position(|d| *d == me) {
            config.position = u16::try_from(p).unwrap_or(u16::MAX);
        }
        let mut cut = config.name.len().min(MAX_PROC_NAME);
        while !config.name.is_char_boundary(cut) {
            cut -= 1;
        }
        config.name.truncate(cut);
        let ring = RingId {
            leader: crate::ids::DaemonId(config.proc_id as u32),
            time: config.ring_time,
        };
        let rng = config.seed | 1;
        Self {
            config,
            sessions: BTreeMap::new(),
            names: BTreeMap::new(),
            groups: Groups::new(ring),
            outputs: VecDeque::new(),
            timers: BTreeSet::new(),
            doomed: Vec::new(),
            rng,
            delivery_seq: 0,
            answerers: 0,
            stats: ClientStats::default(),
            ring: Box::new(ring::RingSide::new(me, daemons)),
            session_log: None,
        }
    }

    /// This daemon's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// A configuration reload: the configured daemons are now `daemons` (configuration
    /// order). Group members keep their groups, their daemons' positions re-mapped; members
    /// of daemons no longer configured get positions past the new list (dropped at the next
    /// membership change, as the daemons that left).
    pub(crate) fn set_daemons(&mut self, daemons: Vec<DaemonId>) {
        let old = std::mem::take(&mut self.ring.daemons);
        let n = daemons.len();
        let map = |p: u16| -> u16 {
            let new = old
                .get(usize::from(p))
                .and_then(|d| daemons.iter().position(|x| x == d))
                .unwrap_or(n + usize::from(p));
            u16::try_from(new).unwrap_or(u16::MAX)
        };
        self.groups.remap_daemons(map);
        self.config.position = map(self.config.position);
        self.ring.departed = (0..old.len())
            .filter(|p| !daemons.contains(&old[*p]))
            .filter_map(|p| Some((old[p], map(u16::try_from(p).ok()?))))
            .collect();
        self.ring.daemons = daemons;
    }

    /// Counters.
    pub(crate) fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Group state.
    pub(crate) fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Number of sessions past the hello (what the quota counts).
    pub(crate) fn session_count(&self) -> usize {
        self.names.len()
    }

    /// Messages and bytes queued for the local sessions, not yet written (all sessions).
    pub(crate) fn session_backlog(&self) -> (usize, usize) {
        self.sessions.values().fold((0, 0), |(m, b), s| {
            (m + s.backlog.messages(), b + s.backlog.bytes())
        })
    }

    /// Number of connections, including those still in the handshake.
    #[cfg(any(test, feature = "sim", feature = "fuzzing"))]
    pub(crate) fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies one input.
    pub(crate) fn handle(&mut self, now: Instant, input: SessionInput) {
        match input {
            SessionInput::Connected { session, peer } => self.on_connected(now, session, peer),
            SessionInput::Bytes { session, data } => self.on_bytes(now, session, &data),
            SessionInput::Closed { session } => {
                if self.sessions.contains_key(&session) {
                    self.end(session, EndReason::PeerClosed);
                } else {
                    self.stats.unknown_session_inputs += 1;
                }
            }
            SessionInput::Drained { session, messages } => match self.sessions.get_mut(&session) {
                Some(s) => s.backlog.drained(messages),
                None => self.stats.unknown_session_inputs += 1,
            },
            SessionInput::Blocked { session } => match self.sessions.get_mut(&session) {
                Some(s) => s.backlog.block(),
                None => self.stats.unknown_session_inputs += 1,
            },
        }
        self.reap();
    }

    /// Fires every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            if s.deadline() != Some(at) {
                continue;
            }
            match s.phase {
                Phase::Hello { .. } => {
                    debug!(session = id.0, "no hello in time: silent close");
                    self.stats.hello_timeouts += 1;
                    self.drop_session(id);
                    self.outputs.push_back(SessionOutput::Close { session: id });
                }
                Phase::Auth { .. } | Phase::Pword { .. } => self.reject(id, RejectCode::Auth),
                Phase::Open => {}
            }
        }
        self.reap();
    }

    /// The next output, if any.
    pub(crate) fn poll_output(&mut self) -> Option<SessionOutput> {
        self.outputs.pop_front()
    }

    /// Sessions other than its sender's that the last delivery from the ring went to (0 for
    /// all but data messages).
    pub(crate) fn answerers(&self) -> usize {
        self.answerers
    }

    /// When [`Clients::handle_timeout`] must next be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    fn on_connected(&mut self, now: Instant, id: SessionId, peer: Peer) {
        self.stats.connections += 1;
        if self.sessions.contains_key(&id) {
            self.stats.unknown_session_inputs += 1;
            return;
        }
        if self.names.len() >= self.config.max_sessions {
            // 5.0.1 refuses right after accept(), before reading anything.
            self.stats.count_reject(RejectCode::Quota);
            self.send(id, Bytes::copy_from_slice(&[RejectCode::Quota.byte()]));
            self.outputs.push_back(SessionOutput::Close { session: id });
            return;
        }
        let s = Session::new(id, peer, now);
        if let Some(d) = s.deadline() {
            self.timers.insert((d, id));
        }
        self.sessions.insert(id, s);
    }

    fn on_bytes(&mut self, now: Instant, id: SessionId, data: &[u8]) {
        let Some(s) = self.sessions.get_mut(&id) else {
            self.stats.unknown_session_inputs += 1;
            return;
        };
        s.inbuf.extend_from_slice(data);
        // Each round consumes bytes or changes phase; the number of rounds is bounded by the
        // bytes buffered plus the two handshake phases.
        loop {
            let Some(s) = self.sessions.get(&id) else {
                return;
            };
            let progressed = match s.phase {
                Phase::Hello { .. } => self.step_hello(id),
                Phase::Auth { .. } => self.step_auth(now, id),
                Phase::Pword { then_ip, .. } => self.step_pword(id, then_ip),
                Phase::Open => {
                    self.step_open(id);
                    false
                }
            };
            if !progressed {
                return;
            }
        }
    }

    /// Processes every complete request of an open session.
    fn step_open(&mut self, id: SessionId) {
        loop {
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            if self.doomed.iter().any(|&(d, _)| d == id) {
                return;
            }
            let own = s.private_group;
            match next_request(&mut s.inbuf, &own) {
                Ok(None) => return,
                Err(v) => {
                    debug!(session = id.0, violation = %v, "protocol violation: killing session");
                    self.end(id, EndReason::Violation(v));
                    return;
                }
                Ok(Some(req)) => {
                    self.stats.requests += 1;
                    self.on_request(id, own, req);
                }
            }
        }
    }

    fn on_request(&mut self, id: SessionId, own: GroupName, req: Request) {
        let member = Member {
            daemon: self.config.position,
            name: own,
        };
        trace!(session = id.0, ?req, "request");
        match req {
            Request::Join(g, frame) => {
                let local = self
                    .groups
                    .members(&g)
                    .iter()
                    .filter(|e| e.session.is_some())
                    .count();
                if local >= MAX_LOCAL_GROUP_MEMBERS {
                    // 5.0.1 refuses the join with a REJECT_MESS to the requester.
                    let groups: Vec<GroupName> = frame.groups().collect();
                    let reject = message::reject(&frame.header, &groups, &frame.body(), own);
                    self.stats.rejected_joins += 1;
                    self.send(id, reject);
                    return;
                }
                self.order(Event::Join(
                    Entry {
                        member,
                        session: Some(id),
                    },
                    g,
                ));
            }
            Request::Leave(g) => self.order(Event::Leave(member, g)),
            Request::Kill => self.end(id, EndReason::Kill),
            Request::Multicast(frame) => self.order(Event::Data(member, frame)),
        }
    }

    /// Orders an event: it leaves as a submission for the ring and comes back through
    /// [`Clients::on_delivery`].
    fn order(&mut self, ev: Event) {
        self.submit(ev);
    }

    /// Applies an ordered event.
    pub(crate) fn apply(&mut self, ev: Event) {
        match ev {
            Event::Join(entry, g) => {
                if let Some(c) = self.groups.join(entry, &g) {
                    self.deliver_change(&c);
                }
            }
            Event::Leave(member, g) => {
                if let Some(c) = self.groups.leave(&member, &g) {
                    self.deliver_change(&c);
                }
            }
            Event::Disconnect(member) => {
                for c in self.groups.disconnect(&member) {
                    self.deliver_change(&c);
                }
            }
            Event::Data(member, frame) => self.deliver_data(&member, &frame),
        }
    }

    fn deliver_change(&mut self, c: &Change) {
        let mut by_set: Vec<Option<Bytes>> = vec![None; c.vs_sets.len().max(1)];
        for e in &c.members {
            let Some(sid) = e.session else { continue };
            if !self.sessions.get(&sid).is_some_and(|s| s.membership) {
                continue;
            }
            let set = c
                .vs_sets
                .iter()
                .position(|s| s.contains(&e.member))
                .unwrap_or(0);
            let Some(slot) = by_set.get_mut(set) else {
                continue;
            };
            let bytes = slot.get_or_insert_with(|| message::regular(c, set)).clone();
            self.send(sid, bytes);
        }
        if let Some(sid) = c.self_leave {
            if self.sessions.get(&sid).is_some_and(|s| s.membership) {
                self.send(sid, message::self_leave(c.group));
            }
        }
    }

    fn deliver_data(&mut self, sender: &Member, frame: &Frame) {
        let bytes = if frame.header.order == ByteOrder::Little {
            frame.raw.clone()
        } else {
            // Re-mark type/num_groups/data_len in our order; the hint stays as sent.
            let mut out = BytesMut::with_capacity(frame.raw.len());
            encode_header(
                &MessageHeader {
                    order: ByteOrder::Little,
                    ..frame.header
                },
                &mut out,
            );
            out.extend_from_slice(frame.raw.get(HEADER_LEN..).unwrap_or_default());
            out.freeze()
        };
        let self_discard = frame.header.service.intersects(ServiceType::SELF_DISCARD);
        self.delivery_seq += 1;
        let seq = self.delivery_seq;
        let mut recipients = Vec::new();
        for g in frame.groups() {
            if g.is_private() {
                if let Some(&sid) = self.names.get(&g.key()) {
                    recipients.push(sid);
                }
            } else {
                recipients.extend(self.groups.members(&g).iter().filter_map(|e| e.session));
            }
        }
        let sender_sid = self.names.get(&sender.name).copied();
        for sid in recipients {
            if self_discard && Some(sid) == sender_sid {
                continue;
            }
            let Some(s) = self.sessions.get_mut(&sid) else {
                continue;
            };
            if s.last_delivery == seq || !s.is_open() {
                continue;
            }
            s.last_delivery = seq;
            if Some(sid) != sender_sid {
                self.answerers += 1;
            }
            self.send(sid, bytes.clone());
        }
    }

    /// Queues one message for a session, or kills the session (after the current event) if
    /// its backlog refuses it ([`crate::session::Backlog::admit`]: 5.0.1's slow-reader rule,
    /// plus the byte cap).
    fn send(&mut self, id: SessionId, data: Bytes) {
        if let Some(s) = self.sessions.get_mut(&id) {
            let admit = s
                .backlog
                .admit(data.len(), self.config.max_session_messages);
            if let (true, Err(why)) = (s.is_open(), admit) {
                if !self.doomed.iter().any(|&(d, _)| d == id) {
                    debug!(
                        session = id.0,
                        ?why,
                        backlog = s.backlog.messages(),
                        "slow reader: killing session"
                    );
                    self.doomed.push((id, EndReason::SlowReader));
                }
                return;
            }
            s.backlog.push(data.len());
        }
        self.stats.messages_out += 1;
        self.outputs
            .push_back(SessionOutput::Send { session: id, data });
    }

    /// Ends sessions marked during the last event (each end may mark more; each removes one
    /// session, so this is bounded by the number of sessions).
    fn reap(&mut self) {
        while let Some((id, why)) = self.doomed.pop() {
            self.end(id, why);
        }
    }

    /// Ends a session: forgets it, tells its groups, closes it.
    fn end(&mut self, id: SessionId, why: EndReason) {
        self.doomed.retain(|&(d, _)| d != id);
        let Some(s) = self.drop_session(id) else {
            return;
        };
        match why {
            EndReason::Violation(v) => {
                if let Some(c) = self.stats.violations.get_mut(v.index()) {
                    *c += 1;
                }
            }
            EndReason::SlowReader => self.stats.slow_reader_kills += 1,
            EndReason::Kill => self.stats.killed_by_request += 1,
            EndReason::PeerClosed => self.stats.closed_by_peer += 1,
        }
        if s.is_open() {
            if let Some(log) = &mut self.session_log {
                log.push_back((false, id, s.peer, s.private_group, s.backlog.messages()));
            }
            let member = Member {
                daemon: self.config.position,
                name: s.private_group,
            };
            self.note_own_kill(why == EndReason::Kill);
            self.order(Event::Disconnect(member));
        }
        if why != EndReason::PeerClosed {
            self.outputs.push_back(SessionOutput::Close { session: id });
        }
    }

    /// Removes a session and its name and timer.
    fn drop_session(&mut self, id: SessionId) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(d) = s.deadline() {
            self.timers.remove(&(d, id));
        }
        if self.names.get(&s.private_group) == Some(&id) {
            self.names.remove(&s.private_group);
        }
        Some(s)
    }

    /// Sends one reject byte and closes.
    fn reject(&mut self, id: SessionId, code: RejectCode) {
        debug!(session = id.0, ?code, "connect rejected");
        self.stats.count_reject(code);
        self.send(id, Bytes::copy_from_slice(&[code.byte()]));
        self.drop_session(id);
        self.outputs.push_back(SessionOutput::Close { session: id });
    }

    fn set_phase(&mut self, id: SessionId, phase: Phase) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(d) = s.deadline() {
            self.timers.remove(&(d, id));
        }
        s.phase = phase;
        if let Some(d) = s.deadline() {
            self.timers.insert((d, id));
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic from the configured seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
