//! Stateful target for whole daemons: [`Daemon`]s (client sessions and group state on top of the
//! ring engine) with hostile clients and a hostile peer. The script records are the ones of
//! `client_session` and `daemon_stateful`, decoded by the same functions.

use bytes::Bytes;
use std::collections::BTreeMap;

use super::records;
use super::ring::{check_engine, honest_ring_config, ring_step, Honest, World, DAEMONS, START};
use super::session::{
    check_counts, check_output, client_step, daemon_config, ClientStep, Conn, MAX_OUTPUTS_PER_INPUT,
};
use super::Record;
use crate::daemon::{Daemon, Input, Output, Settings, Target, MAX_WAITING};
use crate::ring::{DaemonId, Dest, Port, Service, MAX_OUTPUTS};
use crate::session::SessionId;
use crate::time::Instant;

/// Honest nodes (the captures' d1 and d2; the fuzzer plays d3).
const NODES: usize = 2;
/// Client records name sessions `tag >> 3` below this (the high tag bit marks ring records).
const CLIENT_SESSIONS: u64 = 16;

/// One honest daemon: a [`Daemon`], and the client connections the harness opened to it.
struct HonestNode {
    n: Daemon,
    i: usize,
    conns: BTreeMap<SessionId, Conn>,
}

impl HonestNode {
    /// A client event; its outputs (client and network) wait in the node until drained.
    fn client(&mut self, now: Instant, input: crate::clients::SessionInput) {
        self.n.handle(now, Input::Client(input));
    }
}

impl Honest for HonestNode {
    fn id(&self) -> DaemonId {
        self.n.engine().id()
    }

    fn packet(&mut self, now: Instant, from: DaemonId, port: Port, bytes: Bytes) {
        self.n.handle(now, Input::Packet { from, port, bytes });
    }

    fn submit(&mut self, _: Instant, _: Service, _: Bytes) {}

    fn timeout(&mut self, now: Instant) {
        self.n.handle_timeout(now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.n.poll_timeout()
    }

    fn poll_send(&mut self) -> Option<(Dest, Port, Bytes)> {
        loop {
            match self.n.poll_output()? {
                Output::Transmit(t) => {
                    let to = match t.to {
                        Target::Daemon(d) => Dest::Unicast(d),
                        Target::Segment => Dest::Segment,
                    };
                    return Some((to, t.port, t.bytes));
                }
                Output::Client(out) => check_output(out, &mut self.conns),
                // Monitor control packets: a STATUS reply or the order to exit, nothing to check.
                Output::Monitor(_) => {}
            }
        }
    }

    fn max_outputs(&self) -> usize {
        MAX_OUTPUTS + MAX_OUTPUTS_PER_INPUT
    }

    fn check(&self) {
        check_engine(self.n.engine(), self.i);
        check_counts(self.n.clients(), &self.conns);
        let (waiting, _) = self.n.backlog();
        assert!(waiting <= MAX_WAITING, "node {}: {waiting} waiting", self.i);
        for (id, _, members) in self.n.clients().groups().snapshot() {
            assert!(
                members.windows(2).all(|w| w[0].member < w[1].member),
                "node {}: members of {id:?} not sorted and unique",
                self.i
            );
            // (A closed session's member stays until its disconnect is ordered by the ring.)
            for e in members {
                assert!(
                    e.session.is_none() || usize::from(e.member.daemon) == self.i,
                    "node {}: a session on another daemon",
                    self.i
                );
                assert!(usize::from(e.member.daemon) < DAEMONS.len());
            }
        }
    }
}

/// Two honest [`Daemon`]s (d1, d2 of the captures' configuration; quota 4 sessions, slow-reader
/// limit 16) with hostile clients, and a hostile peer (d3). Input: a script of records
/// `[tag u8][len u16 LE][payload]`:
///
/// * tag < 0x80: a client record of `client_session` (session `tag >> 3`, of node
///   `(tag >> 3) % 2`): bytes, reads, closes, connects, time;
/// * tag ≥ 0x80: a ring record of `daemon_stateful` with tag `tag & 0x7f`: the fuzzer injects
///   (possibly spoofing d1 / d2) to the data / token ports, time passes, datagrams in flight
///   are lost, replayed, corrupted or delivered (its "submit" is ignored: nodes submit for
///   their clients only).
///
/// Checks after every record: outputs go only to open client connections and nothing follows
/// a `Close`; each `Send` is one whole message or a handshake reply; sessions within the
/// quota; engine queues and buffers bounded (as in `daemon_stateful`); the node's backlog
/// within `MAX_WAITING`; group members sorted and unique, sessions only on the node's own
/// members; no timer stays due after `handle_timeout`.
pub fn node_stateful(data: &[u8]) {
    run(data);
}

/// [`node_stateful`]; returns the world at the end.
fn run(data: &[u8]) -> World<HonestNode> {
    let peers = (0..NODES)
        .map(|i| HonestNode {
            n: Daemon::new(
                Settings::from_parts(daemon_config(&format!("d{}", i + 1)), honest_ring_config(i)),
                START,
                1_700_000_000 + u32::try_from(i).unwrap_or(0),
            ),
            i,
            conns: BTreeMap::new(),
        })
        .collect();
    let mut w = World::new(peers);
    for rec in records(data) {
        if rec.tag & 0x80 != 0 {
            w.step(ring_step(Record {
                tag: rec.tag & 0x7f,
                payload: rec.payload,
            }));
        } else {
            let node =
                usize::try_from(u64::from(rec.tag >> 3) % CLIENT_SESSIONS).unwrap_or(0) % NODES;
            let Some(p) = w.peers.get_mut(node) else {
                continue;
            };
            match client_step(rec, &mut p.conns) {
                ClientStep::Advance(ms) => w.advance(ms),
                ClientStep::Inputs(inputs) => {
                    let now = w.now;
                    for input in inputs {
                        if let Some(p) = w.peers.get_mut(node) {
                            p.client(now, input);
                        }
                        w.drain(node);
                    }
                }
            }
        }
        w.check();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: u8, p: &[u8]) -> Vec<u8> {
        let mut r = vec![tag];
        r.extend_from_slice(&u16::try_from(p.len()).unwrap().to_le_bytes());
        r.extend_from_slice(p);
        r
    }

    /// The two nodes form a ring, and the captured two-client conversation (clients on both
    /// nodes) is served across it: the harness reaches deep states from its seeds.
    #[test]
    fn ring_forms_and_clients_are_served() {
        let mut s = Vec::new();
        for _ in 0..30 {
            s.extend(rec(0x80 | 2, &200u16.to_le_bytes()));
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/client_session/cap-two_clients_join_leave");
        s.extend(std::fs::read(path).unwrap());
        for _ in 0..10 {
            s.extend(rec(0x80 | 2, &200u16.to_le_bytes()));
        }
        let w = run(&s);
        assert!(w.now > START);
        for p in &w.peers {
            assert_eq!(p.n.engine().members().len(), NODES, "ring of both nodes");
        }
        let accepted: u64 = w.peers.iter().map(|p| p.n.clients().stats().accepted).sum();
        assert_eq!(accepted, 2);
        let delivered: u64 = w
            .peers
            .iter()
            .map(|p| p.n.clients().stats().messages_out)
            .sum();
        assert!(delivered >= 4, "{delivered} messages to clients");
    }
}
