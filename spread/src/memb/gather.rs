//! GATHER, JOINs and the leader's lookup — 5.0.1's `Shift_to_gather`, `Send_join`,
//! `Memb_handle_join`, `Form_or_fail`, `Memb_lookup_new_members`.

use super::{insert_rep, Phase};
use crate::ring::{DaemonId, Dest, Engine, State, Timer, TokenState, MAX_PROCS_RING};
use crate::time::Instant;
use crate::wire::daemon::{self as w, JoinBody, RepInfo, RepType};

impl Engine {
    /// Enters GATHER, bringing the daemons `heard` in SEG and the `potential` reps. With
    /// `ring_alive` the installed ring keeps running (a leader merging).
    pub(crate) fn enter_gather(
        &mut self,
        now: Instant,
        ring_alive: bool,
        heard: Vec<DaemonId>,
        potential: Vec<RepInfo>,
    ) {
        let me = self.cfg.me;
        let rep_type = if ring_alive {
            RepType::RING
        } else {
            RepType::SEG
        };
        self.phase = Phase::Gather {
            ring_alive,
            heard,
            reps: vec![RepInfo {
                proc_id: me,
                rep_type,
                seg_index: self.my_seg(),
            }],
            potential,
        };
        for t in [
            Timer::Alive,
            Timer::Seg,
            Timer::Rep,
            Timer::Form,
            Timer::Lookup,
        ] {
            self.cancel(t);
        }
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

    /// JOIN: scast to my segment when my ring is gone, unicast to every potential rep.
    fn send_join(&mut self) {
        let Phase::Gather {
            ring_alive,
            heard,
            reps,
            potential,
        } = &self.phase
        else {
            return;
        };
        let (me, hash) = (self.cfg.me, self.cfg.conf_hash);
        let j = w::Packet::join(me, hash, heard.clone(), reps.clone(), self.join_rep_index);
        let scast = !ring_alive;
        let to: Vec<DaemonId> = potential.iter().map(|r| r.proc_id).collect();
        if scast {
            self.send_packet(Dest::Segment, &j);
        }
        for d in to {
            self.send_packet(Dest::Unicast(d), &j);
        }
    }

    pub(crate) fn on_join_timer(&mut self, now: Instant) {
        if self.state() == State::Gather {
            self.send_join();
            self.arm(Timer::Join, now + self.cfg.join_timeout);
        }
    }

    /// A JOIN from `from` (configured, not me).
    pub(crate) fn on_join(&mut self, now: Instant, from: DaemonId, j: &JoinBody) {
        let reps: Option<Vec<RepInfo>> = j
            .reps
            .iter()
            .map(|r| self.known_rep(r.proc_id, r.rep_type))
            .collect();
        let (Some(reps), Some(from_seg)) = (reps, self.seg_of(from)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(first) = reps
            .first()
            .copied()
            .filter(|r| r.rep_type != RepType::POTENTIAL)
        else {
            self.stats.dropped += 1;
            return;
        };
        if j.members.members.len() > MAX_PROCS_RING {
            self.stats.dropped += 1;
            return;
        }
        let me = self.cfg.me;
        let my_seg = self.my_seg();
        let my_seg_rep_join = from_seg == my_seg && first.rep_type == RepType::SEG;
        match &mut self.phase {
            Phase::Op { .. } => {
                if self.ring.members.contains(&from) {
                    // One segment: a lookup probe. Several: the sender lost our ring.
                    if self.multi_segment() {
                        self.on_token_loss(now);
                    } else {
                        self.stats.dropped += 1;
                    }
                } else if self.is_leader() {
                    self.enter_gather(now, true, Vec::new(), vec![first]);
                } else if first.seg_index != my_seg
                    || self.first_in_seg(&self.ring.members, my_seg) == Some(me)
                {
                    let leader = self.ring.members[0];
                    self.send_refer(from, leader, RepType::RING);
                }
            }
            Phase::Seg { .. } | Phase::Represented { .. } if my_seg_rep_join => {
                self.on_rep_join(now, from);
            }
            Phase::Seg { .. } | Phase::Represented { .. } => self.refer_to_my_rep(from),
            Phase::Gather {
                reps: gathered,
                potential,
                ..
            } => {
                insert_rep(gathered, first);
                for r in reps {
                    insert_rep(potential, r);
                }
                let gathered = gathered.clone();
                let smallest = self.smallest_rep(&gathered).map(|i| gathered[i].proc_id);
                if smallest == Some(first.proc_id) {
                    self.arm(Timer::Gather, now + self.cfg.gather_timeout);
                }
            }
            Phase::Form { .. } => self.stats.dropped += 1,
            Phase::Evs { future, .. } => {
                if future.members.contains(&from) {
                    self.token_loss_from(now, from);
                } else {
                    self.stats.dropped += 1;
                }
            }
        }
    }

    /// Gather_timeout (5.0.1 `Form_or_fail`): form, return to the running ring, or gather
    /// again.
    pub(crate) fn on_gather_timer(&mut self, now: Instant) {
        let Phase::Gather {
            ring_alive, reps, ..
        } = &self.phase
        else {
            return;
        };
        let (ring_alive, reps) = (*ring_alive, reps.clone());
        let me = self.cfg.me;
        let smallest = self.smallest_rep(&reps).map(|i| reps[i].proc_id);
        if smallest == Some(me) {
            if ring_alive && reps.len() == 1 {
                self.back_to_op(now);
            } else {
                self.create_form1(now);
            }
        } else if ring_alive {
            self.back_to_op(now);
        } else {
            let mut potential = Vec::new();
            for r in reps.iter().skip(1) {
                insert_rep(&mut potential, *r);
            }
            self.enter_gather(now, false, vec![me], potential);
        }
    }

    /// A merging leader whose gathering found nobody to form with: its ring runs on.
    fn back_to_op(&mut self, now: Instant) {
        // Only a ring's leader gathers with its ring running, and only a non-leader forwards
        // foreign packets: nothing was forwarded in this membership.
        self.phase = Phase::Op {
            foreign_forwarded: false,
        };
        self.cancel(Timer::Join);
        self.cancel(Timer::Gather);
        if self.is_leader() {
            self.arm(Timer::Lookup, now + self.cfg.lookup_timeout);
        }
    }

    /// Lookup_timeout (or a foreign packet) at the leader: probe for daemons outside the
    /// ring — one segment: scast a JOIN; several: unicast it to every configured daemon
    /// missing from the ring (nothing, and no gathering, when none is).
    pub(crate) fn on_lookup(&mut self, now: Instant) {
        if self.state() != State::Op || !self.is_leader() {
            return;
        }
        let me = self.cfg.me;
        let rep = RepInfo {
            proc_id: me,
            rep_type: RepType::RING,
            seg_index: self.my_seg(),
        };
        let j = w::Packet::join(
            me,
            self.cfg.conf_hash,
            Vec::new(),
            vec![rep],
            self.join_rep_index,
        );
        let missing: Vec<DaemonId> = if self.multi_segment() {
            self.cfg
                .daemons
                .iter()
                .copied()
                .filter(|d| !self.ring.members.contains(d))
                .collect()
        } else {
            self.send_packet(Dest::Segment, &j);
            vec![me]
        };
        if self.multi_segment() {
            for d in &missing {
                self.send_packet(Dest::Unicast(*d), &j);
            }
        }
        if !missing.is_empty() {
            self.enter_gather(now, true, Vec::new(), Vec::new());
        }
    }
}
