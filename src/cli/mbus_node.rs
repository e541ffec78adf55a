//! `mbus-node`: the cluster node agent's command line.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

const AFTER_HELP: &str = "\
Configuration:
  -c FILE (or $MBUS_NODE_CONFIG), ecelerity syntax: cluster { nodename subcluster nodeaddr
  mbus_daemon cluster_group control_group Topology … Command … }, Binding/Listen scopes with
  Enable_Duravip, Duravip_Preference, Duravip_Follow. Without -c: built-in defaults.
  Node name: -n, else cluster.nodename, else $EC_NODE_NAME, else the short host name.
  Subcluster: -S, else cluster.subcluster, else $EC_SUB_CLUSTER, else mbus.conf's
  '# Subcluster:' line for this node, else 'default'.
  Daemon: -s (or $MBUS_NODE_DAEMON), else cluster.mbus_daemon, else 4803. While the daemon
  cannot be reached the agent keeps retrying (with a warning each time).

Examples:
  mbus-node -s 4803@127.0.0.1 -n n1 -S east -m mbus.conf
  mbus-node -c node.conf -l /tmp/2025 --plumb -v
";

/// The cluster node agent: joins `ec_console`, `ec_cluster` and `ec_sc_<subcluster>` with
/// private name `ec0-<pid>`, answers console commands relayed by eccmgr, and runs DuraVIP.
#[derive(Debug, Parser)]
#[command(
    name = "mbus-node",
    version,
    about = "Cluster node agent: answers console commands relayed by eccmgr, runs DuraVIP",
    after_help = AFTER_HELP,
    after_long_help = format!("{AFTER_HELP}\n{}", super::LOGGING_HELP),
)]
pub struct Args {
    /// Node configuration file (ecelerity syntax) [default: built-in defaults]
    #[arg(
        short = 'c',
        long = "config",
        value_name = "NODE_CONF",
        env = "MBUS_NODE_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Daemon to attach to: PORT (Unix socket /tmp/PORT), PORT@HOST or a socket path
    /// [default: cluster.mbus_daemon, else 4803]
    #[arg(
        short = 's',
        long = "daemon",
        value_name = "DAEMON",
        env = "MBUS_NODE_DAEMON"
    )]
    pub daemon: Option<String>,

    /// This node's name [default: cluster.nodename, else $EC_NODE_NAME, else the short host
    /// name]
    #[arg(short = 'n', long = "node", value_name = "NODENAME")]
    pub node: Option<String>,

    /// This node's subcluster [default: cluster.subcluster, else $EC_SUB_CLUSTER, else
    /// mbus.conf's, else default]
    #[arg(short = 'S', long = "subcluster", value_name = "SUBCLUSTER")]
    pub subcluster: Option<String>,

    /// The ring's mbus.conf (subcluster of this node; its address gives the node address)
    #[arg(
        short = 'm',
        long = "mbus-conf",
        value_name = "MBUS_CONF",
        env = "MBUS_CONF"
    )]
    pub mbus_conf: Option<PathBuf>,

    /// Console control listener: a socket path or HOST:PORT; repeat for several [default: the
    /// config's Control_Listener, else none]
    #[arg(short = 'l', long = "listen", value_name = "CONTROL_ADDRESS")]
    pub listen: Vec<String>,

    /// Really plumb DuraVIP addresses with `ip addr` (default: only log what would be done)
    #[arg(long = "plumb")]
    pub plumb: bool,

    /// More log output; repeat for more (-v info, -vv debug, -vvv trace). RUST_LOG overrides
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl Args {
    /// The default log level (before `RUST_LOG`): warn, one step more per `-v`.
    pub fn log_level(&self) -> &'static str {
        super::level_for("warn", self.verbose)
    }
}
