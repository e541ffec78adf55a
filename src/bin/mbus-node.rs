//! `mbus-node`: the cluster node agent. Joins `ec_console`, `ec_cluster` and
//! `ec_sc_<subcluster>` with private name `ec0-<pid>`, answers console commands relayed by
//! `eccmgr`, and runs DuraVIP.
//!
//! ```text
//! mbus-node [-c node.conf] [-s daemon] [-n nodename] [-S subcluster] [-m mbus.conf]
//!           [-l control-address]… [--plumb] [-v]…
//! ```
//! Configuration (ecelerity syntax): `cluster { nodename subcluster nodeaddr mbus_daemon
//! cluster_group control_group Topology "cidr" { interface cidrmask } Command "prefix" {
//! Program Args Timeout Max_Output } }`, `Binding`/`Listen` scopes with `Enable_Duravip`,
//! `Duravip_Preference`, `Duravip_Follow`. Without `--plumb` DuraVIP plumbing is only logged.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use mbus::cli::mbus_node::Args;
use mbus::cluster::duravip::{IpCommandPlumber, LogPlumber, Plumber};
use mbus::cluster::node::{NodeCore, NodeIdentity};
use mbus::cluster::run::{bind_control, control_addresses, host_name};
use mbus::cluster::shell::run_node;
use mbus::cluster::spread_bus::SpreadBus;
use mbus::cluster::subcluster::{short, Subclusters};
use mbus::console::server::Limits;
use mbus::ecconf::Config;

fn main() -> ExitCode {
    let args = Args::parse();
    mbus::cli::init_logging(args.log_level());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return mbus::cli::fail("mbus-node", &anyhow::Error::new(e)),
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => mbus::cli::fail("mbus-node", &e),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(p) => Config::load(p, &[]).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::default(),
    };
    let cluster = config.root.child("cluster", None);
    let opt = |name: &str| cluster.and_then(|c| c.get_str(name)).map(str::to_string);
    let node = args
        .node
        .clone()
        .or_else(|| opt("nodename"))
        .or_else(|| std::env::var("EC_NODE_NAME").ok())
        .unwrap_or_else(|| short(&host_name()).to_string());
    let mut mbus_addr = None;
    let from_mbus = match &args.mbus_conf {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            // The node's cluster service address defaults to its mbus.conf address, port 4802.
            if let Ok(cfg) = spread::config::Config::parse(&text, &p.display().to_string()) {
                mbus_addr = cfg
                    .find_host(&node)
                    .map(|(_, h)| std::net::SocketAddr::new(h.addr.ip, 4802).to_string());
            }
            let s = Subclusters::load(&text, &p.display().to_string());
            s.of_host(&node).map(str::to_string)
        }
        None => None,
    };
    let own = args
        .subcluster
        .clone()
        .or_else(|| opt("subcluster"))
        .or_else(|| std::env::var("EC_SUB_CLUSTER").ok());
    if let (Some(o), Some(m)) = (&own, &from_mbus) {
        if o != m {
            tracing::warn!(
                "node {node}: own subcluster '{o}' differs from mbus.conf's '{m}'; using '{o}'"
            );
        }
    }
    let subcluster = own.or(from_mbus).unwrap_or_else(|| "default".into());
    let mut id = NodeIdentity::new(&node, &subcluster);
    if let Some(a) = mbus_addr {
        id.address = a;
    }
    id.apply_config(&config.root);
    let daemon = args
        .daemon
        .clone()
        .or_else(|| opt("mbus_daemon"))
        .unwrap_or_else(|| "4803".into());
    let mut addresses: Vec<(String, Option<u32>)> =
        args.listen.iter().map(|l| (l.clone(), None)).collect();
    if addresses.is_empty() && config.root.child("Control_Listener", None).is_some() {
        addresses = control_addresses(&config, "/tmp/2025");
    }
    let mut listeners = Vec::new();
    for (addr, mode) in &addresses {
        listeners.push(
            bind_control(addr, *mode)
                .await
                .with_context(|| format!("control listener {addr}"))?,
        );
    }
    let plumber: Box<dyn Plumber> = if args.plumb {
        Box::new(IpCommandPlumber)
    } else {
        Box::new(LogPlumber::default())
    };
    let private = format!("ec0-{:05}", std::process::id() % 100_000);
    tracing::info!("node {node} (subcluster {subcluster}) attaching to {daemon} as {private}");
    let core = NodeCore::new(id, "", "", config, args.config.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        let _ = stop_tx.send(true);
    });
    run_node(
        core,
        move || {
            let (d, n) = (daemon.clone(), private.clone());
            async move { SpreadBus::connect(&d, &n, Duration::from_secs(5)).await }
        },
        listeners,
        Limits::default(),
        plumber,
        stop_rx,
    )
    .await;
    for (addr, _) in addresses.iter().filter(|(a, _)| a.starts_with('/')) {
        let _ = std::fs::remove_file(addr);
    }
    Ok(())
}
