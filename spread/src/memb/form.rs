//! FORM1 and FORM2 — 5.0.1's `Create_form1`, `Fill_form1`, `Read_form2`: the FORM phase,
//! and the FORM2 that starts EVS (`evs.rs`). The FORM tokens are [`w::Token`]s with a
//! [`Form1Body`] or [`Form2Body`]; their old rings' entries are handled in `entry.rs`.

use super::{insert_rep, Future, Phase};
use crate::ring::{
    DaemonId, Dest, Engine, RingId, State, Timer, TokenState, EVS_SEQ_GAP, MAX_PROCS_RING,
    MAX_SEQ_GAP,
};
use crate::time::Instant;
use crate::wire::daemon::{
    self as w, Form1Body, Form2Body, MembersInfo, RepInfo, RepType, RepsInfo, Seq, TokenBody,
    MAX_FORM_REPS,
};

/// Copies of every FORM token and of a ring's first token (5.0.1 sends two).
const FORM_COPIES: usize = 2;

impl Engine {
    /// Does a FORM token name only configured daemons?
    fn all_configured(&self, m: &MembersInfo, reps: &[RepInfo]) -> bool {
        let known = |d: &DaemonId| self.rank(*d).is_some();
        m.members.iter().all(known)
            && m.pending.iter().all(known)
            && reps.iter().all(|r| known(&r.proc_id))
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
        let mut pending = self.brought(|_| false);
        let form_id = RingId {
            leader: me,
            time: self.next_time(now),
        };
        pending.truncate(MAX_PROCS_RING - 1);
        let potential = self.potential_from_form(&reps);
        let body = Form1Body {
            members: MembersInfo {
                members: vec![me],
                pending,
                stale: Vec::new(),
            },
            reps: RepsInfo {
                rep_index: 1,
                reps,
                stale: Vec::new(),
            },
            rings: Vec::new(),
        };
        let mut t = w::Token::form1(me, form_id, Seq(0), self.cfg.conf_hash, body);
        tracing::debug!(%me, form = %form_id, "create FORM1");
        self.commit_to_form(now, &mut t, potential);
        self.forward_form1(t);
    }

    /// FORM1 (this daemon's own copy): visited as a pending member (OP non-leader,
    /// REPRESENTED) or as the next rep (GATHER); commits to it and forwards it.
    pub(crate) fn on_form1(&mut self, now: Instant, mut t: w::Token) {
        let me = self.cfg.me;
        let pending_ok = match self.state() {
            State::Op => !self.is_leader(),
            State::Represented => true,
            _ => false,
        };
        let ring_alive = self.ring_alive();
        let TokenBody::Form1(f) = &mut t.body else {
            return;
        };
        let rep = usize::try_from(f.reps.rep_index)
            .ok()
            .and_then(|i| f.reps.reps.get(i))
            .copied();
        let want = if ring_alive {
            RepType::RING
        } else {
            RepType::SEG
        };
        let m = &mut f.members;
        let as_pending = pending_ok && m.pending.first() == Some(&me);
        let as_rep = self.state() == State::Gather
            && m.pending.is_empty()
            && rep.is_some_and(|r| r.proc_id == me && r.rep_type == want);
        // (A daemon committed to a FORM is in FORM or EVS, where FORM1 is not accepted.)
        if !(as_pending || as_rep)
            || !self.all_configured(m, &f.reps.reps)
            || m.members.len() + m.pending.len() > MAX_PROCS_RING
        {
            self.stats.dropped += 1;
            return;
        }
        if as_pending {
            m.pending.remove(0);
        } else {
            let reps = &f.reps.reps;
            let listed =
                |d: DaemonId| m.members.contains(&d) || reps.iter().any(|r| r.proc_id == d);
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
            let room = MAX_PROCS_RING.saturating_sub(m.members.len() + 1);
            add.truncate(room);
            m.pending = add;
            f.reps.rep_index = f.reps.rep_index.saturating_add(1);
        }
        f.members.members.push(me);
        let potential = self.potential_from_form(&f.reps.reps);
        self.commit_to_form(now, &mut t, potential);
        self.forward_form1(t);
    }

    /// Enters FORM: adds this daemon's old ring to FORM1 and stops the old ring here (or, if
    /// the FORM has no room for another ring, leaves this daemon out as 5.0.1 does);
    /// `potential` are the reps to try if this form fails.
    fn commit_to_form(&mut self, now: Instant, t: &mut w::Token, potential: Vec<RepInfo>) {
        let me = self.cfg.me;
        if let TokenBody::Form1(f) = &mut t.body {
            let known = f.rings.iter().any(|e| e.memb_id == self.ring.id);
            if !known && f.rings.len() >= MAX_FORM_REPS {
                f.members.members.retain(|d| *d != me);
            } else {
                self.add_entry(&mut f.rings);
            }
        }
        let last_seq = t.header.seq.0;
        t.header.seq = Seq(last_seq.max(self.ring.highest.saturating_add(EVS_SEQ_GAP)));
        self.phase = Phase::Form {
            form_id: t.header.memb_id,
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

    /// FORM1 on to the next pending member or rep; after the last one, FORM2 to the new
    /// leader (first member in configuration order).
    fn forward_form1(&mut self, mut t: w::Token) {
        let TokenBody::Form1(f) = &mut t.body else {
            return;
        };
        let next_rep = usize::try_from(f.reps.rep_index)
            .ok()
            .and_then(|i| f.reps.reps.get(i))
            .map(|r| r.proc_id);
        if let Some(next) = f.members.pending.first().copied().or(next_rep) {
            for _ in 0..FORM_COPIES {
                self.send_token(Dest::Unicast(next), &t);
            }
            return;
        }
        let mut members = std::mem::take(&mut f.members.members);
        self.sort_by_rank(&mut members);
        let Some(leader) = members.first().copied() else {
            return;
        };
        let body = Form2Body {
            new_ring_id: stale_reps_slot(&f.reps),
            members: MembersInfo {
                members: Vec::new(),
                pending: members,
                stale: Vec::new(),
            },
            rings: std::mem::take(&mut f.rings),
        };
        let (me, hash) = (self.cfg.me, self.cfg.conf_hash);
        let form2 = w::Token::form2(me, t.header.memb_id, t.header.seq, hash, body);
        for _ in 0..FORM_COPIES {
            self.send_token(Dest::Unicast(leader), &form2);
        }
    }

    /// FORM2 (this daemon's own copy) of the FORM this daemon committed to: enters EVS and
    /// forwards it (the last member starts the new ring's token instead).
    pub(crate) fn on_form2(&mut self, now: Instant, mut t: w::Token) {
        let me = self.cfg.me;
        let form_id = t.header.memb_id;
        let committed = matches!(self.phase, Phase::Form { form_id: id, .. } if id == form_id);
        let TokenBody::Form2(f) = &mut t.body else {
            return;
        };
        let idx = f.members.members.len();
        if !committed
            || !self.all_configured(&f.members, &[])
            || f.members.pending.first() != Some(&me)
        {
            self.stats.dropped += 1;
            return;
        }
        let Some(entry) = f.rings.iter().find(|e| e.memb_id == self.ring.id).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        if entry.last() > self.ring.my_aru.saturating_add(4 * MAX_SEQ_GAP) {
            self.stats.dropped += 1;
            return;
        }
        if idx == 0 {
            // 5.0.1: transitional time T, ring id time T + 1, both fresh.
            let time = self.next_time(now);
            f.new_ring_id = RingId {
                leader: me,
                time: self.next_time(now),
            };
            for e in f.rings.iter_mut().filter(|e| e.trans_time == 0) {
                e.trans_time = time;
            }
        }
        // One more member has received it.
        let next = f.members.pending.remove(0);
        f.members.members.push(next);
        let members: Vec<DaemonId> = f
            .members
            .members
            .iter()
            .chain(&f.members.pending)
            .copied()
            .collect();
        let ring = f.new_ring_id;
        tracing::debug!(%me, %ring, "FORM2: enter EVS");
        self.enter_evs(
            now,
            Future {
                ring,
                members: members.clone(),
                last_seq: t.header.seq.0,
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
                self.send_token(Dest::Unicast(next), &t);
            }
            return;
        }
        let first = w::Token::first_regular(me, ring, self.cfg.conf_hash);
        if idx != 0 {
            self.tok.last_rx_arq = Some(0);
        }
        for _ in 0..FORM_COPIES {
            self.send_token(Dest::Unicast(members[0]), &first);
        }
        self.tok.last_tx = Some((members[0], first));
    }
}

/// What 5.0.1 leaves in FORM2's ring-id slot until the new leader stamps it: the first 8
/// bytes of FORM1's reps_info (number of reps, rep index, first rep), in native order.
fn stale_reps_slot(reps: &RepsInfo) -> RingId {
    let count = i16::try_from(reps.reps.len())
        .unwrap_or(i16::MAX)
        .to_ne_bytes();
    let index = reps.rep_index.to_ne_bytes();
    RingId {
        leader: DaemonId(u32::from_ne_bytes([count[0], count[1], index[0], index[1]])),
        time: reps.reps.first().map_or(0, |r| r.proc_id.0 as i32),
    }
}
