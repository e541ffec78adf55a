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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Class, DaemonId, Engine, RingConfig};
    use super::Sent;
    use crate::time::Instant;
    use crate::wire::daemon::{self as w, DataBody, Fragment, Seq, TokenHeader};

    /// Daemon 2 of the ring 1 → 2 → 3 → 1, holding packets `seqs` (seq, sender), its token
    /// having left with `sent`.
    fn daemon_two(sent: Sent, seqs: &[(u32, u32)]) -> Engine {
        let ids = vec![DaemonId(1), DaemonId(2), DaemonId(3)];
        let mut e = Engine::new(RingConfig::lan(DaemonId(2), ids.clone()), Instant(1), 1000);
        e.ring.members = ids;
        e.ring.sent = Some(sent);
        for &(seq, from) in seqs {
            let body = DataBody {
                fragments: vec![Fragment {
                    index: -1,
                    data: Bytes::from_static(b"m"),
                }],
            };
            let p = w::Packet::data(
                Class::Safe as u32,
                DaemonId(from),
                0,
                e.ring.id,
                Seq(seq),
                1,
                body,
            );
            e.ring.buf.insert(seq, p);
        }
        e.ring.my_aru = seqs.iter().map(|s| s.0).max().unwrap_or(0);
        e
    }

    fn sent(aru: u32, seq: u32, aru_last: u32) -> Sent {
        Sent {
            aru,
            seq,
            aru_last: DaemonId(aru_last),
        }
    }

    fn token(aru: u32, aru_last: u32, seq: u32) -> TokenHeader {
        TokenHeader {
            aru: Seq(aru),
            aru_last_id: DaemonId(aru_last),
            seq: Seq(seq),
            ..TokenHeader::default()
        }
    }

    #[test]
    fn the_successors_answer_is_safe_when_the_token_arrives() {
        // My token left with aru = seq = 10; daemon 3 (my successor) sent 11 and 12.
        let sent = sent(10, 10, 2);
        let mut e = daemon_two(sent, &[(10, 2), (11, 3), (12, 3)]);
        e.note_token_received(&token(12, 1, 12));
        assert_eq!(e.ring.stable, 12);
        assert_eq!(e.ring.safe_line(), 12);
    }

    #[test]
    fn packets_of_others_sent_after_my_token_left_wait_a_rotation() {
        // 11 is daemon 1's (my predecessor's): daemon 3 visited before it existed.
        let sent = sent(10, 10, 2);
        let mut e = daemon_two(sent, &[(10, 2), (11, 1)]);
        e.note_token_received(&token(11, 1, 11));
        assert_eq!(e.ring.stable, 10);
    }

    #[test]
    fn an_aru_an_earlier_setter_may_have_lifted_proves_nothing() {
        // The simulator's counterexample to the naive rule: my token left with aru 4 set by
        // daemon 1, below the seq (15). Daemon 3 lacked 13..15 and had no reason to lower
        // an aru of 4; daemon 1 then lifted it to its own 15.
        let sent = sent(4, 15, 1);
        let mut e = daemon_two(sent, &[(14, 1), (15, 1)]);
        e.ring.my_aru = 15;
        e.note_token_received(&token(15, 1, 15));
        assert_eq!(e.ring.stable, 0);
    }

    #[test]
    fn never_above_my_own_aru_nor_from_a_first_token() {
        let sent = sent(10, 10, 2);
        let mut e = daemon_two(sent, &[(10, 2), (11, 3)]);
        e.ring.my_aru = 10; // 11 arrived, 12 did not: my aru stops at 10
        e.note_token_received(&token(12, 1, 12));
        assert_eq!(e.ring.stable, 10);
        let mut first = daemon_two(sent, &[(10, 2)]);
        first.note_token_received(&token(0x7fff_ffff, u32::MAX, 10));
        assert_eq!(first.ring.stable, 0);
        first.ring.sent = None;
        first.note_token_received(&token(10, 1, 10));
        assert_eq!(first.ring.stable, 0);
    }
}
