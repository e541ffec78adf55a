//! `spread`: drop-in replacement for the Spread 5.0.1 daemon.
//!
//! Command line as 5.0.1: `spread [-l y/n] [-n <proc name>] [-c <file name>]`, plus mbus's
//! `--link-key FILE` (or `MBUS_LINK_KEY`): the secure ring (docs/security.md). Configuration
//! search as 5.0.1: the `-c` file (default `spread.conf`), then `./spread.conf`, then
//! `/usr/local/etc/spread.conf`; if none can be read, an embedded default (one daemon
//! `localhost` on 127.0.0.1 port 4803). Logs go to standard output (or `EventLogFile`);
//! `RUST_LOG` overrides the level taken from `EventPriority`. Errors are one line on standard
//! error and exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use mbus::cli::spread::{
    parse_args, parse_metrics_addr, version_line, Args, ArgsError, DEFAULT_CONFIG, HELP_EXTRA,
    LINK_KEY_ENV, SYSTEM_CONFIG, USAGE,
};
use mbus::daemon::log_file::LogFile;
use mbus::daemon::metrics::METRICS_ENV;
use mbus::daemon::privileges::{self, Outcome};
use mbus::daemon::{self, log_time, secure, DaemonOptions, SecureRing};
use spread::config::{Config, Parsed, Priority, TimeStamp};
use tracing::{info, warn};

/// How the configuration was found, for the log.
enum Source {
    File(PathBuf, Vec<String>),
    Embedded(Vec<String>),
}

/// 5.0.1's search: the `-c` file, `./spread.conf`, the system file; the first that can be
/// opened is used (and must parse). None: the embedded default.
fn load_config(args: &Args) -> Result<(Parsed, Source), String> {
    let first = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let mut skipped = Vec::new();
    for path in [
        first,
        PathBuf::from("./spread.conf"),
        PathBuf::from(SYSTEM_CONFIG),
    ] {
        match std::fs::File::open(&path) {
            Ok(_) => {
                let parsed = Config::load_full(&path, &mut daemon::resolve_host)
                    .map_err(|e| e.to_string())?;
                return Ok((parsed, Source::File(path, skipped)));
            }
            Err(e) => skipped.push(format!("{}: {e}", path.display())),
        }
    }
    let parsed = Parsed {
        config: Config::embedded_default(),
        warnings: Vec::new(),
    };
    Ok((parsed, Source::Embedded(skipped)))
}

/// `%h` / `%H` in `EventLogFile` is the host name.
fn expand_log_path(p: &str) -> PathBuf {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    PathBuf::from(p.replace("%h", &host).replace("%H", &host))
}

/// Installs the SIGUSR1 handler now (its default action would end the process) and returns
/// the task body that reopens `log` on each SIGUSR1 (logrotate's `postrotate`); without a log
/// file SIGUSR1 is logged and ignored.
fn reopen_on_sigusr1(
    log: Option<Arc<LogFile>>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(async move {
        while usr1.recv().await.is_some() {
            match &log {
                Some(l) => match l.reopen() {
                    Ok(()) => info!("SIGUSR1: reopened the log file {}", l.path().display()),
                    Err(e) => warn!(
                        "SIGUSR1: cannot reopen {}: {e}; still writing to the old file",
                        l.path().display()
                    ),
                },
                None => info!("SIGUSR1: no EventLogFile to reopen (logging to standard output)"),
            }
        }
    })
}

/// Tells systemd (`Type=notify`, `NOTIFY_SOCKET`) that the daemon is ready: its sockets are
/// open and listening. Sent before the chroot into `RuntimeDir` (the notify socket's path is
/// outside it). Nothing happens when not started by systemd.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify systemd that the daemon is ready: {e}");
    }
}

fn init_tracing(config: &Config) -> anyhow::Result<Option<Arc<LogFile>>> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = match config.event_priority() {
        Priority::Debug => "debug",
        Priority::Info => "info",
        Priority::Warning => "warn",
        _ => "error",
    };
    let filter = mbus::cli::log_filter(level);
    let mut log_file = None;
    let (writer, ansi) = match &config.options.event_log_file {
        Some(p) => {
            let path = expand_log_path(p);
            let file = LogFile::open(&path)
                .with_context(|| format!("cannot open EventLogFile {}", path.display()))?;
            log_file = Some(file.clone());
            (BoxMakeWriter::new(file.writer()), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
    };
    // Everything passes the builder (its own default is INFO); `filter` decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    // 5.0.1: no time stamps unless EventTimeStamp or EventPreciseTimeStamp is given.
    let o = &config.options;
    if o.event_timestamp.is_none() && !o.event_precise_timestamp {
        builder.without_time().finish().with(filter).init();
    } else {
        let format = match &o.event_timestamp {
            Some(TimeStamp::Format(f)) => f.clone(),
            _ => log_time::DEFAULT_FORMAT.to_owned(),
        };
        builder
            .with_timer(log_time::SpreadTime {
                format,
                precise: o.event_precise_timestamp,
            })
            .finish()
            .with(filter)
            .init();
    }
    Ok(log_file)
}

fn log_start(parsed: &Parsed, source: &Source) {
    info!(
        "mbus spread {} (Spread 5.0.1 compatible) starting",
        env!("CARGO_PKG_VERSION")
    );
    match source {
        Source::File(p, skipped) => {
            for s in skipped {
                warn!("cannot open configuration file {s}");
            }
            info!("using configuration file {}", p.display());
        }
        Source::Embedded(skipped) => {
            for s in skipped {
                info!("no configuration file {s}");
            }
            info!(
                "no configuration file found; using the embedded default: one daemon 'localhost' on 127.0.0.1 port 4803"
            );
        }
    }
    for w in &parsed.warnings {
        warn!("configuration: {w}");
    }
}

/// Installs the SIGTERM/SIGINT handlers now (so a signal that arrives as soon as the sockets
/// are open is not fatal) and returns the future that completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            warn!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    }
}

/// The secure ring (mbus extension): the key file from `--link-key` or `MBUS_LINK_KEY`,
/// read and checked against the configuration before anything starts.
fn secure_ring(args: &Args, config: &Config) -> anyhow::Result<Option<SecureRing>> {
    let env = std::env::var_os(LINK_KEY_ENV);
    let Some(path) = secure::choose_key_file(args.link_key.as_deref(), env.as_deref())? else {
        return Ok(None);
    };
    let ring = SecureRing::load(&path)?;
    secure::check_config(config)?;
    Ok(Some(ring))
}

/// A key file everyone can read is worth a warning (the key is the ring's only secret; the
/// `DaemonGroup` may need to read it after the privilege drop).
fn warn_key_file_mode(ring: &SecureRing) {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = &ring.path else { return };
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o007 != 0 {
            warn!(
                "link key file {} is accessible to every user (chmod o-rwx it)",
                path.display()
            );
        }
    }
}

fn run(args: &Args, parsed: Parsed, source: &Source) -> anyhow::Result<()> {
    let link = secure_ring(args, &parsed.config)?;
    let log_file = init_tracing(&parsed.config)?;
    log_start(&parsed, source);
    if let Some(ring) = &link {
        warn_key_file_mode(ring);
    }
    let config = Arc::new(parsed.config);
    let me = daemon::resolve_me(&config, args.name.as_deref())?;
    if let Some(h) = config.host(me) {
        let port = config.segments.get(me.segment).map_or(0, |s| s.port);
        info!(
            "I am '{}' (id {}, address {}, port {port}); {} host(s) in {} segment(s)",
            h.name,
            h.vid,
            h.addr.ip,
            config.host_count(),
            config.segments.len()
        );
    }
    // mbus extension (not in 5.0.1): `MBUS_WORKER_THREADS` sets the runtime's worker threads
    // (default 1: every task on the main thread, as 5.0.1's one event loop — in the side-by-side
    // ring benchmark it used less CPU per message and had lower round-trip times than 2
    // threads, whose cross-thread wake-ups cost more than they bring on a shared box).
    let workers = std::env::var("MBUS_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .context("cannot start the tokio runtime")?;
    // mbus extension (not in 5.0.1): `MBUS_UNIX_SOCKET_DIR` moves the client Unix socket
    // `/tmp/PORT` elsewhere, so several daemons on one machine can share a port number.
    let mut options = DaemonOptions {
        link,
        ..DaemonOptions::default()
    };
    if let Some(dir) = std::env::var_os("MBUS_UNIX_SOCKET_DIR") {
        info!(dir = %std::path::Path::new(&dir).display(), "client Unix socket directory from MBUS_UNIX_SOCKET_DIR");
        options.unix_socket_dir = dir.into();
    }
    // mbus extension: the metrics endpoint (`--metrics`, else `MBUS_METRICS`).
    options.metrics = match (args.metrics, std::env::var(METRICS_ENV)) {
        (Some(a), _) => Some(a),
        (None, Ok(v)) if !v.is_empty() => {
            Some(parse_metrics_addr(&v).map_err(|e| anyhow::anyhow!("{METRICS_ENV}: {e}"))?)
        }
        _ => None,
    };
    // -l y: 5.0.1's membership log, a file named after the daemon (in RuntimeDir once
    // chrooted).
    options.membership_log = args.log;
    // A monitor RELOAD (with DangerousMonitor) and SIGHUP re-read this file.
    if let Source::File(path, _) = source {
        options.config_file = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    rt.block_on(async {
        let shutdown = shutdown_signal();
        let reopen = reopen_on_sigusr1(log_file).context("cannot install the SIGUSR1 handler")?;
        tokio::spawn(reopen);
        let bound = daemon::bind(&config, me, &options)?;
        notify_ready();
        // As 5.0.1: once the sockets are open, chroot into RuntimeDir and become DaemonUser.
        match privileges::drop_privileges(&config)? {
            Outcome::NotRoot => warn!("not running as root, won't chroot"),
            Outcome::Dropped { user, group, dir } => info!(
                "setugid and chroot successful: user {user}, group {group}, root {}",
                dir.display()
            ),
            Outcome::KeptRoot { reason } => warn!(
                "still running as root: {reason} (set DaemonUser, DaemonGroup and RuntimeDir to drop privileges)"
            ),
        }
        daemon::serve_with(config, me, bound, &options, shutdown).await?;
        anyhow::Ok(())
    })?;
    info!("exit");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ArgsError::Help) => {
            print!("{USAGE}{HELP_EXTRA}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Version) => {
            println!("{}", version_line());
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Usage) => {
            eprint!("{USAGE}");
            return ExitCode::FAILURE;
        }
        Err(ArgsError::Message(m)) => {
            eprintln!("{m}");
            return ExitCode::FAILURE;
        }
    };
    let (parsed, source) = match load_config(&args) {
        Ok(x) => x,
        Err(line) => {
            // Already one line: `path:line:col: what is wrong`.
            eprintln!("{line}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args, parsed, &source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => mbus::cli::fail("spread", &e),
    }
}
