//! FORM1 and FORM2 — 5.0.1's `Create_form1`, `Fill_form1`, `Read_form2`: the FORM phase,
//! and the FORM2 that starts EVS (`evs.rs`).

use super::{insert_rep, Future, Phase};
use crate::ring::packet::{Form, Packet, RingEntry, MAX_ENTRY_EXTRA, MAX_FORM_RINGS};
use crate::ring::{
    DaemonId, Dest, Engine, Port, RingId, State, Timer, TokenState, EVS_SEQ_GAP, MAX_PROCS_RING,
    MAX_SEQ_GAP,
};
use crate::time::Instant;
use crate::wire::daemon::{self as w, RepInfo, RepType};

/// Copies of every FORM token and of a ring's first token (5.0.1 sends two).
const FORM_COPIES: usize = 2;

impl Engine {
    /// Does a FORM token name only configured daemons?
    fn all_configured(&self, f: &Form) -> bool {
        let known = |d: &DaemonId| self.rank(*d).is_some();
        f.members.iter().all(known)
            && f.pending.iter().all(known)
            && f.reps.iter().all(|r| known(&r.proc_id))
    }

    /// The potential reps if this form fails: the FORM's reps of other segments.
    fn potential_from_form(&self, reps: &[RepInfo]) -> Vec<RepInfo> {
        let mut potential = Vec::new();
        let mine = self.my_seg();
        for r in reps {
            let known = self.known_rep(r.proc_id, r.rep_type);
            if let Some(mut r) = known.filter(|r| r.seg_index != mine) {
                r.rep_type = RepType::POTENTIAL;
                insert_rep(&mut potential, r);
            }
        }
        potential
    }

    /// GATHER: the daemons this daemon adds to FORM1 besides itself: its ring (a RING_REP)
    /// or the daemons it heard in SEG, minus `exclude` and my gathered reps.
    fn brought(&self, exclude: impl Fn(DaemonId) -> bool) -> Vec<DaemonId> {
        let Phase::Gather {
            ring_alive,
            heard,
            reps,
            ..
        } = &self.phase
        else {
            return Vec::new();
        };
        let me = self.cfg.me;
        let base = if *ring_alive {
            &self.ring.members
        } else {
            heard
        };
        base.iter()
            .copied()
            .filter(|d| *d != me && !exclude(*d) && !reps.iter().any(|r| r.proc_id == *d))
            .collect()
    }

    /// GATHER, smallest rep at Gather_timeout: creates FORM1 and commits to it.
    pub(crate) fn create_form1(&mut self, now: Instant) {
        let me = self.cfg.me;
        self.join_rep_index = 1;
        let Phase::Gather { reps, .. } = &self.phase else {
            return;
        };
        let mut reps = reps.clone();
        self.sort_reps(&mut reps);
        let pending = self.brought(|_| false);
        let mut f = Form {
            form_id: RingId {
                leader: me,
                time: self.next_time(now),
            },
            members: vec![me],
            pending,
            visited: 0,
            reps,
            rep_index: 1,
            new_ring: RingId::default(),
            last_seq: 0,
            rings: Vec::new(),
        };
        f.pending.truncate(MAX_PROCS_RING - 1);
        let potential = self.potential_from_form(&f.reps);
        tracing::debug!(%me, form = %f.form_id, pending = f.pending.len(), "create FORM1");
        self.commit_to_form(now, &mut f, potential);
        self.forward_form1(f);
    }

    /// FORM1: visited as a pending member (OP non-leader, REPRESENTED) or as the next rep
    /// (GATHER); commits to it and forwards it.
    pub(crate) fn on_form1(&mut self, now: Instant, mut f: Form) {
        let me = self.cfg.me;
        let pending_ok = match self.state() {
            State::Op => !self.is_leader(),
            State::Represented => true,
            _ => false,
        };
        let rep = f.reps.get(usize::from(f.rep_index)).copied();
        let ring_alive = self.ring_alive();
        let want = if ring_alive {
            RepType::RING
        } else {
            RepType::SEG
        };
        let as_pending = pending_ok && f.pending.first() == Some(&me);
        let as_rep = self.state() == State::Gather
            && f.pending.is_empty()
            && rep.is_some_and(|r| r.proc_id == me && r.rep_type == want);
        // (A daemon committed to a FORM is in FORM or EVS, where FORM1 is not accepted.)
        if !(as_pending || as_rep)
            || !self.all_configured(&f)
            || f.members.len() + f.pending.len() > MAX_PROCS_RING
        {
            self.stats.dropped += 1;
            return;
        }
        if as_pending {
            f.pending.remove(0);
        } else {
            let listed =
                |d: DaemonId| f.members.contains(&d) || f.reps.iter().any(|r| r.proc_id == d);
            let mut add = self.brought(listed);
            if ring_alive {
                // 5.0.1 adds a RING_REP's whole ring, without filtering.
                add = self
                    .ring
                    .members
                    .iter()
                    .copied()
                    .filter(|d| *d != me)
                    .collect();
            }
            let room = MAX_PROCS_RING.saturating_sub(f.members.len() + 1);
            add.truncate(room);
            f.pending = add;
            f.rep_index += 1;
        }
        f.members.push(me);
        let potential = self.potential_from_form(&f.reps);
        self.commit_to_form(now, &mut f, potential);
        self.forward_form1(f);
    }

    /// Enters FORM: adds this daemon's old ring to FORM1 and stops the old ring here (or, if
    /// the FORM has no room for another ring, leaves this daemon out as 5.0.1 does);
    /// `potential` are the reps to try if this form fails.
    fn commit_to_form(&mut self, now: Instant, f: &mut Form, potential: Vec<RepInfo>) {
        let me = self.cfg.me;
        let known = f.rings.iter().any(|e| e.ring == self.ring.id);
        if !known && f.rings.len() >= MAX_FORM_RINGS {
            f.members.retain(|d| *d != me);
        } else {
            self.add_entry(f);
        }
        f.last_seq = f
            .last_seq
            .max(self.ring.highest.saturating_add(EVS_SEQ_GAP));
        self.phase = Phase::Form {
            form_id: f.form_id,
            potential,
        };
        for t in [
            Timer::TokenLoss,
            Timer::TokenHurry,
            Timer::Join,
            Timer::Gather,
            Timer::Lookup,
            Timer::Alive,
            Timer::Seg,
            Timer::Rep,
        ] {
            self.cancel(t);
        }
        self.tok = TokenState::default();
        self.arm(Timer::Form, now + self.cfg.form_timeout);
    }

    /// Merges this daemon's view of its old ring into the FORM's entry for that ring.
    pub(super) fn add_entry(&self, f: &mut Form) {
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
                // 5.0.1: trans += me; commit = old rest, then my commit set, once each.
                if !e.trans.contains(&me) {
                    e.trans.push(me);
                }
                let mut commit = std::mem::take(&mut e.commit);
                commit.extend(self.commit_set.iter().copied());
                for d in commit {
                    if !e.trans.contains(&d) && !e.commit.contains(&d) {
                        e.commit.push(d);
                    }
                }
                e.commit.truncate(MAX_PROCS_RING);
            }
            None => f.rings.push(RingEntry {
                ring: r.id,
                aru_max: r.my_aru,
                highest: r.highest,
                extra: have,
                safe_aru: r.aru,
                trans: vec![me],
                commit: self
                    .commit_set
                    .iter()
                    .copied()
                    .filter(|d| *d != me)
                    .collect(),
                trans_time: 0,
            }),
        }
    }

    fn forward_form1(&mut self, mut f: Form) {
        let next_rep = f.reps.get(usize::from(f.rep_index)).map(|r| r.proc_id);
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
        f.new_ring = stale_reps_slot(&f);
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

    /// FORM2 of the FORM this daemon committed to: enters EVS and forwards it (the last
    /// member starts the new ring's token instead).
    pub(crate) fn on_form2(&mut self, now: Instant, mut f: Form) {
        let me = self.cfg.me;
        let idx = usize::from(f.visited);
        let committed = matches!(self.phase, Phase::Form { form_id, .. } if form_id == f.form_id);
        if !committed || !self.all_configured(&f) || f.members.get(idx) != Some(&me) {
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
        self.enter_evs(
            now,
            Future {
                ring: f.new_ring,
                members: members.clone(),
                last_seq: f.last_seq,
                entry,
                early: Default::default(),
            },
        );
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
        let t = w::Token::first_regular(me, f.new_ring, self.cfg.conf_hash);
        if idx != 0 {
            self.tok.last_rx_arq = Some(0);
        }
        for _ in 0..FORM_COPIES {
            self.send_token(Dest::Unicast(members[0]), &t);
        }
        self.tok.last_tx = Some((members[0], t));
    }
}

/// What 5.0.1 leaves in FORM2's ring-id slot until the new leader stamps it: the first 8
/// bytes of FORM1's reps_info (number of reps, rep index, first rep), in native order.
fn stale_reps_slot(f: &Form) -> RingId {
    let count = i16::try_from(f.reps.len())
        .unwrap_or(i16::MAX)
        .to_ne_bytes();
    let index = i16::try_from(f.rep_index).unwrap_or(i16::MAX).to_ne_bytes();
    RingId {
        leader: DaemonId(u32::from_ne_bytes([count[0], count[1], index[0], index[1]])),
        time: f.reps.first().map_or(0, |r| r.proc_id.0 as i32),
    }
}
