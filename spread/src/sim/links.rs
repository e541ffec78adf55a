//! The simulated network's links: loss, duplication, reordering, partitions, one-way cuts and
//! clogs. Shared by the engine simulator ([`super::Sim`]) and the whole-daemon simulator
//! ([`super::daemons`]): given a sender and its targets, [`Links::route`] says which copies
//! arrive, and after how long.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Fault, Rng};

/// Link state of `n` nodes.
#[derive(Debug, Clone)]
pub(crate) struct Links {
    latency: Duration,
    loss: u8,
    dup: u8,
    reorder_us: u32,
    comp: Vec<u8>,
    cuts: BTreeSet<(usize, usize)>,
    clogs: BTreeMap<(usize, usize), u8>,
}

impl Links {
    /// `n` nodes, all connected, base one-way `latency`.
    pub(crate) fn new(n: usize, latency: Duration) -> Self {
        Self {
            latency,
            loss: 0,
            dup: 0,
            reorder_us: 0,
            comp: vec![0; n],
            cuts: BTreeSet::new(),
            clogs: BTreeMap::new(),
        }
    }

    /// Applies a link fault; `false` for faults that are not about links (crash, restart).
    pub(crate) fn apply(&mut self, f: &Fault) -> bool {
        let n = self.comp.len().max(1);
        let idx = |x: u8| usize::from(x) % n;
        match f {
            Fault::Loss(p) => self.loss = (*p).min(60),
            Fault::Dup(p) => self.dup = (*p).min(50),
            Fault::Reorder(us) => self.reorder_us = (*us).min(2_000),
            Fault::Partition(c) => {
                self.comp = (0..n).map(|i| c.get(i).copied().unwrap_or(0)).collect();
            }
            Fault::Cut { from, to } => {
                self.cuts.insert((idx(*from), idx(*to)));
            }
            Fault::Clog { from, to, pct } => {
                self.clogs.insert((idx(*from), idx(*to)), (*pct).min(95));
            }
            Fault::Heal => self.heal_links(),
            Fault::Crash(_)
            | Fault::Restart(_)
            | Fault::Reconfigure(_)
            | Fault::LyingToken { .. } => return false,
        }
        true
    }

    /// Removes partitions, cuts and clogs (loss, duplication, reordering stay).
    pub(crate) fn heal_links(&mut self) {
        self.comp = vec![0; self.comp.len()];
        self.cuts.clear();
        self.clogs.clear();
    }

    /// Removes every fault.
    pub(crate) fn heal_all(&mut self) {
        self.heal_links();
        self.loss = 0;
        self.dup = 0;
        self.reorder_us = 0;
    }

    /// The copies of one datagram from `from` to each of `targets` that arrive, with their
    /// delay (a copy to oneself takes 5 µs and is never lost).
    pub(crate) fn route(
        &self,
        rng: &mut Rng,
        from: usize,
        targets: impl IntoIterator<Item = usize>,
    ) -> Vec<(usize, Duration)> {
        let mut out = Vec::new();
        for j in targets {
            if j == from {
                out.push((j, Duration::from_micros(5)));
                continue;
            }
            if self.comp.get(from) != self.comp.get(j) || self.cuts.contains(&(from, j)) {
                continue;
            }
            let clog = self.clogs.get(&(from, j)).copied().unwrap_or(0);
            if rng.chance(self.loss) || rng.chance(clog) {
                continue;
            }
            let copies = if rng.chance(self.dup) { 2 } else { 1 };
            for _ in 0..copies {
                let extra = rng.below(u64::from(self.reorder_us) + 1);
                out.push((j, self.latency + Duration::from_micros(extra)));
            }
        }
        out
    }
}
