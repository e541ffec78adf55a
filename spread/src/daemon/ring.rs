//! The ring ordering backend of [`Daemon`]: requests leave as 5.0.1 messages to be ordered by
//! the token ring, ordered deliveries come back from every daemon, and daemon-configuration
//! changes run the group-state exchange (daemon fact sheet §7–§8, client fact sheet §5.3–5.4).
//!
//! # Contract (used by [`crate::node::Node`])
//!
//! * [`Daemon::enable_ring`] once, before any input: from then on every JOIN / LEAVE / KILL /
//!   disconnect / data message is not applied at once but queued as a submission; drain them
//!   with [`Daemon::poll_submission`] and hand them to the ring engine.
//! * Every [`Delivery`] of the engine goes to [`Daemon::on_delivery`], every configuration
//!   change to [`Daemon::on_configuration`], interleaved exactly as the engine emitted them.
//!
//! # Messages on the ring (5.0.1 layout, §7.1)
//!
//! Client header + groups + body, little-endian with the marker. JOIN `0x00010000` and LEAVE
//! `0x00020000` name the group; a session's own KILL is `KILL_MESS` naming its private group
//! (AGREED); a closed socket or a session the daemon killed is `KILL_MESS | SAFE_MESS` with no
//! group and travels SAFE; data messages travel as the client sent them.
//!
//! # Network changes
//!
//! * Transitional configuration: members on daemons that left are dropped; each local member
//!   of a group that lost members gets TRANSITION_MESS with the ending view's id.
//! * Regular configuration: the "synced set" (daemons that agree on the group state: the
//!   previous synced set ∩ the transitional set) decides. If it is the whole new ring, groups
//!   that lost members get a CAUSED_BY_NETWORK view with one vs-set and no GROUPS message is
//!   sent. Otherwise the synced set's first daemon (configuration order) multicasts its table
//!   as GROUPS messages (`GROUPS|RELIABLE`, the last `GROUPS|AGREED`); client messages
//!   delivered meanwhile are held; when the last message of every synced set is in and the
//!   set sizes add up to the ring's size, the tables are merged: a group present in several
//!   sets (or flagged changed) gets a CAUSED_BY_NETWORK view with id (new ring, 1) and one
//!   vs-set per set, ordered by the set's previous group id (signed), then its daemon; other
//!   groups keep their id and nobody hears of them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace};

use super::{Daemon, Event};
use crate::groups::{message, Entry, Member, RingId};
use crate::ring::{ConfigChange, ConfigKind, DaemonId, Delivery, Service};
use crate::wire::client::{
    decode_frame, encode_header, ByteOrder, Direction, GroupId, GroupName, Hint, MessageHeader,
    ServiceType,
};
use crate::wire::daemon::groups::{
    GroupBlock, GroupDaemon, GroupId as WireGroupId, GroupsBody, Message, MAX_GROUPS_BODY,
};
use crate::wire::daemon::{Endian, MembId, ProcId};

/// `AGREED_MESS`: the service bit of the last GROUPS message of a daemon.
const AGREED_BIT: u32 = 0x0000_0010;

/// Counters of the ring backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Delivered messages that did not decode (dropped).
    pub malformed: u64,
    /// Delivered messages from a daemon not in the configuration, or GROUPS messages of
    /// another ring (dropped).
    pub ignored: u64,
    /// GROUPS messages sent.
    pub groups_sent: u64,
    /// Group-state exchanges completed.
    pub exchanges: u64,
    /// Client messages held while an exchange ran.
    pub held: u64,
}

/// One synced set's table as received.
#[derive(Debug, Default)]
struct SetTable {
    synced: Vec<DaemonId>,
    blocks: Vec<GroupBlock>,
    done: bool,
}

/// A group-state exchange in progress.
#[derive(Debug)]
struct Exchange {
    ring: crate::ring::RingId,
    members: Vec<DaemonId>,
    /// By sending daemon (the set's representative).
    sets: BTreeMap<DaemonId, SetTable>,
    /// Client messages delivered before the exchange completed.
    held: VecDeque<Delivery>,
}

/// State of the ring backend.
#[derive(Debug)]
pub(crate) struct RingSide {
    me: DaemonId,
    daemons: Vec<DaemonId>,
    submissions: VecDeque<(Service, Bytes)>,
    /// GROUPS messages for the engine's exchange queue, with the ring they belong to.
    exchange_out: VecDeque<(crate::ring::RingId, Service, Bytes)>,
    members: Vec<DaemonId>,
    synced: Vec<DaemonId>,
    trans: Option<Vec<DaemonId>>,
    /// Groups that lost members since the last regular configuration.
    lost: BTreeSet<GroupName>,
    exchange: Option<Exchange>,
    stats: RingStats,
    /// The next disconnect is the session's own KILL request.
    own_kill: bool,
}

/// The ring engine's service for a client message type.
fn service_of(t: ServiceType) -> Service {
    if t.intersects(ServiceType::UNRELIABLE) {
        Service::Unreliable
    } else if t.intersects(ServiceType::RELIABLE) {
        Service::Reliable
    } else if t.intersects(ServiceType::FIFO) {
        Service::Fifo
    } else if t.intersects(ServiceType::CAUSAL) {
        Service::Causal
    } else if t.intersects(ServiceType::AGREED) {
        Service::Agreed
    } else if t.intersects(ServiceType::SAFE) {
        Service::Safe
    } else {
        Service::Agreed
    }
}

/// A daemon-originated request message (no body).
fn request(service: ServiceType, sender: GroupName, groups: &[GroupName]) -> Bytes {
    let mut out = BytesMut::with_capacity(48 + 32 * groups.len());
    encode_header(
        &MessageHeader {
            service,
            sender,
            num_groups: groups.len() as i32,
            hint: Hint::DAEMON,
            data_len: 0,
            order: ByteOrder::Little,
        },
        &mut out,
    );
    for g in groups {
        g.encode(&mut out);
    }
    out.freeze()
}

fn memb_id(r: crate::ring::RingId) -> MembId {
    MembId {
        proc_id: ProcId(r.leader.0),
        time: r.time as i32,
    }
}

fn set_key(id: &WireGroupId, rep: DaemonId) -> (i32, i32, u32) {
    (id.memb_id.proc_id.0 as i32, id.memb_id.time, rep.0)
}

impl Daemon {
    /// Switches to the ring backend: this daemon is `me` among `daemons` (configuration
    /// order). Its position (member sort key) becomes `me`'s index.
    pub fn enable_ring(&mut self, me: DaemonId, daemons: Vec<DaemonId>) {
        if let Some(p) = daemons.iter().position(|d| *d == me) {
            self.config.position = u16::try_from(p).unwrap_or(u16::MAX);
        }
        self.ring = Some(Box::new(RingSide {
            me,
            daemons,
            submissions: VecDeque::new(),
            exchange_out: VecDeque::new(),
            members: vec![me],
            synced: vec![me],
            trans: None,
            lost: BTreeSet::new(),
            exchange: None,
            stats: RingStats::default(),
            own_kill: false,
        }));
    }

    /// Counters of the ring backend (zero without one).
    pub fn ring_stats(&self) -> RingStats {
        self.ring.as_ref().map(|r| r.stats).unwrap_or_default()
    }

    /// True while a group-state exchange runs (client messages are held).
    pub fn exchanging(&self) -> bool {
        self.ring.as_ref().is_some_and(|r| r.exchange.is_some())
    }

    /// The next client message to submit to the ring engine ([`crate::ring::Input::Submit`]).
    pub fn poll_submission(&mut self) -> Option<(Service, Bytes)> {
        self.ring.as_mut()?.submissions.pop_front()
    }

    /// The next GROUPS message of the exchange of the given ring, for the engine's exchange
    /// queue ([`crate::ring::Input::SubmitExchange`]).
    pub fn poll_exchange_submission(&mut self) -> Option<(crate::ring::RingId, Service, Bytes)> {
        self.ring.as_mut()?.exchange_out.pop_front()
    }

    /// Ring backend: queues `ev` for ordering instead of applying it. Returns `ev` back if
    /// there is no ring backend.
    pub(super) fn submit(&mut self, ev: Event) -> Option<Event> {
        let Some(ring) = self.ring.as_mut() else {
            return Some(ev);
        };
        let item = match ev {
            Event::Join(entry, g) => (
                Service::Agreed,
                request(ServiceType::JOIN_MESS, entry.member.name, &[g]),
            ),
            Event::Leave(member, g) => (
                Service::Agreed,
                request(ServiceType::LEAVE_MESS, member.name, &[g]),
            ),
            // 5.0.1: a KILL request travels as the client sent it (AGREED, own private group
            // as the group); a closed socket or a session the daemon killed as KILL|SAFE with
            // no group, in a SAFE packet (§7.3).
            Event::Disconnect(member) if std::mem::take(&mut ring.own_kill) => (
                Service::Agreed,
                request(ServiceType::KILL_MESS, member.name, &[member.name]),
            ),
            Event::Disconnect(member) => (
                Service::Safe,
                request(ServiceType::KILL_MESS | ServiceType::SAFE, member.name, &[]),
            ),
            Event::Data(_, frame) => (service_of(frame.header.service), frame.raw),
            // Configuration changes come from the ring itself: applied locally, never ordered.
            ev @ Event::Configuration(..) => return Some(ev),
        };
        ring.submissions.push_back(item);
        None
    }

    /// Marks whether the next disconnect ordered is a session's own KILL.
    pub(super) fn note_own_kill(&mut self, own: bool) {
        if let Some(r) = self.ring.as_mut() {
            r.own_kill = own;
        }
    }

    /// An ordered message from the ring.
    pub fn on_delivery(&mut self, d: Delivery) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let is_groups = d.payload.len() >= 4
            && crate::wire::daemon::groups::MessageHeader::decode(&mut &d.payload[..])
                .is_ok_and(|h| h.is_groups());
        if is_groups {
            self.on_groups(&d);
        } else if let Some(ex) = ring.exchange.as_mut() {
            ring.stats.held += 1;
            ex.held.push_back(d);
        } else {
            self.apply_delivery(&d);
        }
        self.reap();
    }

    /// A configuration change from the ring.
    pub fn on_configuration(&mut self, c: ConfigChange) {
        if self.ring.is_none() {
            return;
        }
        match c.kind {
            ConfigKind::Transitional => self.on_transitional(c.members),
            ConfigKind::Regular => self.on_regular(c.ring, c.members),
        }
        self.reap();
    }

    fn position_of(&self, d: DaemonId) -> Option<u16> {
        let ring = self.ring.as_ref()?;
        let p = ring.daemons.iter().position(|x| *x == d)?;
        u16::try_from(p).ok()
    }

    fn local_entry(&self, member: Member) -> Entry {
        let session = if member.daemon == self.config.position {
            self.names.get(&member.name).copied()
        } else {
            None
        };
        Entry { member, session }
    }

    fn count(&mut self, malformed: bool) {
        if let Some(r) = self.ring.as_mut() {
            if malformed {
                r.stats.malformed += 1;
            } else {
                r.stats.ignored += 1;
            }
        }
    }

    /// Decodes a client-level message and applies it as an event.
    fn apply_delivery(&mut self, d: &Delivery) {
        let Some(pos) = self.position_of(d.sender) else {
            self.count(false);
            return;
        };
        let mut buf = BytesMut::from(&d.payload[..]);
        let frame = match decode_frame(&mut buf, Direction::ToDaemon) {
            Ok(Some(f)) if buf.is_empty() => f,
            _ => {
                self.count(true);
                return;
            }
        };
        let member = Member {
            daemon: pos,
            name: frame.header.sender.key(),
        };
        let t = frame.header.service;
        trace!(sender = %d.sender, ty = t.0, "ordered message");
        if t.intersects(ServiceType::JOIN_MESS) || t.intersects(ServiceType::LEAVE_MESS) {
            let Some(g) = frame.group(0) else {
                self.count(true);
                return;
            };
            if t.intersects(ServiceType::JOIN_MESS) {
                let entry = self.local_entry(member);
                self.apply(Event::Join(entry, g));
            } else {
                self.apply(Event::Leave(member, g));
            }
        } else if t.intersects(ServiceType::KILL_MESS) {
            self.apply(Event::Disconnect(member));
        } else {
            self.apply(Event::Data(member, frame));
        }
    }

    fn on_transitional(&mut self, members: Vec<DaemonId>) {
        // An exchange cut by a new change: what it held is applied in the order delivered
        // (every daemon of this synced set does the same), the state stays unsynced.
        if let Some(ex) = self.ring.as_mut().and_then(|r| r.exchange.take()) {
            for d in ex.held {
                self.apply_delivery(&d);
            }
        }
        let keep: Vec<u16> = members
            .iter()
            .filter_map(|d| self.position_of(*d))
            .collect();
        let lost = self.groups.drop_daemons(|p| keep.contains(&p));
        for l in &lost {
            debug!(group = ?l.group, "group lost members to the network");
            let bytes = message::transition(l.group, l.old_id);
            for e in &l.members {
                let Some(sid) = e.session else { continue };
                if self.sessions.get(&sid).is_some_and(|s| s.membership) {
                    self.send(sid, bytes.clone());
                }
            }
        }
        if let Some(r) = self.ring.as_mut() {
            r.lost.extend(lost.iter().map(|l| l.group));
            r.trans = Some(members);
        }
    }

    fn on_regular(&mut self, ring_id: crate::ring::RingId, members: Vec<DaemonId>) {
        let Some(r) = self.ring.as_mut() else {
            return;
        };
        let trans = r.trans.take().unwrap_or_else(|| vec![r.me]);
        let mut synced: Vec<DaemonId> = r
            .synced
            .iter()
            .copied()
            .filter(|d| trans.contains(d) && members.contains(d))
            .collect();
        if synced.is_empty() {
            synced = vec![r.me];
        }
        r.synced = synced.clone();
        r.members = members.clone();
        self.groups.set_ring(RingId {
            proc_id: ring_id.leader.0 as i32,
            time: ring_id.time as i32,
        });
        let whole = members.iter().all(|d| synced.contains(d));
        debug!(ring = %ring_id, ?synced, whole, "regular configuration");
        if whole {
            let lost = std::mem::take(&mut r.lost);
            for g in lost {
                let remaining = self.groups.members(&g).to_vec();
                if let Some(c) = self.groups.network_view(g, &[remaining]) {
                    self.deliver_change(&c);
                }
            }
            return;
        }
        r.exchange = Some(Exchange {
            ring: ring_id,
            members,
            sets: BTreeMap::new(),
            held: VecDeque::new(),
        });
        if synced.first() == Some(&r.me) {
            self.send_groups(ring_id, &synced);
        }
    }

    /// Multicasts this synced set's table (§8).
    fn send_groups(&mut self, ring_id: crate::ring::RingId, synced: &[DaemonId]) {
        let Some(r) = self.ring.as_ref() else {
            return;
        };
        let mut blocks = Vec::new();
        for (name, id, entries) in self.groups.snapshot() {
            let gid_memb = MembId {
                proc_id: ProcId(id.proc_id as u32),
                time: id.time,
            };
            let mut daemons: Vec<GroupDaemon> = Vec::new();
            for e in entries {
                let Some(pid) = r.daemons.get(usize::from(e.member.daemon)) else {
                    continue;
                };
                match daemons.last_mut() {
                    Some(gd) if gd.proc_id.0 == pid.0 => gd.members.push(e.member.name.0),
                    _ => daemons.push(GroupDaemon {
                        proc_id: ProcId(pid.0),
                        memb_id: gid_memb,
                        members: vec![e.member.name.0],
                    }),
                }
            }
            blocks.push(GroupBlock {
                name: name.0,
                group_id: WireGroupId {
                    memb_id: gid_memb,
                    index: id.index,
                },
                changed: u16::from(r.lost.contains(&name)),
                daemons,
            });
        }
        let synced_ids: Vec<ProcId> = synced.iter().map(|d| ProcId(d.0)).collect();
        let mut bodies = vec![GroupsBody {
            memb_id: memb_id(ring_id),
            synced_set: Some(synced_ids),
            groups: Vec::new(),
        }];
        for b in blocks {
            let cur = bodies.last_mut().expect("bodies is never empty");
            let mut probe = cur.clone();
            probe.groups.push(b.clone());
            if probe.encoded_len() > MAX_GROUPS_BODY && !cur.groups.is_empty() {
                bodies.push(GroupsBody {
                    memb_id: memb_id(ring_id),
                    synced_set: None,
                    groups: vec![b],
                });
            } else {
                *cur = probe;
            }
        }
        let n = bodies.len();
        let name = self.config.name.clone();
        let Some(r) = self.ring.as_mut() else {
            return;
        };
        for (i, body) in bodies.iter().enumerate() {
            let last = i + 1 == n;
            let m = Message::groups(&name, synced.len() as u32, last, body, Endian::Little);
            let mut out = Vec::with_capacity(m.encoded_len());
            m.encode(&mut out);
            let service = if last {
                Service::Agreed
            } else {
                Service::Reliable
            };
            r.exchange_out
                .push_back((ring_id, service, Bytes::from(out)));
            r.stats.groups_sent += 1;
        }
    }

    fn on_groups(&mut self, d: &Delivery) {
        let mut buf = &d.payload[..];
        let Ok(m) = Message::decode(&mut buf) else {
            self.count(true);
            return;
        };
        let Ok(body) = GroupsBody::decode(&mut m.body.clone(), m.header.endian) else {
            self.count(true);
            return;
        };
        let Some(r) = self.ring.as_mut() else {
            return;
        };
        let Some(ex) = r.exchange.as_mut() else {
            r.stats.ignored += 1;
            return;
        };
        if body.memb_id != memb_id(ex.ring) || !ex.members.contains(&d.sender) {
            r.stats.ignored += 1;
            return;
        }
        let set = ex.sets.entry(d.sender).or_default();
        if let Some(ids) = body.synced_set {
            set.synced = ids.into_iter().map(|p| DaemonId(p.0)).collect();
        }
        set.blocks.extend(body.groups);
        if m.header.kind & AGREED_BIT != 0 {
            set.done = true;
        }
        let covered: usize = ex
            .sets
            .values()
            .filter(|s| s.done)
            .map(|s| s.synced.len())
            .sum();
        if covered >= ex.members.len() {
            self.finish_exchange();
        }
    }

    /// Merges the received tables into the new group state and tells the clients.
    fn finish_exchange(&mut self) {
        let Some(r) = self.ring.as_mut() else {
            return;
        };
        let Some(ex) = r.exchange.take() else {
            return;
        };
        r.stats.exchanges += 1;
        r.synced = ex.members.clone();
        r.lost.clear();
        // group → [(set order key, id, changed, entries)]
        type PerSet = ((i32, i32, u32), WireGroupId, bool, Vec<Entry>);
        let mut merged: BTreeMap<GroupName, Vec<PerSet>> = BTreeMap::new();
        for (rep, set) in &ex.sets {
            if !set.done {
                continue;
            }
            for b in &set.blocks {
                let mut entries = Vec::new();
                for gd in &b.daemons {
                    let did = DaemonId(gd.proc_id.0);
                    if !ex.members.contains(&did) {
                        continue;
                    }
                    let Some(pos) = self.position_of(did) else {
                        continue;
                    };
                    for n in &gd.members {
                        let member = Member {
                            daemon: pos,
                            name: GroupName(*n).key(),
                        };
                        entries.push(self.local_entry(member));
                    }
                }
                if entries.is_empty() {
                    continue;
                }
                merged.entry(GroupName(b.name).key()).or_default().push((
                    set_key(&b.group_id, *rep),
                    b.group_id,
                    b.changed != 0,
                    entries,
                ));
            }
        }
        self.groups.clear();
        for (g, mut sets) in merged {
            sets.sort_by_key(|s| s.0);
            let changed = sets.len() > 1 || sets.iter().any(|s| s.2);
            if changed {
                let vs: Vec<Vec<Entry>> = sets
                    .into_iter()
                    .map(|mut s| {
                        s.3.sort_by_key(|e| e.member);
                        s.3
                    })
                    .collect();
                if let Some(c) = self.groups.network_view(g, &vs) {
                    self.deliver_change(&c);
                }
            } else if let Some((_, id, _, entries)) = sets.into_iter().next() {
                let id = GroupId {
                    proc_id: id.memb_id.proc_id.0 as i32,
                    time: id.memb_id.time,
                    index: id.index,
                };
                self.groups.install_view(g, id, entries);
            }
        }
        debug!(held = ex.held.len(), "group state exchange complete");
        for d in ex.held {
            self.apply_delivery(&d);
        }
    }
}
