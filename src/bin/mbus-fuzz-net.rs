//! `mbus-fuzz-net`: a network fuzzer that drives a Spread daemon (ours or a real 5.0.1)
//! from outside, as many clients (`client`) or as a daemon of its ring (`peer`), and plays
//! saved failing inputs back (`replay`). See `mbus::fuzznet` and the README.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use mbus::cli::mbus_fuzz_net::{Args, Command, Target};
use mbus::fuzznet::netns::{self, Lab};
use mbus::fuzznet::replay::ReplayFile;
use mbus::fuzznet::run::{self, RunOpts};
use mbus::fuzznet::{peer, Fault};

fn opts(t: &Target, peer_mode: bool) -> Result<RunOpts> {
    let seed = t.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let (addr, ring) = match &t.ring {
        Some(path) => {
            if peer_mode {
                anyhow::bail!("--ring is for client mode (peer mode builds its own lab)");
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            let mut all = run::ring_addresses(&text, &path.display().to_string())?;
            let first = all.remove(0);
            (Some(first), all)
        }
        None => (t.daemon.clone(), Vec::new()),
    };
    Ok(RunOpts {
        addr,
        spawn: t.spawn.clone(),
        port: t.port,
        seed,
        duration: Duration::from_secs(t.duration),
        workers: t.workers,
        out: t.out.clone(),
        minimize: !t.no_minimize,
        hang_after: Duration::from_secs(t.hang_after.unwrap_or(if peer_mode { 60 } else { 15 })),
        progress_every: Duration::from_secs(t.progress.max(1)),
        extra_conf: t.conf_lines.iter().map(|l| format!("{l}\n")).collect(),
        valid_only: t.valid_only,
        benign_only: t.benign_only,
        ring,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Creates the lab and moves this (still single-threaded) process into its fuzzer namespace.
fn lab() -> Result<Lab> {
    netns::available().map_err(|why| anyhow::anyhow!("peer mode needs a namespace lab: {why}"))?;
    let lab = Lab::new(&format!("{}", std::process::id()))?;
    lab.enter_peer()?;
    Ok(lab)
}

fn main() -> ExitCode {
    let args = Args::parse();
    mbus::cli::init_logging(mbus::cli::level_for("warn", args.verbose));
    match real_main(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => mbus::cli::fail("mbus-fuzz-net", &e),
    }
}

/// Ok(true): nothing found.
fn real_main(args: &Args) -> Result<bool> {
    match &args.command {
        Command::Client(t) => {
            let o = opts(t, false)?;
            eprintln!("mbus-fuzz-net client: seed {}", o.seed);
            let s = runtime()?.block_on(run::run_client(&o))?;
            println!("{s}");
            Ok(s.fault.is_none())
        }
        Command::Peer(t) => {
            let o = opts(t, true)?;
            eprintln!("mbus-fuzz-net peer: seed {}", o.seed);
            let lab = lab()?;
            let s = runtime()?.block_on(peer::run_peer(&o, &lab.target_ns))?;
            println!("{s}");
            Ok(s.fault.is_none())
        }
        Command::Replay { file, target } => {
            let f = ReplayFile::load(file)?;
            let peer_mode = f.mode == "peer";
            let o = opts(target, peer_mode)?;
            let found: Option<Fault> = if peer_mode {
                let lab = lab()?;
                runtime()?
                    .block_on(peer::replay_peer(&o, &lab.target_ns, &f))
                    .context("peer replay")?
            } else {
                runtime()?
                    .block_on(run::replay_client(&o, &f))
                    .context("client replay")?
            };
            match &found {
                Some(f) => println!("replay {}: {f}", file.display()),
                None => println!("replay {}: no fault", file.display()),
            }
            Ok(found.is_none())
        }
    }
}
