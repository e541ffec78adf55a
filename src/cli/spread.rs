//! `spread`: the daemon's command line, exactly as Spread 5.0.1 parses it.
//!
//! The runtime parser ([`parse_args`]) is hand-written so that the usage text and the
//! reaction to unknown flags stay 5.0.1's. [`command`] describes the same flags to clap, only
//! to generate the man page and completions; a test checks that the two agree.

use std::path::PathBuf;

use spread::config::MAX_HOST_NAME_LEN;

/// 5.0.1's usage text (printed on standard error for a bad command line, exit status 1).
pub const USAGE: &str = "Usage: spread\n\
\t[-l y/n]          : print log\n\
\t[-n <proc name>]  : force computer name\n\
\t[-c <file name>]  : specify configuration file\n";

/// What `--help` prints after [`USAGE`] (mbus additions).
pub const HELP_EXTRA: &str = "\n\
mbus: a Spread 5.0.1-compatible daemon (`spread --version` prints the version).\n\
\n\
Configuration: the -c file (default spread.conf), then ./spread.conf, then\n\
/usr/local/etc/spread.conf; the first that can be opened is used and must parse. If none\n\
can be opened: one daemon 'localhost' on 127.0.0.1 port 4803.\n\
\n\
Logging: to standard output, or to EventLogFile; the level comes from EventPriority.\n\
RUST_LOG (e.g. RUST_LOG=debug) overrides that level. Errors that stop the daemon are one\n\
line on standard error, exit status 1.\n\
\n\
MBUS_UNIX_SOCKET_DIR moves the client Unix socket /tmp/PORT into another directory.\n\
\n\
--metrics ADDR:PORT (or MBUS_METRICS=ADDR:PORT) serves Prometheus metrics at\n\
http://ADDR:PORT/metrics (off by default; e.g. --metrics 127.0.0.1:9803).\n\
SIGUSR1 reopens EventLogFile (for logrotate).\n\
MBUS_WORKER_THREADS sets the runtime's worker threads (default 1: one event loop).\n\
MBUS_REPLY_WAIT_US: longest a daemon keeps the token for a local client's answer after\n\
delivering to it (default 500; 0: never, as 5.0.1; docs/performance.md).\n\
MBUS_RING_GSO=0 sends equal ring datagrams one by one instead of in segmented runs (UDP GSO)\n\
and reads ring sockets without UDP GRO (the datagrams on the wire are the same either way).\n\
MBUS_RING_OWN_FILTER=0 lets this daemon's own broadcasts reach its ring sockets (by default a\n\
socket filter drops them in the kernel; the daemon would drop them anyway).\n\
\n\
Live reconfiguration: a monitor RELOAD (spmonitor menu r; obeyed with DangerousMonitor = yes)\n\
or SIGHUP (an mbus addition) re-reads the configuration file and applies it as 5.0.1 does:\n\
daemons added or removed re-form the ring (a daemon no longer in the file exits), a daemon\n\
whose address or id changed makes the ring shrink to singletons and merge again. A file that\n\
does not parse is refused (path:line:col: in the log); the running configuration stays.\n\
\n\
Secure ring (mbus only, off by default; docs/security.md): --link-key FILE (or\n\
MBUS_LINK_KEY=FILE) seals every daemon-to-daemon datagram with the shared key in FILE\n\
(64 hexadecimal digits; a second line during a key rollover). Every daemon of the ring\n\
needs it; a daemon without it, or a real 5.0.1 daemon, cannot join a secure ring.\n";

/// Where 5.0.1 (built with the default prefix) looks last.
pub const SYSTEM_CONFIG: &str = "/usr/local/etc/spread.conf";
/// 5.0.1's default `-c` value.
pub const DEFAULT_CONFIG: &str = "spread.conf";

/// The flags [`parse_args`] accepts (each takes one value), as 5.0.1 has them.
pub const FLAGS: [&str; 3] = ["-l", "-n", "-c"];
/// mbus's long option for the secure ring's key file (5.0.1 has no long options: its
/// parser refuses it with the usage text, so it changes nothing for 5.0.1's flags).
pub const LINK_KEY_FLAG: &str = "--link-key";
/// The environment variable naming the secure ring's key file.
pub const LINK_KEY_ENV: &str = "MBUS_LINK_KEY";

/// mbus's long option for the metrics endpoint (not in 5.0.1; `--metrics ADDR:PORT` or
/// `--metrics=ADDR:PORT`).
pub const METRICS_FLAG: &str = "--metrics";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// `-n`: this daemon's name in the configuration.
    pub name: Option<String>,
    /// `-c`: the configuration file.
    pub config: Option<PathBuf>,
    /// `-l y`: print the membership log.
    pub log: bool,
    /// `--metrics ADDR:PORT`: serve the metrics endpoint there (mbus addition).
    pub metrics: Option<std::net::SocketAddr>,
    /// `--link-key FILE` (mbus): the secure ring's key file.
    pub link_key: Option<PathBuf>,
}

/// Why [`parse_args`] did not return arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// `-h` / `--help`: print [`USAGE`] and [`HELP_EXTRA`] on standard output, exit 0.
    Help,
    /// `--version`: print the version, exit 0.
    Version,
    /// A bad command line: print [`USAGE`] on standard error, exit 1 (as 5.0.1).
    Usage,
    /// A bad value with its own 5.0.1 message, exit 1.
    Message(String),
}

/// Parses the arguments after the program name. 5.0.1 matches options by their first two
/// characters (`-nX` is `-n`).
pub fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut out = Args::default();
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            return Err(ArgsError::Help);
        }
        if a == "--version" {
            return Err(ArgsError::Version);
        }
        if a == LINK_KEY_FLAG {
            out.link_key = Some(PathBuf::from(args.next().ok_or(ArgsError::Usage)?));
            continue;
        }
        if let Some(v) = a.strip_prefix("--link-key=") {
            out.link_key = Some(PathBuf::from(v));
            continue;
        }
        if let Some(rest) = a.strip_prefix(METRICS_FLAG) {
            let v = match rest.strip_prefix('=') {
                Some(v) => v.to_owned(),
                None if rest.is_empty() => args.next().ok_or(ArgsError::Usage)?,
                None => return Err(ArgsError::Usage),
            };
            let addr = parse_metrics_addr(&v)
                .map_err(|e| ArgsError::Message(format!("spread: --metrics: {e}")))?;
            out.metrics = Some(addr);
            continue;
        }
        let flag = a.get(..2).unwrap_or_default();
        if !FLAGS.contains(&flag) {
            return Err(ArgsError::Usage);
        }
        let v = args.next().ok_or(ArgsError::Usage)?;
        match flag {
            "-n" => {
                if v.len() > MAX_HOST_NAME_LEN {
                    return Err(ArgsError::Message(format!("Usage: proc name {v} too long")));
                }
                out.name = Some(v);
            }
            "-c" => out.config = Some(PathBuf::from(v)),
            _ => match v.as_str() {
                "y" => out.log = true,
                "n" => out.log = false,
                _ => return Err(ArgsError::Usage),
            },
        }
    }
    Ok(out)
}

/// Parses a metrics endpoint address `ADDR:PORT` (IPv6 as `[ADDR]:PORT`); the error is the
/// one line to print.
pub fn parse_metrics_addr(v: &str) -> Result<std::net::SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("'{v}' is not ADDR:PORT (e.g. 127.0.0.1:9803)"))
}

/// The version line `spread --version` prints.
pub fn version_line() -> String {
    format!(
        "spread (mbus) {} — Spread 5.0.1 compatible",
        env!("CARGO_PKG_VERSION")
    )
}

/// The same command line as a clap command, for the man page and completions only.
pub fn command() -> clap::Command {
    use clap::{Arg, ArgAction, Command};
    Command::new("spread")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Spread 5.0.1-compatible group messaging daemon")
        .long_about(
            "Spread 5.0.1-compatible group messaging daemon: a drop-in replacement for \
             Spread's `spread`, same configuration file, same client and daemon protocols.",
        )
        .after_help(HELP_EXTRA.trim_start().to_owned())
        .disable_version_flag(true)
        .disable_help_flag(true)
        .arg(
            Arg::new("log")
                .short('l')
                .value_name("y/n")
                .value_parser(["y", "n"])
                .help(
                    "print log: y writes 5.0.1's membership log (B/M/C/D lines) to a file \
                     named after this daemon, in the working directory (RuntimeDir once \
                     chrooted)",
                ),
        )
        .arg(
            Arg::new("name")
                .short('n')
                .value_name("proc name")
                .help("force computer name: this daemon's host entry in the configuration"),
        )
        .arg(
            Arg::new("config")
                .short('c')
                .value_name("file name")
                .value_hint(clap::ValueHint::FilePath)
                .help("specify configuration file [default: spread.conf]"),
        )
        .arg(
            Arg::new("metrics")
                .long("metrics")
                .value_name("ADDR:PORT")
                .env("MBUS_METRICS")
                .help("serve Prometheus metrics at http://ADDR:PORT/metrics (mbus addition)"),
        )
        .arg(
            Arg::new("link_key")
                .long("link-key")
                .value_name("FILE")
                .value_hint(clap::ValueHint::FilePath)
                .help(
                    "mbus: secure ring — seal daemon-to-daemon datagrams with the shared key in \
                     FILE (also MBUS_LINK_KEY; see docs/security.md)",
                ),
        )
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("print the usage and the search order of configuration files"),
        )
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::Version)
                .help("print the version"),
        )
}
