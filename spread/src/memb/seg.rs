//! SEG and REPRESENTED (a segment elects its representative with ALIVEs), token loss, REFER
//! and foreign packets — 5.0.1's `Memb_token_loss`, `Shift_to_seg`, `Gather_or_represented`,
//! `Memb_handle_alive`, `Memb_handle_refer`, `Memb_handle_foreign`.

use super::{insert_member, insert_rep, Phase};
use crate::ring::{DaemonId, Dest, Engine, Timer, TokenState};
use crate::time::Instant;
use crate::wire::daemon::{self as w, RepInfo, RepType};

/// Copies of a foreign packet a segment's first daemon forwards to its ring leader.
const FOREIGN_COPIES: usize = 2;

impl Engine {
    /// Start-up: 5.0.1 pretends a token loss of a ring of just this daemon.
    pub(crate) fn start_membership(&mut self, now: Instant) {
        let mut potential = Vec::new();
        self.add_segment_potentials(&mut potential, &[self.cfg.me]);
        self.enter_seg(now, potential);
    }

    pub(crate) fn on_token_loss(&mut self, now: Instant) {
        self.stats.token_losses += 1;
        tracing::debug!(me = %self.cfg.me, state = ?self.state(), "token loss");
        let potential = match &mut self.phase {
            Phase::Op { .. } => {
                let mut p = Vec::new();
                self.add_segment_potentials(&mut p, &self.ring.members);
                p
            }
            Phase::Gather {
                ring_alive: true,
                reps,
                ..
            } => {
                // The reps I gathered first, then the other segments of my ring.
                let mut p = Vec::new();
                for r in reps.iter().skip(1) {
                    insert_rep(&mut p, *r);
                }
                self.add_segment_potentials(&mut p, &self.ring.members);
                p
            }
            Phase::Evs { future, .. } => {
                let members = future.members.clone();
                let mut p = Vec::new();
                self.add_segment_potentials(&mut p, &members);
                p
            }
            // Form: the potential reps were set from the FORM1 token.
            Phase::Seg { potential, .. }
            | Phase::Represented { potential, .. }
            | Phase::Gather { potential, .. }
            | Phase::Form { potential, .. } => std::mem::take(potential),
        };
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
        self.enter_seg(now, potential);
    }

    /// A token loss caused by `from` (an ALIVE or JOIN of a member of my ring), which SEG
    /// has then already heard.
    pub(crate) fn token_loss_from(&mut self, now: Instant, from: DaemonId) {
        self.on_token_loss(now);
        if let Phase::Seg { heard, .. } = &mut self.phase {
            insert_member(heard, from);
        }
    }

    /// SEG: F_members = me; ALIVE at once (5.0.1: a zero timeout, so the ALIVE that made us
    /// lose the token, or any datagram already waiting, is heard first) and every
    /// Alive_timeout; decide after Seg_timeout.
    pub(crate) fn enter_seg(&mut self, now: Instant, potential: Vec<RepInfo>) {
        self.phase = Phase::Seg {
            heard: vec![self.cfg.me],
            potential,
        };
        self.cancel(Timer::Rep);
        self.arm(Timer::Alive, now);
        self.arm(Timer::Seg, now + self.cfg.seg_timeout);
    }

    /// An ALIVE listing the daemons this one heard (SEG and REPRESENTED).
    fn send_alive(&mut self) {
        let heard = match &self.phase {
            Phase::Seg { heard, .. } | Phase::Represented { heard, .. } => heard.clone(),
            _ => return,
        };
        let p = w::Packet::alive(self.cfg.me, self.cfg.conf_hash, heard);
        self.send_packet(Dest::Segment, &p);
    }

    pub(crate) fn on_alive_timer(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Seg { .. }) {
            self.send_alive();
            self.arm(Timer::Alive, now + self.cfg.alive_timeout);
        }
    }

    /// Seg_timeout: the smallest daemon heard gathers, the others are represented.
    pub(crate) fn on_seg_timer(&mut self, now: Instant) {
        let Phase::Seg { heard, potential } = &mut self.phase else {
            return;
        };
        let (heard, potential) = (std::mem::take(heard), std::mem::take(potential));
        let mut sorted = heard.clone();
        self.sort_by_rank(&mut sorted);
        if sorted.first() == Some(&self.cfg.me) {
            self.enter_gather(now, false, heard, potential);
        } else {
            self.enter_represented(now, heard, potential, None);
        }
    }

    fn enter_represented(
        &mut self,
        now: Instant,
        heard: Vec<DaemonId>,
        potential: Vec<RepInfo>,
        rep: Option<DaemonId>,
    ) {
        self.phase = Phase::Represented {
            heard,
            potential,
            rep,
        };
        self.cancel(Timer::Alive);
        self.cancel(Timer::Seg);
        self.arm(Timer::Rep, now + self.cfg.rep_timeout);
    }

    pub(crate) fn on_rep_timer(&mut self, now: Instant) {
        if let Phase::Represented { potential, .. } = &mut self.phase {
            let potential = std::mem::take(potential);
            self.enter_seg(now, potential);
        }
    }

    /// A JOIN from `from` of my segment's SEG_REP, in SEG or REPRESENTED: I am represented
    /// by it and answer with one ALIVE.
    pub(crate) fn on_rep_join(&mut self, now: Instant, from: DaemonId) {
        match &mut self.phase {
            Phase::Seg { heard, potential } => {
                let (heard, potential) = (std::mem::take(heard), std::mem::take(potential));
                self.enter_represented(now, heard, potential, Some(from));
            }
            Phase::Represented { rep, .. } => {
                *rep = Some(from);
                self.arm(Timer::Rep, now + self.cfg.rep_timeout);
            }
            _ => return,
        }
        self.send_alive();
    }

    /// A JOIN from someone else than my representative, in REPRESENTED: a REFER to it
    /// (nothing in SEG, or before the representative's JOIN was heard).
    pub(crate) fn refer_to_my_rep(&mut self, from: DaemonId) {
        if let Phase::Represented { rep: Some(rep), .. } = self.phase {
            self.send_refer(from, rep, RepType::SEG);
        }
    }

    /// ALIVE from `from` (already checked to be configured and not me).
    pub(crate) fn on_alive(&mut self, now: Instant, from: DaemonId, _members: &[DaemonId]) {
        match &mut self.phase {
            Phase::Seg { heard, .. }
            | Phase::Gather {
                ring_alive: false,
                heard,
                ..
            } => insert_member(heard, from),
            Phase::Represented { .. } => self.arm(Timer::Rep, now + self.cfg.rep_timeout),
            Phase::Op { .. } | Phase::Gather { .. } => {
                if self.ring.members.contains(&from) {
                    self.token_loss_from(now, from);
                } else {
                    self.stats.dropped += 1;
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

    /// REFER: while gathering, the referred rep becomes a potential rep.
    pub(crate) fn on_refer(&mut self, rep: DaemonId, rep_type: RepType) {
        let r = self.known_rep(rep, rep_type);
        match (r, &mut self.phase) {
            (Some(r), Phase::Gather { potential, .. }) => {
                insert_rep(potential, r);
            }
            _ => self.stats.dropped += 1,
        }
    }

    /// Sends a REFER to `to` pointing at `rep`.
    pub(crate) fn send_refer(&mut self, to: DaemonId, rep: DaemonId, rep_type: RepType) {
        let p = w::Packet::refer(self.cfg.me, self.cfg.conf_hash, rep, rep_type);
        self.send_packet(Dest::Unicast(to), &p);
    }

    /// A data packet of a ring that is neither mine nor my next one.
    pub(crate) fn on_foreign(&mut self, now: Instant, d: w::Packet) {
        if !matches!(self.phase, Phase::Op { .. }) || self.rank(d.header.proc_id).is_none() {
            return;
        }
        let me = self.cfg.me;
        if self.is_leader() {
            self.on_lookup(now);
            return;
        }
        let seg_leader = self.first_in_seg(&self.ring.members, self.my_seg());
        let Phase::Op { foreign_forwarded } = &mut self.phase else {
            return;
        };
        if seg_leader == Some(me) && !*foreign_forwarded {
            *foreign_forwarded = true;
            let leader = self.ring.members[0];
            for _ in 0..FOREIGN_COPIES {
                self.send_packet(Dest::Unicast(leader), &d);
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
