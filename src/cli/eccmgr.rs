//! `eccmgr`: the cluster manager's command line (Momentum 3.x flags, plus long names).

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Where the manager's configuration is looked for when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/opt/msys/ecelerity/etc/conf/default/eccluster.conf";
/// Where the ring's `mbus.conf` is looked for when neither `-m` nor `Mbus_Conf` names one.
pub const DEFAULT_MBUS_CONF: &str = "/opt/msys/ecelerity/etc/conf/global/mbus.conf";

const AFTER_HELP: &str = "\
Configuration:
  -c FILE, else $ECCMGR_CONFIG, else /opt/msys/ecelerity/etc/conf/default/eccluster.conf
  if it exists, else built-in defaults (control listener /tmp/2025, group ec_cluster).
  The ring's mbus.conf: -m, else $MBUS_CONF, else the config's Mbus_Conf, else
  /opt/msys/ecelerity/etc/conf/global/mbus.conf if it exists.
  The daemon: -s, else $ECCMGR_DAEMON, else the config's Daemon, else 4803
  (Unix socket /tmp/4803). While the daemon cannot be reached the manager keeps retrying
  (with a warning each time) rather than exiting.

Examples:
  eccmgr -c eccluster.conf -s 4803@127.0.0.1 -v
  eccmgr -s 'memory:east=n1,n2;west=n3'     # a self-contained demo cluster
  ec_console /tmp/2025 show cluster membership
";

/// The Momentum-compatible cluster manager: keeps the cluster membership, relays console
/// commands to the nodes and caches their answers.
#[derive(Debug, Parser)]
#[command(
    name = "eccmgr",
    version,
    disable_version_flag = true,
    about = "Momentum-compatible cluster manager: membership, console relay, control cache",
    long_about = "Momentum-compatible cluster manager. Attaches to a Spread-compatible daemon, \
                  joins the cluster group, answers ec_console on its control listener and relays \
                  broadcast/unicast commands to the node agents (mbus-node). It always stays in \
                  the foreground.",
    after_help = AFTER_HELP,
    after_long_help = format!("{AFTER_HELP}\n{}", super::LOGGING_HELP),
)]
pub struct Args {
    /// Configuration file (ecelerity syntax: Control_Listener, Logs, Daemon, Mbus_Conf,
    /// Embedded_Ring …) [default: /opt/msys/ecelerity/etc/conf/default/eccluster.conf if it
    /// exists, else built-in defaults]
    #[arg(
        short = 'c',
        long = "config",
        value_name = "CONFIGFILE",
        env = "ECCMGR_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Cluster group the manager and the nodes join
    #[arg(
        short = 'g',
        long = "group",
        value_name = "GROUP",
        default_value = "ec_cluster"
    )]
    pub group: String,

    /// Daemon to attach to: PORT (Unix socket /tmp/PORT), PORT@HOST, a socket path, or
    /// memory:SC=n1,n2;SC2=n3 for an in-process demo cluster [default: the config's Daemon,
    /// else 4803]
    #[arg(
        short = 's',
        long = "daemon",
        value_name = "DAEMON",
        env = "ECCMGR_DAEMON"
    )]
    pub daemon: Option<String>,

    /// The ring's mbus.conf (subclusters; Embedded_Ring) [default: the config's Mbus_Conf, else
    /// /opt/msys/ecelerity/etc/conf/global/mbus.conf if it exists]
    #[arg(
        short = 'm',
        long = "mbus-conf",
        value_name = "MBUS_CONF",
        env = "MBUS_CONF"
    )]
    pub mbus_conf: Option<PathBuf>,

    /// Skip file locking (accepted for Momentum compatibility; mbus takes no lock)
    #[arg(short = 'n', long = "no-lock")]
    pub no_lock: bool,

    /// More log output; repeat for more (-v info, -vv debug, -vvv trace). RUST_LOG overrides
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// Alternate extensions directory (accepted for Momentum compatibility; mbus loads no
    /// modules)
    #[arg(short = 'e', long = "ext-dir", value_name = "DIR")]
    pub ext_dir: Option<PathBuf>,

    /// Stay in the foreground (accepted for compatibility: eccmgr never forks)
    #[arg(short = 'D', long = "foreground")]
    pub foreground: bool,

    /// Stay in the foreground keeping stdout/stderr (accepted for compatibility)
    #[arg(short = 'd', long = "debug-foreground")]
    pub debug_foreground: bool,

    /// Log bus errors (raises the default log level to info)
    #[arg(short = 'x', long = "log-bus-errors")]
    pub log_bus_errors: bool,

    /// Print the version banner and exit
    #[arg(short = 'V', long = "version")]
    pub version: bool,
}

impl Args {
    /// The default log level (before `RUST_LOG`): warn, info with `-x`, one step more per `-v`.
    pub fn log_level(&self) -> &'static str {
        let base = if self.log_bus_errors && self.verbose == 0 {
            "info"
        } else {
            "warn"
        };
        super::level_for(base, self.verbose)
    }
}
