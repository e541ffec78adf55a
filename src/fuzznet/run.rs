//! The campaign loop of client mode, fault detection, minimization, and replay.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::client::{self, Case, Step};
use super::probe::{self, ProbeConfig, ProbeEnd};
use super::replay::ReplayFile;
use super::target::{self, Launch, TargetProc};
use super::{stop_requested, Fault, Rng, Stats, Summary};
use crate::client::Address;

/// Settings shared by both modes.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// The target's client address (`PORT@HOST` or a socket path); with `spawn`, defaults
    /// to `PORT@127.0.0.1` (peer mode: the target's namespace address).
    pub addr: Option<String>,
    /// Start this daemon binary as the target (restarted for minimization).
    pub spawn: Option<PathBuf>,
    /// Port of a spawned target.
    pub port: u16,
    /// The run's seed.
    pub seed: u64,
    /// Stop after this long.
    pub duration: Duration,
    /// Concurrent executions.
    pub workers: usize,
    /// Where run directories and replay files go.
    pub out: PathBuf,
    /// Minimize a failing input (needs `spawn`).
    pub minimize: bool,
    /// No probe delivery for this long = hang.
    pub hang_after: Duration,
    /// Time between two progress lines.
    pub progress_every: Duration,
    /// Extra configuration lines for a spawned target.
    pub extra_conf: String,
    /// Peer mode: send only the valid sequences of the fuzzer's daemon (no mutation rules).
    pub valid_only: bool,
    /// Peer mode: only the faults the protocol tolerates (drop, storm, delay).
    pub benign_only: bool,
    /// Client mode against a whole ring: the other daemons' client addresses (`addr` is the
    /// first daemon's); the probe's second session goes to the first of them.
    pub ring: Vec<String>,
}

/// The client addresses (`PORT@IP`) of every daemon of configuration `text` (a spread.conf),
/// in file order: a host's first client interface, else its address.
pub fn ring_addresses(text: &str, file: &str) -> Result<Vec<String>> {
    use spread::config::{Config, IfKinds};
    let config = Config::parse(text, file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for (id, host) in config.hosts() {
        let Some(seg) = config.segments.get(id.segment) else {
            continue;
        };
        let ip = host
            .interfaces
            .iter()
            .find(|i| i.kinds.contains(IfKinds::CLIENT))
            .map_or(host.addr.ip, |i| i.addr.ip);
        out.push(format!("{}@{ip}", seg.port));
    }
    if out.is_empty() {
        anyhow::bail!("{file}: no daemon configured");
    }
    Ok(out)
}

/// The configuration of a one-daemon target at 127.0.0.1.
pub fn single_conf(port: &str, extra: &str) -> String {
    format!(
        "Spread_Segment 127.0.0.255:{port} {{\n    localhost 127.0.0.1\n}}\nSocketPortReuse = ON\n{extra}"
    )
}

/// Root-only settings a 5.0.1 daemon needs (its own RuntimeDir, an existing user).
pub fn runtime_lines(rt: &std::path::Path) -> String {
    format!(
        "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = {}\n",
        rt.display()
    )
}

/// Starts the target of a client-mode run, if `spawn` is set.
async fn start_target(o: &RunOpts, dir: &std::path::Path) -> Result<Option<TargetProc>> {
    let Some(bin) = &o.spawn else {
        return Ok(None);
    };
    let mut launch = Launch {
        bin: bin.clone(),
        name: "localhost".into(),
        conf: String::new(),
        dir: dir.to_path_buf(),
        netns: None,
        port: o.port,
        reset: None,
    };
    launch.conf = single_conf(
        "{port}",
        &format!("{}{}", runtime_lines(&launch.runtime_dir()), o.extra_conf),
    );
    let mut t = TargetProc::start(launch)?;
    t.wait_ready(&address(o, Some(&t))?, Duration::from_secs(20))
        .await?;
    Ok(Some(t))
}

/// The target's client address: a spawned target's current port at 127.0.0.1, else `-s`.
pub fn address(o: &RunOpts, target: Option<&TargetProc>) -> Result<Address> {
    if let Some(t) = target {
        return Ok(Address::Tcp {
            host: "127.0.0.1".into(),
            port: t.port(),
        });
    }
    let s = o
        .addr
        .clone()
        .unwrap_or_else(|| format!("{}@127.0.0.1", o.port));
    Address::parse(&s).map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

fn probe_config(o: &RunOpts, addr: &Address) -> Result<ProbeConfig> {
    let addr = match addr {
        Address::Tcp { host, port } => format!("{port}@{host}"),
        Address::Unix(p) => p.display().to_string(),
    };
    Ok(ProbeConfig {
        addr_b: o.ring.first().cloned().unwrap_or_else(|| addr.clone()),
        addr,
        group: "fzprobe".into(),
        interval: Duration::from_millis(50),
        hang_after: o.hang_after,
    })
}

/// The target's daemon name, from a session's private group `#NAME#DAEMON`.
async fn daemon_name(addr: &Address) -> Result<String> {
    let name = format!("fzn{}", std::process::id() % 100_000);
    let opts = crate::client::ConnectOptions::new(&name, false);
    let mb = crate::client::Mailbox::connect_with(addr, &opts)
        .await
        .context("learn the daemon's name")?;
    let name = mb
        .private_group()
        .rsplit('#')
        .next()
        .unwrap_or_default()
        .to_owned();
    let _ = mb.disconnect().await;
    Ok(name)
}

/// Does the target still accept connections?
pub async fn port_open(addr: &Address) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), target::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// A probe end as a fault: a closed probe on a dead target is a death.
pub async fn classify(end: ProbeEnd, target: &mut Option<TargetProc>, addr: &Address) -> Fault {
    match end {
        ProbeEnd::Fault(f) => f,
        ProbeEnd::Closed(why) => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Some(t) = target.as_mut() {
                if let Some(alarm) = t.fatal_log() {
                    return Fault::Alarm(alarm);
                }
                if let Some(gone) = t.exited() {
                    return Fault::Death(format!("{gone} ({why})"));
                }
            }
            if port_open(addr).await {
                Fault::Invariant(format!("the daemon dropped a probe session: {why}"))
            } else {
                Fault::Death(format!("port closed ({why})"))
            }
        }
    }
}

/// One check of the target process (when started by us).
pub fn check_process(target: &mut Option<TargetProc>) -> Option<Fault> {
    let t = target.as_mut()?;
    t.sample_rss();
    if let Some(alarm) = t.fatal_log() {
        return Some(Fault::Alarm(alarm));
    }
    t.exited().map(Fault::Death)
}

/// Runs a client-mode campaign.
pub async fn run_client(o: &RunOpts) -> Result<Summary> {
    super::stop_on_signals();
    let dir = target::run_dir(&o.out, "client", o.seed);
    let mut target = start_target(o, &dir).await?;
    let addr = address(o, target.as_ref())?;
    let stats = Arc::new(Stats::default());
    let ready = Arc::new(Notify::new());
    let mut probe_task = tokio::spawn(probe::run(
        probe_config(o, &addr)?,
        stats.clone(),
        ready.clone(),
    ));
    tokio::select! {
        _ = ready.notified() => {}
        r = &mut probe_task => {
            let end = r.context("probe task")?;
            anyhow::bail!("the probe could not start: {end:?}");
        }
    }
    // Every daemon fuzzed (a ring: the first from `addr`, then the others), with its name
    // for the cases' private names.
    let mut daemons = vec![(addr.clone(), daemon_name(&addr).await?)];
    for a in &o.ring {
        let a = Address::parse(a).map_err(|e| anyhow::anyhow!("{a}: {e}"))?;
        let name = daemon_name(&a).await?;
        daemons.push((a, name));
    }
    let daemons = Arc::new(daemons);
    let started = Instant::now();
    let recent: Arc<Mutex<VecDeque<(Instant, Case)>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..o.workers.max(1) {
        let (stats, recent, next, stop, daemons, seed) = (
            stats.clone(),
            recent.clone(),
            next.clone(),
            stop.clone(),
            daemons.clone(),
            o.seed,
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let Some((addr, daemon_name)) =
                    daemons.get(usize::try_from(id).unwrap_or(0) % daemons.len().max(1))
                else {
                    break;
                };
                let case = client::generate(&mut Rng::for_exec(seed, id), id, daemon_name);
                {
                    // The cases of the last 8 s (at most 4000 of them, 64 MiB of frames):
                    // what is saved and minimized when something breaks.
                    let mut r = recent.lock();
                    let now = Instant::now();
                    let size = |c: &Case| -> usize {
                        c.steps
                            .iter()
                            .map(|s| match s {
                                Step::Send(_, b) => b.len(),
                                _ => 0,
                            })
                            .sum()
                    };
                    r.push_back((now, case.clone()));
                    let mut bytes: usize = r.iter().map(|(_, c)| size(c)).sum();
                    while r.len() > 1
                        && (r
                            .front()
                            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(8))
                            || r.len() > 4000
                            || bytes > 64 << 20)
                    {
                        if let Some((_, c)) = r.pop_front() {
                            bytes -= size(&c);
                        }
                    }
                }
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    client::execute(addr, &case.steps, &stats),
                )
                .await;
                Stats::add(&stats.execs, 1);
                Stats::add(&stats.mutations, u64::from(case.mutated));
            }
        }));
    }
    let mut last_progress = Instant::now();
    let mut last_port_check = Instant::now();
    let fault = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(f) = check_process(&mut target) {
            break Some(f);
        }
        if probe_task.is_finished() {
            let end = (&mut probe_task).await.context("probe task")?;
            break Some(classify(end, &mut target, &addr).await);
        }
        if target.is_none() && last_port_check.elapsed() > Duration::from_secs(1) {
            last_port_check = Instant::now();
            let mut closed = None;
            for (a, name) in daemons.iter() {
                if !port_open(a).await {
                    closed = Some(if daemons.len() > 1 {
                        format!("daemon {name}: port closed")
                    } else {
                        "port closed".to_owned()
                    });
                    break;
                }
            }
            if let Some(why) = closed {
                break Some(Fault::Death(why));
            }
        }
        if last_progress.elapsed() >= o.progress_every {
            last_progress = Instant::now();
            let rss = target.as_mut().map(TargetProc::sample_rss);
            eprintln!("{}", stats.progress_line(started, rss));
        }
        if started.elapsed() >= o.duration || stop_requested() {
            break None;
        }
    };
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in &workers {
        w.abort();
    }
    probe_task.abort();
    let mut summary = Summary::from_stats("client", o.seed, &stats, elapsed);
    summary.target_peak_rss_kb = target.as_mut().map(TargetProc::sample_rss);
    if let Some(f) = fault {
        eprintln!("mbus-fuzz-net: {f}");
        if let Some(t) = &target {
            eprintln!("target log tail:\n{}", t.log_tail(8));
        }
        summary.time_to_fault = Some(elapsed);
        let cases: Vec<Case> = recent.lock().iter().map(|(_, c)| c.clone()).collect();
        let steps = client::concat(&cases);
        let raw = dir.join("crash-unminimized.replay");
        save_client(
            &raw,
            &steps,
            &f,
            o.seed,
            "all cases of the last 8 s, unminimized",
        )?;
        summary.replay = Some(raw);
        if o.minimize && target.is_some() {
            drop(workers);
            if let Some(min) = minimize_client(o, &mut target, &cases, &f).await? {
                let path = dir.join(format!("crash-{}-min.replay", f.kind()));
                save_client(&path, &min, &f, o.seed, "minimized")?;
                summary.replay = Some(path);
            }
        }
        summary.fault = Some(f);
    }
    Ok(summary)
}

fn save_client(
    path: &std::path::Path,
    steps: &[Step],
    f: &Fault,
    seed: u64,
    how: &str,
) -> Result<()> {
    ReplayFile {
        mode: "client".into(),
        comments: vec![format!("found: {f}"), format!("seed {seed}; {how}")],
        steps: steps.iter().map(ToString::to_string).collect(),
    }
    .save(path)
}

/// Plays `steps` against a fresh target with the probe running; the fault it causes, if any.
pub async fn reproduce_client(
    o: &RunOpts,
    target: &mut Option<TargetProc>,
    steps: &[Step],
) -> Result<Option<Fault>> {
    if let Some(t) = target.as_mut() {
        t.restart()?;
        let addr = address(o, Some(t))?;
        t.wait_ready(&addr, Duration::from_secs(20)).await?;
    }
    let addr = &address(o, target.as_ref())?;
    let stats = Arc::new(Stats::default());
    let ready = Arc::new(Notify::new());
    let mut probe_task = tokio::spawn(probe::run(
        probe_config(o, addr)?,
        stats.clone(),
        ready.clone(),
    ));
    tokio::select! {
        _ = ready.notified() => {}
        r = &mut probe_task => {
            let end = r.context("probe task")?;
            return Ok(Some(classify(end, target, addr).await));
        }
    }
    let play = tokio::time::timeout(
        Duration::from_secs(60),
        client::execute(addr, steps, &stats),
    );
    tokio::pin!(play);
    let mut played = false;
    let mut after = None;
    let fault = loop {
        tokio::select! {
            _ = &mut play, if !played => { played = true; after = Some(Instant::now()); }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if let Some(f) = check_process(target) {
            break Some(f);
        }
        if probe_task.is_finished() {
            let end = (&mut probe_task).await.context("probe task")?;
            break Some(classify(end, target, addr).await);
        }
        if after.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break None;
        }
    };
    probe_task.abort();
    Ok(fault)
}

/// Finds the smallest step list (within a budget) that still causes a fault of `f`'s kind:
/// first whole cases are removed (all of them replayed one after the other must reproduce
/// it), then single steps.
async fn minimize_client(
    o: &RunOpts,
    target: &mut Option<TargetProc>,
    cases: &[Case],
    f: &Fault,
) -> Result<Option<Vec<Step>>> {
    let deadline = Instant::now() + Duration::from_secs(400);
    let units: Vec<Vec<Step>> = cases.iter().map(|c| c.steps.clone()).collect();
    let all: Vec<Step> = client::concat(cases);
    let got = reproduce_client(o, target, &all).await?;
    eprintln!(
        "minimize: {} cases replayed in turn → {:?}",
        cases.len(),
        got.as_ref().map(Fault::kind)
    );
    if got.as_ref().is_none_or(|g| g.kind() != f.kind()) {
        eprintln!("minimize: the fault does not reproduce from the saved cases");
        return Ok(None);
    }
    let units = shrink(o, target, units, f, deadline).await?;
    let steps: Vec<Vec<Step>> = units.concat().into_iter().map(|s| vec![s]).collect();
    let steps = shrink(o, target, steps, f, deadline).await?;
    Ok(Some(steps.concat()))
}

/// Removes chunks of `units` (halving the chunk size, ddmin's complement step) while the
/// rest still causes a fault of `f`'s kind, until `deadline`.
async fn shrink(
    o: &RunOpts,
    target: &mut Option<TargetProc>,
    mut units: Vec<Vec<Step>>,
    f: &Fault,
    deadline: Instant,
) -> Result<Vec<Vec<Step>>> {
    let mut chunk = units.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut removed_any = false;
        while i < units.len() && units.len() > 1 && Instant::now() < deadline && !stop_requested() {
            let mut trial = units.clone();
            let end = (i + chunk).min(trial.len());
            trial.drain(i..end);
            let got = reproduce_client(o, target, &trial.concat()).await?;
            if got.as_ref().is_some_and(|g| g.kind() == f.kind()) {
                eprintln!("minimize: {} → {} units", units.len(), trial.len());
                units = trial;
                removed_any = true;
            } else {
                i += chunk;
            }
        }
        if Instant::now() >= deadline
            || stop_requested()
            || (chunk == 1 && !removed_any)
            || units.len() <= 1
        {
            return Ok(units);
        }
        chunk = (chunk / 2).max(1);
    }
}

/// Plays a client replay file once; the fault it causes, if any.
pub async fn replay_client(o: &RunOpts, file: &ReplayFile) -> Result<Option<Fault>> {
    let steps = client::parse_steps(&file.steps)?;
    let dir = target::run_dir(&o.out, "replay", o.seed);
    let mut target = start_target(o, &dir).await?;
    // `reproduce_client` restarts a spawned target; the first start above checked it runs.
    reproduce_client(o, &mut target, &steps).await
}
