//! `eccmgr`: the cluster manager (Momentum 3.x command line).
//!
//! ```text
//! eccmgr [-c configfile] [-g group] [-s daemon] [-m mbus.conf] [-n] [-v]… [-e dir] [-D] [-d] [-V] [-x]
//! ```
//! `-s` names the Spread-compatible daemon (`4803`, `4803@host`, a socket path), or
//! `memory:east=n1,n2;west=n3` for a self-contained demo cluster of in-process node agents.
//! The process always stays in the foreground (`-D`/`-d` are accepted for compatibility).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
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

const DEFAULT_CONFIG: &str = "/opt/msys/ecelerity/etc/conf/default/eccluster.conf";
const DEFAULT_MBUS_CONF: &str = "/opt/msys/ecelerity/etc/conf/global/mbus.conf";

#[derive(Debug, Default)]
struct Args {
    config: Option<PathBuf>,
    group: Option<String>,
    daemon: Option<String>,
    mbus_conf: Option<PathBuf>,
    verbose: u8,
    version: bool,
    log_bus_errors: bool,
}

fn usage() -> ! {
    eprintln!("usage: eccmgr [-c configfile] [-g group] [-s daemon] [-m mbus.conf] [-n] [-v]... [-e dir] [-D] [-d] [-V] [-x]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().unwrap_or_else(|| {
                eprintln!("eccmgr: {name} needs a value");
                usage()
            })
        };
        match arg.as_str() {
            "-c" => a.config = Some(value("-c").into()),
            "-g" => a.group = Some(value("-g")),
            "-s" => a.daemon = Some(value("-s")),
            "-m" => a.mbus_conf = Some(value("-m").into()),
            "-e" => {
                let _ = value("-e"); // extensions directory: no loadable modules in mbus
            }
            "-n" | "-D" | "-d" => {}
            "-x" => a.log_bus_errors = true,
            "-V" => a.version = true,
            "-h" | "--help" => usage(),
            v if v.starts_with("-v") && v[1..].chars().all(|c| c == 'v') => {
                a.verbose = a
                    .verbose
                    .saturating_add(u8::try_from(v.len() - 1).unwrap_or(4));
            }
            other => {
                eprintln!("eccmgr: unknown option {other}");
                usage()
            }
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    if args.version {
        println!("{}", banner("eccmgr"));
        return Ok(());
    }
    let level = match args.verbose {
        0 if args.log_bus_errors => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
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
    if let Some(g) = &args.group {
        settings.cluster_group.clone_from(g);
    }
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
