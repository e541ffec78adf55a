//! The secure ring in the simulator: daemons sealing their datagrams ([`Options::link_key`]),
//! key changes under traffic ([`Sim::set_link_keys`]), and a hostile peer without the key
//! ([`Options::hostile`]) that sits on the wire and, every [`ATTACK_EVERY`]:
//!
//! * replays a datagram it captured earlier, to a random daemon, from its real sender's
//!   address;
//! * sends a captured datagram with one byte changed;
//! * sends the sealed body without its header (a plain-looking datagram);
//! * runs an impostor: a plain 5.0.1 daemon configured as daemon 0, whose datagrams (valid
//!   5.0.1 JOINs, ALIVEs, tokens) reach the others as if from daemon 0's address.
//!
//! Everything it sends must be dropped and counted ([`Sim::link_stats`]) and the checker must
//! stay silent.

use std::time::Duration;

use bytes::Bytes;

use super::{Event, Rng, Sim};
use crate::clients::DaemonConfig;
use crate::daemon::link::{BootId, Keyring, LinkSettings, LinkStats};
use crate::daemon::{Daemon, Output, Settings, Target};
use crate::ring::{DaemonId, Port};

/// How often the hostile peer acts.
pub(super) const ATTACK_EVERY: Duration = Duration::from_millis(3);
/// Captured datagrams kept (a random sample once full).
const CAPTURE: usize = 512;

/// The hostile peer's state.
#[derive(Debug)]
pub(super) struct Hostile {
    captured: Vec<(DaemonId, Port, Bytes)>,
    seen: u64,
    /// A plain daemon claiming daemon 0's address.
    impostor: Daemon,
    /// Datagrams it injected, per kind: replays, altered, stripped, impostor.
    pub(super) sent: [u64; 4],
}

impl Hostile {
    /// Keeps a sample of what crosses the wire (reservoir sampling).
    pub(super) fn capture(&mut self, rng: &mut Rng, from: DaemonId, port: Port, bytes: &Bytes) {
        self.seen += 1;
        if self.captured.len() < CAPTURE {
            self.captured.push((from, port, bytes.clone()));
        } else if let Some(slot) = self
            .captured
            .get_mut(usize::try_from(rng.below(self.seen)).unwrap_or(usize::MAX))
        {
            *slot = (from, port, bytes.clone());
        }
    }
}

impl Sim {
    /// The secure-ring settings of a daemon starting now with wall clock `clock` (None in
    /// plain mode).
    pub(super) fn link_settings(&mut self, clock: u32) -> Option<LinkSettings> {
        let key = self.opts.link_key?;
        Some(LinkSettings {
            keys: Keyring::single(&key),
            boot: BootId {
                epoch: u64::from(clock) * 1_000_000 + self.now.as_micros(),
                random: self.rng.next_u64(),
            },
        })
    }

    /// Replaces daemon `i`'s link keys (false if it is down or in plain mode).
    pub fn set_link_keys(&mut self, i: usize, keys: Keyring) -> bool {
        self.nodes
            .get_mut(i)
            .and_then(|n| n.daemon.as_mut())
            .is_some_and(|d| d.set_link_keys(keys))
    }

    /// Daemon `i`'s secure-ring counters (None if down or in plain mode).
    pub fn link_stats(&self, i: usize) -> Option<LinkStats> {
        self.nodes.get(i)?.daemon.as_ref()?.link_stats()
    }

    /// Datagrams the hostile peer injected: replays, altered copies, stripped bodies,
    /// impostor datagrams.
    pub fn hostile_sent(&self) -> [u64; 4] {
        self.hostile.as_ref().map_or([0; 4], |h| h.sent)
    }

    pub(super) fn start_hostile(&mut self) {
        let cfg = DaemonConfig::new("impostor", self.ids[0].0 as i32, 0);
        let impostor = Daemon::new(
            Settings::from_parts(cfg, self.config(0)),
            self.now,
            1_000 + 50_000,
        );
        self.hostile = Some(Hostile {
            captured: Vec::new(),
            seen: 0,
            impostor,
            sent: [0; 4],
        });
        self.push(self.now + ATTACK_EVERY, Event::Attack);
    }

    fn inject(&mut self, to: usize, from: DaemonId, port: Port, bytes: Bytes) {
        let ev = Event::Net {
            to,
            from,
            port,
            bytes,
        };
        self.push(self.now + Duration::from_micros(50), ev);
    }

    /// One action of the hostile peer.
    pub(super) fn attack(&mut self) {
        let n = self.nodes.len();
        let kind = self.rng.below(4);
        let pick = self.rng.below(CAPTURE as u64);
        let to = usize::try_from(self.rng.below(n as u64)).unwrap_or(0);
        let byte = self.rng.next_u64();
        let Some(h) = self.hostile.as_mut() else {
            return;
        };
        let captured = h
            .captured
            .get(usize::try_from(pick).unwrap_or(0) % h.captured.len().max(1))
            .cloned();
        match (kind, captured) {
            (0, Some((from, port, bytes))) => {
                h.sent[0] += 1;
                self.inject(to, from, port, bytes);
            }
            (1, Some((from, port, bytes))) => {
                h.sent[1] += 1;
                let mut x = bytes.to_vec();
                let len = x.len().max(1);
                if let Some(b) = x.get_mut(usize::try_from(byte).unwrap_or(0) % len) {
                    *b ^= 1 << (byte >> 61);
                }
                self.inject(to, from, port, x.into());
            }
            (2, Some((from, port, bytes))) => {
                h.sent[2] += 1;
                let body = bytes.slice(crate::daemon::link::HEADER_LEN.min(bytes.len())..);
                self.inject(to, from, port, body);
            }
            _ => {
                let now = self.now;
                let d = &mut h.impostor;
                if d.poll_timeout().is_some_and(|t| t <= now) {
                    d.handle_timeout(now);
                }
                let mut out = Vec::new();
                while let Some(o) = d.poll_output() {
                    if let Output::Transmit(t) = o {
                        out.push(t);
                    }
                }
                h.sent[3] += out.len() as u64;
                let me = self.ids[0];
                for t in out {
                    let targets: Vec<usize> = match t.to {
                        Target::Segment => (1..n).collect(),
                        Target::Daemon(d) => {
                            self.ids.iter().position(|x| *x == d).into_iter().collect()
                        }
                    };
                    for j in targets {
                        self.inject(j, me, t.port, t.bytes.clone());
                    }
                }
            }
        }
        self.push(self.now + ATTACK_EVERY, Event::Attack);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{run, Options, Scenario, Work};
    use super::*;
    use crate::ring::Service;
    use crate::time::Instant;

    fn work(n: u8, from_ms: u32, count: u32) -> Vec<Work> {
        let services = [
            Service::Reliable,
            Service::Agreed,
            Service::Safe,
            Service::Fifo,
        ];
        (0..count)
            .map(|k| Work {
                at_ms: from_ms + k * 5,
                node: (k % u32::from(n)) as u8,
                service: services[(k as usize) % services.len()],
                size: if k % 7 == 0 { 3000 } else { 1000 },
            })
            .collect()
    }

    /// Runs until the three daemons are in one ring and each one's messages were delivered
    /// (bounded: 15 simulated seconds).
    fn settle(sim: &mut Sim) {
        let deadline = sim.now() + Duration::from_secs(15);
        while sim.now() < deadline {
            let t = sim.now() + Duration::from_millis(100);
            sim.run_until(t).unwrap_or_else(|f| panic!("{f}"));
            if sim.converged() && (0..3).all(|i| sim.checker.own_pending(i) == 0) {
                return;
            }
        }
        let states: Vec<_> = (0..3)
            .map(|i| sim.engine(i).map(|e| (e.state(), e.members().len())))
            .collect();
        panic!("not settled: {states:?}");
    }

    fn secure() -> Options {
        Options {
            link_key: Some([7; 32]),
            ..Options::default()
        }
    }

    #[test]
    fn a_secure_ring_forms_and_orders_messages() {
        let sc = Scenario {
            nodes: 3,
            seed: 11,
            accelerated: false,
            segments: 1,
            faults: vec![],
            work: work(3, 2000, 60),
        };
        let r = run(&sc, secure()).unwrap_or_else(|f| panic!("{sc}{f}"));
        assert!(r.deliveries >= 3 * 60, "{r:?}");
    }

    #[test]
    fn a_hostile_peer_without_the_key_gets_nothing_in() {
        let opts = Options {
            hostile: true,
            ..secure()
        };
        let mut sim = Sim::new(3, 5, opts);
        let sc = Scenario {
            nodes: 3,
            seed: 5,
            accelerated: false,
            segments: 1,
            faults: vec![],
            work: work(3, 2500, 300),
        };
        sim.schedule(&sc);
        sim.run_until(Instant(6_000_000))
            .unwrap_or_else(|f| panic!("{f}"));
        settle(&mut sim);
        let sent = sim.hostile_sent();
        assert!(
            sent[..3].iter().all(|&k| k > 50),
            "every attack tried: {sent:?}"
        );
        assert!(sent[3] > 0, "the impostor spoke: {sent:?}");
        let total = (0..3).fold(LinkStats::default(), |mut a, i| {
            let s = sim.link_stats(i).unwrap();
            a.replayed += s.replayed + s.misdirected + s.stale_boot;
            a.forged += s.forged + s.unknown_key + s.malformed;
            a.plain += s.plain;
            a
        });
        assert!(total.replayed > 50, "{total:?}");
        assert!(total.forged > 50, "{total:?}");
        assert!(total.plain > sent[3], "{total:?} {sent:?}");
    }

    #[test]
    fn a_plain_ring_takes_the_impostors_packets() {
        // The canary for the test above: without the secure ring the impostor's JOINs get in.
        let opts = Options {
            hostile: true,
            ..Options::default()
        };
        let mut sim = Sim::new(3, 5, opts);
        let mut converged = 0;
        for k in 1..=60 {
            sim.run_until(Instant(3_000_000 + k * 100_000)).ok();
            converged += usize::from(sim.converged());
        }
        assert!(converged < 10, "converged {converged} times of 60");
    }

    #[test]
    fn key_rollover_under_traffic_loses_nothing() {
        let (old, new) = ([7u8; 32], [8u8; 32]);
        let mut sim = Sim::new(3, 9, secure());
        let sc = Scenario {
            nodes: 3,
            seed: 9,
            accelerated: false,
            segments: 1,
            faults: vec![],
            work: work(3, 2500, 600),
        };
        sim.schedule(&sc);
        sim.run_until(Instant(2_000_000))
            .unwrap_or_else(|f| panic!("{f}"));
        settle(&mut sim);
        let installs = sim.report().installs;
        // The documented procedure, one daemon at a time, under traffic.
        let steps: [&[[u8; 32]]; 3] = [&[old, new], &[new, old], &[new]];
        let mut t = sim.now().as_micros();
        for keys in steps {
            for i in 0..3 {
                t += 37_000;
                sim.run_until(Instant(t)).unwrap_or_else(|f| panic!("{f}"));
                assert!(sim.set_link_keys(i, Keyring::from_keys(keys).unwrap()));
            }
        }
        settle(&mut sim);
        for i in 0..3 {
            let s = sim.link_stats(i).unwrap();
            assert_eq!(s.dropped(), 0, "daemon {i}: {s:?}");
        }
        assert_eq!(sim.report().installs, installs, "no membership change");
    }

    #[test]
    fn a_daemon_with_another_key_never_joins() {
        let mut sim = Sim::new(3, 3, secure());
        sim.run_until(Instant(500_000))
            .unwrap_or_else(|f| panic!("{f}"));
        assert!(sim.set_link_keys(2, Keyring::single(&[9; 32])));
        sim.run_until(Instant(8_000_000))
            .unwrap_or_else(|f| panic!("{f}"));
        let e0 = sim.engine(0).unwrap();
        let e2 = sim.engine(2).unwrap();
        assert!(!e0.members().contains(&sim.ids[2]), "{:?}", e0.members());
        assert_eq!(e2.members(), &[sim.ids[2]]);
        assert!(sim.link_stats(0).unwrap().unknown_key > 0);
        assert!(sim.link_stats(2).unwrap().unknown_key > 0);
    }
}
