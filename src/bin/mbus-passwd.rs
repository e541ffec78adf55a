//! `mbus-passwd`: adds or updates a user in the console password store
//! (`Control_Listener { Password_File }`), as `user:roles:argon2id-hash`.
//!
//! ```text
//! mbus-passwd [-f FILE] [-r ROLE,…] [--stdin] USER
//! ```
//! The password is read twice from the terminal without echo, or once from standard input
//! with `--stdin`. Without `-f` the line is printed instead of written.

use std::io::BufRead as _;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use mbus::cli::mbus_passwd::Args;
use mbus::console::auth::{hash_password, upsert_line, valid_user, PasswordStore};

fn read_password(stdin: bool) -> anyhow::Result<String> {
    if stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let a = rpassword::prompt_password("Password: ").context("reading the password")?;
    let b = rpassword::prompt_password("Again: ").context("reading the password")?;
    if a != b {
        bail!("the passwords differ");
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mbus-passwd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if !valid_user(&args.user) {
        bail!("invalid user name '{}'", args.user);
    }
    let roles: Vec<String> = args
        .roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let hash = if args.no_password {
        "*".to_string()
    } else {
        let pw = read_password(args.stdin)?;
        if pw.is_empty() {
            bail!("empty password");
        }
        hash_password(&pw)?
    };
    let Some(path) = args.file else {
        println!("{}:{}:{hash}", args.user, roles.join(","));
        return Ok(());
    };
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = upsert_line(&old, &args.user, &roles, &hash);
    PasswordStore::parse(&path.display().to_string(), &new)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &new).with_context(|| format!("writing {}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    eprintln!("{}: {} updated", path.display(), args.user);
    Ok(())
}
