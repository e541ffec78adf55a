//! `mbus-passwd`: adds or updates a user in the console password store
//! (`Control_Listener { Password_File }`), as `user:roles:argon2id-hash`.

use std::path::PathBuf;

use clap::Parser;

const AFTER_HELP: &str = "\
The password is read twice from the terminal without echo, or once from standard input
with --stdin. The hash is Argon2id with a random salt (a PHC string); no password is
stored in clear. Without -f the line is printed instead of written; with -f the file is
replaced atomically (mode 0600) and checked first.

Example:
  mbus-passwd -f /etc/mbus/console.passwd -r admin alice";

/// Adds or updates a console user in the password store.
#[derive(Debug, Parser)]
#[command(name = "mbus-passwd", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Password store to update (created if missing); prints the line when omitted.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Comma-separated roles (`Authorization { Role "…" }`).
    #[arg(short = 'r', long = "roles", default_value = "")]
    pub roles: String,
    /// Read the password from standard input (one line) instead of the terminal.
    #[arg(long)]
    pub stdin: bool,
    /// Mark the account as Unix-socket only (`*`: no password login).
    #[arg(long, conflicts_with = "stdin")]
    pub no_password: bool,
    /// User name.
    pub user: String,
}
