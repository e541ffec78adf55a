//! GATHER, JOINs and the leader's lookup — 5.0.1's `Shift_to_gather`, `Send_join`,
//! `Memb_handle_join`, `Form_or_fail`, `Memb_lookup_new_members`.

use super::insert_rep;
use crate::ring::packet::{Join, Packet, Rep, RepKind};
use crate::ring::{DaemonId, Dest, Engine, Port, State, Timer, TokenState, MAX_PROCS_RING};
use crate::time::Instant;

impl Engine {
    /// Enters GATHER. With `ring_alive` the installed ring keeps running (a leader merging).
    pub(crate) fn enter_gather(&mut self, now: Instant, ring_alive: bool) {
        let me = self.cfg.me;
        self.state = State::Gather;
        self.ring_alive = ring_alive;
        self.form_id = None;
        self.future = None;
        let kind = if ring_alive {
            RepKind::Ring
        } else {
            RepKind::Seg
        };
        self.f_reps = vec![Rep {
            id: me,
            kind,
            seg: self.my_seg(),
        }];
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
        let j = Packet::Join(Join {
            members: self.f_members.clone(),
            reps: self.f_reps.clone(),
            rep_index: self.join_rep_index,
        });
        if !self.ring_alive {
            self.send(Dest::Segment, Port::Data, &j);
        }
        let to: Vec<DaemonId> = self.potential.iter().map(|r| r.id).collect();
        for d in to {
            self.send(Dest::Unicast(d), Port::Data, &j);
        }
    }

    pub(crate) fn on_join_timer(&mut self, now: Instant) {
        if self.state == State::Gather {
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
        match self.state {
            State::Op => {
                if self.ring.members.contains(&from) {
                    // One segment: a lookup probe. Several: the sender lost our ring.
                    if self.multi_segment() {
                        self.on_token_loss(now);
                    } else {
                        self.stats.dropped += 1;
                    }
                } else if self.is_leader() {
                    self.potential = vec![first];
                    self.f_members.clear();
                    self.enter_gather(now, true);
                } else {
                    let members = self.ring.members.clone();
                    if first.seg != my_seg || self.first_in_seg(&members, my_seg) == Some(me) {
                        let leader = self.ring.members[0];
                        self.send_refer(from, leader, RepKind::Ring);
                    }
                }
            }
            State::Seg => {
                if my_seg_rep_join {
                    self.seg_rep = Some(from);
                    self.enter_represented(now);
                    self.send(
                        Dest::Segment,
                        Port::Data,
                        &Packet::Alive(self.f_members.clone()),
                    );
                }
            }
            State::Represented => {
                if my_seg_rep_join {
                    self.seg_rep = Some(from);
                    self.arm(Timer::Rep, now + self.cfg.rep_timeout);
                    self.send(
                        Dest::Segment,
                        Port::Data,
                        &Packet::Alive(self.f_members.clone()),
                    );
                } else if let Some(rep) = self.seg_rep {
                    self.send_refer(from, rep, RepKind::Seg);
                }
            }
            State::Gather => {
                insert_rep(&mut self.f_reps, first);
                for r in reps {
                    insert_rep(&mut self.potential, r);
                }
                let smallest = self.smallest_rep(&self.f_reps).map(|i| self.f_reps[i].id);
                if smallest == Some(first.id) {
                    self.arm(Timer::Gather, now + self.cfg.gather_timeout);
                }
            }
            State::Form => self.stats.dropped += 1,
            State::Evs => {
                if self
                    .future
                    .as_ref()
                    .is_some_and(|f| f.members.contains(&from))
                {
                    self.on_token_loss(now);
                    super::insert_member(&mut self.f_members, from);
                } else {
                    self.stats.dropped += 1;
                }
            }
        }
    }

    /// Gather_timeout (5.0.1 `Form_or_fail`): form, return to the running ring, or gather
    /// again.
    pub(crate) fn on_gather_timer(&mut self, now: Instant) {
        if self.state != State::Gather {
            return;
        }
        let me = self.cfg.me;
        let smallest = self.smallest_rep(&self.f_reps).map(|i| self.f_reps[i].id);
        if smallest == Some(me) {
            if self.ring_alive && self.f_reps.len() == 1 {
                self.back_to_op(now);
            } else {
                self.create_form1(now);
            }
        } else if self.ring_alive {
            self.back_to_op(now);
        } else {
            self.f_members = vec![me];
            self.potential.clear();
            for r in self.f_reps.iter().skip(1).copied().collect::<Vec<_>>() {
                insert_rep(&mut self.potential, r);
            }
            self.enter_gather(now, false);
        }
    }

    fn back_to_op(&mut self, now: Instant) {
        self.state = State::Op;
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
        if self.state != State::Op || !self.is_leader() {
            return;
        }
        let me = self.cfg.me;
        self.potential.clear();
        self.f_members.clear();
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
            self.enter_gather(now, true);
        }
    }
}
