//! One episode: an incarnation of the fuzzer's daemon in the target's ring.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spread::config::{Config, HostId};
use spread::daemon::{Input, Output, Target, Transmit};
use spread::ids::DaemonId;
use spread::ring::Port;
use spread::session::{Peer, SessionId};
use spread::wire::client::{
    encode_auth_choice, encode_hello, encode_message, GroupName, Hello, ServiceType,
};
use spread::{Daemon, SessionInput, SessionOutput};
use tokio::net::UdpSocket;

use super::super::netns::BROADCAST;
use super::super::{Fault, Rng, Stats};
use super::mutate::{apply, draw_rules};
use super::{Class, Event, PEER_NAME};

/// Everything a peer-mode run needs.
pub(super) struct Ctx {
    pub(super) config: Config,
    pub(super) me: HostId,
    pub(super) ids: [DaemonId; 2], // target, me
    pub(super) data: UdpSocket,
    pub(super) token: UdpSocket,
    pub(super) send: UdpSocket,
    pub(super) port: u16,
    pub(super) t0: Instant,
    pub(super) stats: Arc<Stats>,
    /// Lab addresses → daemon ids.
    pub(super) addrs: [(Ipv4Addr, DaemonId); 2],
}

impl Ctx {
    pub(super) fn now(&self) -> spread::time::Instant {
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
pub(super) enum Plan<'a> {
    Draw,
    Replay(&'a [Event]),
}

/// Plays one episode (`e`); returns the events applied, or the fault seen.
pub(super) async fn episode(
    ctx: &Ctx,
    valid_only: bool,
    benign_only: bool,
    seed: u64,
    e: u64,
    plan: Plan<'_>,
    watch: &mut (dyn FnMut() -> Option<Fault> + Send),
) -> (Vec<Event>, Option<Fault>) {
    let mut rng = Rng::for_exec(seed, e);
    let rules = match plan {
        Plan::Draw if !valid_only => draw_rules(&mut rng, benign_only),
        Plan::Draw | Plan::Replay(_) => {
            let _ = draw_rules(&mut rng, benign_only); // keep the workload's draws the same
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
