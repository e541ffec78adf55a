//! Targets for the ring engine (`crate::ring`): its datagram codec, and a stateful target where
//! a hostile peer attacks a ring of honest engines.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::{records, Record};
use crate::ring::{
    Class, ConfigKind, DaemonId, Dest, Engine, Input, Output, Port, RingConfig, RingId, Service,
    MAX_MESSAGE, MAX_OUTPUTS, MAX_SEND_QUEUE, MAX_SEQ_GAP,
};
use crate::time::Instant;
use crate::wire::daemon as w;

/// The daemons of the captures' configuration (d1, d2, d3). d1 and d2 are honest engines, d3
/// is the hostile peer the fuzzer plays.
pub(super) const DAEMONS: [DaemonId; 3] = [
    DaemonId(0x5c8d_7aef),
    DaemonId(0x14c5_65a0),
    DaemonId(0xef46_226e),
];
/// Honest engines (the first daemons of [`DAEMONS`]).
const HONEST: usize = 2;
/// Datagrams in flight at most (older ones are lost, like a full socket buffer).
const MAX_IN_FLIGHT: usize = 4096;
/// Largest single time advance (ms).
const MAX_ADVANCE_MS: u64 = 5_000;
/// Simulated time one script may use in all (ms); later time advances are ignored.
const MAX_TOTAL_MS: u64 = 30_000;
/// Time one network hop takes.
const LATENCY: Duration = Duration::from_millis(1);

/// Configuration hash of the captures' three-daemon configuration (`tests/data/daemon`), so
/// captured datagrams are accepted by the fuzzed engines.
const CAPTURE_HASH: u32 = 0x9f2a_d697;

/// The configuration hash a datagram carries (data header offset 28, token header offset 36),
/// read in both byte orders.
fn carried_hashes(data: &[u8], token: bool) -> [u32; 2] {
    let at = if token { 36 } else { 28 };
    let mut w = [0u8; 4];
    if let Some(b) = data.get(at..at + 4) {
        w.copy_from_slice(b);
    }
    [u32::from_le_bytes(w), u32::from_be_bytes(w)]
}

/// The ring engine's datagram codec ([`w::Datagram`]: what the engine decodes and sends, with
/// the configuration check). Input: one datagram, read as a data-port and as a token-port
/// datagram, with the configuration hash it carries. Checks: what decodes re-encodes to a
/// datagram that decodes to the same value, and re-encoding is a fixed point.
pub fn ring_packet(data: &[u8]) {
    for token in [false, true] {
        for hash in carried_hashes(data, token) {
            let Ok(d) = w::Datagram::decode(hash, token, data) else {
                continue;
            };
            let enc = d.to_bytes();
            let again = w::Datagram::decode(hash, token, &enc);
            assert_eq!(
                again.as_ref().ok(),
                Some(&d),
                "re-encoded datagram decodes differently"
            );
            assert_eq!(d.to_bytes(), enc, "encoding is not deterministic");
        }
    }
}

/// One datagram on the simulated network.
#[derive(Debug, Clone)]
pub(super) struct Datagram {
    from: DaemonId,
    to: Dest,
    port: Port,
    bytes: Bytes,
}

/// One record of a ring script, decoded (the format of [`daemon_stateful`]; `node_stateful`
/// reads the same records).
#[derive(Debug, Clone, Copy)]
pub(super) enum RingStep<'a> {
    /// The fuzzer sends `bytes` to `port` of every honest daemon, claiming to be `from`.
    Inject {
        /// Claimed sender.
        from: DaemonId,
        /// Port.
        port: Port,
        /// The datagram.
        bytes: &'a [u8],
    },
    /// Time passes (ms).
    Advance(u64),
    /// Honest daemon `honest` (modulo their number) submits a message.
    Submit {
        /// Which honest daemon.
        honest: usize,
        /// Service.
        service: Service,
        /// Body.
        payload: &'a [u8],
    },
    /// The next datagram in flight is lost.
    Lose,
    /// The next datagram in flight is delivered twice.
    Replay,
    /// The next datagram in flight is corrupted (pairs of offset, xor mask).
    Corrupt(&'a [u8]),
    /// The next n datagrams in flight are delivered.
    Deliver(usize),
}

/// Decodes one record of a ring script (see [`daemon_stateful`]).
pub(super) fn ring_step(rec: Record<'_>) -> RingStep<'_> {
    let arg = usize::from(rec.tag >> 3);
    match rec.tag & 7 {
        k @ (0 | 1) => RingStep::Inject {
            from: DAEMONS[arg % DAEMONS.len()],
            port: if k == 0 { Port::Data } else { Port::Token },
            bytes: rec.payload,
        },
        2 => RingStep::Advance(match rec.payload {
            [a, b, ..] => u64::from(u16::from_le_bytes([*a, *b])),
            [a] => u64::from(*a),
            [] => 100,
        }),
        3 => RingStep::Submit {
            honest: arg,
            service: match rec.payload.first().map_or(0, |b| b % 6) {
                0 => Service::Unreliable,
                1 => Service::Reliable,
                2 => Service::Fifo,
                3 => Service::Causal,
                4 => Service::Agreed,
                _ => Service::Safe,
            },
            payload: rec.payload.get(1..).unwrap_or_default(),
        },
        4 => RingStep::Lose,
        5 => RingStep::Replay,
        6 => RingStep::Corrupt(rec.payload),
        _ => RingStep::Deliver(rec.payload.first().map_or(1, |&n| usize::from(n))),
    }
}

/// An honest daemon of the simulated ring: a bare [`Engine`] (`daemon_stateful`) or a whole
/// `Node` (`node_stateful`).
pub(super) trait Honest {
    /// Its daemon id.
    fn id(&self) -> DaemonId;
    /// A datagram arrives.
    fn packet(&mut self, now: Instant, from: DaemonId, port: Port, bytes: Bytes);
    /// It submits a message (a `Node` submits only for its clients: ignored).
    fn submit(&mut self, now: Instant, service: Service, payload: Bytes);
    /// Its timers fire.
    fn timeout(&mut self, now: Instant);
    /// When its timers are due next.
    fn next_timeout(&self) -> Option<Instant>;
    /// Its next datagram to send; every other output is checked (and consumed) on the way.
    fn poll_send(&mut self) -> Option<(Dest, Port, Bytes)>;
    /// Most outputs one input may produce.
    fn max_outputs(&self) -> usize;
    /// Checks bounded state.
    fn check(&self);
}

/// A bare engine and what the harness checks about its deliveries.
pub(super) struct HonestEngine {
    e: Engine,
    /// Index among the honest daemons (for messages).
    i: usize,
    /// The last (ring, seq) delivered in a regular configuration.
    last_delivered: Option<(RingId, u32)>,
}

impl Honest for HonestEngine {
    fn id(&self) -> DaemonId {
        self.e.id()
    }

    fn packet(&mut self, now: Instant, from: DaemonId, port: Port, bytes: Bytes) {
        self.e.handle(now, Input::Packet { from, port, bytes });
    }

    fn submit(&mut self, now: Instant, service: Service, payload: Bytes) {
        self.e.handle(now, Input::Submit { service, payload });
    }

    fn timeout(&mut self, now: Instant) {
        self.e.handle_timeout(now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.e.poll_timeout()
    }

    fn poll_send(&mut self) -> Option<(Dest, Port, Bytes)> {
        let i = self.i;
        loop {
            match self.e.poll_output()? {
                Output::Send { to, port, bytes } => return Some((to, port, bytes)),
                Output::Deliver(d) => {
                    assert!(
                        d.payload.len() <= MAX_MESSAGE,
                        "delivered {} bytes",
                        d.payload.len()
                    );
                    assert!(
                        DAEMONS.contains(&d.sender),
                        "delivery from unknown {}",
                        d.sender
                    );
                    // RELIABLE packets may be delivered on receipt, ahead of the order.
                    if !d.transitional && d.class != Class::Reliable {
                        if let Some((ring, seq)) = self.last_delivered {
                            assert!(
                                ring != d.ring || seq <= d.seq,
                                "engine {i}: seq {} delivered after {seq} in ring {ring}",
                                d.seq
                            );
                        }
                        self.last_delivered = Some((d.ring, d.seq));
                    }
                }
                Output::Configuration(c) => {
                    assert!(c.members.iter().all(|m| DAEMONS.contains(m)));
                    assert!(c.members.len() <= DAEMONS.len());
                    if c.kind == ConfigKind::Regular {
                        self.last_delivered = None;
                    }
                }
            }
        }
    }

    fn max_outputs(&self) -> usize {
        MAX_OUTPUTS
    }

    fn check(&self) {
        check_engine(&self.e, self.i);
    }
}

/// Bounded state of one engine.
pub(super) fn check_engine(e: &Engine, i: usize) {
    assert!(e.send_q.len() <= MAX_SEND_QUEUE, "engine {i}: send queue");
    assert!(e.out.len() <= MAX_OUTPUTS, "engine {i}: output queue");
    let r = &e.ring;
    assert!(
        r.buf.len() <= MAX_SEQ_GAP as usize + w::MAX_PACKET_BODY,
        "engine {i}: {} packets buffered",
        r.buf.len()
    );
    for p in r.partial.values() {
        assert!(
            p.data.len() <= MAX_MESSAGE,
            "engine {i}: partial message too long"
        );
    }
    assert!(e.members().len() <= DAEMONS.len());
}

/// The ring settings of honest daemon `i` (the captures' configuration hash).
pub(super) fn honest_ring_config(i: usize) -> RingConfig {
    let mut cfg = RingConfig::lan(DAEMONS[i], DAEMONS.to_vec());
    cfg.conf_hash = CAPTURE_HASH;
    cfg
}

/// Start of simulated time.
pub(super) const START: Instant = Instant(10_000_000);

/// The simulated world: honest daemons, the network between them, a clock.
pub(super) struct World<P> {
    pub(super) peers: Vec<P>,
    net: VecDeque<Datagram>,
    pub(super) now: Instant,
    /// Simulated time used so far (ms).
    elapsed_ms: u64,
    /// Datagrams sent, kept only when recording (seed generation in tests).
    #[cfg(test)]
    sent: Option<Vec<Datagram>>,
}

/// A hostile peer against a ring of two honest engines (ids of the captures' d1, d2; the
/// fuzzer is d3). Input: a script of records `[tag u8][len u16 LE][payload]`; the kind is
/// `tag & 7`, an argument `tag >> 3`:
///
/// * 0 / 1: the fuzzer sends `payload` to the data / token port of every honest engine,
///   claiming to be daemon `arg % 3` (so it may also spoof an honest member);
/// * 2: time passes (`payload` = u16 LE milliseconds): every datagram in flight is delivered
///   and timers fire, in steps;
/// * 3: honest engine `arg % 2` submits a message, service `payload[0] % 6`, the rest as body;
/// * 4: the next datagram in flight is lost;
/// * 5: the next datagram in flight is delivered twice (replay);
/// * 6: the next datagram in flight is corrupted (`payload` = pairs of offset, xor mask);
/// * 7: the next `payload[0]` datagrams in flight are delivered.
///
/// Checks after every step: bounded state (send queue, output queue, retransmission buffer
/// within `MAX_SEQ_GAP` of the ring's aru, partial reassemblies within `MAX_MESSAGE`); timers
/// never stay due after `handle_timeout`; each engine delivers (all but RELIABLE) in increasing
/// seq order within a ring; a delivered payload is never larger than `MAX_MESSAGE`;
/// configuration changes list only configured daemons.
pub fn daemon_stateful(data: &[u8]) {
    run(data);
}

/// [`daemon_stateful`]; returns the world at the end.
fn run(data: &[u8]) -> World<HonestEngine> {
    let peers = (0..HONEST)
        .map(|i| HonestEngine {
            e: Engine::new(
                honest_ring_config(i),
                START,
                1_700_000_000 + u32::try_from(i).unwrap_or(0),
            ),
            i,
            last_delivered: None,
        })
        .collect();
    let mut w = World::new(peers);
    for rec in records(data) {
        w.step(ring_step(rec));
        w.check();
    }
    w
}

impl<P: Honest> World<P> {
    /// A world of `peers` at [`START`], their first outputs drained.
    pub(super) fn new(peers: Vec<P>) -> Self {
        let mut w = Self {
            peers,
            net: VecDeque::new(),
            now: START,
            elapsed_ms: 0,
            #[cfg(test)]
            sent: None,
        };
        for i in 0..w.peers.len() {
            w.drain(i);
        }
        w
    }

    /// Applies one step of a ring script.
    pub(super) fn step(&mut self, step: RingStep<'_>) {
        match step {
            RingStep::Inject { from, port, bytes } => {
                let bytes = Bytes::copy_from_slice(bytes);
                for i in 0..self.peers.len() {
                    self.deliver_to(i, from, port, bytes.clone());
                }
            }
            RingStep::Advance(ms) => self.advance(ms.min(MAX_ADVANCE_MS)),
            RingStep::Submit {
                honest,
                service,
                payload,
            } => {
                let i = honest % self.peers.len().max(1);
                let now = self.now;
                if let Some(p) = self.peers.get_mut(i) {
                    p.submit(now, service, Bytes::copy_from_slice(payload));
                }
                self.drain(i);
            }
            RingStep::Lose => {
                self.net.pop_front();
            }
            RingStep::Replay => {
                if let Some(d) = self.net.front().cloned() {
                    self.net.push_front(d);
                    self.step_net();
                }
            }
            RingStep::Corrupt(pairs) => {
                if let Some(d) = self.net.front_mut() {
                    let mut b = d.bytes.to_vec();
                    for pair in pairs.chunks(2) {
                        if let ([off, mask], false) = (pair, b.is_empty()) {
                            let at = usize::from(*off) % b.len();
                            if let Some(x) = b.get_mut(at) {
                                *x ^= *mask;
                            }
                        }
                    }
                    d.bytes = Bytes::from(b);
                }
            }
            RingStep::Deliver(n) => {
                for _ in 0..n {
                    if !self.step_net() {
                        break;
                    }
                }
            }
        }
    }

    fn index_of(&self, id: DaemonId) -> Option<usize> {
        self.peers.iter().position(|p| p.id() == id)
    }

    /// Hands one datagram to peer `i` and drains its outputs.
    fn deliver_to(&mut self, i: usize, from: DaemonId, port: Port, bytes: Bytes) {
        let now = self.now;
        if let Some(p) = self.peers.get_mut(i) {
            p.packet(now, from, port, bytes);
        }
        self.drain(i);
    }

    /// Delivers the oldest datagram in flight; false if there is none.
    fn step_net(&mut self) -> bool {
        let Some(d) = self.net.pop_front() else {
            return false;
        };
        for i in 0..self.peers.len() {
            let to_me = match d.to {
                Dest::Broadcast | Dest::Segment => true,
                Dest::Unicast(id) => self.index_of(id) == Some(i),
            };
            if to_me {
                self.deliver_to(i, d.from, d.port, d.bytes.clone());
            }
        }
        true
    }

    /// Lets `ms` milliseconds pass: every hop takes [`LATENCY`]; datagrams in flight at the
    /// start of a hop arrive at its end, and timers fire when due. When nothing is in flight
    /// the clock jumps to the next timer.
    pub(super) fn advance(&mut self, ms: u64) {
        let ms = ms
            .min(MAX_ADVANCE_MS)
            .min(MAX_TOTAL_MS.saturating_sub(self.elapsed_ms));
        self.elapsed_ms += ms;
        let end = self.now + Duration::from_millis(ms);
        while self.now < end {
            let in_flight = self.net.len();
            let next_timer = self.peers.iter().filter_map(P::next_timeout).min();
            let step_to = if in_flight > 0 {
                self.now + LATENCY
            } else {
                match next_timer {
                    Some(t) => t.max(self.now),
                    None => end,
                }
            };
            self.now = step_to.min(end);
            for _ in 0..in_flight {
                self.step_net();
            }
            for i in 0..self.peers.len() {
                let now = self.now;
                if let Some(p) = self.peers.get_mut(i) {
                    if p.next_timeout().is_some_and(|t| t <= now) {
                        p.timeout(now);
                        if let Some(t) = p.next_timeout() {
                            assert!(t > now, "daemon {i}: a due timer survived handle_timeout");
                        }
                    }
                }
                self.drain(i);
            }
            if in_flight == 0 && next_timer.is_none_or(|t| t > end) {
                break;
            }
        }
        self.now = self.now.max(end);
    }

    /// Drains peer `i`'s outputs onto the network (its other outputs it checks itself).
    pub(super) fn drain(&mut self, i: usize) {
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        let me = p.id();
        for _ in 0..=p.max_outputs() {
            let Some((to, port, bytes)) = p.poll_send() else {
                return;
            };
            #[cfg(test)]
            if let Some(log) = self.sent.as_mut() {
                log.push(Datagram {
                    from: me,
                    to,
                    port,
                    bytes: bytes.clone(),
                });
            }
            if self.net.len() >= MAX_IN_FLIGHT {
                self.net.pop_front();
            }
            self.net.push_back(Datagram {
                from: me,
                to,
                port,
                bytes,
            });
        }
        panic!("daemon {i}: more than {} outputs queued", p.max_outputs());
    }

    /// Bounded state of every peer.
    pub(super) fn check(&self) {
        for p in &self.peers {
            p.check();
        }
    }
}

#[cfg(test)]
mod regressions {
    use super::*;
    use crate::wire::daemon::{Datagram, TokenBody};

    /// A 15-second `ring_packet` run found this FORM1 (kept in its corpus): its second
    /// representative's `seg_index` is −255, which the old engine-side packet model (`u16`
    /// segments) read as segment 65535 and re-encoded as 32767. With one packet model the
    /// wire value is what the engine holds and sends on.
    #[test]
    fn form1_with_a_rep_of_segment_65535_round_trips_byte_for_byte() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/ring_packet/crash-b11b4a27-form1-rep-segment-65535"
        );
        let data = std::fs::read(path).expect("the finding is in the ring_packet corpus");
        let hash = carried_hashes(&data, true)[0];
        let Ok(Datagram::Token(t)) = Datagram::decode(hash, true, &data) else {
            panic!("a token-port datagram");
        };
        let TokenBody::Form1(f) = &t.body else {
            panic!("a FORM1");
        };
        assert!(f.reps.reps.iter().any(|r| r.seg_index == -255));
        assert_eq!(t.to_vec(), data, "decode → encode gives the same bytes");
        // The fuzz target's own oracle (decode → encode → decode) holds on it.
        ring_packet(&data);
    }
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

    /// A script that lets the honest ring form (`n` × 200 ms).
    fn idle(n: usize) -> Vec<u8> {
        (0..n).flat_map(|_| rec(2, &200u16.to_le_bytes())).collect()
    }

    /// Writes seeds for `ring_packet` and `daemon_stateful` into `fuzz/corpus/` (run with
    /// `MBUS_WRITE_SEEDS=1 cargo test -p spread --features fuzzing --lib write_ring_seeds --
    /// --ignored`): every distinct datagram of an honest run, and scripts that form a ring,
    /// submit messages of every service, then lose, replay, corrupt and inject datagrams.
    #[test]
    #[ignore = "writes fuzz/corpus seeds; run by hand"]
    fn write_ring_seeds() {
        if std::env::var_os("MBUS_WRITE_SEEDS").is_none() {
            return;
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut base = idle(30);
        for (i, svc) in [0u8, 1, 2, 3, 4, 5].iter().enumerate() {
            base.extend(rec(
                3 | (u8::try_from(i % 2).unwrap() << 3),
                &[*svc, b'm', b'0' + svc],
            ));
        }
        base.extend(rec(3, &[4; 3000]));
        // Record what the honest engines send while running the base script.
        let mut w = run(&base);
        w.sent = Some(Vec::new());
        let now = w.now;
        w.peers[0].submit(now, Service::Agreed, Bytes::from_static(b"late"));
        w.drain(0);
        w.advance(4000);
        let log = w.sent.take().unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        for d in &log {
            seen.insert((d.port == Port::Token, d.bytes.to_vec()));
        }
        let base_net: Vec<(Port, Bytes)> = log.iter().map(|d| (d.port, d.bytes.clone())).collect();
        let dir = root.join("ring_packet");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (_, b)) in seen.iter().enumerate().take(40) {
            std::fs::write(dir.join(format!("honest-{i:02}")), b).unwrap();
        }
        let dir = root.join("daemon_stateful");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("honest-form-submit"), &base).unwrap();
        let mut attack = base.clone();
        attack.extend(rec(4, b""));
        attack.extend(rec(5, b""));
        attack.extend(rec(6, &[9, 0xff, 12, 0x01]));
        attack.extend(rec(7, &[8]));
        for (port, b) in base_net.iter().take(12) {
            let kind = u8::from(*port == Port::Token);
            attack.extend(rec(kind | (2 << 3), b));
        }
        attack.extend(idle(20));
        std::fs::write(dir.join("honest-then-hostile"), &attack).unwrap();
    }

    /// Without an attacker the two honest engines form a ring and deliver what they submit:
    /// the harness itself works, so fuzzed scripts start from realistic states.
    #[test]
    fn honest_ring_forms_and_delivers() {
        let mut script = Vec::new();
        let rec = |tag: u8, p: &[u8]| {
            let mut r = vec![tag];
            r.extend_from_slice(&u16::try_from(p.len()).unwrap().to_le_bytes());
            r.extend_from_slice(p);
            r
        };
        for _ in 0..40 {
            script.extend(rec(2, &200u16.to_le_bytes()));
        }
        script.extend(rec(3, b"\x04hello"));
        for _ in 0..10 {
            script.extend(rec(2, &200u16.to_le_bytes()));
        }
        let w = run(&script);
        for p in &w.peers {
            let e = &p.e;
            let st = e.stats();
            assert!(st.installs >= 1, "{st:?}");
            assert!(st.delivered >= 1, "{st:?}");
            assert_eq!(e.members().len(), HONEST);
        }
    }
}

#[cfg(test)]
mod capture_tests {
    use super::*;

    /// Captured 5.0.1 datagrams decode as datagrams (with the hash they carry), so
    /// `ring_packet` checks its properties on real traffic.
    #[test]
    fn captured_datagrams_decode() {
        let seeds = crate::fuzzing::capture_seeds("ring_packet");
        let total = seeds.len();
        let decoded = seeds
            .iter()
            .filter(|data| {
                [false, true].iter().any(|&token| {
                    carried_hashes(data, token)
                        .iter()
                        .any(|&h| w::Datagram::decode(h, token, data).is_ok())
                })
            })
            .count();
        assert!(
            total > 100 && decoded * 2 > total,
            "{decoded} of {total} decoded"
        );
    }
}
