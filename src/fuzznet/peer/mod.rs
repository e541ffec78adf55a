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

mod episode;
mod mutate;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use spread::config::Config;
use spread::ids::DaemonId;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::netns::{BROADCAST, PEER_ADDR, TARGET_ADDR};
use super::probe::{self, ProbeConfig};
use super::replay::ReplayFile;
use super::run::{check_process, classify, RunOpts};
use super::target::{self, Launch, TargetProc};
use super::{Fault, Stats, Summary};
use crate::client::Address;

use episode::{episode, Ctx, Plan};
pub use mutate::{Class, Event, Mutation};

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
    let addr = format!("{}@{TARGET_ADDR}", o.port);
    ProbeConfig {
        addr_b: addr.clone(),
        addr,
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
        let (events, fault) = episode(
            ctx,
            o.valid_only,
            o.benign_only,
            seed,
            num,
            plan,
            &mut watch,
        )
        .await;
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

fn save(o: &RunOpts, path: &std::path::Path, eps: &[Recorded], f: &Fault, how: &str) -> Result<()> {
    let mut steps = vec![format!("seed {}", o.seed)];
    if o.benign_only {
        // The rules were drawn from the benign mutations only: the workload's draws too.
        steps.push("benign-only".into());
    }
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
        if l == "benign-only" {
            continue;
        }
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
        save(o, &raw, &hist, &f, "the last episodes, unminimized")?;
        summary.replay = Some(raw);
        if o.minimize {
            if let Some(min) = minimize(o, &ctx, &mut target, &hist, &f).await? {
                let path = dir.join(format!("crash-{}-min.replay", f.kind()));
                save(o, &path, &min, &f, "minimized")?;
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
    let o2 = RunOpts {
        seed,
        benign_only: o.benign_only || file.steps.iter().any(|l| l == "benign-only"),
        ..o.clone()
    };
    let far = Instant::now() + Duration::from_secs(3600);
    play(&o2, &ctx, &mut target, seed, Some(&eps), far, &mut h).await
}
