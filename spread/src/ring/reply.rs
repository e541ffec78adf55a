//! Holding the token for a local reply (an mbus shortcut; 5.0.1 has no such rule).
//!
//! A request/response exchange between clients on two daemons costs 5.0.1 a whole token
//! rotation per answer: the request is delivered just before the token arrives, the token is
//! sent on at once (nothing to send yet), and the answer that the client writes a few tens of
//! microseconds later waits until the token has been round every other daemon. Here a daemon
//! that has just delivered messages and has nothing to send keeps the visited token for at
//! most [`RingConfig::reply_wait`](super::RingConfig::reply_wait): a message submitted
//! meanwhile is sent with it, as if it had been there when the token came (the visit is
//! topped up: seq, flow control and aru exactly as one visit sending it would leave them);
//! otherwise the token leaves unchanged at the deadline. Every other daemon — ours or
//! 5.0.1 — sees an ordinary token that came a little later (far below any timeout).
//!
//! Two clients on the same daemon answering each other keep the token longer: each answer
//! tops the visit up and the token waits for the next, while the visit's personal window
//! lasts and for at most [`MAX_LOCAL_HOLD`] — as a visit of a busy sender would have kept the
//! ring.
//!
//! Who answers is told by the daemon layer ([`Engine::note_local_delivery`]): a message of
//! another daemon delivered to a local session, or an own message delivered to a local
//! session other than its sender's (a sender that reads its own messages back, as a
//! flooder does, is no reason to wait). The visit therefore decides once its
//! deliveries have been handed out (at the next output poll), not when the token comes.
//!
//! Whether to hold is learnt ([`ReplyHabit`]), apart for answers to other daemons' messages
//! and for local ones ([`Awaited`]): a hold that ends in a reply keeps holding on;
//! a hold that times out (a daemon of readers in a flood, a client that answers slowly)
//! stops the holds for a back-off that grows from 2 ms to 100 ms, so a daemon whose clients
//! do not answer pays one `reply_wait` per 100 ms at most.

use super::{Engine, State, Timer};
use crate::time::Instant;
use crate::wire::daemon::{self as w, Seq};
use std::time::Duration;

/// First back-off after a hold that timed out.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
/// Longest back-off: a probing hold every 100 ms (a daemon whose clients never answer loses
/// at most one `reply_wait` in 100 ms, 0.5 %; one whose clients start answering after a
/// flood is back within 100 ms).
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// Longest one visit keeps the token for answers of local clients to each other (it is
/// topped up with each answer while its personal window lasts).
pub(crate) const MAX_LOCAL_HOLD: Duration = Duration::from_millis(2);

/// A visited token not yet sent on: deciding whether to keep it, or kept for a reply.
#[derive(Debug, Clone)]
pub(crate) struct ReplyHold {
    /// The token as the visit left it (not yet sent).
    token: w::Token,
    /// The aru of the token this daemon sent one rotation before the held visit (the held
    /// visit's ring-aru rule is recomputed if a top-up raises the token's aru).
    prev_sent_aru: u32,
    /// New packets the visit sent so far (a top-up sends at most the rest of the window).
    sent: u16,
    /// When the visit (or its last top-up) ended.
    at: Instant,
    /// When the visit first kept it.
    since: Instant,
    /// Deciding or waiting.
    phase: HoldPhase,
}

/// Where a [`ReplyHold`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldPhase {
    /// The visit's deliveries are being handed out; decided at the next output poll.
    /// `chained`: a local answer topped it up (only a local exchange continues).
    Deciding {
        /// A top-up of a local exchange.
        chained: bool,
    },
    /// Kept until an answer comes or `ReplyWait` fires.
    Waiting(Awaited),
}

/// Whether holding for a reply has been paying off on this daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ReplyHabit {
    /// The last hold got its reply (or none was tried yet): hold.
    #[default]
    Answered,
    /// `misses` holds in a row timed out: no hold before `until`.
    Unanswered {
        /// Holds in a row that timed out.
        misses: u32,
        /// No hold before this time.
        until: Instant,
    },
}

impl ReplyHabit {
    fn allows(self, now: Instant) -> bool {
        match self {
            Self::Answered => true,
            Self::Unanswered { until, .. } => now >= until,
        }
    }

    fn missed(self, now: Instant) -> Self {
        let misses = match self {
            Self::Answered => 0,
            Self::Unanswered { misses, .. } => misses,
        };
        // 2 ms, 8 ms, 32 ms, then every 100 ms.
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (2 * misses.min(5)))
            .min(MAX_BACKOFF);
        Self::Unanswered {
            misses: misses.saturating_add(1),
            until: now + backoff,
        }
    }
}

/// What a kept token waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// An answer to messages of other daemons delivered to local sessions.
    Remote = 0,
    /// An answer to own messages this visit delivered to a local session other than the
    /// sender's (both clients on this daemon: AGREED ones as the visit sends them, SAFE ones
    /// once the ring has them); such a visit may be topped up again and again within
    /// the personal window and [`MAX_LOCAL_HOLD`].
    Local = 1,
}

impl Engine {
    /// The daemon layer handed a delivery to `sessions` local sessions other than its
    /// sender's (`own`: a message of this daemon's). Counts what a local client may answer
    /// (`ring::reply`).
    pub fn note_local_delivery(&mut self, own: bool, sessions: usize) {
        if sessions == 0 {
            return;
        }
        if own {
            self.own_delivered = self.own_delivered.saturating_add(1);
        } else {
            self.delivered_since_visit = self.delivered_since_visit.saturating_add(1);
        }
    }

    /// May the visit now ending wait for a reply? It sent all it had, misses no packet; the
    /// ring has other members and is installed.
    pub(crate) fn may_hold_for_reply(&self, sent: u16, missing: bool) -> bool {
        !self.cfg.reply_wait.is_zero()
            && (sent == 0 || !self.has_sendable())
            && !missing
            && self.state() == State::Op
            && self.token_members().len() > 1
    }

    /// Keeps the token of a visit that [`Engine::may_hold_for_reply`] until its deliveries
    /// are handed out ([`Engine::decide_reply_hold`]).
    pub(crate) fn defer_token(&mut self, now: Instant, t: w::Token, prev_sent_aru: u32, sent: u16) {
        self.tok.reply = Some(ReplyHold {
            token: t,
            prev_sent_aru,
            sent,
            at: now,
            since: now,
            phase: HoldPhase::Deciding { chained: false },
        });
    }

    /// Is a visited token not yet sent on?
    pub(crate) fn holding_for_reply(&self) -> bool {
        self.tok.reply.is_some()
    }

    /// Every delivery of the visit has been handed out: keep the token for an answer
    /// ([`Awaited`], if holding it has been paying off), or send it on now.
    pub(crate) fn decide_reply_hold(&mut self) {
        let Some(h) = self.tok.reply.as_ref() else {
            return;
        };
        let HoldPhase::Deciding { chained } = h.phase else {
            return;
        };
        let (at, sent, since) = (h.at, h.sent, h.since);
        let remote = !chained && sent == 0 && self.delivered_since_visit > 0;
        // Only a local exchange is decided again after a top-up (`chained`).
        let local = self.own_delivered > 0
            && !self.has_sendable()
            && (!chained
                || (sent < self.cfg.personal_window
                    && at.saturating_since(since) < MAX_LOCAL_HOLD));
        self.delivered_since_visit = 0;
        self.own_delivered = 0;
        let awaited = [(remote, Awaited::Remote), (local, Awaited::Local)]
            .into_iter()
            .find(|(yes, a)| *yes && self.reply_habits[*a as usize].allows(at))
            .map(|(_, a)| a);
        let Some(awaited) = awaited else {
            let Some(h) = self.tok.reply.take() else {
                return;
            };
            self.forward_token(at, h.token, false);
            self.flush_after_token();
            return;
        };
        self.stats.reply_holds += 1;
        if let Some(h) = self.tok.reply.as_mut() {
            h.phase = HoldPhase::Waiting(awaited);
            tracing::trace!(me = %self.cfg.me, seq = %h.token.header.seq, ?awaited,
                "token kept for a reply");
        }
        // Packets an accelerated visit keeps for after the token leave now.
        self.flush_after_token();
        self.arm(Timer::ReplyWait, at + self.cfg.reply_wait);
    }

    /// Sends the token kept for a reply: topped up with what was submitted meanwhile (the
    /// reply came), or as it was (`ReplyWait` fired, or a re-sent token asks for it). A
    /// local exchange may keep it again ([`Engine::decide_reply_hold`]).
    pub(crate) fn release_reply_hold(&mut self, now: Instant) {
        let Some(ReplyHold {
            token: mut t,
            prev_sent_aru,
            sent: already,
            since,
            phase,
            ..
        }) = self.tok.reply.take()
        else {
            return;
        };
        self.cancel(Timer::ReplyWait);
        if !self.ring_alive() || self.state() != State::Op {
            return;
        }
        let awaited = match phase {
            HoldPhase::Waiting(a) => Some(a),
            HoldPhase::Deciding { .. } => None,
        };
        if !self.has_sendable() {
            if let Some(a) = awaited {
                self.stats.reply_misses += 1;
                let habit = &mut self.reply_habits[a as usize];
                *habit = habit.missed(now);
            }
            self.forward_token(now, t, false);
            self.flush_after_token();
            return;
        }
        if let Some(a) = awaited {
            self.reply_habits[a as usize] = ReplyHabit::Answered;
            self.stats.reply_hits += 1;
        }
        self.own_delivered = 0;
        let sent = self.send_new_packets(&mut t.header, already);
        let h = &mut t.header;
        // The held visit's aru rule fired (it made me the aru's last setter): it would have
        // counted the packets sent now too.
        if h.aru_last_id == self.cfg.me {
            h.aru = Seq(self.ring.my_aru);
        }
        let fc = super::token::flow_control(h).saturating_add(sent);
        super::token::set_flow_control(h, fc);
        self.tok.my_last_sent = self.tok.my_last_sent.saturating_add(sent);
        self.tok.prev_sent_seq = h.seq.0.max(self.tok.prev_sent_seq);
        // The ring-aru rule of the visit, with the aru the token leaves with.
        let sent_aru = h.aru.0;
        if sent > 0 {
            self.tok.token_counter = 0;
        }
        self.end_visit(sent_aru, prev_sent_aru, sent);
        if awaited == Some(Awaited::Local) {
            // Decided once these deliveries are handed out: a local exchange may go on.
            self.tok.reply = Some(ReplyHold {
                token: t,
                prev_sent_aru,
                sent: already.saturating_add(sent),
                at: now,
                since,
                phase: HoldPhase::Deciding { chained: true },
            });
        } else {
            self.forward_token(now, t, false);
            self.flush_after_token();
        }
    }
}
