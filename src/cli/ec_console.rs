//! `ec_console`: the console client's command line (`ec_console [remoteaddr [command …]]`).

use clap::{ArgAction, Parser};

/// The endpoint used when none is given.
pub const DEFAULT_ENDPOINT: &str = "/tmp/2025";

const AFTER_HELP: &str = "\
With command words, or with standard input not a terminal, runs in batch mode: prints each
reply and exits (status 1 if the connection fails, 2 if a command was refused). Otherwise
interactive: banner from `version`, prompt `HH:MM:SS <endpoint>> `, line editing, tab
completion and history (~/.ec_console_history), `\\pager` toggles $PAGER (default less),
`quit` / `exit` / end of file to leave.

Examples:
  ec_console                               # interactive, /tmp/2025
  ec_console /tmp/2025 show cluster membership
  ec_console 127.0.0.1:2025 broadcast config get -v
  echo version | ec_console [::1]:2025
";

/// The console client of eccmgr and the node agents.
#[derive(Debug, Parser)]
#[command(
    name = "ec_console",
    version,
    about = "Console client of eccmgr and mbus-node (Momentum ec_console)",
    after_help = AFTER_HELP,
    trailing_var_arg = true
)]
pub struct Args {
    /// Where the console listens (see `--help`).
    #[arg(
        value_name = "REMOTEADDR",
        default_value = DEFAULT_ENDPOINT,
        help = "Where the console listens: a socket path, a port number N (/tmp/N), HOST:PORT or [IPV6]:PORT"
    )]
    pub remoteaddr: String,

    /// A command to run in batch mode, passed through word for word (e.g. `show cluster
    /// membership`)
    #[arg(value_name = "COMMAND", allow_hyphen_values = true, num_args = 0..)]
    pub command: Vec<String>,

    /// Print the manual (endpoints, authentication, batch and interactive use) and exit
    #[arg(long = "man", action = ArgAction::SetTrue)]
    pub man: bool,
}
