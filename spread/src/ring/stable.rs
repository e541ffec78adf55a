//! The SAFE line: how far every member is known to hold every packet, learnt from a token as
//! it arrives (an mbus refinement of 5.0.1's ring aru; nothing on the wire changes).
//!
//! 5.0.1 trusts an aru once it is on two tokens this daemon sent, a rotation apart. In a
//! request/response exchange that costs a whole rotation per SAFE answer: the answer's sender
//! raises the aru as it sends, the token reaches the asker with that aru, and the asker still
//! waits for the next rotation — although the members in between have all seen the answer.
//!
//! What a token proves, by the aru rules every daemon applies (fact sheet §5.3): a daemon
//! lowers the aru to its own when it lacks something below it, and only raises it (to its own
//! aru) when it set the aru last (`aru_last_id`) or when the aru equalled the seq. So once a
//! seq `X` exists and the aru on the token is at least `X`, a member lacking `X` drops it
//! below `X` at its visit, and nobody but that member can lift it again: not before its
//! next visit. The one gap is a raise by an earlier setter: the aru may have been below `X`
//! when some members saw it (they had no reason to lower it) and been lifted afterwards by
//! the member that set it last. Hence the rule, on a token arriving after a rotation:
//!
//! * the token this daemon sent last must not let anyone but its successor lift the aru in
//!   that rotation: it carried aru = seq (the successor sets the aru to its own), or its
//!   `aru_last_id` was this daemon or the successor (neither visits again before the token
//!   is back); then the aru rises at most at the successor, and every later member checked
//!   the value it passed on;
//! * then every member holds every seq up to the lowest of: the arriving aru, my own aru,
//!   and the last seq that existed when the successor visited — the seq my token left with,
//!   extended by the run of packets the successor sent right after it (its own, assigned in
//!   its visit).
//!
//! In a request/response exchange the answer is the successor's packets as seen from the
//! asker, so the asker delivers a SAFE answer as soon as the token arrives, a rotation before
//! 5.0.1 would. Not applied before this daemon's first visit in the ring, to a token that did
//! not go round (a held token visited again, a token kept for a reply), nor outside `Op`.

use super::Engine;
use crate::wire::daemon::{DaemonId, TokenHeader};

/// At most this many packets are looked at per token (a successor sends at most its window).
const MAX_RUN: u32 = 4 * super::MAX_SEQ_GAP;

/// What the rule needs of the token this daemon last sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    aru: u32,
    seq: u32,
    aru_last: DaemonId,
}

impl Engine {
    /// A token leaves (or is held to leave as it is) in `Op`.
    pub(crate) fn note_token_sent(&mut self, h: &TokenHeader) {
        if self.state() == super::State::Op {
            self.ring.sent = Some(Sent {
                aru: h.aru.0,
                seq: h.seq.0,
                aru_last: h.aru_last_id,
            });
        }
    }

    /// A regular token arrived after a rotation: raise the SAFE line by what it proves.
    pub(crate) fn note_token_received(&mut self, h: &TokenHeader) {
        let me = self.cfg.me;
        let Some(sent) = self.ring.sent else {
            return;
        };
        let Some((succ, _)) = super::neighbours(&self.ring.members, me) else {
            return;
        };
        if h.aru_last_id == DaemonId::ANY || sent.aru_last == DaemonId::ANY {
            return;
        }
        let lifted_only_by_successor =
            sent.aru == sent.seq || sent.aru_last == me || sent.aru_last == succ;
        if !lifted_only_by_successor {
            return;
        }
        let top = h.aru.0.min(self.ring.my_aru);
        let mut line = sent.seq;
        while line < top && line - sent.seq < MAX_RUN {
            match self.ring.buf.get(&(line + 1)) {
                Some(p) if p.header.proc_id == succ => line += 1,
                _ => break,
            }
        }
        let stable = top.min(line);
        if stable > self.ring.stable {
            self.ring.stable = stable;
        }
    }
}
