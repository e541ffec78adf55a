//! The group-state exchange of the ring backend, as 5.0.1's group layer runs it (daemon fact
//! sheet §8; `docs/interop.md` for why every step must match a real 5.0.1 peer).
//!
//! # States ([`GState`], 5.0.1's `Gstate`)
//!
//! * **GOP** ([`GState::Op`]) + transitional configuration T: members on daemons outside T
//!   are dropped (local members of such groups get TRANSITION_MESS), the synced set S
//!   shrinks to S ∩ T → GTRANS.
//! * **GTRANS** ([`GState::Trans`]) + regular configuration R: if |T| = |R| nothing joined:
//!   groups that lost members get a CAUSED_BY_NETWORK view, → GOP, **no exchange**. Else the
//!   exchange starts: S[0] multicasts S's table as GROUPS messages (RELIABLE, the last one
//!   AGREED) → GGATHER. A fresh daemon's first regular configuration comes without a
//!   transitional one; it is handled as GOP + T = {self} first (5.0.1 delivers that one).
//! * **GGATHER** ([`GState::Gather`]): GROUPS messages of R's id from configured daemons are
//!   counted; each AGREED one adds its set's size (the header's count) to a sum; when the sum
//!   equals |R| the tables are merged, views sent, S = R → GOP. A transitional configuration
//!   T' only marks groups with daemons outside T' changed → GGT.
//! * **GGT** ([`GState::GatherTrans`]): GROUPS messages delivered in the transitional
//!   configuration still count; if they complete the exchange, it completes as in GGATHER
//!   and T' is then applied as from GOP (→ GTRANS). A regular configuration R' in GGT: if
//!   this daemon's own set's last GROUPS message arrived, every other set whose last message
//!   arrived is merged in (tables and daemons, without views yet: the groups are marked
//!   changed); then daemons outside T' are dropped, S ← S ∩ T', and a new exchange
//!   **always** starts → GGATHER.
//!
//! While GGATHER or GGT, [`Clients::exchanging`] is true: the node keeps the engine's
//! exchange gate closed (only GROUPS messages are sent, client messages wait unsent) and
//! client messages delivered meanwhile are held and applied after the exchange. A 5.0.1
//! daemon aborts on a JOIN/LEAVE/KILL delivered in GGATHER/GGT and on a GROUPS message
//! delivered in GOP/GTRANS; following its states exactly is what keeps both from happening.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tracing::debug;

use super::Clients;
use crate::groups::{message, Entry, Member, RingId};
use crate::ring::{DaemonId, Delivery, Service};
use crate::wire::client::{GroupId, GroupName};
use crate::wire::daemon::groups::{
    GroupBlock, GroupDaemon, GroupId as WireGroupId, GroupsBody, Message, MAX_GROUPS_BODY,
};
use crate::wire::daemon::Endian;

/// `AGREED_MESS`: the service bit of the last GROUPS message of a set.
const AGREED_BIT: u32 = 0x0000_0010;

/// 5.0.1's group-layer state, with what each state needs.
#[derive(Debug)]
pub(super) enum GState {
    /// GOP: no exchange.
    Op,
    /// GTRANS: this transitional configuration was delivered; the regular one is next.
    Trans(Vec<DaemonId>),
    /// GGATHER: the exchange of a regular configuration runs.
    Gather(Exchange),
    /// GGT: the exchange runs and this transitional configuration arrived meanwhile.
    GatherTrans(Exchange, Vec<DaemonId>),
}

impl GState {
    /// The running exchange (GGATHER, GGT).
    pub(super) fn exchange(&self) -> Option<&Exchange> {
        match self {
            Self::Gather(ex) | Self::GatherTrans(ex, _) => Some(ex),
            Self::Op | Self::Trans(_) => None,
        }
    }

    /// The running exchange, mutably.
    pub(super) fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match self {
            Self::Gather(ex) | Self::GatherTrans(ex, _) => Some(ex),
            Self::Op | Self::Trans(_) => None,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Op => "GOP",
            Self::Trans(_) => "GTRANS",
            Self::Gather(_) => "GGATHER",
            Self::GatherTrans(..) => "GGT",
        }
    }
}

/// One synced set's table as received.
#[derive(Debug, Default)]
pub(super) struct SetTable {
    synced: Vec<DaemonId>,
    blocks: Vec<GroupBlock>,
    /// Its last (AGREED) message arrived.
    done: bool,
}

/// A group-state exchange in progress.
#[derive(Debug)]
pub(super) struct Exchange {
    ring: crate::ring::RingId,
    members: Vec<DaemonId>,
    /// By sending daemon (the set's first daemon).
    sets: BTreeMap<DaemonId, SetTable>,
    /// Sum of the set sizes announced by the AGREED messages so far.
    sum: usize,
    /// Client messages delivered before the exchange completed.
    pub(super) held: VecDeque<Delivery>,
}

fn set_key(id: &WireGroupId, rep: DaemonId) -> (i32, i32, u32) {
    (id.memb_id.leader.0 as i32, id.memb_id.time, rep.0)
}

/// One set's entries of one group: (set order key, its group id, changed flag, entries).
type PerSet = ((i32, i32, u32), WireGroupId, bool, Vec<Entry>);

impl Clients {
    /// A configuration change's transitional part.
    pub(super) fn on_transitional(&mut self, members: Vec<DaemonId>) {
        let r = &mut *self.ring;
        match std::mem::replace(&mut r.gstate, GState::Op) {
            GState::Op => self.enter_trans(members),
            GState::Gather(ex) => {
                // 5.0.1: no TRANSITION_MESS here (nothing is delivered to clients before the
                // next regular configuration); groups with daemons outside T' are marked.
                let keep: Vec<u16> = members
                    .iter()
                    .filter_map(|d| self.position_of(*d))
                    .collect();
                let cascade: Vec<GroupName> = self
                    .groups
                    .snapshot()
                    .filter(|(_, _, es)| es.iter().any(|e| !keep.contains(&e.member.daemon)))
                    .map(|(g, _, _)| g)
                    .collect();
                {
                    let r = &mut *self.ring;
                    r.lost.extend(cascade);
                    r.stats.exchanges_cut += 1;
                    r.gstate = GState::GatherTrans(ex, members);
                }
            }
            other @ (GState::Trans(_) | GState::GatherTrans(..)) => {
                // Never emitted by the engine (a transitional configuration is always followed
                // by a regular one); 5.0.1 would abort. Keep the state.
                debug!(
                    state = other.name(),
                    "transitional configuration out of turn ignored"
                );
                {
                    let r = &mut *self.ring;
                    r.gstate = other;
                }
            }
        }
    }

    /// GOP + transitional configuration `members` → GTRANS.
    fn enter_trans(&mut self, members: Vec<DaemonId>) {
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
        {
            let r = &mut *self.ring;
            r.lost.extend(lost.iter().map(|l| l.group));
            r.synced.retain(|d| members.contains(d));
            if r.synced.is_empty() {
                r.synced = vec![r.me];
            }
            r.gstate = GState::Trans(members);
        }
    }

    /// A configuration change's regular part.
    pub(super) fn on_regular(&mut self, ring_id: crate::ring::RingId, members: Vec<DaemonId>) {
        let r = &mut *self.ring;
        let me = r.me;
        let trans = match std::mem::replace(&mut r.gstate, GState::Op) {
            GState::Trans(t) => t,
            GState::Op => {
                // A fresh daemon's first ring: 5.0.1 first delivers the transitional
                // configuration {self} (GOP → GTRANS), then this regular one.
                self.enter_trans(vec![me]);
                {
                    let r = &mut *self.ring;
                    r.gstate = GState::Op;
                }
                vec![me]
            }
            GState::GatherTrans(ex, t) => {
                self.regular_in_ggt(ex, &t);
                return self.start_exchange(ring_id, members);
            }
            GState::Gather(ex) => {
                // Never emitted by the engine without a transitional configuration first;
                // treat it as one with only this daemon kept.
                debug!("regular configuration in GGATHER: handled as GGT with T = {{self}}");
                self.regular_in_ggt(ex, &[me]);
                return self.start_exchange(ring_id, members);
            }
        };
        self.set_groups_ring(ring_id);
        {
            let r = &mut *self.ring;
            r.members = members.clone();
        }
        if trans.len() == members.len() {
            debug!(ring = %ring_id, "regular configuration, nothing joined: no exchange");
            let lost = std::mem::take(&mut self.ring.lost);
            for g in lost {
                let remaining = self.groups.members(&g).to_vec();
                if let Some(c) = self.groups.network_view(g, &[remaining]) {
                    self.deliver_change(&c);
                }
            }
            return;
        }
        self.start_exchange(ring_id, members);
    }

    fn set_groups_ring(&mut self, ring_id: crate::ring::RingId) {
        self.groups.set_ring(ring_id);
    }

    /// → GGATHER for regular configuration `ring_id`; S[0] sends S's table.
    fn start_exchange(&mut self, ring_id: crate::ring::RingId, members: Vec<DaemonId>) {
        self.set_groups_ring(ring_id);
        let r = &mut *self.ring;
        r.members = members.clone();
        let synced = r.synced.clone();
        debug!(ring = %ring_id, ?synced, "regular configuration: group state exchange");
        r.gstate = GState::Gather(Exchange {
            ring: ring_id,
            members,
            sets: BTreeMap::new(),
            sum: 0,
            held: VecDeque::new(),
        });
        if synced.first() == Some(&r.me) {
            self.send_groups(ring_id, &synced);
        }
    }

    /// GGT + regular configuration: merge the sets that completely arrived (if mine did),
    /// apply the saved transitional configuration `trans` to the table and S.
    fn regular_in_ggt(&mut self, ex: Exchange, trans: &[DaemonId]) {
        for d in &ex.held {
            self.apply_delivery(d);
        }
        let r = &mut *self.ring;
        let own = r.synced.first().copied().unwrap_or(r.me);
        let own_done = ex.sets.get(&own).is_some_and(|s| s.done);
        if own_done {
            let done: Vec<(&DaemonId, &SetTable)> = ex
                .sets
                .iter()
                .filter(|(rep, s)| s.done && **rep != own)
                .collect();
            if !done.is_empty() {
                let mut synced = r.synced.clone();
                for (_, s) in &done {
                    synced.extend(s.synced.iter().copied());
                }
                let daemons = r.daemons.clone();
                synced.sort_by_key(|d| daemons.iter().position(|x| x == d));
                synced.dedup();
                r.synced = synced;
                let merged = self.merge_tables(&ex, true);
                for (g, sets) in merged {
                    self.install_merged(g, sets, true);
                }
            }
        }
        let keep: Vec<u16> = trans.iter().filter_map(|d| self.position_of(*d)).collect();
        let lost = self.groups.drop_daemons(|p| keep.contains(&p));
        {
            let r = &mut *self.ring;
            r.lost.extend(lost.iter().map(|l| l.group));
            r.synced.retain(|d| trans.contains(d));
            if r.synced.is_empty() {
                r.synced = vec![r.me];
            }
        }
    }

    /// Multicasts this synced set's table (§8).
    fn send_groups(&mut self, ring_id: crate::ring::RingId, synced: &[DaemonId]) {
        let r = &*self.ring;
        let mut blocks = Vec::new();
        for (name, id, entries) in self.groups.snapshot() {
            let gid_memb = RingId {
                leader: DaemonId(id.proc_id as u32),
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
                        proc_id: DaemonId(pid.0),
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
        let synced_ids: Vec<DaemonId> = synced.iter().map(|d| DaemonId(d.0)).collect();
        let mut bodies = vec![GroupsBody {
            memb_id: ring_id,
            synced_set: Some(synced_ids),
            groups: Vec::new(),
        }];
        for b in blocks {
            let cur = bodies.last_mut().expect("bodies is never empty");
            let mut probe = cur.clone();
            probe.groups.push(b.clone());
            if probe.encoded_len() > MAX_GROUPS_BODY && !cur.groups.is_empty() {
                bodies.push(GroupsBody {
                    memb_id: ring_id,
                    synced_set: None,
                    groups: vec![b],
                });
            } else {
                *cur = probe;
            }
        }
        let n = bodies.len();
        let name = self.config.name.clone();
        let r = &mut *self.ring;
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

    /// A delivered GROUPS message.
    pub(super) fn on_groups(&mut self, d: &Delivery) {
        let mut buf = &d.payload[..];
        let Ok(m) = Message::decode(&mut buf) else {
            self.count(true);
            return;
        };
        let Ok(body) = GroupsBody::decode(&mut m.body.clone(), m.header.endian) else {
            self.count(true);
            return;
        };
        let configured = self.position_of(d.sender).is_some();
        let r = &mut *self.ring;
        let Some(ex) = r.gstate.exchange_mut() else {
            r.stats.unexpected_groups += 1;
            let sender = d.sender;
            self.violation(format!("GROUPS message from {sender} delivered (G4/G5)"));
            return;
        };
        if body.memb_id != ex.ring || !configured {
            r.stats.ignored += 1;
            return;
        }
        let mut problem = None;
        if let Some(ids) = &body.synced_set {
            let ids: Vec<DaemonId> = ids.iter().map(|p| DaemonId(p.0)).collect();
            let overlap = ex
                .sets
                .iter()
                .filter(|(rep, _)| **rep != d.sender)
                .any(|(_, s)| s.synced.iter().any(|x| ids.contains(x)));
            let unknown = ids.iter().any(|x| !r.daemons.contains(x));
            let mut sorted = ids.clone();
            sorted.dedup();
            if overlap || unknown || sorted.len() != ids.len() {
                problem = Some(format!(
                    "synced set {ids:?} of {} overlaps another or names an unknown daemon (G6/G7)",
                    d.sender
                ));
            }
        }
        let set = ex.sets.entry(d.sender).or_default();
        if let Some(ids) = body.synced_set {
            set.synced = ids.into_iter().map(|p| DaemonId(p.0)).collect();
        }
        set.blocks.extend(body.groups);
        if m.header.kind & AGREED_BIT != 0 {
            set.done = true;
            ex.sum += m.header.groups_synced_size() as usize;
        }
        let (sum, want) = (ex.sum, ex.members.len());
        if let Some(p) = problem {
            self.violation(p);
        }
        if sum == want {
            self.complete_exchange();
        } else if sum > want {
            // Only a lying or corrupt GROUPS message gets here (5.0.1 aborts; an exact sum can
            // never be reached any more). Every daemon of the ring sees the same messages in
            // the same order, so every mbus daemon completes here, with the same tables, and
            // client traffic goes on instead of waiting for the next configuration change.
            self.violation(format!(
                "announced set sizes add up to {sum} > {want}: the exchange completes with the tables received"
            ));
            self.complete_exchange();
        }
    }

    /// A client message of member `x` was delivered during the exchange. An honest daemon
    /// sends none before its own exchange has completed, which is after every GROUPS message
    /// in the order: `x` skipped the exchange (a lying or broken daemon; 5.0.1 aborts on most
    /// such messages). Unless a set that arrived already covers it, `x` counts from here as
    /// a set of its own with no groups, so the exchange can complete without its table instead
    /// of holding client traffic until the next configuration change (mbus-fuzz-net's peer
    /// mode held a daemon in GGATHER this way). Every daemon sees the same messages in the
    /// same order, so every mbus daemon decides alike.
    pub(super) fn forfeit_exchange(&mut self, x: DaemonId) {
        let r = &mut *self.ring;
        let Some(ex) = r.gstate.exchange_mut() else {
            return;
        };
        let covered = ex.sets.values().any(|s| s.done && s.synced.contains(&x))
            || ex.sets.get(&x).is_some_and(|s| s.done);
        if x == r.me || !ex.members.contains(&x) || covered {
            return;
        }
        let set = ex.sets.entry(x).or_default();
        set.synced = vec![x];
        set.blocks.clear();
        set.done = true;
        ex.sum += 1;
        let (sum, want) = (ex.sum, ex.members.len());
        r.stats.exchanges_forfeited += 1;
        self.violation(format!(
            "{x} sent client messages before its GROUPS: counted as a set of its own with no groups"
        ));
        if sum >= want {
            self.complete_exchange();
        }
    }

    /// Every set's table is in: merge them into the new group state and tell the clients;
    /// GOP (then GTRANS if a transitional configuration came meanwhile).
    fn complete_exchange(&mut self) {
        let r = &mut *self.ring;
        let (ex, trans) = match std::mem::replace(&mut r.gstate, GState::Op) {
            GState::Gather(ex) => (ex, None),
            GState::GatherTrans(ex, t) => {
                r.stats.completed_in_transition += 1;
                (ex, Some(t))
            }
            other => {
                r.gstate = other;
                return;
            }
        };
        r.stats.exchanges += 1;
        r.synced = ex.members.clone();
        r.lost.clear();
        let merged = self.merge_tables(&ex, false);
        self.groups.clear();
        for (g, sets) in merged {
            self.install_merged(g, sets, false);
        }
        debug!(held = ex.held.len(), "group state exchange complete");
        for d in &ex.held {
            self.apply_delivery(d);
        }
        if let Some(t) = trans {
            self.enter_trans(t);
        }
    }

    /// The tables of the sets whose last message arrived, by group (`others_only`: all but
    /// this daemon's own set, for a merge in GGT).
    fn merge_tables(&self, ex: &Exchange, others_only: bool) -> BTreeMap<GroupName, Vec<PerSet>> {
        let own = self.ring.synced.first().copied();
        let mut merged: BTreeMap<GroupName, Vec<PerSet>> = BTreeMap::new();
        for (rep, set) in &ex.sets {
            if !set.done || (others_only && Some(*rep) == own) {
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
        merged
    }

    /// Installs one merged group. At completion (`partial` false) a group present in
    /// several sets, or flagged changed, gets a CAUSED_BY_NETWORK view with one vs-set per
    /// set; others keep their id silently. In a GGT merge (`partial`) the other sets'
    /// members are added to this daemon's table without a view, and the group is marked
    /// changed so the completing exchange gives it one.
    fn install_merged(&mut self, g: GroupName, mut sets: Vec<PerSet>, partial: bool) {
        sets.sort_by_key(|s| s.0);
        if partial {
            let mut entries: Vec<Entry> = self.groups.members(&g).to_vec();
            let mut id = self.groups.group_id(&g);
            for s in sets {
                id.get_or_insert(GroupId {
                    proc_id: s.1.memb_id.leader.0 as i32,
                    time: s.1.memb_id.time,
                    index: s.1.index,
                });
                for e in s.3 {
                    if !entries.iter().any(|x| x.member == e.member) {
                        entries.push(e);
                    }
                }
            }
            entries.sort_by_key(|e| e.member);
            if let Some(id) = id {
                self.groups.install_view(g, id, entries);
            }
            {
                let r = &mut *self.ring;
                r.lost.insert(g);
            }
            return;
        }
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
                proc_id: id.memb_id.leader.0 as i32,
                time: id.memb_id.time,
                index: id.index,
            };
            self.groups.install_view(g, id, entries);
        }
    }
}
