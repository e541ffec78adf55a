//! `mbus-status`: the status of every daemon of a configuration in one table, asked over the
//! monitor protocol (works against real Spread 5.0.1 daemons too).

use std::path::PathBuf;

use clap::Parser;

const AFTER_HELP: &str = "\
Each daemon of the configuration is sent a STATUS request, as spmonitor sends it: from this
machine's host of the configuration (the first host whose address is local, or -n NAME),
with that host's daemon id and the configuration hash; replies come back to that address.
A daemon that does not answer within --timeout is shown as 'no reply'.

Columns: DAEMON, ADDRESS, STATE (OP, SEG, REPRESENTED, GATHER, FORM, EVS), GSTATE (GOP,
GTRANS, GGATHER, GGT), RING (daemons in its ring), LEADER, ARU/HIGHEST (ring aru and highest
seq), RETRANS (retransmissions sent), SESSIONS, GROUPS, CHANGES (memberships installed),
UPTIME, VERSION.

Configuration: -c FILE, else ./spread.conf, /etc/spread.conf, /usr/local/etc/spread.conf
(the first that exists).

Exit status: 0 when every daemon answered, 3 when some did not (the table is printed
anyway), 1 on an error, 2 for a bad command line.

Examples:
  mbus-status -c /etc/spread.conf
  mbus-status --json | jq '.[] | select(.status == null) | .name'
  mbus-status --watch 1";

/// Shows the status of every daemon of a Spread configuration in one table.
#[derive(Debug, Parser)]
#[command(name = "mbus-status", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Configuration file (the daemons' spread.conf).
    #[arg(short = 'c', long = "config", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Speak as this host of the configuration (must be an address of this machine).
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// Print JSON instead of the table (one array; one line per round with --watch).
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds in place, until interrupted.
    #[arg(
        short = 'w',
        long = "watch",
        value_name = "SECS",
        num_args = 0..=1,
        default_missing_value = "2"
    )]
    pub watch: Option<f64>,
    /// With --watch: stop after this many rounds.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
    /// How long to wait for the replies, in milliseconds.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "MS",
        default_value_t = 1000
    )]
    pub timeout: u64,
}

/// Where `mbus-status` looks for the configuration after `-c`.
pub const CONFIG_SEARCH: [&str; 3] = [
    "./spread.conf",
    "/etc/spread.conf",
    "/usr/local/etc/spread.conf",
];
