//! SEG and REPRESENTED (a segment elects its representative with ALIVEs), token loss, REFER
//! and foreign packets — 5.0.1's `Memb_token_loss`, `Shift_to_seg`, `Gather_or_represented`,
//! `Memb_handle_alive`, `Memb_handle_refer`, `Memb_handle_foreign`.

use super::{insert_member, insert_rep};
use crate::ring::packet::{DataPacket, Packet, RepKind};
use crate::ring::{DaemonId, Dest, Engine, Port, State, Timer, TokenState};
use crate::time::Instant;

/// Copies of a foreign packet a segment's first daemon forwards to its ring leader.
const FOREIGN_COPIES: usize = 2;

impl Engine {
    /// Start-up: 5.0.1 pretends a token loss of a ring of just this daemon.
    pub(crate) fn start_membership(&mut self, now: Instant) {
        self.potential.clear();
        let me = [self.cfg.me];
        self.add_segment_potentials(&me);
        self.enter_seg(now);
    }

    pub(crate) fn on_token_loss(&mut self, now: Instant) {
        self.stats.token_losses += 1;
        tracing::debug!(me = %self.cfg.me, state = ?self.state, "token loss");
        match self.state {
            State::Op => {
                self.potential.clear();
                let members = self.ring.members.clone();
                self.add_segment_potentials(&members);
            }
            State::Gather if self.ring_alive => {
                // The reps I gathered first, then the other segments of my ring.
                self.potential.clear();
                for r in self.f_reps.iter().skip(1).copied().collect::<Vec<_>>() {
                    insert_rep(&mut self.potential, r);
                }
                let members = self.ring.members.clone();
                self.add_segment_potentials(&members);
            }
            State::Evs => {
                self.potential.clear();
                let members = self
                    .future
                    .as_ref()
                    .map(|f| f.members.clone())
                    .unwrap_or_default();
                self.add_segment_potentials(&members);
            }
            // Form: the potential reps were set from the FORM1 token.
            _ => {}
        }
        self.ring_alive = false;
        self.future = None;
        self.form_id = None;
        for t in [
            Timer::TokenLoss,
            Timer::TokenHurry,
            Timer::Join,
            Timer::Gather,
            Timer::Form,
            Timer::Lookup,
        ] {
            self.cancel(t);
        }
        self.tok = TokenState::default();
        self.enter_seg(now);
    }

    /// SEG: F_members = me; ALIVE at once (5.0.1: a zero timeout, so the ALIVE that made us
    /// lose the token, or any datagram already waiting, is heard first) and every
    /// Alive_timeout; decide after Seg_timeout.
    pub(crate) fn enter_seg(&mut self, now: Instant) {
        self.state = State::Seg;
        self.f_members = vec![self.cfg.me];
        self.cancel(Timer::Rep);
        self.arm(Timer::Alive, now);
        self.arm(Timer::Seg, now + self.cfg.seg_timeout);
    }

    fn send_alive(&mut self) {
        let p = Packet::Alive(self.f_members.clone());
        self.send(Dest::Segment, Port::Data, &p);
    }

    pub(crate) fn on_alive_timer(&mut self, now: Instant) {
        if self.state == State::Seg {
            self.send_alive();
            self.arm(Timer::Alive, now + self.cfg.alive_timeout);
        }
    }

    /// Seg_timeout: the smallest daemon heard gathers, the others are represented.
    pub(crate) fn on_seg_timer(&mut self, now: Instant) {
        if self.state != State::Seg {
            return;
        }
        self.seg_rep = None;
        let mut heard = self.f_members.clone();
        self.sort_by_rank(&mut heard);
        if heard.first() == Some(&self.cfg.me) {
            self.enter_gather(now, false);
        } else {
            self.enter_represented(now);
        }
    }

    pub(crate) fn enter_represented(&mut self, now: Instant) {
        self.state = State::Represented;
        self.cancel(Timer::Alive);
        self.cancel(Timer::Seg);
        self.arm(Timer::Rep, now + self.cfg.rep_timeout);
    }

    pub(crate) fn on_rep_timer(&mut self, now: Instant) {
        if self.state == State::Represented {
            self.enter_seg(now);
        }
    }

    /// ALIVE from `from` (already checked to be configured and not me).
    pub(crate) fn on_alive(&mut self, now: Instant, from: DaemonId, _members: &[DaemonId]) {
        match self.state {
            State::Op => {
                if self.ring.members.contains(&from) {
                    self.on_token_loss(now);
                    insert_member(&mut self.f_members, from);
                } else {
                    self.stats.dropped += 1;
                }
            }
            State::Seg => insert_member(&mut self.f_members, from),
            State::Represented => self.arm(Timer::Rep, now + self.cfg.rep_timeout),
            State::Gather => {
                if !self.ring_alive {
                    insert_member(&mut self.f_members, from);
                } else if self.ring.members.contains(&from) {
                    self.on_token_loss(now);
                    insert_member(&mut self.f_members, from);
                } else {
                    self.stats.dropped += 1;
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
                    insert_member(&mut self.f_members, from);
                } else {
                    self.stats.dropped += 1;
                }
            }
        }
    }

    /// REFER: while gathering, the referred rep becomes a potential rep.
    pub(crate) fn on_refer(&mut self, rep: DaemonId, kind: RepKind) {
        let r = self.known_rep(rep, kind);
        match r {
            Some(r) if self.state == State::Gather => {
                insert_rep(&mut self.potential, r);
            }
            _ => self.stats.dropped += 1,
        }
    }

    /// Sends a REFER to `to` pointing at `rep`.
    pub(crate) fn send_refer(&mut self, to: DaemonId, rep: DaemonId, kind: RepKind) {
        self.send(Dest::Unicast(to), Port::Data, &Packet::Refer { rep, kind });
    }

    /// A data packet of a ring that is neither mine nor my next one.
    pub(crate) fn on_foreign(&mut self, now: Instant, d: DataPacket) {
        if self.state != State::Op || self.rank(d.sender).is_none() {
            return;
        }
        let me = self.cfg.me;
        if self.is_leader() {
            self.on_lookup(now);
            return;
        }
        let members = self.ring.members.clone();
        let seg_leader = self.first_in_seg(&members, self.my_seg());
        if seg_leader == Some(me) && !self.foreign_found {
            self.foreign_found = true;
            let leader = self.ring.members[0];
            let p = Packet::Data(d);
            for _ in 0..FOREIGN_COPIES {
                self.send(Dest::Unicast(leader), Port::Data, &p);
            }
        }
    }

    /// 5.0.1 wide-area rule: the last ring member of its segment re-sends a token once more.
    pub(crate) fn extra_token_copy(&self) -> bool {
        if !self.cfg.wide_area {
            return false;
        }
        let seg = self.my_seg();
        let last = self
            .token_members()
            .iter()
            .rev()
            .find(|d| self.seg_of(**d) == Some(seg));
        last == Some(&self.cfg.me)
    }
}
