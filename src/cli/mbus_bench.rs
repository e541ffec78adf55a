//! `mbus-bench`: the flood benchmark's command line.

use clap::{Parser, ValueEnum};

use crate::client::ServiceType;

const AFTER_HELP: &str = "\
Flood (the default): for each daemon in turn, one sender session joins the group and
multicasts --messages messages of --size bytes, keeping at most --window of its own messages
in flight (sent but not yet delivered back to it, as spflooder does with 200). --receivers
extra sessions join the group and count every message, and one session on each --reader
daemon (the other daemons of a ring, say). The clock runs from the first send to
the last delivery at every session; msgs/s and MB/s (10^6 bytes of body per second).

Latency (--latency): for each daemon in turn, a pinger session on it multicasts --messages
pings of --size bytes to GROUP-ping, one at a time; an echo session on the --echo daemon
(default: the same daemon) multicasts each back to GROUP-pong. Round trips are timed from the
send to the pong's arrival: p50, p99, p99.9, max and mean in microseconds.

A progress bar is drawn on standard error when it is a terminal. --json prints the results
as one JSON document instead of the table. Both modes speak only the Spread client protocol:
they measure a real Spread 5.0.1 daemon exactly as they measure mbus. Exit status 1 if any
daemon failed or timed out.

Examples:
  mbus-bench -s 4803@127.0.0.1 -m 20000 -b 1000
  mbus-bench -s 4803@127.0.0.1 -s 4903@127.0.0.1 --service safe -r 2
  mbus-bench --latency -s 4803@10.0.0.1 --echo 4803@10.0.0.2 -m 2000 -b 100 --service agreed
  mbus-bench --latency -s 4803@127.0.0.1 --json
";

/// A Spread service, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// UNRELIABLE_MESS
    Unreliable,
    /// RELIABLE_MESS
    Reliable,
    /// FIFO_MESS
    Fifo,
    /// CAUSAL_MESS
    Causal,
    /// AGREED_MESS
    Agreed,
    /// SAFE_MESS
    Safe,
}

impl Service {
    /// The service bits.
    pub fn service_type(self) -> ServiceType {
        match self {
            Self::Unreliable => ServiceType::UNRELIABLE,
            Self::Reliable => ServiceType::RELIABLE,
            Self::Fifo => ServiceType::FIFO,
            Self::Causal => ServiceType::CAUSAL,
            Self::Agreed => ServiceType::AGREED,
            Self::Safe => ServiceType::SAFE,
        }
    }

    /// The name as Spread spells it (`RELIABLE`).
    pub fn upper_name(self) -> &'static str {
        match self {
            Self::Unreliable => "UNRELIABLE",
            Self::Reliable => "RELIABLE",
            Self::Fifo => "FIFO",
            Self::Causal => "CAUSAL",
            Self::Agreed => "AGREED",
            Self::Safe => "SAFE",
        }
    }
}

/// Floods a group through one or more Spread-compatible daemons and reports the throughput.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mbus-bench",
    version,
    about = "Flood a group through Spread-compatible daemons and report msgs/s and MB/s",
    after_help = AFTER_HELP,
    after_long_help = format!("{AFTER_HELP}\n{}", super::LOGGING_HELP),
)]
pub struct Args {
    /// Daemon to measure, PORT@HOST, PORT (Unix socket /tmp/PORT) or a socket path; repeat
    /// (or separate with commas) to measure several in turn
    #[arg(
        short = 's',
        long = "daemon",
        value_name = "DAEMON",
        env = "MBUS_BENCH_DAEMON",
        value_delimiter = ',',
        default_value = "4803@127.0.0.1"
    )]
    pub daemons: Vec<String>,

    /// Messages the sender multicasts (with --latency: round trips to time)
    #[arg(
        short = 'm',
        long = "messages",
        value_name = "N",
        default_value_t = 100_000
    )]
    pub messages: u64,

    /// Body size of each message in bytes (at most 140000)
    #[arg(
        short = 'b',
        long = "size",
        value_name = "BYTES",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(0..=140_000)
    )]
    pub size: u32,

    /// Most of the sender's own messages in flight
    #[arg(
        short = 'w',
        long = "window",
        value_name = "N",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub window: u32,

    /// Service of every message
    #[arg(long = "service", value_enum, default_value_t = Service::Reliable, ignore_case = true)]
    pub service: Service,

    /// Extra sessions on the measured daemon that join the group and count every message
    #[arg(short = 'r', long = "receivers", value_name = "N", default_value_t = 0)]
    pub receivers: usize,

    /// A counting session on this daemon too (e.g. the other daemons of a ring); repeatable
    #[arg(long = "reader", value_name = "DAEMON", value_delimiter = ',')]
    pub readers: Vec<String>,

    /// Group to flood
    #[arg(
        short = 'g',
        long = "group",
        value_name = "NAME",
        default_value = "mbus-bench"
    )]
    pub group: String,

    /// Measure round-trip latency (ping/echo) instead of flood throughput
    #[arg(long = "latency")]
    pub latency: bool,

    /// With --latency: the daemon of the echo session (default: the daemon measured)
    #[arg(long = "echo", value_name = "DAEMON", requires = "latency")]
    pub echo: Option<String>,

    /// With --latency: pause this many microseconds after each round trip (paced pings: the
    /// ring falls idle in between, as under a request/response load at a low rate)
    #[arg(
        long = "interval",
        value_name = "MICROS",
        default_value_t = 0,
        requires = "latency"
    )]
    pub interval_us: u64,

    /// Print the results as JSON instead of a table
    #[arg(long = "json")]
    pub json: bool,

    /// Give up on one daemon after this many seconds
    #[arg(long = "timeout", value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,

    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}
