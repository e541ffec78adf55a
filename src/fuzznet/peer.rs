//! Peer mode: the fuzzer is a configured daemon of the target's ring.
//!
//! The valid sequences come from a whole [`spread::Daemon`] running inside the fuzzer at the
//! lab address [`super::netns::PEER_ADDR`] with one or two in-memory client sessions that
//! join, leave, multicast and disconnect: it sends ALIVE, JOIN, REFER, FORM1/FORM2, tokens,
//! data and GROUPS exactly as the protocol wants. Each execution is an **episode**: a fresh
//! incarnation of that daemon joins the target's ring, runs a few seconds, and falls silent
//! (the target sees it join and leave: memberships, group-state exchanges). On the way out,
//! every datagram is classified ([`Class`]) and the episode's rules mutate some of them with
//! the `spread::wire::daemon` codecs ([`Mutation`]): dropped, repeated as a retransmission
//! storm, delayed, a wrong ring id, a stale or skipping seq, an aru that lies, a spoofed
//! transmitter, a byte flipped, cut short, or a data message retyped (a GROUPS message turned
//! into a JOIN reaches the target during its group-state exchange; a data message turned into
//! GROUPS arrives at the wrong moment).
//!
//! Each applied mutation is an [`Event`] (class, n-th datagram of that class in the
//! episode, mutation, sub-seed), so an episode replays from its seed and its events, and
//! minimization removes events.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use spread::config::{Config, HostId};
use spread::daemon::{Input, Output, Target, Transmit};
use spread::ids::{DaemonId, RingId};
use spread::ring::Port;
use spread::session::{Peer, SessionId};
use spread::wire::client::{
    encode_auth_choice, encode_hello, encode_message, GroupName, Hello, ServiceType,
};
use spread::wire::daemon::{
    Datagram, Fragment, MessageHeader, PacketBody, PacketHeader, Seq, TokenHeader, TypeBits,
    HEADER_LEN,
};
use spread::{Daemon, SessionInput, SessionOutput};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::netns::{BROADCAST, PEER_ADDR, TARGET_ADDR};
use super::probe::{self, ProbeConfig};
use super::replay::ReplayFile;
use super::run::{check_process, classify, RunOpts};
use super::target::{self, Launch, TargetProc};
use super::{Fault, Rng, Stats, Summary};
use crate::client::Address;

/// The target's name in the lab configuration.
pub const TARGET_NAME: &str = "t";
/// The fuzzer's daemon name in the lab configuration.
pub const PEER_NAME: &str = "fz";

/// The lab's spread.conf (both daemons; `extra` appended).
pub fn lab_conf(port: u16, extra: &str) -> String {
    format!(
        "Spread_Segment {BROADCAST}:{port} {{\n    {TARGET_NAME} {TARGET_ADDR}\n    {PEER_NAME} {PEER_ADDR}\n}}\n\
         DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\nSocketPortReuse = ON\n{extra}"
    )
}

/// Kinds of datagrams the fuzzer's daemon sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// ALIVE.
    Alive,
    /// Membership JOIN.
    Join,
    /// REFER.
    Refer,
    /// HURRY.
    Hurry,
    /// FORM1 token.
    Form1,
    /// FORM2 token.
    Form2,
    /// Regular token.
    Token,
    /// Data packet whose first message is a client data message.
    Data,
    /// Data packet carrying a GROUPS (state exchange) message.
    Groups,
    /// Data packet carrying a JOIN, LEAVE or KILL request.
    Request,
    /// Anything else (continuation fragments, monitor packets).
    Other,
}

const CLASSES: [(Class, &str); 11] = [
    (Class::Alive, "alive"),
    (Class::Join, "join"),
    (Class::Refer, "refer"),
    (Class::Hurry, "hurry"),
    (Class::Form1, "form1"),
    (Class::Form2, "form2"),
    (Class::Token, "token"),
    (Class::Data, "data"),
    (Class::Groups, "groups"),
    (Class::Request, "request"),
    (Class::Other, "other"),
];

impl Class {
    /// Its name in replay files.
    pub fn name(self) -> &'static str {
        CLASSES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("other", |(_, n)| n)
    }

    fn parse(s: &str) -> Result<Self> {
        CLASSES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(c, _)| *c)
            .with_context(|| format!("unknown class {s:?}"))
    }

    /// The class of a datagram the fuzzer's daemon is about to send.
    pub fn of(token_port: bool, bytes: &[u8]) -> Self {
        match Datagram::decode_accepted(token_port, bytes) {
            Ok(Datagram::Token(t)) => {
                if t.header.kind.has(TypeBits::FORM1) {
                    Self::Form1
                } else if t.header.kind.has(TypeBits::FORM2) {
                    Self::Form2
                } else {
                    Self::Token
                }
            }
            Ok(Datagram::Packet(p)) => match &p.body {
                PacketBody::Alive(_) => Self::Alive,
                PacketBody::Join(_) => Self::Join,
                PacketBody::Refer => Self::Refer,
                PacketBody::Hurry => Self::Hurry,
                PacketBody::Data(d) => match first_message(&d.fragments) {
                    Some((_, h)) if h.is_groups() => Self::Groups,
                    Some((_, h)) if h.kind & ServiceType::REQUEST_MASK.0 != 0 => Self::Request,
                    Some(_) => Self::Data,
                    None => Self::Other,
                },
                _ => Self::Other,
            },
            Err(_) => Self::Other,
        }
    }
}

/// The first fragment that starts a message, and that message's header.
fn first_message(frags: &[Fragment]) -> Option<(usize, MessageHeader)> {
    frags.iter().enumerate().find_map(|(i, f)| {
        if f.index != 1 && f.index != -1 {
            return None;
        }
        MessageHeader::decode(&mut &f.data[..]).ok().map(|h| (i, h))
    })
}

/// What is done to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Not sent.
    Drop,
    /// Sent 2–40 times (a retransmission storm).
    Storm,
    /// Sent 0.2–3 s late (stale).
    Delay,
    /// Another ring id in the header.
    RingId,
    /// A seq 1–20 behind.
    SeqBack,
    /// A seq ahead (a hole).
    SeqFwd,
    /// A token whose aru lies.
    AruLie,
    /// The first message's type changed (GROUPS, JOIN, LEAVE, KILL, data).
    Retype,
    /// Another transmitter or originator id.
    Spoof,
    /// One byte flipped.
    Flip,
    /// Cut short.
    Truncate,
}

const MUTATIONS: [(Mutation, &str); 11] = [
    (Mutation::Drop, "drop"),
    (Mutation::Storm, "storm"),
    (Mutation::Delay, "delay"),
    (Mutation::RingId, "ringid"),
    (Mutation::SeqBack, "seqback"),
    (Mutation::SeqFwd, "seqfwd"),
    (Mutation::AruLie, "arulie"),
    (Mutation::Retype, "retype"),
    (Mutation::Spoof, "spoof"),
    (Mutation::Flip, "flip"),
    (Mutation::Truncate, "truncate"),
];

impl Mutation {
    /// Its name in replay files.
    pub fn name(self) -> &'static str {
        MUTATIONS
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("drop", |(_, n)| n)
    }

    fn parse(s: &str) -> Result<Self> {
        MUTATIONS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .with_context(|| format!("unknown mutation {s:?}"))
    }

    /// A fault the protocol must tolerate (loss, duplication, delay), as opposed to a lie.
    pub fn is_benign(self) -> bool {
        matches!(self, Self::Drop | Self::Storm | Self::Delay)
    }

    /// Mutations that make sense for a class.
    fn for_class(c: Class) -> &'static [Mutation] {
        use Mutation::*;
        match c {
            Class::Token => &[
                Drop, Storm, Delay, RingId, SeqBack, SeqFwd, AruLie, Spoof, Flip, Truncate,
            ],
            Class::Data | Class::Groups | Class::Request => &[
                Drop, Storm, Delay, RingId, SeqBack, SeqFwd, Retype, Retype, Retype, Retype, Spoof,
                Flip,
            ],
            Class::Form1 | Class::Form2 => &[Drop, Storm, Delay, RingId, SeqBack, Spoof, Flip],
            _ => &[Drop, Storm, Delay, RingId, Spoof, Flip, Truncate],
        }
    }
}

/// One mutation applied: to the `nth` datagram of `class` in its episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// The datagram's class.
    pub class: Class,
    /// Its number among the episode's datagrams of that class (from 0).
    pub nth: u32,
    /// What was done.
    pub mutation: Mutation,
    /// Seed of the mutation's parameters.
    pub subseed: u64,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} {} {} {}",
            self.class.name(),
            self.nth,
            self.mutation.name(),
            self.subseed
        )
    }
}

impl std::str::FromStr for Event {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() != 5 || w[0] != "event" {
            bail!("`event CLASS N MUTATION SEED` expected: {s:?}");
        }
        Ok(Self {
            class: Class::parse(w[1])?,
            nth: w[2].parse().context("bad n")?,
            mutation: Mutation::parse(w[3])?,
            subseed: w[4].parse().context("bad seed")?,
        })
    }
}

/// A rule of an episode's plan: mutate `pct`% of the datagrams of `class`.
#[derive(Debug, Clone, Copy)]
struct Rule {
    class: Class,
    mutation: Mutation,
    pct: u32,
}

fn draw_rules(rng: &mut Rng) -> Vec<Rule> {
    if rng.chance(15) {
        return Vec::new(); // a valid episode
    }
    (0..1 + rng.below(3))
        .map(|_| {
            let class = rng.pick(&[
                Class::Alive,
                Class::Join,
                Class::Refer,
                Class::Form1,
                Class::Form2,
                Class::Token,
                Class::Token,
                Class::Data,
                Class::Data,
                Class::Groups,
                Class::Groups,
                Class::Groups,
                Class::Request,
                Class::Request,
            ]);
            Rule {
                class,
                mutation: rng.pick(Mutation::for_class(class)),
                pct: rng.pick(&[5, 20, 50, 100]),
            }
        })
        .collect()
}

/// Applies `m` to a datagram; the copies to send, each after a delay (ms).
fn apply(
    m: Mutation,
    subseed: u64,
    token_port: bool,
    bytes: &Bytes,
    ids: [DaemonId; 2],
) -> Vec<(u64, Bytes)> {
    let mut rng = Rng::new(subseed);
    let mut v = bytes.to_vec();
    let rewrite = |v: &mut Vec<u8>, f: &mut dyn FnMut(&mut RingId, &mut Seq, &mut DaemonId)| {
        if token_port {
            let _ =
                TokenHeader::rewrite(v, |h| f(&mut h.memb_id, &mut h.seq, &mut h.transmiter_id));
        } else {
            let _ =
                PacketHeader::rewrite(v, |h| f(&mut h.memb_id, &mut h.seq, &mut h.transmiter_id));
        }
    };
    match m {
        Mutation::Drop => return Vec::new(),
        Mutation::Storm => {
            let n = 2 + rng.below(39);
            return (0..n).map(|_| (0, bytes.clone())).collect();
        }
        Mutation::Delay => return vec![(200 + rng.below(2800) as u64, bytes.clone())],
        Mutation::RingId => {
            let other = DaemonId(rng.u64() as u32);
            let leader = rng.pick(&[ids[0], ids[1], other]);
            let dt = rng.pick(&[1i32, -1, 1000, i32::MIN / 2]);
            rewrite(&mut v, &mut |r, _, _| {
                r.leader = leader;
                r.time = r.time.wrapping_add(dt);
            });
        }
        Mutation::SeqBack => {
            let k = 1 + rng.below(20) as u32;
            rewrite(&mut v, &mut |_, s, _| s.0 = s.0.saturating_sub(k));
        }
        Mutation::SeqFwd => {
            let k = rng.pick(&[1u32, 1, 2, 5, 50]);
            rewrite(&mut v, &mut |_, s, _| s.0 = s.0.wrapping_add(k));
        }
        Mutation::AruLie => {
            let how = rng.below(4);
            let who = rng.pick(&ids);
            if token_port {
                let _ = TokenHeader::rewrite(&mut v, |h| {
                    h.aru = match how {
                        0 => h.seq,
                        1 => Seq(0),
                        2 => Seq(h.seq.0.wrapping_add(10)),
                        _ => Seq(h.aru.0.wrapping_add(5)),
                    };
                    h.aru_last_id = who;
                });
            }
        }
        Mutation::Retype => {
            let kind = rng.pick(&[
                ServiceType::JOIN_MESS.0,
                ServiceType::LEAVE_MESS.0,
                ServiceType::KILL_MESS.0,
                0x0008_0000, // GROUPS_MESS
                ServiceType::AGREED.0,
                ServiceType::RELIABLE.0,
            ]);
            if let Ok(Datagram::Packet(mut p)) = Datagram::decode_accepted(false, &v) {
                if let PacketBody::Data(d) = &mut p.body {
                    if let Some((i, mut h)) = first_message(&d.fragments) {
                        h.kind = kind;
                        let mut data = d.fragments[i].data.to_vec();
                        let mut head = Vec::with_capacity(MessageHeader::LEN);
                        h.encode(&mut head);
                        data[..MessageHeader::LEN].copy_from_slice(&head);
                        d.fragments[i].data = Bytes::from(data);
                        v = p.to_vec();
                    }
                }
            }
        }
        Mutation::Spoof => {
            let other = DaemonId(rng.u64() as u32);
            let who = rng.pick(&[ids[0], other]);
            rewrite(&mut v, &mut |_, _, t| *t = who);
        }
        Mutation::Flip => {
            if !v.is_empty() {
                let from = if rng.chance(80) && v.len() > HEADER_LEN {
                    HEADER_LEN
                } else {
                    0
                };
                let i = from + rng.below(v.len() - from);
                v[i] ^= 1 + rng.below(255) as u8;
            }
        }
        Mutation::Truncate => {
            let keep = rng.below(v.len().max(1));
            v.truncate(keep);
        }
    }
    vec![(0, Bytes::from(v))]
}

/// Everything a peer-mode run needs.
struct Ctx {
    config: Config,
    me: HostId,
    ids: [DaemonId; 2], // target, me
    data: UdpSocket,
    token: UdpSocket,
    send: UdpSocket,
    port: u16,
    t0: Instant,
    stats: Arc<Stats>,
    /// Lab addresses → daemon ids.
    addrs: [(Ipv4Addr, DaemonId); 2],
}

impl Ctx {
    fn now(&self) -> spread::time::Instant {
        spread::time::Instant(self.t0.elapsed().as_micros() as u64)
    }

    fn id_of(&self, a: SocketAddr) -> Option<DaemonId> {
        match a.ip() {
            IpAddr::V4(ip) => self.addrs.iter().find(|(x, _)| *x == ip).map(|(_, d)| *d),
            IpAddr::V6(_) => None,
        }
    }

    fn dest(&self, t: &Transmit) -> Option<SocketAddr> {
        let ip = match t.to {
            Target::Segment => BROADCAST,
            Target::Daemon(d) => self.addrs.iter().find(|(_, x)| *x == d)?.0,
        };
        let port = match t.port {
            Port::Data => self.port,
            Port::Token => self.port + 1,
        };
        Some(SocketAddr::new(ip.into(), port))
    }
}

/// What an episode does: its seed-drawn workload and rules, or replayed events.
enum Plan<'a> {
    Draw,
    Replay(&'a [Event]),
}

/// Plays one episode (`e`); returns the events applied, or the fault seen.
async fn episode(
    ctx: &Ctx,
    valid_only: bool,
    seed: u64,
    e: u64,
    plan: Plan<'_>,
    watch: &mut (dyn FnMut() -> Option<Fault> + Send),
) -> (Vec<Event>, Option<Fault>) {
    let mut rng = Rng::for_exec(seed, e);
    let rules = match plan {
        Plan::Draw if !valid_only => draw_rules(&mut rng),
        Plan::Draw | Plan::Replay(_) => {
            let _ = draw_rules(&mut rng); // keep the workload's draws the same
            Vec::new()
        }
    };
    let silence = if rng.chance(30) {
        rng.below(6000) as u64
    } else {
        0
    };
    let length = Duration::from_millis(3000 + rng.below(7000) as u64);
    let mut applied = Vec::new();
    // Silence first: the target's ring goes on without us.
    let quiet_until = Instant::now() + Duration::from_millis(silence);
    let mut buf = vec![0u8; 70_000];
    let mut buf2 = vec![0u8; 70_000];
    while Instant::now() < quiet_until {
        tokio::select! {
            _ = ctx.data.recv_from(&mut buf) => {}
            _ = ctx.token.recv_from(&mut buf2) => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if let Some(f) = watch() {
            return (applied, Some(f));
        }
    }
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let mut d = Daemon::from_config(&ctx.config, ctx.me, ctx.now(), clock);
    let nsess = 1 + rng.below(2) as u64;
    let sessions: Vec<SessionId> = (0..nsess).map(|i| SessionId(e * 4 + i)).collect();
    let names: Vec<String> = (0..nsess).map(|i| format!("q{}{i}", e % 100_000)).collect();
    for (s, name) in sessions.iter().zip(&names) {
        d.handle(
            ctx.now(),
            Input::Client(SessionInput::Connected {
                session: *s,
                peer: Peer::InProcess,
            }),
        );
        // The hello, then (after the daemon's list, as libspread) the choice: a daemon
        // refuses a hello read together with the choice.
        let mut hello = Vec::new();
        encode_hello(&Hello::new(name.as_bytes(), true, false), &mut hello);
        let mut choice = Vec::new();
        encode_auth_choice(&[b"NULL"], &mut choice);
        for data in [hello, choice] {
            d.handle(
                ctx.now(),
                Input::Client(SessionInput::Bytes {
                    session: *s,
                    data: data.into(),
                }),
            );
        }
        Stats::add(&ctx.stats.sessions, 1);
    }
    let mut counts = std::collections::HashMap::<Class, u32>::new();
    let (mut replies, mut closed) = (0u32, 0u32);
    let mut delayed: VecDeque<(Instant, SocketAddr, Bytes)> = VecDeque::new();
    let end = Instant::now() + length;
    let mut next_work = Instant::now();
    let fault = loop {
        // Drain the daemon's outputs through the mutation layer.
        let mut drained: Vec<SessionId> = Vec::new();
        while let Some(out) = d.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let Some(to) = ctx.dest(&t) else { continue };
                    let token_port = t.port == Port::Token;
                    let class = Class::of(token_port, &t.bytes);
                    let n = counts.entry(class).or_default();
                    let nth = *n;
                    *n += 1;
                    let ev = match &plan {
                        Plan::Replay(evs) => evs
                            .iter()
                            .find(|ev| ev.class == class && ev.nth == nth)
                            .copied(),
                        Plan::Draw => rules
                            .iter()
                            .find(|r| r.class == class && rng.chance(r.pct))
                            .map(|r| Event {
                                class,
                                nth,
                                mutation: r.mutation,
                                subseed: rng.u64(),
                            }),
                    };
                    let copies = match ev {
                        Some(ev) => {
                            applied.push(ev);
                            Stats::add(&ctx.stats.mutations, 1);
                            apply(ev.mutation, ev.subseed, token_port, &t.bytes, ctx.ids)
                        }
                        None => vec![(0, t.bytes.clone())],
                    };
                    for (delay, b) in copies {
                        if delay == 0 {
                            if ctx.send.send_to(&b, to).await.is_ok() {
                                Stats::add(&ctx.stats.packets, 1);
                                Stats::add(&ctx.stats.bytes, b.len() as u64);
                            }
                        } else {
                            delayed.push_back((
                                Instant::now() + Duration::from_millis(delay),
                                to,
                                b,
                            ));
                        }
                    }
                }
                Output::Client(SessionOutput::Send { session, .. }) => {
                    replies += 1;
                    drained.push(session);
                }
                Output::Client(SessionOutput::Close { .. }) => closed += 1,
                Output::Monitor(_) => {}
            }
        }
        for s in drained {
            d.handle(
                ctx.now(),
                Input::Client(SessionInput::Drained {
                    session: s,
                    messages: 1,
                }),
            );
        }
        if let Some(f) = watch() {
            break Some(f);
        }
        let now = Instant::now();
        if now >= end {
            break None;
        }
        while delayed.front().is_some_and(|(t, _, _)| *t <= now) {
            if let Some((_, to, b)) = delayed.pop_front() {
                let _ = ctx.send.send_to(&b, to).await;
                Stats::add(&ctx.stats.packets, 1);
            }
        }
        if now >= next_work {
            next_work = now + Duration::from_millis(30 + rng.below(300) as u64);
            let i = rng.below(sessions.len());
            let s = sessions[i];
            let me = GroupName::new(format!("#{}#{PEER_NAME}", names[i]).as_bytes());
            let g = GroupName::new(format!("pg{}", rng.below(3)).as_bytes());
            let mut m = Vec::new();
            match rng.below(10) {
                0..=2 => encode_message(ServiceType::JOIN_MESS, me, &[g], &[], &mut m),
                3 => encode_message(ServiceType::LEAVE_MESS, me, &[g], &[], &mut m),
                _ => {
                    let service = rng.pick(&[
                        ServiceType::RELIABLE,
                        ServiceType::FIFO,
                        ServiceType::AGREED,
                        ServiceType::SAFE,
                    ]);
                    let body = vec![0x5a; rng.pick(&[0usize, 10, 1000, 3000])];
                    encode_message(service, me, &[g], &body, &mut m);
                }
            }
            d.handle(
                ctx.now(),
                Input::Client(SessionInput::Bytes {
                    session: s,
                    data: m.into(),
                }),
            );
            continue;
        }
        let wake = d
            .poll_timeout()
            .map(|t| {
                let us = t.0.saturating_sub(ctx.now().0);
                Instant::now() + Duration::from_micros(us)
            })
            .unwrap_or(end)
            .min(end)
            .min(next_work)
            .min(delayed.front().map_or(end, |x| x.0))
            .min(Instant::now() + Duration::from_millis(100));
        tokio::select! {
            r = ctx.data.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if let Some(id) = ctx.id_of(from) {
                        d.handle(ctx.now(), Input::Packet { from: id, port: Port::Data, bytes: Bytes::copy_from_slice(&buf[..n]) });
                    }
                }
            }
            r = ctx.token.recv_from(&mut buf2) => {
                if let Ok((n, from)) = r {
                    if let Some(id) = ctx.id_of(from) {
                        d.handle(ctx.now(), Input::Packet { from: id, port: Port::Token, bytes: Bytes::copy_from_slice(&buf2[..n]) });
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if d.poll_timeout().is_some_and(|t| t <= ctx.now()) {
                    d.handle_timeout(ctx.now());
                }
            }
        }
    };
    Stats::add(&ctx.stats.execs, 1);
    // The fuzzer's daemon tracks the group state as 5.0.1 does: a delivery that would abort
    // a 5.0.1 daemon in its place, in an episode whose datagrams were at most lost,
    // repeated or delayed (faults the protocol tolerates), is an invariant break of the
    // ring — ours when the target is ours.
    let fault = fault.or_else(|| {
        let v = d.interop_violations();
        let benign = applied.iter().all(|ev| ev.mutation.is_benign());
        if !v.is_empty() {
            tracing::info!(episode = e, benign, violations = ?v, "5.0.1-fatal deliveries");
        }
        (benign && !v.is_empty()).then(|| {
            Fault::Invariant(format!(
                "the fuzzer's daemon delivered what would abort a 5.0.1 daemon: {}",
                v[0]
            ))
        })
    });
    tracing::info!(
        episode = e,
        ring = ?d.engine().state(),
        exchanging = d.exchanging(),
        sent = ?counts,
        events = applied.len(),
        replies,
        closed,
        "episode done"
    );
    (applied, fault)
}

/// Opens the fuzzer daemon's sockets (inside its namespace) and builds the context.
async fn context(o: &RunOpts, stats: Arc<Stats>) -> Result<Ctx> {
    let text = lab_conf(o.port, &o.extra_conf);
    let config = Config::parse(&text, "lab.conf").map_err(|e| anyhow::anyhow!("{e}"))?;
    let (me, host) = config.find_host(PEER_NAME).context("no fz host")?;
    let my_id = DaemonId(host.vid);
    let (_, t) = config.find_host(TARGET_NAME).context("no target host")?;
    let target_id = DaemonId(t.vid);
    let any = |p: u16| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), p);
    let data = UdpSocket::bind(any(o.port))
        .await
        .with_context(|| format!("bind UDP {}", o.port))?;
    let token = UdpSocket::bind(any(o.port + 1))
        .await
        .with_context(|| format!("bind UDP {}", o.port + 1))?;
    let send = UdpSocket::bind(SocketAddr::new(PEER_ADDR.into(), 0))
        .await
        .context("bind the send socket (is this process in the lab namespace?)")?;
    send.set_broadcast(true)?;
    Ok(Ctx {
        config,
        me,
        ids: [target_id, my_id],
        data,
        token,
        send,
        port: o.port,
        t0: Instant::now(),
        stats,
        addrs: [(TARGET_ADDR, target_id), (PEER_ADDR, my_id)],
    })
}

/// The spawned target of a peer-mode run (inside namespace `ns`).
async fn start_target(o: &RunOpts, dir: &std::path::Path, ns: &str) -> Result<TargetProc> {
    let bin = o
        .spawn
        .clone()
        .context("peer mode needs --spawn BIN (the target runs in the fuzzer's lab)")?;
    let launch = Launch {
        bin,
        name: TARGET_NAME.into(),
        conf: lab_conf(o.port, &o.extra_conf),
        dir: dir.to_path_buf(),
        netns: Some(ns.to_owned()),
        port: o.port,
        reset: Some(super::netns::reset_target),
    };
    let mut t = TargetProc::start(launch)?;
    t.wait_ready(&peer_address(o), Duration::from_secs(20))
        .await?;
    Ok(t)
}

fn peer_address(o: &RunOpts) -> Address {
    Address::Tcp {
        host: TARGET_ADDR.to_string(),
        port: o.port,
    }
}

fn probe_config(o: &RunOpts) -> ProbeConfig {
    ProbeConfig {
        addr: format!("{}@{TARGET_ADDR}", o.port),
        group: "fzprobe".into(),
        interval: Duration::from_millis(100),
        hang_after: o.hang_after,
    }
}

/// One recorded episode: its number and the events applied.
type Recorded = (u64, Vec<Event>);

/// Plays episodes (drawn from `first` on, or the `replay` list) against the target with the
/// probe running, until a fault, the deadline, or the end of the list.
async fn play(
    o: &RunOpts,
    ctx: &Ctx,
    target: &mut Option<TargetProc>,
    seed: u64,
    replay: Option<&[Recorded]>,
    deadline: Instant,
    history: &mut VecDeque<Recorded>,
) -> Result<Option<Fault>> {
    let addr = peer_address(o);
    let ready = Arc::new(Notify::new());
    let mut probe_task = tokio::spawn(probe::run(
        probe_config(o),
        ctx.stats.clone(),
        ready.clone(),
    ));
    tokio::select! {
        _ = ready.notified() => {}
        r = &mut probe_task => {
            let end = r.context("probe task")?;
            return Ok(Some(classify(end, target, &addr).await));
        }
    }
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut e = 0u64;
    let mut idx = 0usize;
    let fault = loop {
        let (num, plan_events) = match replay {
            Some(list) => match list.get(idx) {
                Some((n, evs)) => (*n, Some(evs.as_slice())),
                None => break None,
            },
            None => (e, None),
        };
        idx += 1;
        e += 1;
        let plan = plan_events.map_or(Plan::Draw, Plan::Replay);
        let mut probe_done = false;
        let mut watch = || -> Option<Fault> {
            if let Some(f) = check_process(target) {
                return Some(f);
            }
            if probe_task.is_finished() {
                probe_done = true;
            }
            None
        };
        let (events, fault) = episode(ctx, o.valid_only, seed, num, plan, &mut watch).await;
        history.push_back((num, events));
        while history.len() > 4 {
            history.pop_front();
        }
        if let Some(f) = fault {
            break Some(f);
        }
        if probe_done {
            let end = (&mut probe_task).await.context("probe task")?;
            break Some(classify(end, target, &addr).await);
        }
        if replay.is_none() && last_progress.elapsed() >= o.progress_every {
            last_progress = Instant::now();
            let rss = target.as_mut().map(TargetProc::sample_rss);
            eprintln!("{}", ctx.stats.progress_line(started, rss));
        }
        if Instant::now() >= deadline || super::stop_requested() {
            break None;
        }
    };
    // A replay ends with a quiet moment in which the target must stay well.
    let fault = match fault {
        Some(f) => Some(f),
        None if replay.is_some() => {
            let until = Instant::now() + Duration::from_secs(3);
            let mut f = None;
            while Instant::now() < until && f.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                f = check_process(target);
                if f.is_none() && probe_task.is_finished() {
                    let end = (&mut probe_task).await.context("probe task")?;
                    f = Some(classify(end, target, &addr).await);
                }
            }
            f
        }
        None => None,
    };
    probe_task.abort();
    Ok(fault)
}

/// Restarts the target and replays `episodes`; the fault, if any.
async fn reproduce(
    o: &RunOpts,
    ctx: &Ctx,
    target: &mut Option<TargetProc>,
    episodes: &[Recorded],
) -> Result<Option<Fault>> {
    if let Some(t) = target.as_mut() {
        t.restart()?;
        t.wait_ready(&peer_address(o), Duration::from_secs(20))
            .await?;
    }
    let mut h = VecDeque::new();
    let far = Instant::now() + Duration::from_secs(3600);
    play(o, ctx, target, o.seed, Some(episodes), far, &mut h).await
}

fn save(path: &std::path::Path, seed: u64, eps: &[Recorded], f: &Fault, how: &str) -> Result<()> {
    let mut steps = vec![format!("seed {seed}")];
    for (n, evs) in eps {
        steps.push(format!("episode {n}"));
        steps.extend(evs.iter().map(ToString::to_string));
    }
    ReplayFile {
        mode: "peer".into(),
        comments: vec![format!("found: {f}"), how.to_owned()],
        steps,
    }
    .save(path)
}

/// Parses a peer replay's steps: the seed and the episodes with their events.
pub fn parse_steps(lines: &[String]) -> Result<(u64, Vec<Recorded>)> {
    let mut seed = None;
    let mut eps: Vec<Recorded> = Vec::new();
    for l in lines {
        if let Some(s) = l.strip_prefix("seed ") {
            seed = Some(s.trim().parse().context("bad seed")?);
        } else if let Some(n) = l.strip_prefix("episode ") {
            eps.push((n.trim().parse().context("bad episode")?, Vec::new()));
        } else {
            let ev: Event = l.parse()?;
            eps.last_mut()
                .context("event before any episode")?
                .1
                .push(ev);
        }
    }
    Ok((seed.context("no seed line")?, eps))
}

async fn minimize(
    o: &RunOpts,
    ctx: &Ctx,
    target: &mut Option<TargetProc>,
    history: &[Recorded],
    f: &Fault,
) -> Result<Option<Vec<Recorded>>> {
    let same = |g: &Option<Fault>| g.as_ref().is_some_and(|g| g.kind() == f.kind());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut eps: Vec<Recorded> = history.to_vec();
    // Fewer episodes first: the last alone, then the last two, ...
    for k in 1..=eps.len() {
        let tail = eps[eps.len() - k..].to_vec();
        let got = reproduce(o, ctx, target, &tail).await?;
        eprintln!(
            "minimize: last {k} episode(s) → {:?}",
            got.as_ref().map(Fault::kind)
        );
        if same(&got) {
            eps = tail;
            break;
        }
        if k == eps.len() || Instant::now() > deadline {
            return Ok(None);
        }
    }
    // Then remove events one at a time.
    let mut i = 0;
    loop {
        let flat: Vec<(usize, usize)> = eps
            .iter()
            .enumerate()
            .flat_map(|(a, (_, evs))| (0..evs.len()).map(move |b| (a, b)))
            .collect();
        if i >= flat.len() || Instant::now() > deadline || super::stop_requested() {
            break;
        }
        let (a, b) = flat[i];
        let mut trial = eps.clone();
        trial[a].1.remove(b);
        let got = reproduce(o, ctx, target, &trial).await?;
        if same(&got) {
            eprintln!("minimize: {} → {} events", flat.len(), flat.len() - 1);
            eps = trial;
        } else {
            i += 1;
        }
    }
    Ok(Some(eps))
}

/// Runs a peer-mode campaign; the process must already be in the lab's fuzzer namespace
/// (`target_ns` is the target's).
pub async fn run_peer(o: &RunOpts, target_ns: &str) -> Result<Summary> {
    super::stop_on_signals();
    let dir = target::run_dir(&o.out, "peer", o.seed);
    let mut target = Some(start_target(o, &dir, target_ns).await?);
    let stats = Arc::new(Stats::default());
    let ctx = context(o, stats.clone()).await?;
    let started = Instant::now();
    let mut history = VecDeque::new();
    let fault = play(
        o,
        &ctx,
        &mut target,
        o.seed,
        None,
        started + o.duration,
        &mut history,
    )
    .await?;
    let elapsed = started.elapsed();
    let mut summary = Summary::from_stats("peer", o.seed, &stats, elapsed);
    summary.target_peak_rss_kb = target.as_mut().map(TargetProc::sample_rss);
    if let Some(f) = fault {
        eprintln!("mbus-fuzz-net: {f}");
        if let Some(t) = &target {
            eprintln!("target log tail:\n{}", t.log_tail(8));
        }
        summary.time_to_fault = Some(elapsed);
        let hist: Vec<Recorded> = history.into_iter().collect();
        let raw = dir.join("crash-unminimized.replay");
        save(&raw, o.seed, &hist, &f, "the last episodes, unminimized")?;
        summary.replay = Some(raw);
        if o.minimize {
            if let Some(min) = minimize(o, &ctx, &mut target, &hist, &f).await? {
                let path = dir.join(format!("crash-{}-min.replay", f.kind()));
                save(&path, o.seed, &min, &f, "minimized")?;
                summary.replay = Some(path);
            }
        }
        summary.fault = Some(f);
    }
    Ok(summary)
}

/// Plays a peer replay file once (in the lab); the fault it causes, if any.
pub async fn replay_peer(o: &RunOpts, target_ns: &str, file: &ReplayFile) -> Result<Option<Fault>> {
    let (seed, eps) = parse_steps(&file.steps)?;
    let dir = target::run_dir(&o.out, "replay", seed);
    let mut target = Some(start_target(o, &dir, target_ns).await?);
    let stats = Arc::new(Stats::default());
    let ctx = context(o, stats).await?;
    let mut h = VecDeque::new();
    let o2 = RunOpts { seed, ..o.clone() };
    let far = Instant::now() + Duration::from_secs(3600);
    play(&o2, &ctx, &mut target, seed, Some(&eps), far, &mut h).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_text() {
        let ev = Event {
            class: Class::Groups,
            nth: 3,
            mutation: Mutation::Retype,
            subseed: 99,
        };
        assert_eq!(ev.to_string().parse::<Event>().unwrap(), ev);
        let (seed, eps) =
            parse_steps(&["seed 5".into(), "episode 2".into(), ev.to_string()]).unwrap();
        assert_eq!((seed, eps), (5, vec![(2, vec![ev])]));
    }

    #[test]
    fn a_retyped_groups_message_becomes_a_join() {
        use spread::wire::daemon::{DataBody, Packet};
        let mut msg = Vec::new();
        let h = MessageHeader {
            endian: spread::wire::daemon::Endian::NATIVE,
            kind: 0x0008_0000,
            sender: [0; 32],
            num_groups: 0,
            hint: [0; 4],
            data_len: 4,
        };
        h.encode(&mut msg);
        msg.extend([1, 2, 3, 4]);
        let p = Packet {
            header: PacketHeader::new(TypeBits::RELIABLE, DaemonId(7), 0x1234),
            body: PacketBody::Data(DataBody {
                fragments: vec![Fragment {
                    index: -1,
                    data: Bytes::from(msg),
                }],
            }),
        };
        let bytes = Bytes::from(p.to_vec());
        assert_eq!(Class::of(false, &bytes), Class::Groups);
        // Find a sub-seed that picks JOIN and check the result.
        let ids = [DaemonId(1), DaemonId(7)];
        let joined = (0..200u64).find_map(|s| {
            let out = apply(Mutation::Retype, s, false, &bytes, ids);
            (Class::of(false, &out[0].1) == Class::Request).then_some(out)
        });
        assert!(joined.is_some(), "no sub-seed retypes to a request");
    }
}
