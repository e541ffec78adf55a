//! Several composed daemons ([`Daemon`]) exchanging datagrams in memory, with clients attached:
//! one total order across daemons, and the 5.0.1 network memberships (fact sheet §5.3–5.4)
//! across a crash, a partition and merge, and a late daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::clients::{SessionInput, SessionOutput};
use crate::session::{Peer, SessionId};
use crate::wire::client::{
    decode_frame, encode_header, encode_hello, ByteOrder, Direction, Frame, GroupName, Hello, Hint,
    MembershipBody, MessageHeader, ServiceType,
};

const CLOCK: u32 = 1_700_000_000;
const LATENCY: Duration = Duration::from_micros(200);

struct Net {
    now: Instant,
    ids: Vec<DaemonId>,
    nodes: Vec<Option<Daemon>>,
    /// Component of each node; traffic only flows inside a component.
    comp: Vec<u8>,
    queue: BTreeMap<(Instant, u64), (usize, DaemonId, Port, Bytes)>,
    n: u64,
    /// Messages received per (node, session).
    got: BTreeMap<(usize, u64), Vec<Bytes>>,
    /// `RingConfig::reply_wait` of daemons started from now on.
    reply_wait: Duration,
}

fn name(i: usize) -> String {
    format!("d{}", i + 1)
}

impl Net {
    fn new(count: usize, start: usize) -> Self {
        let ids: Vec<DaemonId> = (0..count)
            .map(|i| DaemonId(0x5c8d_7a00u32.wrapping_add(i as u32 * 0x1111)))
            .collect();
        Self::with_ids(ids, start)
    }

    fn with_ids(ids: Vec<DaemonId>, start: usize) -> Self {
        let count = ids.len();
        let mut net = Self {
            now: Instant(1_000_000),
            ids,
            nodes: (0..count).map(|_| None).collect(),
            comp: vec![0; count],
            queue: BTreeMap::new(),
            n: 0,
            got: BTreeMap::new(),
            reply_wait: crate::ring::DEFAULT_REPLY_WAIT,
        };
        for i in 0..start {
            net.start(i);
        }
        net
    }

    fn start(&mut self, i: usize) {
        let mut ring = RingConfig::lan(self.ids[i], self.ids.clone());
        ring.reply_wait = self.reply_wait;
        let cfg = DaemonConfig::new(&name(i), self.ids[i].0 as i32, 0);
        self.nodes[i] = Some(Daemon::new(
            Settings::from_parts(cfg, ring),
            self.now,
            CLOCK,
        ));
        self.drain(i);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.got.retain(|(n, _), _| *n != i);
    }

    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(o) = node.poll_output() {
            match o {
                Output::Client(SessionOutput::Send { session, data }) => {
                    node.handle(
                        self.now,
                        Input::Client(SessionInput::Drained {
                            session,
                            messages: 1,
                        }),
                    );
                    self.got.entry((i, session.0)).or_default().push(data);
                }
                Output::Client(SessionOutput::Close { .. }) => {}
                Output::Transmit(t) => sends.push((t.to, t.port, t.bytes)),
                Output::Monitor(_) => {}
            }
        }
        let from = self.ids[i];
        for (to, port, bytes) in sends {
            let targets: Vec<usize> = match to {
                Target::Segment => (0..self.ids.len()).filter(|&j| j != i).collect(),
                Target::Daemon(d) => self.ids.iter().position(|x| *x == d).into_iter().collect(),
            };
            for j in targets {
                if self.comp[j] != self.comp[i] {
                    continue;
                }
                self.n += 1;
                self.queue
                    .insert((self.now + LATENCY, self.n), (j, from, port, bytes.clone()));
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..5_000_000 {
            let net_next = self.queue.keys().next().map(|k| k.0);
            let timer_next = self
                .nodes
                .iter()
                .flatten()
                .filter_map(Daemon::poll_timeout)
                .min();
            let next = match (net_next, timer_next) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if net_next == Some(next) {
                let (_, (j, from, port, bytes)) = self.queue.pop_first().expect("queued");
                if let Some(node) = self.nodes[j].as_mut() {
                    node.handle(self.now, Input::Packet { from, port, bytes });
                    self.drain(j);
                }
            } else {
                for i in 0..self.nodes.len() {
                    if let Some(node) = self.nodes[i].as_mut() {
                        if node.poll_timeout().is_some_and(|t| t <= self.now) {
                            node.handle_timeout(self.now);
                            self.drain(i);
                        }
                    }
                }
            }
        }
        self.now = end;
    }

    fn client_bytes(&mut self, i: usize, s: u64, b: &[u8]) {
        let node = self.nodes[i].as_mut().expect("running");
        node.handle(
            self.now,
            Input::Client(SessionInput::Bytes {
                session: SessionId(s),
                data: Bytes::copy_from_slice(b),
            }),
        );
        self.drain(i);
    }

    fn connect(&mut self, i: usize, s: u64, user: &str) {
        let node = self.nodes[i].as_mut().expect("running");
        node.handle(
            self.now,
            Input::Client(SessionInput::Connected {
                session: SessionId(s),
                peer: Peer::Unix,
            }),
        );
        let mut hello = Vec::new();
        encode_hello(&Hello::new(user.as_bytes(), true, false), &mut hello);
        self.client_bytes(i, s, &hello);
        let mut auth = b"NULL".to_vec();
        auth.resize(90, 0);
        self.client_bytes(i, s, &auth);
        self.got.remove(&(i, s));
    }

    fn send(&mut self, i: usize, s: u64, service: ServiceType, groups: &[&str], body: &[u8]) {
        let sender = format!("#{}#{}", user_of(s), name(i));
        let mut out = BytesMut::new();
        encode_header(
            &MessageHeader {
                service,
                sender: GroupName::new(sender.as_bytes()),
                num_groups: groups.len() as i32,
                hint: Hint::new(0, ByteOrder::Little),
                data_len: body.len() as i32,
                order: ByteOrder::Little,
            },
            &mut out,
        );
        for g in groups {
            GroupName::new(g.as_bytes()).encode(&mut out);
        }
        out.put_slice(body);
        let b = out.to_vec();
        self.client_bytes(i, s, &b);
    }

    fn take(&mut self, i: usize, s: u64) -> Vec<Frame> {
        self.got
            .remove(&(i, s))
            .unwrap_or_default()
            .into_iter()
            .map(|b| {
                let mut buf = BytesMut::from(&b[..]);
                decode_frame(&mut buf, Direction::ToClient)
                    .expect("valid")
                    .expect("whole")
            })
            .collect()
    }

    fn ring_of(&self, i: usize) -> Vec<DaemonId> {
        self.nodes[i]
            .as_ref()
            .map(|n| n.engine().members().to_vec())
            .unwrap_or_default()
    }

    fn settled(&self, members: &[usize]) -> bool {
        let want: Vec<DaemonId> = members.iter().map(|&i| self.ids[i]).collect();
        members.iter().all(|&i| {
            self.ring_of(i) == want
                && self.nodes[i]
                    .as_ref()
                    .is_some_and(|n| !n.clients().exchanging())
        })
    }

    /// Runs until `members` form one ring (bounded).
    fn until_ring(&mut self, members: &[usize], max: Duration) -> Duration {
        let start = self.now;
        while !self.settled(members) {
            assert!(self.now < start + max, "no ring {members:?} within {max:?}");
            self.run_for(Duration::from_millis(50));
        }
        self.now.saturating_since(start)
    }
}

fn user_of(s: u64) -> String {
    format!("u{s}")
}

fn private(s: u64, i: usize) -> GroupName {
    GroupName::new(format!("#{}#{}", user_of(s), name(i)).as_bytes())
}

fn is(f: &Frame, t: ServiceType) -> bool {
    f.header.service.contains(t)
}

fn memb(f: &Frame) -> MembershipBody {
    MembershipBody::decode(&mut f.body(), f.header.order).expect("membership body")
}

fn members(f: &Frame) -> Vec<GroupName> {
    f.groups().collect()
}

/// Three daemons, one client each in `grp` (session ids 1, 2, 3 on d1, d2, d3).
fn three_with_group() -> Net {
    let mut net = Net::new(3, 3);
    let t = net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    assert!(t < Duration::from_secs(5), "formed in {t:?}");
    for i in 0..3 {
        let s = i as u64 + 1;
        net.connect(i, s, &user_of(s));
        net.send(i, s, ServiceType::JOIN_MESS, &["grp"], b"");
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(Duration::from_millis(500));
    for i in 0..3 {
        let got = net.take(i, i as u64 + 1);
        let last = got.last().expect("a membership");
        assert!(is(
            last,
            ServiceType::REG_MEMB_MESS | ServiceType::CAUSED_BY_JOIN
        ));
        assert_eq!(last.num_groups(), 3);
    }
    net
}

#[test]
fn one_total_order_across_three_daemons() {
    let mut net = three_with_group();
    for k in 0..20u32 {
        for i in 0..3 {
            let body = format!("m{i}-{k}");
            net.send(
                i,
                i as u64 + 1,
                ServiceType::AGREED,
                &["grp"],
                body.as_bytes(),
            );
        }
        if k % 3 == 0 {
            net.run_for(Duration::from_micros(700));
        }
    }
    net.run_for(Duration::from_secs(2));
    let seqs: Vec<Vec<Bytes>> = (0..3)
        .map(|i| {
            net.take(i, i as u64 + 1)
                .into_iter()
                .filter(|f| is(f, ServiceType::AGREED))
                .map(|f| f.body())
                .collect()
        })
        .collect();
    assert_eq!(seqs[0].len(), 60);
    assert_eq!(seqs[0], seqs[1]);
    assert_eq!(seqs[0], seqs[2]);
    // Per-sender FIFO.
    for i in 0..3 {
        let mine: Vec<&Bytes> = seqs[0]
            .iter()
            .filter(|b| b.starts_with(format!("m{i}-").as_bytes()))
            .collect();
        let want: Vec<String> = (0..20).map(|k| format!("m{i}-{k}")).collect();
        assert_eq!(
            mine.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
            want.iter()
                .map(|s| s.as_bytes().to_vec())
                .collect::<Vec<_>>()
        );
    }
    // Private-group messages cross daemons.
    net.send(0, 1, ServiceType::RELIABLE, &["#u3#d3"], b"hi");
    net.run_for(Duration::from_millis(200));
    let got = net.take(2, 3);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body()[..], b"hi");
}

#[test]
fn crash_then_late_restart() {
    let mut net = three_with_group();
    net.crash(2);
    let t = net.until_ring(&[0, 1], Duration::from_secs(15));
    assert!(t < Duration::from_secs(6), "noticed in {t:?}");
    net.run_for(Duration::from_millis(200));
    let ring = net.nodes[0].as_ref().unwrap().engine().ring_id();
    for i in 0..2 {
        let got = net.take(i, i as u64 + 1);
        assert_eq!(got.len(), 2, "TRANSITION then REG_MEMB: {got:?}");
        assert!(is(&got[0], ServiceType::TRANSITION_MESS));
        assert_eq!(got[0].header.data_len, 12);
        let reg = &got[1];
        assert!(is(
            reg,
            ServiceType::REG_MEMB_MESS | ServiceType::CAUSED_BY_NETWORK
        ));
        assert_eq!(members(reg), vec![private(1, 0), private(2, 1)]);
        assert_eq!(reg.header.data_len, 88);
        let b = memb(reg);
        assert_eq!(b.group_id.proc_id, ring.leader.0 as i32);
        assert_eq!(b.group_id.time, ring.time);
        assert_eq!(b.group_id.index, 1);
        assert_eq!(b.vs_sets, vec![vec![private(1, 0), private(2, 1)]]);
    }
    // d3 comes back without members: nobody hears of it; then a join there is a plain join.
    net.start(2);
    let t = net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    assert!(t < Duration::from_secs(5), "rejoined in {t:?}");
    assert!(net.take(0, 1).is_empty());
    net.connect(2, 9, &user_of(9));
    net.send(2, 9, ServiceType::JOIN_MESS, &["grp"], b"");
    net.run_for(Duration::from_millis(300));
    for (i, s) in [(0, 1), (1, 2), (2, 9)] {
        let got = net.take(i, s);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(is(
            &got[0],
            ServiceType::REG_MEMB_MESS | ServiceType::CAUSED_BY_JOIN
        ));
        assert_eq!(
            members(&got[0]),
            vec![private(1, 0), private(2, 1), private(9, 2)]
        );
        assert_eq!(
            memb(&got[0]).group_id.index,
            2,
            "continues the network view"
        );
    }
}

#[test]
fn partition_and_merge() {
    let mut net = three_with_group();
    net.comp = vec![0, 0, 1];
    net.until_ring(&[0, 1], Duration::from_secs(15));
    net.until_ring(&[2], Duration::from_secs(15));
    net.run_for(Duration::from_millis(200));
    let big = net.take(0, 1);
    assert_eq!(brief(&big), brief(&net.take(1, 2)), "same at d2");
    assert_eq!(big.len(), 2, "{big:?}");
    assert!(is(&big[0], ServiceType::TRANSITION_MESS));
    assert_eq!(
        memb(&big[1]).vs_sets,
        vec![vec![private(1, 0), private(2, 1)]]
    );
    let small = net.take(2, 3);
    assert_eq!(small.len(), 2, "{small:?}");
    assert!(is(&small[0], ServiceType::TRANSITION_MESS));
    assert_eq!(small[1].header.data_len, 56);
    assert_eq!(memb(&small[1]).vs_sets, vec![vec![private(3, 2)]]);
    // A join on d3's side inside the partition is a plain join there.
    net.connect(2, 4, &user_of(4));
    net.send(2, 4, ServiceType::JOIN_MESS, &["grp"], b"");
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.take(2, 3).len(), 1);
    net.take(2, 4);
    // Heal: the merge comes at the leader's next lookup.
    net.comp = vec![0, 0, 0];
    let t = net.until_ring(&[0, 1, 2], Duration::from_secs(40));
    assert!(t < Duration::from_secs(35), "merged in {t:?}");
    net.run_for(Duration::from_millis(300));
    let ring = net.nodes[0].as_ref().unwrap().engine().ring_id();
    let mut sets = Vec::new();
    for (i, s) in [(0, 1), (1, 2), (2, 3), (2, 4)] {
        let got = net.take(i, s);
        assert_eq!(
            got.len(),
            1,
            "no TRANSITION_MESS at a merge: {:?}",
            brief(&got)
        );
        let f = &got[0];
        assert!(is(
            f,
            ServiceType::REG_MEMB_MESS | ServiceType::CAUSED_BY_NETWORK
        ));
        assert_eq!(
            members(f),
            vec![private(1, 0), private(2, 1), private(3, 2), private(4, 2)]
        );
        assert_eq!(f.header.data_len, 20 + 4 + 64 + 4 + 64);
        let b = memb(f);
        assert_eq!(b.group_id.proc_id, ring.leader.0 as i32);
        assert_eq!(b.group_id.index, 1);
        assert!(b
            .local_set()
            .is_some_and(|set| set.contains(&private(s, i))));
        sets.push(b.vs_sets);
    }
    assert!(
        sets.windows(2).all(|w| w[0] == w[1]),
        "same vs-sets everywhere"
    );
    assert_eq!(sets[0].len(), 2);
    // One total order again.
    for i in 0..3 {
        let s = i as u64 + 1;
        net.send(
            i,
            s,
            ServiceType::SAFE,
            &["grp"],
            format!("after{i}").as_bytes(),
        );
    }
    net.run_for(Duration::from_millis(500));
    let a: Vec<Bytes> = net.take(0, 1).iter().map(Frame::body).collect();
    let b: Vec<Bytes> = net.take(2, 4).iter().map(Frame::body).collect();
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
}

fn brief(fs: &[Frame]) -> Vec<String> {
    fs.iter()
        .map(|f| {
            let id = if is(f, ServiceType::REG_MEMB_MESS) {
                format!("{:?}", memb(f))
            } else {
                format!("{:?}", f.body())
            };
            format!("{:x} n={} {}", f.header.service.0, f.num_groups(), id)
        })
        .collect()
}

/// The daemon ids of the captures' three-daemon ring (d1, d2, d3).
const CAPTURE_IDS: [u32; 3] = [0x5c8d_7aef, 0x14c5_65a0, 0xef46_226e];

/// The recorded client `obs` of a `net_*.hex` capture: what it sent (one item per send), and
/// everything the daemon sent it, cut into messages.
fn capture(name: &str) -> (Vec<Vec<u8>>, Vec<Bytes>) {
    let path = format!(
        "{}/../tests/data/client/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("capture");
    let hex = |h: &str| -> Vec<u8> {
        (0..h.len() / 2)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    };
    let mut sent = Vec::new();
    let mut recv = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("C> obs ") {
            sent.push(hex(h.trim()));
        } else if let Some(h) = line.strip_prefix("D> obs ") {
            recv.extend(hex(h.trim()));
        }
    }
    // Handshake replies first (2 + 12 bytes: auth list, accept), then whole messages.
    let mut buf = BytesMut::from(&recv[..]);
    let mut msgs = vec![buf.split_to(6).freeze(), buf.split_to(12).freeze()];
    while let Some(f) = decode_frame(&mut buf, Direction::ToClient).expect("capture frames") {
        msgs.push(f.raw);
    }
    assert!(buf.is_empty());
    (sent, msgs)
}

/// Masks the formation time (group id word 2) of membership messages: it differs per run.
fn mask_time(b: &Bytes) -> Vec<u8> {
    let mut v = b.to_vec();
    let mut buf = BytesMut::from(&b[..]);
    if let Ok(Some(f)) = decode_frame(&mut buf, Direction::ToClient) {
        if f.header.service.intersects(ServiceType::REG_MEMB_MESS)
            || f.header.service.intersects(ServiceType::TRANSITION_MESS)
        {
            let at = v.len() - f.body().len() + 4;
            v[at..at + 4].fill(0);
        }
    }
    v
}

fn obs_send(net: &mut Net, sent: &mut std::vec::IntoIter<Vec<u8>>) {
    let b = sent.next().expect("a recorded send");
    net.client_bytes(0, 1, &b);
    net.run_for(Duration::from_millis(300));
}

fn capture_start() -> Net {
    let mut net = capture_net(3);
    net.connect(2, 3, "m3");
    net
}

/// The capture ring with the first `running` daemons started, obs connecting to d1 and m2
/// connected to d2.
fn capture_net(running: usize) -> Net {
    capture_net_as(running, "m2")
}

/// [`capture_net`] with the d2 client called `d2_user`.
fn capture_net_as(running: usize, d2_user: &str) -> Net {
    let mut net = Net::with_ids(CAPTURE_IDS.iter().map(|&i| DaemonId(i)).collect(), running);
    let all: Vec<usize> = (0..running).collect();
    net.until_ring(&all, Duration::from_secs(10));
    let node = net.nodes[0].as_mut().expect("d1");
    node.handle(
        net.now,
        Input::Client(SessionInput::Connected {
            session: SessionId(1),
            peer: Peer::Tcp("10.98.3.1".parse().expect("ip")),
        }),
    );
    net.connect(1, 2, d2_user);
    net
}

fn join_as(net: &mut Net, i: usize, s: u64, user: &str, group: &str) {
    request_as(net, i, s, user, ServiceType::JOIN_MESS, group);
}

fn request_as(net: &mut Net, i: usize, s: u64, user: &str, service: ServiceType, group: &str) {
    let mut out = BytesMut::new();
    encode_header(
        &MessageHeader {
            service,
            sender: GroupName::new(format!("#{user}#{}", name(i)).as_bytes()),
            num_groups: 1,
            hint: Hint::new(0, ByteOrder::Little),
            data_len: 0,
            order: ByteOrder::Little,
        },
        &mut out,
    );
    GroupName::new(group.as_bytes()).encode(&mut out);
    let b = out.to_vec();
    net.client_bytes(i, s, &b);
    net.run_for(Duration::from_millis(300));
}

/// The capture's opening: obs connects, then obs, m2, m3 join netgrp; obs and m2 join twogrp.
fn capture_opening(net: &mut Net, sent: &mut std::vec::IntoIter<Vec<u8>>) {
    obs_send(net, sent); // hello
    obs_send(net, sent); // auth choice
    obs_send(net, sent); // JOIN netgrp
    join_as(net, 1, 2, "m2", "netgrp");
    join_as(net, 2, 3, "m3", "netgrp");
    obs_send(net, sent); // JOIN twogrp
    join_as(net, 1, 2, "m2", "twogrp");
}

/// Does the capture hold network memberships (CAUSED_BY_NETWORK `80 18 00 80`)?
fn has_network_membership(want: &[Bytes]) -> bool {
    want.iter()
        .any(|m| m.starts_with(&[0x80, 0x18, 0x00, 0x80]))
}

fn assert_same_stream(net: &mut Net, want: &[Bytes]) {
    let got = net.got.remove(&(0, 1)).unwrap_or_default();
    let got: Vec<Vec<u8>> = got.iter().map(mask_time).collect();
    let want: Vec<Vec<u8>> = want.iter().map(mask_time).collect();
    assert_eq!(got.len(), want.len(), "message count");
    eprintln!("{} messages equal to the capture's", want.len());
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "message {k} differs from the capture");
    }
}

/// `net_daemon_killed.hex`: byte for byte what the real ring gave obs@d1 (formation times
/// masked; the representative ids in the group ids are compared).
#[test]
fn capture_daemon_killed_byte_for_byte() {
    let (sent, want) = capture("net_daemon_killed");
    let mut sent = sent.into_iter();
    assert!(has_network_membership(&want));
    let mut net = capture_start();
    capture_opening(&mut net, &mut sent);
    net.crash(2);
    net.until_ring(&[0, 1], Duration::from_secs(15));
    net.run_for(Duration::from_millis(300));
    obs_send(&mut net, &mut sent); // AGREED to netgrp
    obs_send(&mut net, &mut sent); // KILL
    assert!(sent.next().is_none());
    assert_same_stream(&mut net, &want);
}

/// `net_partition_merge.hex`: d3 partitioned away, then merged back.
#[test]
fn capture_partition_merge_byte_for_byte() {
    let (sent, want) = capture("net_partition_merge");
    let mut sent = sent.into_iter();
    assert!(has_network_membership(&want));
    let mut net = capture_start();
    capture_opening(&mut net, &mut sent);
    net.comp = vec![0, 0, 1];
    net.until_ring(&[0, 1], Duration::from_secs(15));
    net.until_ring(&[2], Duration::from_secs(15));
    net.run_for(Duration::from_secs(5));
    net.comp = vec![0, 0, 0];
    net.until_ring(&[0, 1, 2], Duration::from_secs(40));
    net.run_for(Duration::from_millis(300));
    obs_send(&mut net, &mut sent); // AGREED to netgrp
    obs_send(&mut net, &mut sent); // KILL
    assert!(sent.next().is_none());
    assert_same_stream(&mut net, &want);
}

/// `net_daemon_joins.hex`: d3 starts late; obs hears nothing of it until m3@d3 joins.
#[test]
fn capture_daemon_joins_byte_for_byte() {
    let (sent, want) = capture("net_daemon_joins");
    assert!(
        !has_network_membership(&want),
        "nothing for obs when d3 merges"
    );
    let mut sent = sent.into_iter();
    let mut net = capture_net(2);
    obs_send(&mut net, &mut sent); // hello
    obs_send(&mut net, &mut sent); // auth choice
    obs_send(&mut net, &mut sent); // JOIN netgrp
    join_as(&mut net, 1, 2, "m2", "netgrp");
    net.start(2);
    net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    net.connect(2, 3, "m3");
    join_as(&mut net, 2, 3, "m3", "netgrp");
    obs_send(&mut net, &mut sent); // KILL
    assert!(sent.next().is_none());
    assert_same_stream(&mut net, &want);
}

/// `net_join_during_partition.hex`: a join on d3's side and a leave on d1's side during the
/// partition, then the merge with two vs-sets.
#[test]
fn capture_join_during_partition_byte_for_byte() {
    let (sent, want) = capture("net_join_during_partition");
    assert!(has_network_membership(&want));
    let mut sent = sent.into_iter();
    let mut net = capture_net(3);
    net.connect(2, 3, "m3");
    net.connect(0, 4, "l1");
    net.connect(2, 5, "j3");
    obs_send(&mut net, &mut sent); // hello
    obs_send(&mut net, &mut sent); // auth choice
    obs_send(&mut net, &mut sent); // JOIN netgrp
    join_as(&mut net, 0, 4, "l1", "netgrp");
    join_as(&mut net, 1, 2, "m2", "netgrp");
    join_as(&mut net, 2, 3, "m3", "netgrp");
    net.comp = vec![0, 0, 1];
    net.until_ring(&[0, 1], Duration::from_secs(15));
    net.until_ring(&[2], Duration::from_secs(15));
    net.run_for(Duration::from_millis(300));
    join_as(&mut net, 2, 5, "j3", "netgrp");
    request_as(&mut net, 0, 4, "l1", ServiceType::LEAVE_MESS, "netgrp");
    net.comp = vec![0, 0, 0];
    net.until_ring(&[0, 1, 2], Duration::from_secs(40));
    net.run_for(Duration::from_millis(300));
    obs_send(&mut net, &mut sent); // KILL
    assert!(sent.next().is_none());
    assert_same_stream(&mut net, &want);
}

/// `net_partition_merge_d2.hex`: d2 (the smallest id, not the first configured) partitioned.
#[test]
fn capture_partition_merge_d2_byte_for_byte() {
    let (sent, want) = capture("net_partition_merge_d2");
    assert!(has_network_membership(&want));
    let mut sent = sent.into_iter();
    let mut net = capture_net(3);
    net.connect(2, 3, "m3");
    obs_send(&mut net, &mut sent); // hello
    obs_send(&mut net, &mut sent); // auth choice
    obs_send(&mut net, &mut sent); // JOIN netgrp
    join_as(&mut net, 1, 2, "m2", "netgrp");
    join_as(&mut net, 2, 3, "m3", "netgrp");
    net.comp = vec![0, 1, 0];
    net.until_ring(&[0, 2], Duration::from_secs(15));
    net.until_ring(&[1], Duration::from_secs(15));
    net.run_for(Duration::from_millis(300));
    net.comp = vec![0, 0, 0];
    net.until_ring(&[0, 1, 2], Duration::from_secs(40));
    net.run_for(Duration::from_millis(300));
    obs_send(&mut net, &mut sent); // KILL
    assert!(sent.next().is_none());
    assert_same_stream(&mut net, &want);
}

/// The capture's data message N from snd@d2 to netgrp: AGREED "agreed-NNN" for even N, SAFE
/// "safe-NNN" for odd N, mess_type N.
fn snd_message(net: &mut Net, n: i16) {
    let (service, body) = if n % 2 == 0 {
        (ServiceType::AGREED, format!("agreed-{n:03}"))
    } else {
        (ServiceType::SAFE, format!("safe-{n:03}"))
    };
    let mut out = BytesMut::new();
    encode_header(
        &MessageHeader {
            service,
            sender: GroupName::new(b"#snd#d2"),
            num_groups: 1,
            hint: Hint::new(n, ByteOrder::Little),
            data_len: body.len() as i32,
            order: ByteOrder::Little,
        },
        &mut out,
    );
    GroupName::new(b"netgrp").encode(&mut out);
    out.put_slice(body.as_bytes());
    let b = out.to_vec();
    net.client_bytes(1, 2, &b);
}

/// `net_messages_across_transition.hex` (client fact sheet §5.4): AGREED/SAFE messages from
/// snd@d2 around d3's crash. obs@d1 gets agreed-010 in the old regular configuration, then
/// TRANSITION_MESS, safe-011 … safe-021 (SAFE and the AGREED between them) in the
/// transitional configuration, the CAUSED_BY_NETWORK membership, then 22 … 54.
#[test]
fn capture_messages_across_transition_byte_for_byte() {
    let (sent, want) = capture("net_messages_across_transition");
    assert!(has_network_membership(&want));
    let mut sent = sent.into_iter();
    let mut net = capture_net_as(3, "snd");
    net.connect(2, 3, "m3");
    obs_send(&mut net, &mut sent); // hello
    obs_send(&mut net, &mut sent); // auth choice
    obs_send(&mut net, &mut sent); // JOIN netgrp
    join_as(&mut net, 1, 2, "snd", "netgrp");
    join_as(&mut net, 2, 3, "m3", "netgrp");
    for n in 0..10 {
        snd_message(&mut net, n);
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(Duration::from_millis(300));
    // SIGKILL of d3, and right after it the burst 10..21 back to back.
    net.crash(2);
    for n in 10..22 {
        snd_message(&mut net, n);
    }
    // Then one every 100 ms while the ring re-forms (the capture's obs saw the new membership
    // after 22..50), then 51..54.
    for n in 22..51 {
        net.run_for(Duration::from_millis(100));
        snd_message(&mut net, n);
    }
    net.until_ring(&[0, 1], Duration::from_secs(15));
    for n in 51..55 {
        snd_message(&mut net, n);
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(Duration::from_millis(300));
    obs_send(&mut net, &mut sent); // KILL
    assert!(sent.next().is_none());
    assert_same_stream(&mut net, &want);
}

/// Requests leave as 5.0.1 messages (§7.3): JOIN `80 00 01 80`, own KILL `80 00 04 80` naming
/// the private group (AGREED), a closed socket `a0 00 04 80` with no group (SAFE).
#[test]
fn requests_leave_as_5_0_1_messages() {
    let mut net = Net::new(1, 1);
    net.until_ring(&[0], Duration::from_secs(10));
    let mut d = Clients::new(DaemonConfig::new("d1", 1, 0), net.ids[0], net.ids.clone());
    let now = net.now;
    let mut auth = b"NULL".to_vec();
    auth.resize(90, 0);
    for s in [1u64, 2] {
        d.handle(
            now,
            SessionInput::Connected {
                session: SessionId(s),
                peer: Peer::Unix,
            },
        );
        let mut hello = Vec::new();
        encode_hello(
            &Hello::new(format!("s{s}").as_bytes(), true, false),
            &mut hello,
        );
        for b in [&hello, &auth] {
            d.handle(
                now,
                SessionInput::Bytes {
                    session: SessionId(s),
                    data: Bytes::copy_from_slice(b),
                },
            );
        }
    }
    let req = |service: ServiceType, sender: &str, groups: &[&str]| {
        let mut out = BytesMut::new();
        encode_header(
            &MessageHeader {
                service,
                sender: GroupName::new(sender.as_bytes()),
                num_groups: groups.len() as i32,
                hint: Hint::new(0, ByteOrder::Little),
                data_len: 0,
                order: ByteOrder::Little,
            },
            &mut out,
        );
        for g in groups {
            GroupName::new(g.as_bytes()).encode(&mut out);
        }
        out.freeze()
    };
    d.handle(
        now,
        SessionInput::Bytes {
            session: SessionId(1),
            data: req(ServiceType::JOIN_MESS, "#s1#d1", &["g"]),
        },
    );
    d.handle(
        now,
        SessionInput::Bytes {
            session: SessionId(1),
            data: req(ServiceType::KILL_MESS, "#s1#d1", &["#s1#d1"]),
        },
    );
    d.handle(
        now,
        SessionInput::Closed {
            session: SessionId(2),
        },
    );
    let subs: Vec<(crate::ring::Service, Bytes)> =
        std::iter::from_fn(|| d.poll_submission()).collect();
    assert_eq!(subs.len(), 3);
    assert_eq!(subs[0].0, crate::ring::Service::Agreed);
    assert_eq!(&subs[0].1[..4], &[0x80, 0x00, 0x01, 0x80]);
    assert_eq!(subs[0].1.len(), 48 + 32);
    assert_eq!(subs[1].0, crate::ring::Service::Agreed);
    assert_eq!(&subs[1].1[..4], &[0x80, 0x00, 0x04, 0x80]);
    assert_eq!(&subs[1].1[48..54], b"#s1#d1");
    assert_eq!(subs[2].0, crate::ring::Service::Safe);
    assert_eq!(&subs[2].1[..4], &[0xa0, 0x00, 0x04, 0x80]);
    assert_eq!(subs[2].1.len(), 48);
    assert_eq!(&subs[2].1[4..10], b"#s2#d1");
}

/// A burst far beyond the engine's send queue is delivered whole, in order, everywhere.
#[test]
fn burst_beyond_the_engine_queue_is_delivered() {
    let mut net = three_with_group();
    const BURST: usize = 5000;
    let mut all = Vec::new();
    for k in 0..BURST {
        let mut out = BytesMut::new();
        let body = format!("b{k}");
        encode_header(
            &MessageHeader {
                service: ServiceType::AGREED,
                sender: private(1, 0),
                num_groups: 1,
                hint: Hint::new(0, ByteOrder::Little),
                data_len: body.len() as i32,
                order: ByteOrder::Little,
            },
            &mut out,
        );
        GroupName::new(b"grp").encode(&mut out);
        out.put_slice(body.as_bytes());
        all.extend_from_slice(&out);
    }
    net.client_bytes(0, 1, &all);
    assert!(net.nodes[0].as_ref().unwrap().backlog().0 > 0, "some wait");
    net.run_for(Duration::from_secs(30));
    for i in 0..3 {
        let got: Vec<Bytes> = net
            .take(i, i as u64 + 1)
            .iter()
            .filter(|f| is(f, ServiceType::AGREED))
            .map(Frame::body)
            .collect();
        assert_eq!(got.len(), BURST, "at d{}", i + 1);
        assert!(got
            .iter()
            .enumerate()
            .all(|(k, b)| b[..] == *format!("b{k}").as_bytes()));
    }
    assert_eq!(net.nodes[0].as_ref().unwrap().backlog(), (0, 0));
}

mod reload;
mod reply;

/// Client messages wait while the ring is not formed yet; the daemon stops taking client
/// input at 5.0.1's `WATER_MARK` messages or at `WATER_MARK_BYTES` bytes, whichever comes
/// first, and takes it again once the ring has sent them (the queues are bounded in bytes).
#[test]
fn client_input_stops_at_the_water_mark_in_bytes_and_resumes() {
    use crate::daemon::{WATER_MARK, WATER_MARK_BYTES};
    let mut net = Net::new(1, 1);
    net.connect(0, 1, &user_of(1));
    let body = vec![7u8; 100_000];
    let mut sent = 0;
    while net.nodes[0].as_ref().expect("up").accepts_client_input() && sent < 1000 {
        net.send(0, 1, ServiceType::RELIABLE, &["g"], &body);
        sent += 1;
    }
    let d = net.nodes[0].as_ref().expect("up");
    assert!(sent < WATER_MARK, "stopped by bytes, not by count: {sent}");
    assert!(d.unsent_bytes() >= WATER_MARK_BYTES, "{}", d.unsent_bytes());
    assert!(d.unsent_bytes() < WATER_MARK_BYTES + body.len() + 1000);
    assert_eq!(d.backlog().1, 0, "nothing dropped");
    // The singleton ring forms, sends them, and input is taken again.
    net.run_for(Duration::from_secs(4));
    let d = net.nodes[0].as_ref().expect("up");
    assert!(d.accepts_client_input());
    assert_eq!(d.unsent(), 0);
    assert_eq!(d.unsent_bytes(), 0);
}
