//! Token handling: acceptance and duplicate suppression (arq/retrans), retransmission
//! requests and answers, aru rules, flow-control accounting, holding an idle token, and the
//! EVS token that ends in installation.

use super::{neighbours, Dest, Engine, RingId, State, Timer, MAX_RTR_BLOCKS, MAX_RTR_SEQS};
use crate::memb::Phase;
use crate::time::Instant;
use crate::wire::daemon::{self as w, DaemonId, RtrRequest, Seq, Token, TokenBody, TokenHeader};

/// proc_id −1 in a 5.0.1 retransmission request: "whoever needs it" (a widened request).
const ANY_REQUESTER: super::DaemonId = super::DaemonId(u32::MAX);
/// Most sequence numbers scanned when looking for missing packets.
const MAX_SCAN: u32 = 4 * super::MAX_SEQ_GAP;

impl Engine {
    /// Members of the ring the token circulates in (the future ring during EVS).
    pub(crate) fn token_members(&self) -> &[super::DaemonId] {
        match &self.phase {
            Phase::Evs { future, .. } => &future.members,
            _ => &self.ring.members,
        }
    }

    fn token_ring(&self) -> Option<RingId> {
        match &self.phase {
            Phase::Evs { future, .. } => Some(future.ring),
            p if p.ring_alive() => Some(self.ring.id),
            _ => None,
        }
    }

    fn token_leader(&self) -> bool {
        self.token_members().first() == Some(&self.cfg.me)
    }

    /// A regular token from `from`, as received.
    pub(crate) fn on_token(&mut self, now: Instant, from: DaemonId, t: Token) {
        let me = self.cfg.me;
        let t = own_copy(t, me, self.cfg.conf_hash);
        let (seq, arq, retrans) = (t.header.seq.0, t.header.kind.arq(), t.header.kind.retrans());
        if self.token_ring() != Some(t.header.memb_id) {
            self.stats.dropped += 1;
            return;
        }
        let Some((_, pred)) = neighbours(self.token_members(), me) else {
            self.stats.dropped += 1;
            return;
        };
        let stale = self.state() != State::Evs && seq < self.ring.highest;
        tracing::trace!(me = %me, %from, %t, highest = self.ring.highest, my_aru = self.ring.my_aru,
            stale, "token");
        if from != pred {
            self.stats.dropped += 1;
            return;
        }
        // No honest sender runs further than MAX_SEQ_GAP ahead of the ring's aru, and mine
        // lags the ring's by at most a couple of rotations' windows: a seq past that claims
        // packets nobody can have (a lying member), and taking it would stall the ring.
        let bound = self
            .ring
            .aru
            .saturating_add(super::MAX_SEQ_GAP)
            .saturating_add(4 * u32::from(self.cfg.window));
        if self.state() != State::Evs && seq > bound {
            tracing::debug!(me = %me, seq, bound, "token claiming impossible packets dropped");
            self.stats.dropped += 1;
            self.stats.wild_tokens += 1;
            return;
        }
        if self.token_leader() {
            if !self.tok.awaiting || arq != self.tok.last_tx_arq || stale {
                self.stats.dropped += 1;
                return;
            }
            self.tok.awaiting = false;
            self.cancel(Timer::TokenHurry);
        } else {
            match self.tok.last_rx_arq {
                Some(a) if arq == a => {
                    if retrans > self.tok.last_rx_retrans && self.holding_for_reply() {
                        // The token kept for a reply is the one asked for: it goes now.
                        self.tok.last_rx_retrans = retrans;
                        self.release_reply_hold(now);
                    } else if retrans > self.tok.last_rx_retrans {
                        self.tok.last_rx_retrans = retrans;
                        self.resend_last_token(retrans);
                    } else {
                        self.stats.dropped += 1;
                    }
                    return;
                }
                Some(a) if arq != (a + 1) % 16 => {
                    self.stats.dropped += 1;
                    return;
                }
                _ => {}
            }
            // A new token (by its arq) that is older than what this daemon has seen: only
            // checked after the duplicate rules above, so a leader's re-sent copy (same arq,
            // higher retrans) still makes this daemon re-send its last token, as 5.0.1 does.
            if stale {
                self.stats.dropped += 1;
                return;
            }
            if retrans > 0 {
                self.stats.token_hurry += 1;
            }
            self.tok.last_rx_arq = Some(arq);
            self.tok.last_rx_retrans = retrans;
        }
        self.arm(Timer::TokenLoss, now + self.cfg.token_timeout);
        self.tok.round = self.tok.round.wrapping_add(1);
        if self.state() == State::Evs {
            self.step_evs_token(now, t);
        } else {
            if self.state() == State::Op {
                self.note_token_received(&t.header);
            }
            self.step_op_token(now, t);
        }
    }

    /// A regular token in an installed ring.
    pub(crate) fn step_op_token(&mut self, now: Instant, mut t: Token) {
        let me = self.cfg.me;
        let rid = self.ring.id;
        // Own messages delivered from here on are this visit's (`ring::reply`).
        self.own_delivered = 0;
        if self.token_leader() {
            if let Some(t0) = self.tok.rotation_start.take() {
                let us = u64::try_from(now.saturating_since(t0).as_micros()).unwrap_or(u64::MAX);
                self.stats.token_rotations += 1;
                self.stats.rotation_time_us = self.stats.rotation_time_us.saturating_add(us);
                self.stats.last_rotation_us = us;
            }
        }
        // 5.0.1 compares the received aru and seq ("everyone has everything so far").
        let all_had_all = t.header.aru == t.header.seq;
        // As 5.0.1: the token's seq is the ring's highest, even before its packets arrive
        // (else an idle-looking leader could hold a token whose newest packet is in flight).
        self.ring.highest = self.ring.highest.max(t.header.seq.0);
        let retrans = self.answer_rtr(&mut t, rid);
        let sent = self.send_new_packets(&mut t.header, 0);
        let seq = t.header.seq.0.max(self.ring.highest);
        t.header.seq = Seq(seq);
        // Accelerated ring: packets after the previous token may still be in flight.
        let limit = if self.cfg.accelerated {
            self.tok.prev_sent_seq.min(seq)
        } else {
            seq
        };
        self.tok.prev_sent_seq = seq;
        let wanted: Vec<u32> = (self.ring.my_aru.saturating_add(1)..=limit)
            .take(MAX_SCAN as usize)
            .filter(|s| !self.ring.buf.contains_key(s))
            .take(MAX_RTR_SEQS)
            .collect();
        let missing = !wanted.is_empty();
        tracing::trace!(me = %me, ?wanted, retrans, sent, "token visit");
        if self.stalled(now) {
            return;
        }
        self.stats.retrans_requested += wanted.len() as u64;
        add_request(&mut t, rid, me, wanted);
        let h = &mut t.header;
        let aru_last = h.aru_last_id;
        if h.aru.0 > self.ring.my_aru || aru_last == me || aru_last == DaemonId::ANY || all_had_all
        {
            h.aru = Seq(self.ring.my_aru);
            h.aru_last_id = me;
        }
        let total = sent.saturating_add(retrans);
        let fc = flow_control(h)
            .saturating_sub(self.tok.my_last_sent)
            .saturating_add(total);
        set_flow_control(h, fc);
        self.tok.my_last_sent = total;
        // 5.0.1 `To_hold_token`, decided before this visit's ring aru is computed: the ring
        // aru has equalled the highest seq for two visits in a row (so every member has
        // delivered every SAFE message), nothing new was sent, no re-sent token in between.
        let hold = self.token_leader() && self.would_hold();
        let sent_aru = t.header.aru.0;
        let prev_sent_aru = self.tok.prev_sent_aru;
        // A token that may be kept for a local reply is decided on once this visit's
        // deliveries are known (`ring::reply`).
        let kept = if !hold && self.may_hold_for_reply(sent, missing) {
            Some(t)
        } else {
            self.forward_token(now, t, hold);
            self.flush_after_token();
            None
        };
        self.end_visit(sent_aru, prev_sent_aru, sent);
        if self.ring.highest == self.ring.aru {
            self.tok.token_counter += 1;
        } else {
            self.tok.token_counter = 0;
        }
        match kept {
            Some(t) => self.defer_token(now, t, prev_sent_aru, sent),
            None => {
                self.delivered_since_visit = 0;
                self.own_delivered = 0;
            }
        }
    }

    /// The end of a visit whose token left (or leaves) with aru `sent_aru`, the one sent a
    /// rotation before having had `prev_sent_aru`: the ring aru (everyone has every seq up
    /// to it), then what can be delivered — and 5.0.1 delivers own new RELIABLE packets (the
    /// last `sent`) right away.
    pub(crate) fn end_visit(&mut self, sent_aru: u32, prev_sent_aru: u32, sent: u16) {
        let safe = sent_aru.min(prev_sent_aru);
        self.tok.prev_sent_aru = sent_aru;
        if safe > self.ring.aru {
            self.ring.aru = safe;
        }
        self.deliver_regular();
        let top = self.ring.highest;
        self.deliver_reliable(top.saturating_sub(u32::from(sent)).saturating_add(1)..=top);
    }

    /// A member's aru has stayed below the ring's highest seq for a whole Token_timeout while
    /// the token kept coming: the packets it asks for exist nowhere (a lying member claimed
    /// them in a token: mbus-fuzz-net's peer mode stalled a daemon this way; 5.0.1 would wait
    /// forever). It drops the token and acts as on a token loss, so the ring re-forms and
    /// the membership's recovery settles what can be recovered. `true`: the token was dropped.
    fn stalled(&mut self, now: Instant) -> bool {
        if self.ring.my_aru >= self.ring.highest {
            self.tok.stall = None;
            return false;
        }
        match self.tok.stall {
            Some((aru, since)) if aru == self.ring.my_aru => {
                if now.saturating_since(since) < self.cfg.token_timeout {
                    return false;
                }
                self.tok.stall = None;
                self.stats.stalls += 1;
                // The claimed seqs exist nowhere: forget them (the highest packet actually
                // received stands), so the membership does not try to recover them — a FORM
                // token cannot even list that many holes.
                let received = self.ring.buf.keys().next_back().copied().unwrap_or(0);
                let real = received.max(self.ring.my_aru);
                tracing::warn!(me = %self.cfg.me, aru = self.ring.my_aru,
                    claimed = self.ring.highest, received = real,
                    "no missing packet recovered for a whole token timeout while the token \
                     goes round (a member claimed packets nobody has): re-forming the ring");
                self.ring.highest = real;
                self.on_token_loss(now);
                true
            }
            _ => {
                self.tok.stall = Some((self.ring.my_aru, now));
                false
            }
        }
    }

    /// Sends the token on (or, at the leader, holds it when `hold`).
    pub(crate) fn forward_token(&mut self, now: Instant, mut t: Token, hold: bool) {
        let me = self.cfg.me;
        let Some((succ, _)) = neighbours(self.token_members(), me) else {
            return;
        };
        if self.token_leader() {
            let arq = (self.tok.last_tx_arq + 1) % 16;
            t.header.kind = t.header.kind.with_arq(arq).with_retrans(0);
            self.tok.last_tx_arq = arq;
            self.arm(Timer::TokenHurry, now + self.cfg.hurry_timeout);
            if self.state() != State::Evs && hold {
                tracing::trace!(me = %me, seq = %t.header.seq, aru = %t.header.aru, "token held");
                self.tok.holding = true;
                self.note_token_sent(&t.header);
                self.tok.last_tx = Some((succ, t));
                return;
            }
            self.tok.awaiting = true;
            self.tok.rotation_start = Some(now);
        }
        self.send_token(Dest::Unicast(succ), &t);
        self.note_token_sent(&t.header);
        self.tok.last_tx = Some((succ, t));
    }

    /// Leader: sends a held token now.
    pub(crate) fn release_held_token(&mut self, now: Instant, retrans: u8) {
        if !self.tok.holding || !self.token_leader() {
            return;
        }
        self.tok.holding = false;
        // 5.0.1 `Handle_hurry`: someone wants to send; no hold until everyone had a turn.
        self.tok.token_counter = 0;
        if let Some((to, t)) = self.tok.last_tx.as_mut() {
            t.header.kind = t.header.kind.with_retrans(retrans);
            let (to, t) = (*to, t.clone());
            let copies = 1 + usize::from(self.extra_token_copy());
            for _ in 0..copies {
                self.send_token(Dest::Unicast(to), &t);
            }
            self.tok.awaiting = true;
            self.tok.rotation_start = Some(now);
            self.arm(Timer::TokenHurry, now + self.cfg.hurry_timeout);
        }
    }

    /// Leader holding the idle token, with messages of its own to send: the held token was
    /// never sent, so the leader visits it again now — its new packets go out with it, as if
    /// they had been there when the token came back — instead of sending it round empty and
    /// waiting a whole rotation for it (5.0.1 does the latter: `Prot_token_hurry`). Nobody
    /// else can tell: the successor gets one token with the arq it was given when held, the
    /// new packets before it, and the seq, aru and flow control of an ordinary visit (the
    /// ring was idle, so the held visit left nothing that this one would count twice).
    pub(crate) fn revisit_held_token(&mut self, now: Instant) {
        if !self.tok.holding
            || !self.token_leader()
            || self.state() == State::Evs
            || !self.has_sendable()
        {
            return;
        }
        let Some((_, t)) = self.tok.last_tx.clone() else {
            return;
        };
        self.tok.holding = false;
        self.tok.token_counter = 0;
        self.stats.token_revisits += 1;
        // forward_token gives the token the next arq: it leaves with the one it was held with.
        self.tok.last_tx_arq = (t.header.kind.arq() + 15) % 16;
        tracing::trace!(me = %self.cfg.me, seq = %t.header.seq, "held token visited again");
        self.step_op_token(now, t);
    }

    fn resend_last_token(&mut self, retrans: u8) {
        if let Some((to, t)) = self.tok.last_tx.as_mut() {
            t.header.kind = t.header.kind.with_retrans(retrans);
            let (to, t) = (*to, t.clone());
            let copies = if t.header.kind.retrans() > 1 { 3 } else { 1 }
                + usize::from(self.extra_token_copy());
            for _ in 0..copies {
                self.send_token(Dest::Unicast(to), &t);
            }
        }
    }

    /// Hurry_timeout at the leader: release a held token, or re-send a lost one.
    pub(crate) fn on_hurry_timer(&mut self, now: Instant) {
        if self.token_ring().is_none() || !self.token_leader() {
            return;
        }
        if self.tok.holding {
            tracing::trace!(me = %self.cfg.me, "hurry timer: held token released");
            self.stats.token_hurry += 1;
            self.release_held_token(now, 1);
        } else if self.tok.awaiting {
            self.hurry_token_out(now);
        }
    }

    /// Leader, token out: re-sends the last token with one more retransmission (5.0.1
    /// `Prot_token_hurry`) and re-arms the hurry timer.
    fn hurry_token_out(&mut self, now: Instant) {
        self.stats.token_hurry += 1;
        let r = self
            .tok
            .last_tx
            .as_ref()
            .map_or(1, |(_, t)| (t.header.kind.retrans() + 1).min(15));
        self.resend_last_token(r);
        self.arm(Timer::TokenHurry, now + self.cfg.hurry_timeout);
    }

    /// 5.0.1 `Is_token_hold`: the ring is idle as far as this daemon knows (the ring aru has
    /// equalled the highest seq for two visits, no re-sent token): the leader holds, or is
    /// about to hold, the token.
    pub(crate) fn would_hold(&self) -> bool {
        self.ring_alive()
            && self.ring.aru == self.ring.highest
            && self.tok.token_counter > 1
            && self
                .tok
                .last_tx
                .as_ref()
                .is_none_or(|(_, l)| l.header.kind.retrans() <= 1)
    }

    /// HURRY (a member has something to send), or a message of the leader's own: as 5.0.1's
    /// `Handle_hurry`, the leader that holds — or is about to hold — the token forgets the
    /// idle rounds and sends the token (re-sends its last one if it is already out, so a
    /// HURRY that overtook the returning token is not lost).
    pub(crate) fn on_hurry(&mut self, now: Instant) {
        if self.token_ring().is_none() || !self.token_leader() || !self.would_hold() {
            self.stats.dropped += 1;
            return;
        }
        self.tok.token_counter = 0;
        if self.tok.holding {
            tracing::trace!(me = %self.cfg.me, "HURRY: token released");
            self.release_held_token(now, 0);
        } else if self.tok.awaiting {
            tracing::trace!(me = %self.cfg.me, "HURRY: token re-sent");
            self.hurry_token_out(now);
        }
    }

    /// Answers the requests for `ring` this daemon can, removing them from the token.
    pub(crate) fn answer_rtr(&mut self, t: &mut Token, ring: RingId) -> u16 {
        let me = self.cfg.me;
        let mut answers = Vec::new();
        let TokenBody::Regular(rtr) = &mut t.body else {
            return 0;
        };
        for blk in rtr.iter_mut() {
            if blk.memb_id != ring || blk.proc_id == me {
                continue;
            }
            let buf = &self.ring.buf;
            blk.seqs.retain(|s| match buf.get(&s.0) {
                Some(p) => {
                    answers.push((blk.proc_id, p.clone()));
                    false
                }
                None => true,
            });
        }
        rtr.retain(|b| !b.seqs.is_empty());
        let n = u16::try_from(answers.len()).unwrap_or(u16::MAX);
        for (to, p) in answers {
            self.stats.retransmitted += 1;
            // 5.0.1 widens a request that a daemon on the way could not answer to proc_id −1
            // (everyone); it is answered by a broadcast (Net_bcast).
            let dest = if to == ANY_REQUESTER {
                Dest::Broadcast
            } else {
                Dest::Unicast(to)
            };
            self.send_packet(dest, &p);
        }
        n
    }
}

/// Replaces `me`'s request block for `ring` with one asking for `seqs`.
pub(crate) fn add_request(t: &mut Token, ring: RingId, me: DaemonId, seqs: Vec<u32>) {
    let TokenBody::Regular(rtr) = &mut t.body else {
        return;
    };
    rtr.retain(|b| !(b.memb_id == ring && b.proc_id == me));
    if !seqs.is_empty() && rtr.len() < MAX_RTR_BLOCKS {
        rtr.push(RtrRequest {
            memb_id: ring,
            proc_id: me,
            seg_index: 0,
            seqs: seqs.into_iter().map(Seq).collect(),
        });
    }
}

/// The received token as this daemon sends it on: its own header (native order, `me` as
/// transmitter and processor, type = arq and retrans only, flow control not negative) and
/// the requests without their segment (this engine never uses it and sends 0).
fn own_copy(t: Token, me: DaemonId, conf_hash: u32) -> Token {
    let h = t.header;
    let kind = w::TypeBits(0)
        .with_arq(h.kind.arq())
        .with_retrans(h.kind.retrans());
    let mut header = TokenHeader::new(kind.0, me, h.memb_id, conf_hash);
    header.seq = h.seq;
    header.aru = h.aru;
    header.aru_last_id = h.aru_last_id;
    header.flow_control = h.flow_control.max(0);
    let mut body = t.body;
    if let TokenBody::Regular(rtr) = &mut body {
        for b in rtr.iter_mut() {
            b.seg_index = 0;
        }
    }
    Token { header, body }
}

/// Packets sent in the last rotation (5.0.1's int16 `flow_control`, never negative here).
pub(crate) fn flow_control(h: &TokenHeader) -> u16 {
    u16::try_from(h.flow_control).unwrap_or(0)
}

/// Sets the flow-control count (saturating at the int16 maximum).
pub(crate) fn set_flow_control(h: &mut TokenHeader, fc: u16) {
    h.flow_control = i16::try_from(fc).unwrap_or(i16::MAX);
}
