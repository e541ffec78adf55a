//! `mbus-status`: asks every daemon of a `spread.conf` for its status over the monitor
//! protocol (as `spmonitor` does) and prints one table, or JSON; `--watch` refreshes it.

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use mbus::cli::mbus_status::{Args, CONFIG_SEARCH};
use mbus::status::{render_json, render_table, DaemonStatus, Prober};
use spread::config::Config;

fn resolve(name: &str) -> Vec<IpAddr> {
    (name, 0u16)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

fn load(args: &Args) -> anyhow::Result<(PathBuf, Config)> {
    let path = match &args.config {
        Some(p) => p.clone(),
        None => CONFIG_SEARCH
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .with_context(|| {
                format!(
                    "no configuration file (use -c FILE; looked at {})",
                    CONFIG_SEARCH.join(", ")
                )
            })?,
    };
    let parsed = Config::load_full(&path, &mut resolve).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((path, parsed.config))
}

fn print(args: &Args, rows: &[DaemonStatus], round: u64) {
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        if args.watch.is_some() {
            serde_json::to_string(rows).unwrap_or_default() + "\n"
        } else {
            render_json(rows) + "\n"
        }
    } else {
        render_table(rows)
    };
    if args.watch.is_some() && !args.json && std::io::stdout().is_terminal() {
        // Refresh in place: cursor home, clear the screen.
        let _ = write!(out, "\x1b[H\x1b[2J");
        let _ = writeln!(out, "mbus-status (round {round}; Ctrl-C to stop)\n");
    } else if args.watch.is_some() && !args.json && round > 1 {
        let _ = writeln!(out);
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let (path, config) = load(args)?;
    let me = mbus::daemon::resolve_me(&config, args.name.as_deref())
        .with_context(|| format!("which host of {} is this machine", path.display()))?;
    let prober = Prober::new(&config, me).await?;
    let timeout = Duration::from_millis(args.timeout);
    let mut round = 0u64;
    loop {
        round += 1;
        let started = tokio::time::Instant::now();
        let rows = prober.probe(&config, timeout).await?;
        print(args, &rows, round);
        let all = rows.iter().all(|r| r.status.is_some());
        let Some(every) = args.watch else {
            return Ok(all);
        };
        if args.count.is_some_and(|n| round >= n) {
            return Ok(all);
        }
        let every = Duration::from_secs_f64(every.max(0.1));
        tokio::select! {
            () = tokio::time::sleep_until(started + every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(all),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return mbus::cli::fail("mbus-status", &anyhow::Error::new(e)),
    };
    match rt.block_on(run(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => mbus::cli::fail("mbus-status", &e),
    }
}
