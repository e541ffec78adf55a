//! Membership: gather, form, EVS recovery and installation, after 5.0.1's `membership.c`.
//!
//! States ([`crate::ring::State`]): `Op` (ring running), `Gather` (collecting daemons with
//! JOINs; a ring leader merging keeps its ring running), `Form` (committed to a FORM1 token),
//! `Evs` (FORM2 seen, recovering the old ring's packets under the new ring's token).
//!
//! * **Gather** — every gathering daemon broadcasts a JOIN every `join_timeout` naming the
//!   daemons it brings (itself, or a leader's whole live ring). After `gather_timeout`
//!   without news the smallest representative (configuration order) creates FORM1; a ring
//!   leader with nothing new returns to `Op`; others restart the gather.
//! * **Form** — FORM1 visits every proposed member in configuration order; each visitor
//!   stops delivering its old ring and adds that ring's entry (aru, highest seq, packets held
//!   above the aru, ring-wide aru, transitional set). The last visitor sends FORM2 to the new
//!   leader (first member in configuration order), which stamps the new ring id; FORM2 then
//!   visits every member, which enters EVS; the last one starts the new ring's token. Every
//!   FORM token is sent twice. A missing FORM2 within `form_timeout` is a token loss.
//! * **EVS** — members of one old ring exchange that ring's packets (retransmission blocks
//!   tagged with the old ring id) until each holds every packet some of them held. A daemon
//!   that has them all reports `last_seq` as its aru; when the ring-wide aru reaches
//!   `last_seq` it installs: old-ring messages up to the first hole (SAFE ones only up to the
//!   largest ring-wide aru any of them computed) in the regular configuration, the
//!   transitional configuration, the rest of the old ring's messages, then the regular
//!   configuration of the new ring.
//! * **Lookup** — the leader of an installed ring broadcasts a JOIN `lookup_timeout` after
//!   installing (or at once when it hears a packet of a foreign ring) and gathers with its
//!   ring running, which is how healed partitions merge.
//!
//! Token loss (`token_timeout` without a valid token, FORM or EVS failure, a JOIN from a member
//! of our ring that lost it) returns to `Gather` with the ring stopped; the old ring's packets
//! are kept for the next form.

use crate::ring::packet::{
    Form, FormRep, Join, Packet, RingEntry, Token, MAX_ENTRY_EXTRA, MAX_FORM_RINGS,
};
use crate::ring::{
    ConfigChange, ConfigKind, DaemonId, Dest, Engine, Future, Output, Port, RepEntry, RingId,
    RingState, State, Timer, TokenState, EVS_SEQ_GAP, MAX_PROCS_RING, MAX_SEQ_GAP,
};
use crate::time::Instant;

/// Copies of every FORM token and of a ring's first token (5.0.1 sends two).
const FORM_COPIES: usize = 2;

impl Engine {
    /// Enters GATHER. With `ring_alive` the installed ring keeps running (a leader merging).
    pub(crate) fn enter_gather(&mut self, now: Instant, ring_alive: bool) {
        let me = self.cfg.me;
        self.state = State::Gather;
        self.ring_alive = ring_alive;
        self.form_id = None;
        self.future = None;
        self.reps.clear();
        let represented = if ring_alive {
            self.ring.members.clone()
        } else {
            vec![me]
        };
        self.reps.insert(
            me,
            RepEntry {
                ring_rep: ring_alive,
                members: represented,
            },
        );
        self.cancel(Timer::Form);
        self.cancel(Timer::Lookup);
        if !ring_alive {
            self.cancel(Timer::TokenLoss);
            self.cancel(Timer::TokenHurry);
            self.tok = TokenState::default();
        }
        tracing::debug!(%me, ring = %self.ring.id, ring_alive, "gather");
        self.send_join();
        self.arm(Timer::Join, now + self.cfg.join_timeout);
        self.arm(Timer::Gather, now + self.cfg.gather_timeout);
    }

    fn send_join(&mut self) {
        let represented = self.represented_now();
        let j = Join {
            ring: self.ring.id,
            ring_alive: self.ring_alive,
            represented,
        };
        self.send(Dest::Broadcast, Port::Data, &Packet::Join(j));
    }

    pub(crate) fn on_token_loss(&mut self, now: Instant) {
        self.stats.token_losses += 1;
        tracing::debug!(me = %self.cfg.me, state = ?self.state, "token loss");
        self.enter_gather(now, false);
    }

    pub(crate) fn on_join(&mut self, now: Instant, from: DaemonId, j: Join) {
        let member = self.ring.members.contains(&from);
        let running = self.state == State::Op || (self.state == State::Gather && self.ring_alive);
        if running && member && j.ring == self.ring.id && !j.ring_alive && from != self.cfg.me {
            // A member of our ring lost it: our ring is broken too.
            self.on_token_loss(now);
        } else if self.state == State::Op {
            if member || !self.is_leader() {
                // A lookup probe from our own leader, or not ours to answer.
                self.stats.dropped += 1;
                return;
            }
            self.enter_gather(now, true);
        }
        if self.state != State::Gather {
            self.stats.dropped += 1;
            return;
        }
        if j.represented.len() > MAX_PROCS_RING
            || j.represented.iter().any(|d| self.rank(*d).is_none())
        {
            self.stats.dropped += 1;
            return;
        }
        let mut represented = j.represented;
        if !represented.contains(&from) {
            represented.push(from);
        }
        self.sort_by_rank(&mut represented);
        let entry = RepEntry {
            ring_rep: j.ring_alive,
            members: represented,
        };
        if self.reps.get(&from) != Some(&entry) {
            self.reps.insert(from, entry);
            self.arm(Timer::Gather, now + self.cfg.gather_timeout);
        }
    }

    /// ALIVE (sent by 5.0.1 daemons in their SEG phase): a member of our ring lost it;
    /// while gathering, the sender is a daemon this one will represent.
    pub(crate) fn on_alive(&mut self, now: Instant, from: DaemonId, _members: &[DaemonId]) {
        let running = self.state == State::Op || (self.state == State::Gather && self.ring_alive);
        if running && self.ring.members.contains(&from) {
            self.on_token_loss(now);
        }
        if self.state != State::Gather || self.reps.contains_key(&from) {
            self.stats.dropped += 1;
            return;
        }
        let me = self.cfg.me;
        let mut mine = self.represented_now();
        if mine.contains(&from) {
            return;
        }
        mine.push(from);
        self.sort_by_rank(&mut mine);
        if let Some(e) = self.reps.get_mut(&me) {
            e.members = mine;
        }
        self.arm(Timer::Gather, now + self.cfg.gather_timeout);
    }

    /// Daemons this one brings into a new ring, itself included.
    fn represented_now(&self) -> Vec<DaemonId> {
        if self.ring_alive {
            return self.ring.members.clone();
        }
        self.reps
            .get(&self.cfg.me)
            .map_or_else(|| vec![self.cfg.me], |e| e.members.clone())
    }

    /// Does a FORM token name only configured daemons?
    fn all_configured(&self, f: &Form) -> bool {
        let known = |d: &DaemonId| self.rank(*d).is_some();
        f.members.iter().all(known)
            && f.pending.iter().all(known)
            && f.reps.iter().all(|r| known(&r.id))
    }

    /// Representatives in 5.0.1's FORM1 order: SEG_REPs before RING_REPs, then configuration
    /// order. The first one creates FORM1.
    fn sorted_reps(&self) -> Vec<FormRep> {
        let mut v: Vec<FormRep> = self
            .reps
            .iter()
            .map(|(id, e)| FormRep {
                id: *id,
                ring_rep: e.ring_rep,
            })
            .collect();
        v.sort_by_key(|r| (r.ring_rep, self.rank(r.id).unwrap_or(usize::MAX)));
        v
    }

    pub(crate) fn on_join_timer(&mut self, now: Instant) {
        if self.state == State::Gather {
            self.send_join();
            self.arm(Timer::Join, now + self.cfg.join_timeout);
        }
    }

    /// Gather_timeout: form, return to the running ring, or gather again.
    pub(crate) fn on_gather_timer(&mut self, now: Instant) {
        if self.state != State::Gather {
            return;
        }
        let me = self.cfg.me;
        let reps = self.sorted_reps();
        let mut all: Vec<DaemonId> = self
            .reps
            .values()
            .flat_map(|e| e.members.iter())
            .copied()
            .collect();
        self.sort_by_rank(&mut all);
        if reps.first().map(|r| r.id) == Some(me) {
            if self.ring_alive && all == self.ring.members {
                self.back_to_op(now);
            } else {
                self.create_form1(now, reps);
            }
        } else if self.ring_alive {
            self.back_to_op(now);
        } else {
            self.enter_gather(now, false);
        }
    }

    fn back_to_op(&mut self, now: Instant) {
        self.state = State::Op;
        self.cancel(Timer::Join);
        self.cancel(Timer::Gather);
        self.reps.clear();
        if self.is_leader() {
            self.arm(Timer::Lookup, now + self.cfg.lookup_timeout);
        }
    }

    /// Lookup_timeout (or a foreign packet) at the leader: probe for daemons outside the ring.
    pub(crate) fn on_lookup(&mut self, now: Instant) {
        if self.state == State::Op && self.is_leader() {
            self.enter_gather(now, true);
        }
    }

    fn create_form1(&mut self, now: Instant, reps: Vec<FormRep>) {
        let me = self.cfg.me;
        let mut f = Form {
            form_id: RingId {
                leader: me,
                time: self.next_time(now),
            },
            members: Vec::new(),
            pending: Vec::new(),
            visited: 0,
            reps,
            rep_index: 1,
            new_ring: RingId::default(),
            last_seq: 0,
            rings: Vec::new(),
        };
        self.add_represented(&mut f);
        tracing::debug!(%me, form = %f.form_id, pending = f.pending.len(), "create FORM1");
        if self.commit_to_form(now, &mut f) {
            self.forward_form1(f);
        }
    }

    /// A representative's visit: the daemons it brings become pending (unless listed already
    /// or representatives themselves, which are visited as such).
    fn add_represented(&self, f: &mut Form) {
        let mut add: Vec<DaemonId> = self
            .represented_now()
            .into_iter()
            .filter(|d| {
                *d != self.cfg.me
                    && !f.members.contains(d)
                    && !f.pending.contains(d)
                    && !f.reps.iter().any(|r| r.id == *d)
            })
            .collect();
        let room = MAX_PROCS_RING.saturating_sub(f.members.len() + f.pending.len() + 1);
        add.truncate(room);
        f.pending.extend(add);
        let mut pending = std::mem::take(&mut f.pending);
        self.sort_by_rank(&mut pending);
        f.pending = pending;
    }

    pub(crate) fn on_form1(&mut self, now: Instant, mut f: Form) {
        let me = self.cfg.me;
        let ok_state = matches!(self.state, State::Gather | State::Op);
        let as_pending = f.pending.first() == Some(&me);
        let as_rep =
            f.pending.is_empty() && f.reps.get(usize::from(f.rep_index)).map(|r| r.id) == Some(me);
        if !(as_pending || as_rep)
            || !self.all_configured(&f)
            || self.form_id == Some(f.form_id)
            || !ok_state
            || f.members.len() + f.pending.len() > MAX_PROCS_RING
        {
            self.stats.dropped += 1;
            return;
        }
        if as_rep {
            f.rep_index += 1;
            self.add_represented(&mut f);
        }
        if self.commit_to_form(now, &mut f) {
            self.forward_form1(f);
        } else {
            self.stats.dropped += 1;
        }
    }

    /// Adds this daemon and its old ring to FORM1 and stops the old ring here.
    fn commit_to_form(&mut self, now: Instant, f: &mut Form) -> bool {
        let me = self.cfg.me;
        let known = f.rings.iter().any(|e| e.ring == self.ring.id);
        if !known && f.rings.len() >= MAX_FORM_RINGS {
            return false;
        }
        f.pending.retain(|d| *d != me);
        f.members.push(me);
        self.add_entry(f);
        f.last_seq = f
            .last_seq
            .max(self.ring.highest.saturating_add(EVS_SEQ_GAP));
        self.state = State::Form;
        self.form_id = Some(f.form_id);
        self.ring_alive = false;
        self.reps.clear();
        for t in [
            Timer::TokenLoss,
            Timer::TokenHurry,
            Timer::Join,
            Timer::Gather,
            Timer::Lookup,
        ] {
            self.cancel(t);
        }
        self.tok = TokenState::default();
        self.arm(Timer::Form, now + self.cfg.form_timeout);
        true
    }

    /// Merges this daemon's view of its old ring into the FORM's entry for that ring.
    fn add_entry(&self, f: &mut Form) {
        let r = &self.ring;
        let have: Vec<u32> = r
            .buf
            .range(r.my_aru.saturating_add(1)..)
            .map(|(s, _)| *s)
            .take(MAX_ENTRY_EXTRA)
            .collect();
        let me = self.cfg.me;
        match f.rings.iter_mut().find(|e| e.ring == r.id) {
            Some(e) => {
                e.aru_max = e.aru_max.max(r.my_aru);
                e.highest = e.highest.max(r.highest);
                e.safe_aru = e.safe_aru.max(r.aru);
                let mut extra: Vec<u32> = e.extra.iter().chain(have.iter()).copied().collect();
                extra.sort_unstable();
                extra.dedup();
                extra.retain(|s| *s > e.aru_max);
                while extra.first() == Some(&(e.aru_max + 1)) {
                    extra.remove(0);
                    e.aru_max += 1;
                }
                extra.truncate(MAX_ENTRY_EXTRA);
                e.extra = extra;
                if !e.trans.contains(&me) {
                    e.trans.push(me);
                }
            }
            None => f.rings.push(RingEntry {
                ring: r.id,
                aru_max: r.my_aru,
                highest: r.highest,
                extra: have,
                safe_aru: r.aru,
                trans: vec![me],
                trans_time: 0,
            }),
        }
    }

    fn forward_form1(&mut self, mut f: Form) {
        let next_rep = f.reps.get(usize::from(f.rep_index)).map(|r| r.id);
        if let Some(next) = f.pending.first().copied().or(next_rep) {
            for _ in 0..FORM_COPIES {
                self.send(Dest::Unicast(next), Port::Token, &Packet::Form1(f.clone()));
            }
            return;
        }
        let mut members = std::mem::take(&mut f.members);
        self.sort_by_rank(&mut members);
        f.members = members;
        f.visited = 0;
        f.reps.clear();
        f.rep_index = 0;
        let leader = f.members[0];
        for _ in 0..FORM_COPIES {
            self.send(
                Dest::Unicast(leader),
                Port::Token,
                &Packet::Form2(f.clone()),
            );
        }
    }

    pub(crate) fn on_form2(&mut self, now: Instant, mut f: Form) {
        let me = self.cfg.me;
        let idx = usize::from(f.visited);
        if self.state != State::Form
            || !self.all_configured(&f)
            || self.form_id != Some(f.form_id)
            || f.members.get(idx) != Some(&me)
        {
            self.stats.dropped += 1;
            return;
        }
        let Some(entry) = f.rings.iter().find(|e| e.ring == self.ring.id).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        if entry.last() > self.ring.my_aru.saturating_add(4 * MAX_SEQ_GAP) {
            self.stats.dropped += 1;
            return;
        }
        if idx == 0 {
            // 5.0.1: transitional time T, ring id time T + 1, both fresh.
            let t = self.next_time(now);
            f.new_ring = RingId {
                leader: me,
                time: self.next_time(now),
            };
            for e in f.rings.iter_mut().filter(|e| e.trans_time == 0) {
                e.trans_time = t;
            }
        }
        f.visited += 1;
        let members = f.members.clone();
        tracing::debug!(%me, ring = %f.new_ring, "FORM2: enter EVS");
        self.future = Some(Future {
            ring: f.new_ring,
            members: members.clone(),
            last_seq: f.last_seq,
            entry,
            early: Default::default(),
        });
        self.state = State::Evs;
        self.evs_rounds = 0;
        self.cancel(Timer::Form);
        self.arm(Timer::TokenLoss, now + self.cfg.token_timeout);
        self.tok = TokenState::default();
        if idx == 0 {
            self.tok.awaiting = true;
            self.tok.last_tx_arq = 0;
            self.arm(Timer::TokenHurry, now + self.cfg.hurry_timeout);
        }
        if let Some(next) = members.get(idx + 1).copied() {
            for _ in 0..FORM_COPIES {
                self.send(Dest::Unicast(next), Port::Token, &Packet::Form2(f.clone()));
            }
            return;
        }
        let t = Token {
            ring: f.new_ring,
            seq: 0,
            aru: 0x7fff_ffff,
            aru_last: None,
            fc: 0,
            arq: 0,
            retrans: 0,
            rtr: Vec::new(),
        };
        if idx != 0 {
            self.tok.last_rx_arq = Some(0);
        }
        for _ in 0..FORM_COPIES {
            self.send(
                Dest::Unicast(members[0]),
                Port::Token,
                &Packet::Token(t.clone()),
            );
        }
        self.tok.last_tx = Some((members[0], t));
    }

    /// Ends EVS: delivers the old ring's remaining messages, the transitional and the
    /// regular configuration, and starts the new ring.
    pub(crate) fn install(&mut self, now: Instant) {
        let Some(fut) = self.future.take() else {
            return;
        };
        let e = fut.entry;
        let mut trans = e.trans.clone();
        self.sort_by_rank(&mut trans);
        let trans_change = ConfigChange {
            kind: ConfigKind::Transitional,
            ring: self.ring.id,
            id: RingId {
                leader: fut.ring.leader,
                time: fut.ring.time.wrapping_sub(1),
            },
            members: trans,
        };
        let real_old = self.ring.id.time != 0;
        self.deliver_old_ring(&e, &trans_change, real_old);
        tracing::debug!(me = %self.cfg.me, ring = %fut.ring, "install");
        self.emit(Output::Configuration(ConfigChange {
            kind: ConfigKind::Regular,
            ring: fut.ring,
            id: fut.ring,
            members: fut.members.clone(),
        }));
        #[cfg(any(test, feature = "sim"))]
        self.remember_ring();
        self.ring = RingState::new(fut.ring, fut.members);
        for (_, p) in fut.early {
            self.insert_packet(p);
        }
        self.state = State::Op;
        self.ring_alive = true;
        self.reps.clear();
        self.form_id = None;
        self.stats.installs += 1;
        for p in self.send_q.iter_mut() {
            // A message cut by the membership change is sent again whole.
            p.next = 0;
        }
        self.tok.prev_sent_aru = 0;
        self.tok.my_last_sent = 0;
        self.tok.idle_rounds = 0;
        self.tok.round = 0;
        self.tok.prev_sent_seq = 0;
        if self.is_leader() {
            self.arm(Timer::Lookup, now + self.cfg.lookup_timeout);
        }
    }
}
