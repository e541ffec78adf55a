//! The old rings of a FORM token (5.0.1's `ring_info`, [`RingInfo`]): what each daemon adds
//! to its ring's entry when it commits (`Fill_form1`), the set of that ring's packets the
//! transitional set will deliver, and the checks and normalisation of received FORM tokens.
//!
//! An entry says: every seq up to `aru` (the largest ring-wide aru of the daemons moving
//! from that ring) is held by one of them; above it up to `highest_seq`, every seq but the
//! `holes` is. Received entries are kept with their holes sorted, without duplicates and
//! within `(aru, highest_seq]` — what this daemon would send for the same facts.

use crate::ring::{DaemonId, Engine, MAX_ENTRY_EXTRA, MAX_PROCS_RING, MAX_SEQ_GAP};
use crate::wire::daemon::{self as w, RepType, RingInfo, Seq, TokenBody};

/// Most seqs one entry may span above its aru (a longer one is malformed).
const MAX_SPAN: u32 = 4 * MAX_SEQ_GAP;

impl RingInfo {
    /// Is `seq` among the packets the transitional set will deliver?
    pub(crate) fn contains(&self, seq: u32) -> bool {
        seq <= self.aru.0
            || (seq <= self.highest_seq.0 && self.holes.binary_search(&Seq(seq)).is_err())
    }

    /// Last seq of that set.
    pub(crate) fn last(&self) -> u32 {
        let (aru, highest) = (self.aru.0, self.highest_seq.0);
        (aru.saturating_add(1)..=highest)
            .rev()
            .take(MAX_SPAN as usize + 1)
            .find(|s| self.holes.binary_search(&Seq(*s)).is_err())
            .unwrap_or(aru)
            .max(aru)
    }
}

/// The holes between `from` (exclusive) and `highest` that `held` does not hold, ascending
/// (at most [`MAX_SPAN`] seqs looked at).
fn holes(from: u32, highest: u32, held: impl Fn(u32) -> bool) -> Vec<Seq> {
    from.checked_add(1)
        .into_iter()
        .flat_map(|first| first..=highest)
        .take(MAX_SPAN as usize)
        .filter(|s| !held(*s))
        .map(Seq)
        .collect()
}

impl Engine {
    /// Merges this daemon's view of its old ring into the FORM's entry for that ring (5.0.1
    /// `Fill_form1`): the aru and highest seq at least mine, my packets no longer holes, me
    /// in the transitional set, my commit set in the commit set.
    pub(super) fn add_entry(&self, rings: &mut Vec<RingInfo>) {
        let r = &self.ring;
        let have: Vec<u32> = r
            .buf
            .range(r.my_aru.saturating_add(1)..)
            .map(|(s, _)| *s)
            .take(MAX_ENTRY_EXTRA)
            .collect();
        let mine = |s: u32| s <= r.my_aru || have.binary_search(&s).is_ok();
        let me = self.cfg.me;
        match rings.iter_mut().find(|e| e.memb_id == r.id) {
            Some(e) => {
                let safe = e.aru.0.max(r.aru);
                let highest = e.highest_seq.0.max(r.highest);
                let gaps = holes(safe.max(r.my_aru), highest, |s| e.contains(s) || mine(s));
                e.holes = gaps;
                e.aru = Seq(safe);
                e.highest_seq = Seq(highest);
                // 5.0.1: trans += me; commit = old rest, then my commit set, once each.
                if !e.trans.contains(&me) {
                    e.trans.push(me);
                }
                let mut commit = std::mem::take(&mut e.commit_rest);
                commit.extend(self.commit_set.iter().copied());
                for d in commit {
                    if !e.trans.contains(&d) && !e.commit_rest.contains(&d) {
                        e.commit_rest.push(d);
                    }
                }
                e.commit_rest.truncate(MAX_PROCS_RING);
            }
            None => rings.push(RingInfo {
                memb_id: r.id,
                trans_time: 0,
                aru: Seq(r.aru),
                highest_seq: Seq(r.highest),
                holes: holes(r.aru.max(r.my_aru), r.highest, mine),
                trans: vec![me],
                commit_rest: self
                    .commit_set
                    .iter()
                    .copied()
                    .filter(|d| *d != me)
                    .collect(),
            }),
        }
    }
}

/// Why a received FORM token is refused before anything else is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormRefusal {
    /// A representative of a type 5.0.1 does not know (dropped).
    UnknownRepType,
    /// An old ring's entry spans more seqs above its aru than a ring can hold (malformed).
    EntryTooLong,
}

/// Checks a received token-port datagram's FORM body (a regular token passes).
pub(crate) fn check_form(t: &w::Token) -> Result<(), FormRefusal> {
    let rings = match &t.body {
        TokenBody::Regular(_) => return Ok(()),
        TokenBody::Form1(f) => {
            let known = |r: &w::RepInfo| {
                matches!(
                    r.rep_type,
                    RepType::POTENTIAL | RepType::SEG | RepType::RING
                )
            };
            if !f.reps.reps.iter().all(known) {
                return Err(FormRefusal::UnknownRepType);
            }
            &f.rings
        }
        TokenBody::Form2(f) => &f.rings,
    };
    if rings
        .iter()
        .any(|e| e.highest_seq.0.saturating_sub(e.aru.0) > MAX_SPAN)
    {
        return Err(FormRefusal::EntryTooLong);
    }
    Ok(())
}

/// The copy of a received FORM token (checked by [`check_form`]) that this daemon works on
/// and sends on: its own header (native order, `me` as transmitter, the form id, the EVS
/// end marker in `seq`, nothing else), no stale array tails, a rep index not negative, and
/// each entry's holes sorted within its span.
pub(crate) fn own_form_copy(t: w::Token, me: DaemonId, conf_hash: u32) -> w::Token {
    let h = t.header;
    match t.body {
        TokenBody::Form1(mut f) => {
            f.members.stale.clear();
            f.reps.stale.clear();
            f.reps.rep_index = f.reps.rep_index.max(0);
            f.rings.iter_mut().for_each(normalize);
            w::Token::form1(me, h.memb_id, h.seq, conf_hash, *f)
        }
        TokenBody::Form2(mut f) => {
            f.members.stale.clear();
            f.rings.iter_mut().for_each(normalize);
            w::Token::form2(me, h.memb_id, h.seq, conf_hash, *f)
        }
        body @ TokenBody::Regular(_) => w::Token { header: h, body },
    }
}

/// Holes sorted, once each, within `(aru, highest_seq]`.
fn normalize(e: &mut RingInfo) {
    let (aru, highest) = (e.aru.0, e.highest_seq.0);
    e.holes.retain(|s| s.0 > aru && s.0 <= highest);
    e.holes.sort_unstable();
    e.holes.dedup();
}
