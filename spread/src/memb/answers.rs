//! Single answers of engines checked byte for byte against real 5.0.1 captures: a few
//! engines of a capture's configuration run on a perfect in-memory network, then one engine
//! is handed a captured datagram and what it sends at once is compared with what the real
//! daemon sent.

use bytes::Bytes;

use super::replay::{kind, load, ORIGIN_US};
use crate::config::Config;
use crate::ring::{DaemonId, Dest, Engine, Input, Output, Port, RingConfig};
use crate::time::Instant;
use crate::wire::daemon as w;

/// A few engines of a capture's configuration on a perfect network (100 µs latency;
/// `Segment` reaches the running daemons of the sender's configured segment), for
/// checking single answers byte for byte against the capture.
struct Net {
    cfg: Config,
    names: Vec<String>,
    segs: Vec<usize>,
    es: Vec<Option<Engine>>,
    now: u64,
    queue: std::collections::BTreeMap<(u64, u64), (usize, DaemonId, Port, Bytes)>,
    seq: u64,
    /// Every datagram sent: (time, sender, kind).
    log: Vec<(u64, usize, &'static str)>,
}

impl Net {
    /// Starts the daemons `up` of `file`'s configuration.
    fn new(file: &str, up: &[&str]) -> Self {
        let cfg = load(file).cfg;
        let hosts: Vec<(String, usize)> = cfg
            .hosts()
            .map(|(id, h)| (h.name.clone(), id.segment))
            .collect();
        let now = ORIGIN_US;
        let es = hosts
            .iter()
            .map(|(n, _)| {
                up.contains(&n.as_str()).then(|| {
                    let rc = RingConfig::from_config(&cfg, n).unwrap();
                    Engine::new(rc, Instant(now), 1_000)
                })
            })
            .collect();
        let mut net = Self {
            names: hosts.iter().map(|h| h.0.clone()).collect(),
            segs: hosts.iter().map(|h| h.1).collect(),
            cfg,
            es,
            now,
            queue: std::collections::BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
        };
        for i in 0..net.es.len() {
            net.flush(i);
        }
        net
    }

    fn idx(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap()
    }

    fn id(&self, name: &str) -> DaemonId {
        DaemonId(self.cfg.find_host(name).unwrap().1.vid)
    }

    /// Routes daemon `i`'s outputs; returns them.
    fn flush(&mut self, i: usize) -> Vec<(Dest, Port, Bytes)> {
        let mut outs = Vec::new();
        let Some(e) = self.es[i].as_mut() else {
            return outs;
        };
        let from = e.id();
        while let Some(o) = e.poll_output() {
            if let Output::Send { to, port, bytes } = o {
                outs.push((to, port, bytes));
            }
        }
        let hash = e.cfg.conf_hash;
        for (to, port, bytes) in &outs {
            self.log.push((self.now, i, kind(hash, *port, bytes)));
            let targets: Vec<usize> = match to {
                Dest::Unicast(d) => self
                    .names
                    .iter()
                    .position(|n| self.id(n) == *d)
                    .into_iter()
                    .collect(),
                Dest::Segment => (0..self.es.len())
                    .filter(|j| *j != i && self.segs[*j] == self.segs[i])
                    .collect(),
                Dest::Broadcast => (0..self.es.len()).filter(|j| *j != i).collect(),
            };
            for j in targets {
                self.queue
                    .insert((self.now + 100, self.seq), (j, from, *port, bytes.clone()));
                self.seq += 1;
            }
        }
        outs
    }

    /// Runs until `secs` after start.
    fn run_for(&mut self, secs: f64) {
        let end = self.now + (secs * 1e6) as u64;
        for _ in 0..10_000_000 {
            let timer = (0..self.es.len())
                .filter_map(|i| Some((self.es[i].as_ref()?.poll_timeout()?.0, i)))
                .min();
            let input = self.queue.first_key_value().map(|(k, v)| (k.0, v.0));
            let next = match (timer, input) {
                (Some(t), Some(p)) => t.min(p),
                (Some(t), None) => t,
                (None, Some(p)) => p,
                (None, None) => break,
            };
            if next.0 > end {
                break;
            }
            self.now = next.0;
            if timer == Some(next) {
                if let Some(e) = self.es[next.1].as_mut() {
                    e.handle_timeout(Instant(next.0));
                }
            } else if let Some((_, (j, from, port, bytes))) = self.queue.pop_first() {
                if let Some(e) = self.es[j].as_mut() {
                    e.handle(Instant(next.0), Input::Packet { from, port, bytes });
                }
            }
            self.flush(next.1);
        }
        self.now = end;
    }

    /// Hands daemon `to` a captured datagram; returns what it sends at once.
    fn inject(
        &mut self,
        to: &str,
        from: &str,
        port: Port,
        bytes: &[u8],
    ) -> Vec<(Dest, Port, Bytes)> {
        let i = self.idx(to);
        let from = self.id(from);
        let e = self.es[i].as_mut().unwrap();
        e.handle(
            Instant(self.now),
            Input::Packet {
                from,
                port,
                bytes: Bytes::copy_from_slice(bytes),
            },
        );
        self.flush(i)
    }

    fn engine(&self, name: &str) -> &Engine {
        self.es[self.idx(name)].as_ref().unwrap()
    }
}

/// The bytes of the captured datagram at time `t_s` from `src`.
fn captured(file: &str, t_s: f64, src: &str) -> Bytes {
    let t = ORIGIN_US + (t_s * 1e6).round() as u64;
    load(file)
        .dgrams
        .into_iter()
        .find(|d| d.t_us == t && d.src == src)
        .unwrap()
        .bytes
}

#[test]
fn running_ring_answers_a_joiner_byte_for_byte() {
    // n_multiseg22_join_kill: ring {e1,e2,w1}; w2 starts and broadcasts a JOIN in the west
    // (w1 answers with a REFER to its leader e1) and unicasts it to e1 (the leader gathers,
    // its ring running, and unicasts its JOIN to w2).
    let file = "n_multiseg22_join_kill.hex";
    let mut net = Net::new(file, &["e1", "e2", "w1"]);
    net.run_for(6.0);
    assert_eq!(net.engine("e1").members().len(), 3);
    let join = captured(file, 9.039720, "w2");
    let out = net.inject("w1", "w2", Port::Data, &join);
    let refer = captured(file, 9.039819, "w1");
    assert_eq!(out, vec![(Dest::Unicast(net.id("w2")), Port::Data, refer)]);
    let out = net.inject("e1", "w2", Port::Data, &join);
    let answer = captured(file, 9.039996, "e1");
    assert_eq!(out, vec![(Dest::Unicast(net.id("w2")), Port::Data, answer)]);
    assert_eq!(net.engine("e1").state(), crate::ring::State::Gather);
    // e2 (not first of its segment, joiner from another segment) refers it too.
    let out = net.inject("e2", "w2", Port::Data, &join);
    assert_eq!(out.len(), 1);
}

#[test]
fn foreign_packet_is_forwarded_twice_to_the_leader_then_looked_up() {
    // n_multiseg22_foreign_merge: w2, back as ring {w2}, broadcasts a client message; w1
    // (first of the west in ring {e1,e2,w1}) forwards it unchanged, twice, to e1; e1 looks
    // up at once: a JOIN to the missing w2.
    let file = "n_multiseg22_foreign_merge.hex";
    let mut net = Net::new(file, &["e1", "e2", "w1"]);
    net.run_for(6.0);
    let data = captured(file, 22.213544, "w2");
    let out = net.inject("w1", "w2", Port::Data, &data);
    let fwd = captured(file, 22.213715, "w1");
    let to_e1 = (Dest::Unicast(net.id("e1")), Port::Data, fwd.clone());
    assert_eq!(out, vec![to_e1.clone(), to_e1]);
    // Once per membership.
    assert!(net.inject("w1", "w2", Port::Data, &data).is_empty());
    let out = net.inject("e1", "w1", Port::Data, &fwd);
    let lookup = captured(file, 22.213818, "e1");
    assert_eq!(out, vec![(Dest::Unicast(net.id("w2")), Port::Data, lookup)]);
}

#[test]
fn join_from_an_own_ring_member_is_a_token_loss_with_several_segments() {
    let file = "n_multiseg22_join_kill.hex";
    let mut net = Net::new(file, &["e1", "e2", "w1"]);
    net.run_for(6.0);
    // w1's JOIN as a daemon that lost the ring (captured at 32.76 s, after w2's death).
    let join = load(file)
        .dgrams
        .into_iter()
        .find(|d| d.src == "w1" && d.dst == "e1" && kind(0xcb01_c83e, d.port, &d.bytes) == "JOIN")
        .unwrap()
        .bytes;
    net.inject("e1", "w1", Port::Data, &join);
    assert_eq!(net.engine("e1").state(), crate::ring::State::Seg);
    // The ALIVE follows at once (a zero timeout, as in 5.0.1).
    let lost = net.now;
    net.run_for(0.001);
    let e1 = net.idx("e1");
    assert!(net
        .log
        .iter()
        .any(|l| l.0 >= lost && l.1 == e1 && l.2 == "ALIVE"));
}

#[test]
fn complete_multi_segment_ring_is_silent_at_the_lookup() {
    // n_multiseg_idle_no_probe: nothing at the 45 s mark; the ring stays in OP.
    let mut net = Net::new("n_multiseg_idle_no_probe.hex", &["e1", "e2", "w1"]);
    net.run_for(4.0);
    let ring = net.engine("e1").ring_id();
    let formed = net.now;
    net.run_for(60.0);
    let e1 = net.engine("e1");
    assert_eq!((e1.state(), e1.ring_id()), (crate::ring::State::Op, ring));
    let after: Vec<&str> = net
        .log
        .iter()
        .filter(|l| l.0 > formed)
        .map(|l| l.2)
        .collect();
    assert!(
        after.len() > 100 && after.iter().all(|k| *k == "TOKEN"),
        "{after:?}"
    );
}

/// Token sends of daemon `i` per send instant after `from`: how many copies each time.
fn token_copies(net: &Net, i: usize, from: u64) -> Vec<usize> {
    let mut v: Vec<(u64, usize)> = Vec::new();
    for (t, _, _) in net
        .log
        .iter()
        .filter(|l| l.0 > from && l.1 == i && l.2 == "TOKEN")
    {
        match v.last_mut() {
            Some((last, n)) if last == t => *n += 1,
            _ => v.push((*t, 1)),
        }
    }
    v.into_iter().map(|(_, n)| n).collect()
}

#[test]
fn wide_area_last_of_segment_re_sends_the_token_twice() {
    // n_multiseg22_first_down: singleton {w2} (leader and last of the west, WAN mode)
    // releases its held token every 1.5 s with two copies (48.5729 s), four token sends per
    // period in all (118 elided tokens in 43.5 s); with WideAreaNetwork = no one copy.
    for (file, copies) in [
        ("n_multiseg22_first_down.hex", 2),
        ("n_multiseg22_lan.hex", 1),
    ] {
        let mut net = Net::new(file, &["w2"]);
        net.run_for(8.0);
        let idle = net.now;
        net.run_for(6.0);
        let i = net.idx("w2");
        let c = token_copies(&net, i, idle);
        // Per period: the release, then the token's round through the ring of one.
        let release_first = c.chunks(3).all(|p| p == [copies, 1, 1]);
        assert!(c.len() >= 9 && release_first, "{file}: {c:?}");
    }
}

#[test]
fn represented_daemon_refers_a_foreign_join_to_its_representative() {
    // REFER case (b) (source only, not in the captures): w2, REPRESENTED by w1, hears e1's
    // JOIN (another segment) and points e1 at w1 as a SEG_REP.
    let file = "n_multiseg22_form_data.hex";
    let mut net = Net::new(file, &["e1", "e2", "w1", "w2"]);
    net.run_for(0.8);
    assert_eq!(net.engine("w2").state(), crate::ring::State::Represented);
    let join = captured(file, 1.023073, "e1");
    let out = net.inject("w2", "e1", Port::Data, &join);
    let hash = net.engine("w2").cfg.conf_hash;
    let refer = w::Packet::refer(net.id("w2"), hash, net.id("w1"), w::RepType::SEG);
    let bytes = Bytes::from(refer.to_vec());
    assert_eq!(out, vec![(Dest::Unicast(net.id("e1")), Port::Data, bytes)]);
    // A JOIN of its own representative is answered with one ALIVE instead.
    let rep_join = captured(file, 1.027985, "w1");
    let out = net.inject("w2", "w1", Port::Data, &rep_join);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0, kind(hash, out[0].1, &out[0].2)),
        (Dest::Segment, "ALIVE")
    );
}

#[test]
fn last_form1_visitor_sends_5_0_1_s_form2_byte_for_byte() {
    // b: d2, REPRESENTED by d1, is the last FORM1 visitor: its FORM2 to d1 (twice) carries
    // the stale start of reps_info in the ring-id slot, as the real d2's.
    let file = "b_two_daemons_form_ring.hex";
    let mut net = Net::new(file, &["d2"]);
    net.run_for(0.3);
    let join = captured(file, 0.541894, "d1");
    net.inject("d2", "d1", Port::Data, &join);
    assert_eq!(net.engine("d2").state(), crate::ring::State::Represented);
    let form1 = captured(file, 1.792441, "d1");
    let out = net.inject("d2", "d1", Port::Token, &form1);
    let form2 = captured(file, 1.792767, "d2");
    let to_d1 = (Dest::Unicast(net.id("d1")), Port::Token, form2);
    assert_eq!(out, vec![to_d1.clone(), to_d1]);
}
