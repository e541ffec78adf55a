//! `mbus-fuzz-net`: the network fuzzer's command line.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

const AFTER_HELP: &str = "\
Aim it at a daemon:
  mbus-fuzz-net client -s 4803@127.0.0.1            a daemon already running (no minimization)
  mbus-fuzz-net client --spawn target/release/spread --port 4975
                                                     start the target, restart it to minimize
  mbus-fuzz-net peer --spawn target/release/spread   (root) the target in a namespace lab
                                                     10.97.0.1, the fuzzer a daemon of its ring
                                                     at 10.97.0.2; both namespaces removed at exit
  mbus-fuzz-net replay out/client-1-123/crash-death-min.replay --spawn target/release/spread

A progress line goes to standard error every --progress seconds; the final table to standard
output. A fault (target death, fatal log line, probe hang, probe order or membership broken)
ends the run: the inputs of the last seconds are saved, minimized against a fresh target when
it was spawned, and the replay file is named in the table. Exit status 1 if a fault was found
(replay: if the replay causes one), 2 on a bad command line.
";

/// Network fuzzer for Spread daemons (ours or a real 5.0.1): client mode and peer mode.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mbus-fuzz-net",
    version,
    about = "Network fuzzer that drives a Spread daemon from outside, as clients or as a peer daemon",
    after_help = AFTER_HELP,
    after_long_help = format!("{AFTER_HELP}\n{}", super::LOGGING_HELP),
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Many concurrent mutated client sessions against the daemon's client port.
    Client(Target),
    /// Be a daemon of the target's ring and send mutated membership, token and data packets.
    Peer(Target),
    /// Play a saved replay file back once.
    Replay {
        /// The replay file.
        file: PathBuf,
        /// The target.
        #[command(flatten)]
        target: Target,
    },
}

/// Where the target is, and the run's settings.
#[derive(Debug, Clone, ClapArgs)]
pub struct Target {
    /// The target's client address, PORT@HOST or a Unix socket path (default with --spawn:
    /// PORT@127.0.0.1, in peer mode PORT@10.97.0.1)
    #[arg(short = 's', long = "daemon", value_name = "DAEMON")]
    pub daemon: Option<String>,
    /// Start this daemon binary as the target (and restart it to minimize a fault)
    #[arg(long, value_name = "BIN")]
    pub spawn: Option<PathBuf>,
    /// The spawned target's port
    #[arg(long, default_value_t = 4975)]
    pub port: u16,
    /// Seed of the run (default: from the clock; printed)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many seconds
    #[arg(
        short = 't',
        long = "duration",
        default_value_t = 600,
        value_name = "SECS"
    )]
    pub duration: u64,
    /// Concurrent executions (client mode)
    #[arg(short = 'j', long, default_value_t = 16)]
    pub workers: usize,
    /// Directory for run files and replay files
    #[arg(short, long, default_value = "fuzz-net-out")]
    pub out: PathBuf,
    /// Do not minimize a failing input
    #[arg(long)]
    pub no_minimize: bool,
    /// Seconds without a probe delivery that count as a hang (default 15, peer mode 60)
    #[arg(long, value_name = "SECS")]
    pub hang_after: Option<u64>,
    /// Seconds between progress lines
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub progress: u64,
    /// Peer mode: only the valid sequences of the fuzzer's daemon, no mutations
    #[arg(long)]
    pub valid_only: bool,
    /// Peer mode: only the network faults the protocol tolerates (drop, storm, delay)
    #[arg(long)]
    pub benign_only: bool,
    /// Extra line for the spawned target's configuration (repeatable)
    #[arg(long = "conf-line", value_name = "LINE")]
    pub conf_lines: Vec<String>,
    /// Client mode: a whole ring — every daemon of this spread.conf (at its client address)
    /// gets fuzzed sessions, and the probe's two sessions sit on the first two daemons, so
    /// a cross-daemon order or membership break shows (instead of -s / --spawn)
    #[arg(
        short = 'c',
        long = "ring",
        value_name = "SPREAD_CONF",
        conflicts_with_all = ["daemon", "spawn"]
    )]
    pub ring: Option<PathBuf>,
}
