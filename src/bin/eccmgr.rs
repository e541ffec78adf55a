//! `eccmgr`: the cluster manager (Momentum 3.x command line).
//!
//! ```text
//! eccmgr [-c configfile] [-g group] [-s daemon] [-m mbus.conf] [-n] [-v]… [-e dir] [-D] [-d] [-V] [-x]
//! ```
//! The flags are defined in [`mbus::cli::eccmgr`] (see `eccmgr --help`).
//! `-s` names the Spread-compatible daemon (`4803`, `4803@host`, a socket path), or
//! `memory:east=n1,n2;west=n3` for a self-contained demo cluster of in-process node agents.
//! The process always stays in the foreground (`-D`/`-d` are accepted for compatibility).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use mbus::cli::eccmgr::{Args, DEFAULT_CONFIG, DEFAULT_MBUS_CONF};
use mbus::cluster::bus::MemHub;
use mbus::cluster::duravip::LogPlumber;
use mbus::cluster::manager::{cache_limits, register_defaults, ManagerCore, ManagerSettings};
use mbus::cluster::members::banner;
use mbus::cluster::node::{NodeCore, NodeIdentity};
use mbus::cluster::run::{bind_control, control_addresses, host_name, manager_name, parse_demo};
use mbus::cluster::shell::{run_manager, run_node};
use mbus::cluster::spread_bus::SpreadBus;
use mbus::cluster::subcluster::Subclusters;
use mbus::console::server::Limits;
use mbus::ecconf::Config;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("{}", banner("eccmgr"));
        return ExitCode::SUCCESS;
    }
    mbus::cli::init_logging(args.log_level());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return mbus::cli::fail("eccmgr", &anyhow::Error::new(e)),
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => mbus::cli::fail("eccmgr", &e),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config_path = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()));
    let mut config = match &config_path {
        Some(p) => Config::load(p, &[]).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::default(),
    };
    register_defaults(&mut config);
    let mbus_conf = args
        .mbus_conf
        .clone()
        .or_else(|| config.root.get_str("Mbus_Conf").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(DEFAULT_MBUS_CONF)).filter(|p| p.exists()));
    let subclusters = match &mbus_conf {
        Some(p) => Subclusters::load(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            &p.display().to_string(),
        ),
        None => Subclusters::default(),
    };
    let embedded = config
        .root
        .get("Embedded_Ring")
        .and_then(|o| o.value.as_bool())
        == Some(true);
    let mut settings = ManagerSettings {
        subclusters,
        cache: cache_limits(&config),
        ..ManagerSettings::default()
    };
    settings.cluster_group.clone_from(&args.group);
    let cache_file = config
        .root
        .child("Logs", None)
        .and_then(|l| l.get_str("Control_Cache"))
        .map(PathBuf::from);
    let timeout = config
        .root
        .child("Control_Listener", None)
        .and_then(|c| c.get_str("Timeout"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(60);
    let limits = Limits {
        idle: Duration::from_secs(timeout),
        ..Limits::default()
    };
    let mut listeners = Vec::new();
    let addresses = control_addresses(&config, "/tmp/2025");
    for (addr, mode) in &addresses {
        let (addr, mode) = (addr.as_str(), *mode);
        listeners.push(
            bind_control(addr, mode)
                .await
                .with_context(|| format!("Control_Listener {addr}"))?,
        );
        tracing::info!("control listener on {addr}");
    }
    let host = host_name();
    let name = manager_name(&host);
    let mut daemon_task = None;
    let mut embedded_core: Option<mbus::daemon::CoreHandle> = None;
    let mut daemon_arg = args.daemon.clone();
    if embedded {
        // The ring runs inside this process (`mbus::daemon::DaemonBuilder`, the host entry of
        // this machine from `Mbus_Conf`, its sockets open for the node agents); the manager
        // attaches to it over an in-memory pipe, not over TCP to itself.
        let path = mbus_conf
            .clone()
            .context("Embedded_Ring = true needs Mbus_Conf (or -m) naming the ring's mbus.conf")?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let ring = spread::config::Config::parse(&text, &path.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let me_name = config.root.get_str("Embedded_Name").map(str::to_string);
        let ring = std::sync::Arc::new(ring);
        let mut builder = mbus::daemon::DaemonBuilder::new(ring);
        if let Some(n) = me_name {
            builder = builder.name(n);
        }
        let running = builder.start().map_err(|e| anyhow::anyhow!("{e}"))?;
        let own = running.handle().clone();
        daemon_arg = Some(format!("{}@in-process", running.port()));
        tracing::info!(
            "running the ring in-process on port {}; the manager attaches without a socket",
            running.port()
        );
        embedded_core = Some(own);
        daemon_task = Some(running);
    }
    let daemon = daemon_arg
        .or_else(|| config.root.get_str("Daemon").map(str::to_string))
        .unwrap_or_else(|| "4803".into());
    let core = ManagerCore::new(settings.clone(), &host, config, config_path);
    if let Some(spec) = daemon.strip_prefix("memory:") {
        let hub = MemHub::new();
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        for (i, (sc, node)) in parse_demo(spec)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .enumerate()
        {
            let hub2 = hub.clone();
            let id = NodeIdentity::new(&node, &sc);
            let pname = format!("ec0-{:05}", (std::process::id() + i as u32) % 100_000);
            let core = NodeCore::new(id, "", "", Config::default(), None);
            let node2 = node.clone();
            tokio::spawn(run_node(
                core,
                move || std::future::ready(hub2.connect(&pname, &node2)),
                Vec::new(),
                Limits::default(),
                Box::new(LogPlumber::default()),
                stop_rx.clone(),
            ));
        }
        let hub2 = hub.clone();
        let h = host.clone();
        until_signal(run_manager(
            core,
            move || std::future::ready(hub2.connect(&name, &h)),
            listeners,
            limits,
            cache_file,
        ))
        .await;
    } else if let Some(own) = embedded_core {
        let d = daemon.clone();
        until_signal(run_manager(
            core,
            move || {
                let (own, d, n) = (own.clone(), d.clone(), name.clone());
                async move {
                    SpreadBus::connect_in_process(&own, &d, &n, Duration::from_secs(5)).await
                }
            },
            listeners,
            limits,
            cache_file,
        ))
        .await;
    } else {
        let d = daemon.clone();
        until_signal(run_manager(
            core,
            move || {
                let (d, n) = (d.clone(), name.clone());
                async move { SpreadBus::connect(&d, &n, Duration::from_secs(5)).await }
            },
            listeners,
            limits,
            cache_file,
        ))
        .await;
    }
    for (addr, _) in addresses.iter().filter(|(a, _)| a.starts_with('/')) {
        let _ = std::fs::remove_file(addr);
    }
    if let Some(running) = daemon_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), running.shutdown()).await;
    }
    Ok(())
}

/// Runs `f` until it finishes or SIGINT/SIGTERM arrives (then the caller cleans up).
async fn until_signal(f: impl std::future::Future<Output = ()>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        () = f => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; exiting"),
        () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {
            tracing::info!("terminated; exiting");
        }
    }
}
