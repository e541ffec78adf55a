//! EVS — the new ring's token recovers the old ring's messages (5.0.1's `Memb_commit`,
//! `Memb_transitional`, `Memb_regular`, `Discard_packets`), then the installation that ends
//! in OP.

use std::collections::BTreeMap;

use super::Phase;
use crate::ring::token::{add_request, set_flow_control};
use crate::ring::{
    ConfigChange, ConfigKind, DaemonId, Engine, Output, RingId, RingState, Timer, TokenState,
    MAX_EVS_ROUNDS, MAX_RTR_SEQS, MAX_SEQ_GAP,
};
use crate::time::Instant;
use crate::wire::daemon::{Packet, RingInfo, Seq, Token};

/// Most sequence numbers scanned when looking for missing packets.
const MAX_SCAN: u32 = 4 * MAX_SEQ_GAP;

/// The ring this daemon is moving to (FORM2 seen, EVS in progress).
#[derive(Debug, Clone)]
pub(crate) struct Future {
    pub(crate) ring: RingId,
    pub(crate) members: Vec<DaemonId>,
    pub(crate) last_seq: u32,
    /// This daemon's old ring's entry from FORM2.
    pub(crate) entry: RingInfo,
    /// Packets of the new ring received before installing it.
    pub(crate) early: BTreeMap<u32, Packet>,
}

impl Engine {
    /// Enters EVS for `future` (FORM2 seen): the new ring's token is awaited.
    pub(crate) fn enter_evs(&mut self, now: Instant, future: Future) {
        self.phase = Phase::Evs { future, rounds: 0 };
        self.cancel(Timer::Form);
        self.arm(Timer::TokenLoss, now + self.cfg.token_timeout);
        self.tok = TokenState::default();
    }

    /// The new ring's token while recovering the old ring's messages (5.0.1: seq stays 0, aru
    /// climbs to `last_seq` once everybody has everything).
    pub(crate) fn step_evs_token(&mut self, now: Instant, mut t: Token) {
        let me = self.cfg.me;
        let Phase::Evs { future, rounds } = &mut self.phase else {
            return;
        };
        let last_seq = future.last_seq;
        *rounds += 1;
        if *rounds > MAX_EVS_ROUNDS {
            self.on_token_loss(now);
            return;
        }
        let rid = self.ring.id;
        let retrans = self.answer_rtr(&mut t, rid);
        let wanted = self.evs_missing();
        let done = wanted.is_empty();
        if done {
            self.on_evs_commit();
        }
        add_request(&mut t, rid, me, wanted);
        let mine = if done { last_seq } else { 0 };
        let h = &mut t.header;
        if h.aru.0 > mine || h.aru_last_id == me || h.aru_last_id == DaemonId::ANY {
            h.aru = Seq(mine);
            h.aru_last_id = me;
        }
        set_flow_control(h, retrans);
        let aru = h.aru.0;
        let safe = aru.min(self.tok.prev_sent_aru);
        self.tok.prev_sent_aru = aru;
        // As 5.0.1: the EVS token keeps seq 0; a daemon that sees the ring aru at last_seq
        // (every member has recovered everything) forwards the token unchanged and then
        // installs. Every member installs within the next rotation, before any token of the
        // installed ring reaches it.
        let install = done && safe == last_seq;
        self.forward_token(now, t, false);
        if install {
            self.install(now);
        }
    }

    /// EVS: packets of the old ring this daemon still lacks.
    fn evs_missing(&self) -> Vec<u32> {
        let Phase::Evs { future: f, .. } = &self.phase else {
            return Vec::new();
        };
        let e = &f.entry;
        (self.ring.my_aru.saturating_add(1)..=e.last())
            .take(MAX_SCAN as usize)
            .filter(|s| e.contains(*s) && !self.ring.buf.contains_key(s))
            .take(MAX_RTR_SEQS)
            .collect()
    }

    /// EVS done here (5.0.1 `Memb_commit`): my commit set becomes the future ring's entry
    /// for my old ring (its transitional set, then the rest).
    fn on_evs_commit(&mut self) {
        if let Phase::Evs { future, .. } = &self.phase {
            let e = &future.entry;
            self.commit_set = e
                .trans
                .iter()
                .chain(e.commit_rest.iter())
                .copied()
                .collect();
        }
    }

    /// Ends EVS: delivers the old ring's remaining messages, the transitional and the
    /// regular configuration, and starts the new ring.
    pub(crate) fn install(&mut self, now: Instant) {
        let fut = match std::mem::replace(
            &mut self.phase,
            Phase::Op {
                foreign_forwarded: false,
            },
        ) {
            Phase::Evs { future, .. } => future,
            other => {
                self.phase = other;
                return;
            }
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
        let real_old = self.ring.id.time != crate::ring::NO_RING_TIME;
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
        self.commit_set = vec![self.cfg.me];
        self.stats.installs += 1;
        for p in self.send_q.iter_mut() {
            // A message cut by the membership change is sent again whole.
            p.next = 0;
        }
        // The old ring's exchange is over; the group layer sends anew for this ring.
        self.stats.stale_exchange += self.exchange_q.len() as u64;
        self.exchange_q.clear();
        if self.gate_at_install {
            self.exchanging = true;
        }
        self.tok.prev_sent_aru = 0;
        self.tok.my_last_sent = 0;
        self.tok.token_counter = 0;
        self.tok.round = 0;
        self.tok.prev_sent_seq = 0;
        if self.is_leader() {
            self.arm(Timer::Lookup, now + self.cfg.lookup_timeout);
        }
    }
}
