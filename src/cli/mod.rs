//! Command-line definitions of the mbus binaries (clap derive), shared by the binaries
//! themselves and by `mbus-gen-docs`, which renders man pages and shell completions from the
//! very same definitions.
//!
//! Each submodule holds one binary's `Args` (or, for `spread`, its hand parser and a clap
//! [`clap::Command`] that describes it). [`commands`] lists them all.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory as _;

pub mod ec_console;
pub mod eccmgr;
pub mod gen_docs;
pub mod mbus_bench;
pub mod mbus_fuzz_net;
pub mod mbus_node;
pub mod mbus_passwd;
pub mod mbus_status;
pub mod spread;

/// The `--help` paragraph on logging shared by the binaries that log.
pub const LOGGING_HELP: &str = "\
Logging:
  Log lines go to standard error. Each -v raises the level one step
  (warn → info → debug → trace). RUST_LOG, when set, overrides -v entirely
  with a tracing filter, e.g. RUST_LOG=debug or RUST_LOG=mbus::cluster=trace,info.
  Errors that stop the program are one line on standard error, exit status 1;
  a bad command line exits with status 2.";

/// The log level selected by `count` times `-v`, starting from `base` (`"warn"` or `"info"`).
pub fn level_for(base: &str, count: u8) -> &'static str {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let start = LEVELS.iter().position(|l| *l == base).unwrap_or(1);
    LEVELS[(start + usize::from(count)).min(LEVELS.len() - 1)]
}

/// The log filter: `RUST_LOG` if set (`level` or `target=level`, comma separated), else
/// `default_level`. A `RUST_LOG` that is not such a list is reported on standard error and
/// the default used. (`Targets` rather than `EnvFilter`: no regular-expression engine in the
/// daemon's code pages.)
pub fn log_filter(default_level: &str) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let default = || {
        Targets::new().with_default(
            default_level
                .parse::<LevelFilter>()
                .unwrap_or(LevelFilter::WARN),
        )
    };
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => v.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("RUST_LOG={v:?} ignored ({e}); log level {default_level}");
            default()
        }),
        _ => default(),
    }
}

/// Sends `tracing` output to standard error: `RUST_LOG` if set, else `default_level`.
pub fn init_logging(default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(io::stderr)
        .finish()
        .with(log_filter(default_level))
        .init();
}

/// Prints `prog: error: cause: cause…` on one line of standard error (no `Debug` output, no
/// backtrace whatever `RUST_BACKTRACE` says) and returns exit status 1.
pub fn fail(prog: &str, e: &anyhow::Error) -> ExitCode {
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("{prog}: {line}");
    ExitCode::FAILURE
}

/// Every binary's clap command, named as the binary.
pub fn commands() -> Vec<clap::Command> {
    vec![
        spread::command(),
        eccmgr::Args::command(),
        mbus_node::Args::command(),
        mbus_bench::Args::command(),
        mbus_fuzz_net::Args::command(),
        ec_console::Args::command(),
        mbus_passwd::Args::command(),
        mbus_status::Args::command(),
        gen_docs::Args::command(),
    ]
}

/// Renders `cmd`'s man page (section 1, roff).
pub fn man_page(cmd: &clap::Command) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    Ok(out)
}

/// Writes `OUT/man/<bin>.1` and `OUT/completions/{bash,zsh,fish}/…` for every binary; returns
/// the files written.
pub fn write_docs(out: &Path) -> io::Result<Vec<PathBuf>> {
    use clap_complete::Shell;
    let mut written = Vec::new();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for cmd in commands() {
        let name = cmd.get_name().to_owned();
        let path = man.join(format!("{name}.1"));
        std::fs::write(&path, man_page(&cmd)?)?;
        written.push(path);
        for (shell, dir) in [
            (Shell::Bash, "bash"),
            (Shell::Zsh, "zsh"),
            (Shell::Fish, "fish"),
        ] {
            let dir = out.join("completions").join(dir);
            std::fs::create_dir_all(&dir)?;
            let mut c = cmd.clone();
            written.push(clap_complete::generate_to(shell, &mut c, &name, &dir)?);
        }
    }
    Ok(written)
}
