//! GATHER, JOINs and the leader's lookup — 5.0.1's `Shift_to_gather`, `Send_join`,
//! `Memb_handle_join`, `Form_or_fail`, `Memb_lookup_new_members`.

use super::{insert_rep, Phase};
use crate::ring::packet::{Join, Packet, Rep, RepKind};
use crate::ring::{DaemonId, Dest, Engine, Port, State, Timer, TokenState, MAX_PROCS_RING};
use crate::time::Instant;

impl Engine {
    /// Enters GATHER, bringing the daemons `heard` in SEG and the `potential` reps. With
    /// `ring_alive` the installed ring keeps running (a leader merging).
    pub(crate) fn enter_gather(
        &mut self,
        now: Instant,
        ring_alive: bool,
        heard: Vec<DaemonId>,
        potential: Vec<Rep>,
    ) {
        let me = self.cfg.me;
        let kind = if ring_alive {
            RepKind::Ring
        } else {
            RepKind::Seg
        };
        self.phase = Phase::Gather {
            ring_alive,
            heard,
            reps: vec![Rep {
                id: me,
                kind,
                seg: self.my_seg(),
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
        let j = Packet::Join(Join {
            members: heard.clone(),
            reps: reps.clone(),
            rep_index: self.join_rep_index,
        });
        let scast = !ring_alive;
        let to: Vec<DaemonId> = potential.iter().map(|r| r.id).collect();
        if scast {
            self.send(Dest::Segment, Port::Data, &j);
        }
        for d in to {
            self.send(Dest::Unicast(d), Port::Data, &j);
        }
    }

    pub(crate) fn on_join_timer(&mut self, now: Instant) {
        if self.state() == State::Gather {
            self.send_join();
            self.arm(Timer::Join, now + self.cfg.join_timeout);
        }
    }

    /// A JOIN from `from` (configured, not me).
    pub(crate) fn on_join(&mut self, now: Instant, from: DaemonId, j: Join) {
        let reps: Option<Vec<Rep>> = j
            .reps
            .iter()
            .map(|r| self.known_rep(r.id, r.kind))
            .collect();
        let (Some(reps), Some(from_seg)) = (reps, self.seg_of(from)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(first) = reps
            .first()
            .copied()
            .filter(|r| r.kind != RepKind::Potential)
        else {
            self.stats.dropped += 1;
            return;
        };
        if j.members.len() > MAX_PROCS_RING {
            self.stats.dropped += 1;
            return;
        }
        let me = self.cfg.me;
        let my_seg = self.my_seg();
        let my_seg_rep_join = from_seg == my_seg && first.kind == RepKind::Seg;
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
                } else if first.seg != my_seg
                    || self.first_in_seg(&self.ring.members, my_seg) == Some(me)
                {
                    let leader = self.ring.members[0];
                    self.send_refer(from, leader, RepKind::Ring);
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
                let smallest = self.smallest_rep(&gathered).map(|i| gathered[i].id);
                if smallest == Some(first.id) {
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
        let smallest = self.smallest_rep(&reps).map(|i| reps[i].id);
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
        let j = Packet::Join(Join {
            members: Vec::new(),
            reps: vec![Rep {
                id: me,
                kind: RepKind::Ring,
                seg: self.my_seg(),
            }],
            rep_index: self.join_rep_index,
        });
        let missing: Vec<DaemonId> = if self.multi_segment() {
            self.cfg
                .daemons
                .iter()
                .copied()
                .filter(|d| !self.ring.members.contains(d))
                .collect()
        } else {
            self.send(Dest::Segment, Port::Data, &j);
            vec![me]
        };
        if self.multi_segment() {
            for d in &missing {
                self.send(Dest::Unicast(*d), Port::Data, &j);
            }
        }
        if !missing.is_empty() {
            self.enter_gather(now, true, Vec::new(), Vec::new());
        }
    }
}
