//! Membership: segment election, gather, form, EVS recovery and installation, after 5.0.1's
//! `membership.c` (fact sheet §6 and §15).
//!
//! States ([`crate::ring::State`]; inside the engine the phase enum `Phase`, whose variants
//! hold what only that phase uses), numbered in 5.0.1 OP 1, SEG 2, REPRESENTED 3, GATHER 4,
//! FORM 5, EVS 6:
//!
//! * **Seg** (`seg.rs`) — after a token loss (and at start) a daemon scasts an ALIVE listing the
//!   daemons of its segment it heard (itself first) now and every `alive_timeout`; after
//!   `seg_timeout` the smallest of them (configuration order) gathers, the others become
//!   REPRESENTED. A JOIN from a SEG_REP of my segment makes me REPRESENTED at once.
//! * **Represented** (`seg.rs`) — answers each JOIN of its representative with one ALIVE; `rep_timeout`
//!   without it (re-armed by any ALIVE or the rep's JOIN) goes back to SEG. A JOIN from
//!   someone else is answered with a REFER to my representative. Filled into FORM1 as a
//!   pending member.
//! * **Gather** (`gather.rs`) — F_reps = me (SEG_REP, or RING_REP for a ring leader merging
//!   with its ring running) plus the reps of every JOIN heard. A JOIN goes out every
//!   `join_timeout`: scast to my segment (only without a live ring) and unicast to every
//!   potential rep (other segments' first daemons, reps learned from JOINs and REFERs).
//!   After `gather_timeout` (re-armed by a JOIN from the smallest rep) the smallest rep
//!   (SEG_REPs before RING_REPs) creates FORM1; a ring leader alone goes back to `Op`; others
//!   gather again.
//! * **Form** (`form.rs`) — FORM1 visits the creator's pending members, then each rep (which
//!   adds its F_members, or its ring) and their pending members; each visitor stops its old
//!   ring and merges that ring's entry. The last one sends FORM2 to the new leader (first
//!   member in configuration order), which stamps the new ring id; FORM2 then visits every
//!   member, which enters EVS; the last one starts the new ring's token. Every FORM token is
//!   sent twice. A missing FORM2 within `form_timeout` is a token loss.
//! * **Evs** (`evs.rs`) — members of one old ring exchange that ring's packets until each holds every
//!   packet some of them held, then install: old-ring messages up to the first hole (SAFE
//!   ones only up to the largest ring-wide aru) in the regular configuration, the
//!   transitional configuration, the rest, then the new regular configuration.
//! * **Op** — the leader probes `lookup_timeout` after installing (`gather.rs`: one segment,
//!   scast JOIN; several, a unicast JOIN to every configured daemon missing from the ring,
//!   nothing if none is). A JOIN from a non-member sends the leader to GATHER (ring running);
//!   a non-leader answers it with a REFER to the leader when the joiner is from another
//!   segment or it is the first ring member of its segment. A JOIN from a member of my ring
//!   is a token loss with several segments (ignored as a probe with one). A data packet of a
//!   foreign ring: the leader looks up at once, a segment's first ring member forwards the
//!   first one (twice) to the leader.
//!
//! Token loss (`token_timeout` without a valid token, an ALIVE from a member of my ring, FORM
//! or EVS failure) computes the potential reps (for each other segment, its first member in
//! the last ring or else its first configured daemon) and enters SEG with the ring stopped;
//! the old ring's packets are kept for the next form.

mod entry;
mod evs;
mod form;
mod gather;
mod seg;

pub(crate) use entry::{check_form, own_form_copy, FormRefusal};
pub(crate) use evs::Future;

use crate::ring::{DaemonId, Engine, RingId, State, MAX_PROCS_RING};
use crate::wire::daemon::{RepInfo, RepType};

/// The membership phase with the data only that phase uses (quinn-proto's connection
/// state). Each file of this module owns the transitions into its phases: `seg.rs` SEG and
/// REPRESENTED, `gather.rs` GATHER (and the return to OP), `form.rs` FORM, `evs.rs` EVS and
/// the installation that ends in OP.
///
/// What outlives a phase stays on [`Engine`]: the installed ring, the token bookkeeping,
/// 5.0.1's `Commit_set` (until the next installation, across failed memberships) and the
/// JOINs' stale rep index.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// A ring is installed and running.
    Op {
        /// A foreign packet was forwarded to the leader in this membership.
        foreign_forwarded: bool,
    },
    /// Ring lost: ALIVEs elect the segment's representative.
    Seg {
        /// 5.0.1 F_members: the daemons of my segment heard by ALIVE (me first).
        heard: Vec<DaemonId>,
        /// 5.0.1 Potential_reps: where a later GATHER unicasts its JOINs.
        potential: Vec<RepInfo>,
    },
    /// A daemon of my segment gathers for me.
    Represented {
        /// F_members heard in SEG (sent in my ALIVEs).
        heard: Vec<DaemonId>,
        /// Potential reps kept for the next SEG.
        potential: Vec<RepInfo>,
        /// My segment's representative, once its JOIN was heard.
        rep: Option<DaemonId>,
    },
    /// Gathering a new membership.
    Gather {
        /// The installed ring keeps running (a leader merging; RING_REP).
        ring_alive: bool,
        /// F_members: the daemons I bring (heard in SEG; none for a merging leader).
        heard: Vec<DaemonId>,
        /// 5.0.1 F_reps: the representatives gathered (me first).
        reps: Vec<RepInfo>,
        /// Potential reps: where JOINs are unicast (other segments' representatives).
        potential: Vec<RepInfo>,
    },
    /// Committed to a FORM token; waiting for FORM2.
    Form {
        /// The FORM this daemon committed to.
        form_id: RingId,
        /// The FORM's reps of other segments, for the next SEG if this form fails.
        potential: Vec<RepInfo>,
    },
    /// FORM2 seen: recovering the old ring's messages before installing the new ring.
    Evs {
        /// The ring being moved to.
        future: Future,
        /// EVS token rounds so far (bounded by [`crate::ring::MAX_EVS_ROUNDS`]).
        rounds: u32,
    },
}

impl Phase {
    /// The phase's name (5.0.1's state).
    pub(crate) fn state(&self) -> State {
        match self {
            Self::Op { .. } => State::Op,
            Self::Seg { .. } => State::Seg,
            Self::Represented { .. } => State::Represented,
            Self::Gather { .. } => State::Gather,
            Self::Form { .. } => State::Form,
            Self::Evs { .. } => State::Evs,
        }
    }

    /// Does the installed ring still run (OP, or a leader gathering to merge)?
    pub(crate) fn ring_alive(&self) -> bool {
        matches!(
            self,
            Self::Op { .. }
                | Self::Gather {
                    ring_alive: true,
                    ..
                }
        )
    }

    /// The potential reps of the phases that keep them.
    #[cfg(test)]
    pub(crate) fn potential(&self) -> &[RepInfo] {
        match self {
            Self::Seg { potential, .. }
            | Self::Represented { potential, .. }
            | Self::Gather { potential, .. }
            | Self::Form { potential, .. } => potential,
            Self::Op { .. } | Self::Evs { .. } => &[],
        }
    }
}

/// Most representatives in one list (MAX_REPS in 5.0.1).
pub const MAX_REPS: usize = 25;

impl Engine {
    /// Configured segment of `d` (`None`: not a configured daemon).
    pub(crate) fn seg_of(&self, d: DaemonId) -> Option<i16> {
        let i = self.rank(d)?;
        let seg = self.cfg.segments.get(i).copied().unwrap_or(0);
        Some(i16::try_from(seg).unwrap_or(i16::MAX))
    }

    pub(crate) fn my_seg(&self) -> i16 {
        self.seg_of(self.cfg.me).unwrap_or(0)
    }

    /// Does the configuration have more than one segment?
    pub(crate) fn multi_segment(&self) -> bool {
        let first = self.cfg.segments.first().copied().unwrap_or(0);
        self.cfg.segments.iter().any(|s| *s != first)
    }

    /// Configured segment indices other than mine, ascending.
    fn other_segments(&self) -> Vec<i16> {
        let mine = self.my_seg();
        let mut v: Vec<i16> = self
            .cfg
            .segments
            .iter()
            .map(|s| i16::try_from(*s).unwrap_or(i16::MAX))
            .filter(|s| *s != mine)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// First daemon of segment `seg` among `members` (configuration order), if any.
    pub(crate) fn first_in_seg(&self, members: &[DaemonId], seg: i16) -> Option<DaemonId> {
        let mut v: Vec<DaemonId> = members
            .iter()
            .copied()
            .filter(|d| self.seg_of(*d) == Some(seg))
            .collect();
        self.sort_by_rank(&mut v);
        v.first().copied()
    }

    /// 5.0.1's potential reps after a token loss: for each other segment, its first daemon in
    /// `members` (the last ring), else its first configured daemon.
    pub(crate) fn add_segment_potentials(
        &self,
        potential: &mut Vec<RepInfo>,
        members: &[DaemonId],
    ) {
        for seg in self.other_segments() {
            let id = self
                .first_in_seg(members, seg)
                .or_else(|| self.first_in_seg(&self.cfg.daemons, seg));
            if let Some(id) = id {
                let r = RepInfo {
                    proc_id: id,
                    rep_type: RepType::POTENTIAL,
                    seg_index: seg,
                };
                insert_rep(potential, r);
            }
        }
    }

    /// The rep as this daemon's configuration sees it (segment from the configuration);
    /// `None` for an unknown daemon or rep type.
    pub(crate) fn known_rep(&self, id: DaemonId, rep_type: RepType) -> Option<RepInfo> {
        if !matches!(rep_type, RepType::POTENTIAL | RepType::SEG | RepType::RING) {
            return None;
        }
        Some(RepInfo {
            proc_id: id,
            rep_type,
            seg_index: self.seg_of(id)?,
        })
    }

    /// 5.0.1 `Smallest_rep`: SEG_REPs before RING_REPs; SEG_REPs by segment only (the first
    /// listed wins a tie), RING_REPs by segment then position.
    pub(crate) fn smallest_rep(&self, reps: &[RepInfo]) -> Option<usize> {
        let mut cur = 0;
        let first = reps.first()?;
        let mut c = *first;
        for (i, x) in reps.iter().enumerate().skip(1) {
            let better = match (c.rep_type, x.rep_type) {
                (RepType::SEG, RepType::SEG) => x.seg_index < c.seg_index,
                (RepType::RING, RepType::RING) => {
                    x.seg_index < c.seg_index
                        || (x.seg_index == c.seg_index
                            && self.rank(x.proc_id) < self.rank(c.proc_id))
                }
                (RepType::RING, RepType::SEG) => true,
                _ => false,
            };
            if better {
                cur = i;
                c = *x;
            }
        }
        Some(cur)
    }

    /// 5.0.1 `Sort_reps`: repeatedly take the smallest, moving the last one into its place.
    pub(crate) fn sort_reps(&self, reps: &mut Vec<RepInfo>) {
        let mut rest = std::mem::take(reps);
        while let Some(i) = self.smallest_rep(&rest) {
            reps.push(rest.swap_remove(i));
        }
    }
}

/// 5.0.1 `Insert_rep`: a POTENTIAL only for a segment not listed yet; a SEG_REP replaces a
/// POTENTIAL of its segment or a RING_REP that lost its ring; a RING_REP replaces a
/// POTENTIAL or its own SEG_REP entry. Returns whether the list changed.
pub(crate) fn insert_rep(list: &mut Vec<RepInfo>, rep: RepInfo) -> bool {
    for r in list.iter_mut().filter(|r| r.seg_index == rep.seg_index) {
        let same = r.proc_id == rep.proc_id;
        match rep.rep_type {
            RepType::POTENTIAL => return false,
            RepType::SEG | RepType::RING if r.rep_type == RepType::POTENTIAL => {
                *r = rep;
                return true;
            }
            RepType::SEG if same && r.rep_type == RepType::SEG => return false,
            RepType::RING if same && r.rep_type == RepType::RING => return false,
            RepType::SEG | RepType::RING if same => {
                r.rep_type = rep.rep_type;
                return true;
            }
            _ => {}
        }
    }
    if list.len() >= MAX_REPS {
        return false;
    }
    list.push(rep);
    true
}

/// 5.0.1 `Insert_member`: appends once, up to MAX_PROCS_RING.
pub(crate) fn insert_member(list: &mut Vec<DaemonId>, d: DaemonId) {
    if !list.contains(&d) && list.len() < MAX_PROCS_RING {
        list.push(d);
    }
}

#[cfg(test)]
mod answers;
#[cfg(test)]
mod replay;
#[cfg(test)]
mod tests;
