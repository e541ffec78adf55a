//! The EVS checker: watches every delivery and configuration change of every daemon and
//! records a violation the moment one of the properties breaks. The properties are the
//! per-service guarantees of Spread 5.0.1 (client fact sheet §8, daemon fact sheet §7.3):
//!
//! * **all services**: nothing is delivered twice and nothing that was not submitted is
//!   delivered (payload, sender and class must match a submission); a message is delivered in
//!   the regular configuration it belongs to or the transitional one closing it;
//! * **AGREED/CAUSAL/SAFE** (AGREED and SAFE packets): one order everywhere in a
//!   configuration (pairwise: two daemons never deliver two common messages in opposite
//!   orders);
//! * **FIFO and stronger**: per sender (incarnation), these messages are delivered in the
//!   order sent; RELIABLE/UNRELIABLE messages have no order (5.0.1 delivers them on receipt);
//! * **reliability** (every service but UNRELIABLE): daemons that move together from
//!   configuration R to N delivered the same set in R (regular + its transitional
//!   configuration), except RELIABLE messages whose sender is not in their transitional set
//!   (5.0.1 may have delivered those on receipt at some of them and drops the rest after an
//!   EVS hole); and a daemon moving R → N delivered in R every message that any daemon
//!   delivered in R and whose sender moves with it;
//! * **SAFE**: delivered in a regular configuration only once every member has it (else in
//!   the transitional configuration);
//! * configuration changes come transitional-then-regular, every daemon installing a ring
//!   id reports the same members, and it is one of them.

use std::collections::{BTreeMap, BTreeSet};

use crate::ring::{Class, ConfigChange, ConfigKind, DaemonId, Delivery, RingId, Service};

/// Identity of a simulated message: origin node index, its incarnation, a counter.
pub type MsgId = (usize, u32, u32);

/// One daemon incarnation: node index and incarnation.
pub type Who = (usize, u32);

/// Payload layout: magic, node, incarnation, counter, service.
pub(crate) const PAYLOAD_HEADER: usize = 12;
const MAGIC: u8 = 0xA5;

pub(crate) fn encode_payload(id: MsgId, service: Service, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(PAYLOAD_HEADER));
    v.push(MAGIC);
    v.push(u8::try_from(id.0).unwrap_or(u8::MAX));
    v.extend_from_slice(&(id.1 as u16).to_le_bytes());
    v.extend_from_slice(&id.2.to_le_bytes());
    v.push(service as u8);
    v.extend_from_slice(&[0, 0, 0]);
    v.resize(size.max(PAYLOAD_HEADER), 0x5a);
    v
}

/// The simulated message inside a delivered payload: the payload itself (a bare engine's
/// submission), or the body of the 5.0.1 client message a simulated client sent.
pub(crate) fn body_of(p: &[u8]) -> Option<&[u8]> {
    if p.first() == Some(&MAGIC) {
        return Some(p);
    }
    let h = crate::wire::client::decode_header(&mut &p[..]).ok()?;
    let skip = crate::wire::client::HEADER_LEN
        + usize::try_from(h.num_groups).ok()? * crate::wire::client::GROUP_NAME_LEN;
    p.get(skip..)
}

/// Whether a delivered payload is the daemons' own GROUPS message (group-state exchange),
/// not a client's.
fn is_groups(p: &[u8]) -> bool {
    crate::wire::daemon::groups::MessageHeader::decode(&mut &p[..]).is_ok_and(|h| h.is_groups())
}

pub(crate) fn decode_payload(p: &[u8]) -> Option<MsgId> {
    let p = body_of(p)?;
    if p.len() < PAYLOAD_HEADER || p[0] != MAGIC {
        return None;
    }
    let inc = u16::from_le_bytes([p[2], p[3]]);
    let ctr = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    Some((usize::from(p[1]), u32::from(inc), ctr))
}

#[derive(Debug, Default, Clone)]
struct View {
    regular: Option<RingId>,
    in_trans: bool,
    /// Members of the transitional configuration this daemon is in (when `in_trans`).
    trans: Vec<DaemonId>,
    /// Highest seq delivered in the current ring.
    max_seq: u32,
    delivered: BTreeSet<MsgId>,
    in_ring: BTreeSet<MsgId>,
    fifo: BTreeMap<(usize, u32), u32>,
    own_pending: BTreeSet<MsgId>,
}

/// What the first daemon moving R → N delivered in R (reliability-filtered), who it was,
/// and its transitional set.
type Move = (BTreeSet<MsgId>, Who, Vec<DaemonId>);

/// Submitted message facts.
#[derive(Debug, Clone)]
struct Sub {
    service: Service,
    size: usize,
}

/// Watches every output; see the module documentation.
#[derive(Debug, Default)]
pub struct Checker {
    ids: Vec<DaemonId>,
    incs: Vec<u32>,
    views: Vec<View>,
    submitted: BTreeMap<MsgId, Sub>,
    ring_members: BTreeMap<RingId, Vec<DaemonId>>,
    installs: BTreeMap<RingId, BTreeMap<usize, u32>>,
    orders: BTreeMap<RingId, BTreeMap<Who, Vec<MsgId>>>,
    /// Per move R → N: the set (reliability-filtered) the first daemon delivered in R, who,
    /// and the transitional set.
    transitions: BTreeMap<(RingId, RingId), Move>,
    /// Every message some daemon delivered in R (regular or transitional), with its sender.
    delivered_in: BTreeMap<RingId, BTreeSet<MsgId>>,
    /// The daemons' own GROUPS messages delivered, per daemon incarnation: none twice.
    groups_seen: BTreeSet<(Who, RingId, u32, bytes::Bytes)>,
    /// Every violation seen, in order.
    pub violations: Vec<String>,
    /// Messages delivered (all daemons).
    pub deliveries: u64,
    /// Of those, delivered in a transitional configuration.
    pub transitional: u64,
    /// SAFE messages delivered in a transitional configuration.
    pub safe_transitional: u64,
    /// Configuration changes seen (all daemons).
    pub configs: u64,
    /// Deliveries of a lower seq than one the same daemon delivered before in the same ring
    /// (a RELIABLE packet delivered on receipt overtook them).
    pub overtaken: u64,
}

impl Checker {
    /// A checker for daemons `ids` (node index = position).
    pub fn new(ids: Vec<DaemonId>) -> Self {
        let n = ids.len();
        Self {
            ids,
            incs: vec![0; n],
            views: vec![View::default(); n],
            ..Self::default()
        }
    }

    fn fail(&mut self, s: String) {
        if self.violations.len() < 100 {
            self.violations.push(s);
        }
    }

    /// Node `n` restarted with fresh state as incarnation `inc`.
    pub fn restart(&mut self, n: usize, inc: u32) {
        self.incs[n] = inc;
        self.views[n] = View::default();
    }

    /// A message was submitted at node `n`.
    pub fn submitted(&mut self, id: MsgId, service: Service, size: usize) {
        self.submitted.insert(id, Sub { service, size });
        self.views[id.0].own_pending.insert(id);
    }

    /// A submission was refused (queue full): it is not expected anywhere.
    pub fn refused(&mut self, id: MsgId) {
        self.views[id.0].own_pending.remove(&id);
    }

    /// Messages submitted at `n` (current incarnation) not yet delivered there.
    pub fn own_pending(&self, n: usize) -> usize {
        self.views[n].own_pending.len()
    }

    /// Has node `n` delivered `id`?
    pub fn has_delivered(&self, n: usize, id: MsgId) -> bool {
        self.views[n].delivered.contains(&id)
    }

    /// Current regular configuration of `n` (None inside a transitional one).
    pub fn regular(&self, n: usize) -> Option<RingId> {
        let v = &self.views[n];
        v.regular.filter(|_| !v.in_trans)
    }

    /// Members of an installed ring.
    pub fn members(&self, r: RingId) -> Option<&Vec<DaemonId>> {
        self.ring_members.get(&r)
    }

    /// A delivery at node `n`. `holds(node, ring, seq)` asks whether that node currently
    /// holds a packet (None: it is down — it may have had it when it crashed).
    pub fn on_deliver(
        &mut self,
        n: usize,
        d: &Delivery,
        holds: &dyn Fn(usize, RingId, u32) -> Option<bool>,
    ) {
        if is_groups(&d.payload) {
            let who = (n, self.incs[n]);
            if !self
                .groups_seen
                .insert((who, d.ring, d.seq, d.payload.clone()))
            {
                self.fail(format!(
                    "{who:?} delivered a GROUPS message twice in {}",
                    d.ring
                ));
            }
            return;
        }
        self.deliveries += 1;
        if d.transitional {
            self.transitional += 1;
            if d.class == Class::Safe {
                self.safe_transitional += 1;
            }
        }
        let who = (n, self.incs[n]);
        let Some(id) = decode_payload(&d.payload) else {
            self.fail(format!(
                "{who:?} delivered an invented payload in {}",
                d.ring
            ));
            return;
        };
        let Some(sub) = self.submitted.get(&id).cloned() else {
            self.fail(format!("{who:?} delivered never-submitted message {id:?}"));
            return;
        };
        if !sub.service.class().packs_with(d.class)
            || Some(sub.size.max(PAYLOAD_HEADER)) != body_of(&d.payload).map(<[u8]>::len)
            || self.ids.get(id.0) != Some(&d.sender)
        {
            self.fail(format!(
                "{who:?} delivered a corrupted {id:?}: {:?}/{:?} {}B/{}B sender {}",
                d.class,
                sub.service,
                d.payload.len(),
                sub.size,
                d.sender
            ));
        }
        let v = &self.views[n];
        let twice = v.delivered.contains(&id);
        let ordered = d.class != Class::Reliable;
        let fifo = ordered && v.fifo.get(&(id.0, id.1)).is_some_and(|c| *c >= id.2);
        let place = (v.regular, v.in_trans);
        if twice {
            self.fail(format!("{who:?} delivered {id:?} twice"));
            return;
        }
        if fifo {
            self.fail(format!(
                "{who:?} broke FIFO of {:?} at {id:?}",
                (id.0, id.1)
            ));
        }
        if place != (Some(d.ring), d.transitional) {
            self.fail(format!(
                "{who:?} delivered {id:?} in {} (trans {}) while in {place:?}",
                d.ring, d.transitional
            ));
        }
        if matches!(d.class, Class::Agreed | Class::Safe) {
            self.check_order(who, d.ring, id);
        }
        if d.class == Class::Safe && !d.transitional {
            self.check_safe(who, d, id, holds);
        }
        self.check_late_reliability(who, d.ring, id);
        self.delivered_in.entry(d.ring).or_default().insert(id);
        if d.seq < self.views[n].max_seq {
            self.overtaken += 1;
        }
        let v = &mut self.views[n];
        v.max_seq = v.max_seq.max(d.seq);
        v.delivered.insert(id);
        v.in_ring.insert(id);
        if ordered {
            v.fifo.insert((id.0, id.1), id.2);
        }
        v.own_pending.remove(&id);
    }

    /// Is `id` owed by reliability to a daemon whose transitional set is `trans`?
    fn owed(&self, id: MsgId, trans: &[DaemonId]) -> bool {
        let Some(sub) = self.submitted.get(&id) else {
            return false;
        };
        let from_mover = self.ids.get(id.0).is_some_and(|d| trans.contains(d));
        sub.service != Service::Unreliable && (sub.service.class() != Class::Reliable || from_mover)
    }

    /// `id` delivered in `ring` now: daemons that already moved on from `ring` together with
    /// its sender must have delivered it there.
    fn check_late_reliability(&mut self, who: Who, ring: RingId, id: MsgId) {
        let sender = self.ids.get(id.0).copied();
        let mut bad = Vec::new();
        for ((old, new), (set, first, trans)) in self.transitions.range((ring, RingId::default())..)
        {
            if *old != ring {
                break;
            }
            let sub = self.submitted.get(&id);
            let owed = sub.is_some_and(|s| s.service != Service::Unreliable)
                && sender.is_some_and(|s| trans.contains(&s));
            if owed && !set.contains(&id) {
                bad.push(format!(
                    "reliability: {who:?} delivered {id:?} in {ring} but {first:?}, which moved {ring} -> {new} with its sender, did not"
                ));
            }
        }
        for b in bad {
            self.fail(b);
        }
    }

    fn check_order(&mut self, who: Who, ring: RingId, id: MsgId) {
        let orders = self.orders.entry(ring).or_default();
        let mine = orders.get(&who).cloned().unwrap_or_default();
        let mut bad = Vec::new();
        for (other, list) in orders.iter() {
            if *other == who {
                continue;
            }
            let Some(j) = list.iter().position(|x| *x == id) else {
                continue;
            };
            for y in &mine {
                if let Some(k) = list.iter().position(|x| x == y) {
                    if k > j {
                        bad.push(format!(
                            "total order in {ring}: {who:?} delivered {y:?} before {id:?}, {other:?} the reverse"
                        ));
                    }
                }
            }
        }
        orders.entry(who).or_default().push(id);
        for b in bad {
            self.fail(b);
        }
    }

    fn check_safe(
        &mut self,
        who: Who,
        d: &Delivery,
        id: MsgId,
        holds: &dyn Fn(usize, RingId, u32) -> Option<bool>,
    ) {
        let Some(members) = self.ring_members.get(&d.ring).cloned() else {
            return;
        };
        let installs = self.installs.get(&d.ring).cloned().unwrap_or_default();
        for m in members {
            let Some(node) = self.ids.iter().position(|x| *x == m) else {
                continue;
            };
            let Some(inc) = installs.get(&node) else {
                self.fail(format!(
                    "{who:?} delivered SAFE {id:?} in {} before member {node} installed it",
                    d.ring
                ));
                continue;
            };
            if node == who.0 || *inc != self.incs[node] || self.views[node].delivered.contains(&id)
            {
                continue; // the deliverer itself, restarted since, or already delivered it
            }
            if holds(node, d.ring, d.seq) == Some(false) {
                self.fail(format!(
                    "{who:?} delivered SAFE {id:?} (seq {}) in regular {} but member {node} lacks it",
                    d.seq, d.ring
                ));
            }
        }
    }

    /// A configuration change at node `n`.
    pub fn on_config(&mut self, n: usize, c: &ConfigChange) {
        self.configs += 1;
        let who = (n, self.incs[n]);
        let me = self.ids[n];
        if !c.members.contains(&me) {
            self.fail(format!("{who:?} is not in its own configuration {c:?}"));
        }
        match c.kind {
            ConfigKind::Transitional => {
                let v = &self.views[n];
                if v.regular != Some(c.ring) || v.in_trans {
                    self.fail(format!("{who:?} transitional {c:?} out of place"));
                }
                if let Some(m) = self.ring_members.get(&c.ring) {
                    if c.members.iter().any(|x| !m.contains(x)) {
                        self.fail(format!("{who:?} transitional {c:?} not within {}", c.ring));
                    }
                }
                self.views[n].in_trans = true;
                self.views[n].trans = c.members.clone();
            }
            ConfigKind::Regular => {
                let (regular, in_trans) = (self.views[n].regular, self.views[n].in_trans);
                if let Some(old) = regular {
                    if !in_trans {
                        self.fail(format!("{who:?} regular {} without transitional", c.ring));
                    }
                    let trans = std::mem::take(&mut self.views[n].trans);
                    let all = std::mem::take(&mut self.views[n].in_ring);
                    let set: BTreeSet<MsgId> = all
                        .iter()
                        .copied()
                        .filter(|id| self.owed(*id, &trans))
                        .collect();
                    let missing: Vec<MsgId> = self
                        .delivered_in
                        .get(&old)
                        .into_iter()
                        .flatten()
                        .filter(|id| {
                            self.ids.get(id.0).is_some_and(|d| trans.contains(d))
                                && self.owed(**id, &trans)
                                && !all.contains(id)
                        })
                        .take(5)
                        .copied()
                        .collect();
                    if !missing.is_empty() {
                        self.fail(format!(
                            "reliability: {who:?} moved {old} -> {} without {missing:?}, delivered there by others and sent by daemons moving with it",
                            c.ring
                        ));
                    }
                    match self.transitions.get(&(old, c.ring)) {
                        Some((s, first, _)) if *s != set => {
                            let diff: Vec<_> = s.symmetric_difference(&set).take(5).collect();
                            self.fail(format!(
                                "{who:?} and {first:?} moved together {old} -> {} but delivered different sets (e.g. {diff:?})",
                                c.ring
                            ));
                        }
                        Some(_) => {}
                        None => {
                            self.transitions.insert((old, c.ring), (set, who, trans));
                        }
                    }
                }
                match self.ring_members.get(&c.ring) {
                    Some(m) if *m != c.members => {
                        self.fail(format!("{who:?} installed {} with other members", c.ring));
                    }
                    Some(_) => {}
                    None => {
                        self.ring_members.insert(c.ring, c.members.clone());
                    }
                }
                self.installs.entry(c.ring).or_default().insert(n, who.1);
                let v = &mut self.views[n];
                v.regular = Some(c.ring);
                v.in_trans = false;
                v.in_ring.clear();
                v.max_seq = 0;
            }
        }
    }
}
