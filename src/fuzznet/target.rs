//! The target daemon: how to reach it, and — when the fuzzer starts it — its process, log and
//! memory.
//!
//! A target the fuzzer starts runs as `BIN -n NAME -c CONF` (under `stdbuf -oL` when present,
//! so a 5.0.1 daemon's last words before an abort reach the log), with its own `RuntimeDir`
//! and configuration in the run's directory; inside a [`super::netns::Lab`] it runs in the
//! target namespace with a private `/tmp`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{tcp, unix, TcpStream, UnixStream};

use crate::client::Address;

/// A connection to the target's client port, split for one reader task and the writer.
#[derive(Debug)]
pub enum Writer {
    /// TCP.
    Tcp(tcp::OwnedWriteHalf),
    /// Unix socket.
    Unix(unix::OwnedWriteHalf),
}

/// The read half of a [`Writer`]'s connection.
#[derive(Debug)]
pub enum Reader {
    /// TCP.
    Tcp(tcp::OwnedReadHalf),
    /// Unix socket.
    Unix(unix::OwnedReadHalf),
}

impl Reader {
    /// Reads some bytes (0 = closed).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt as _;
        match self {
            Self::Tcp(r) => r.read(buf).await,
            Self::Unix(r) => r.read(buf).await,
        }
    }
}

impl Writer {
    /// Writes all of `bytes`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(w) => w.write_all(bytes).await,
            Self::Unix(w) => w.write_all(bytes).await,
        }
    }

    /// Closes abruptly: a TCP reset (`SO_LINGER` 0), a plain close for a Unix socket.
    pub fn abort(self) {
        if let Self::Tcp(w) = &self {
            let s: &TcpStream = w.as_ref();
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        drop(self);
    }

    /// Closes in order (FIN after what was written).
    pub async fn close(mut self) {
        let _ = match &mut self {
            Self::Tcp(w) => w.shutdown().await,
            Self::Unix(w) => w.shutdown().await,
        };
    }
}

/// Opens a connection to `addr` (`PORT@HOST` or a Unix socket path).
pub async fn connect(addr: &Address) -> io::Result<(Reader, Writer)> {
    match addr {
        Address::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            Ok((Reader::Tcp(r), Writer::Tcp(w)))
        }
        Address::Unix(path) => {
            let s = UnixStream::connect(path).await?;
            let (r, w) = s.into_split();
            Ok((Reader::Unix(r), Writer::Unix(w)))
        }
        #[allow(unreachable_patterns)]
        _ => Err(io::Error::other("unsupported address")),
    }
}

/// How to start the target daemon.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The daemon binary (`spread` of this project, or a real 5.0.1 `sbin/spread`).
    pub bin: PathBuf,
    /// Its host name in the configuration (`-n`).
    pub name: String,
    /// The configuration text; `{port}` is replaced by the port of the start.
    pub conf: String,
    /// The first port; each restart moves two ports up (eight in turn), as a killed
    /// daemon's client port stays in TIME_WAIT for a minute (5.0.1 binds it without
    /// `SO_REUSEADDR`). `0`: always the same configuration, and `reset` runs before a
    /// restart instead.
    pub port: u16,
    /// Run before a restart (peer mode: a fresh target namespace drops its TIME_WAIT
    /// sockets).
    pub reset: Option<fn(&Launch) -> Result<()>>,
    /// Directory for the configuration, its log and `RuntimeDir`; mounted on the target's
    /// `/tmp` when `netns` is set.
    pub dir: PathBuf,
    /// Run inside this network namespace (with `dir` as a private `/tmp`).
    pub netns: Option<String>,
}

impl Launch {
    /// `RuntimeDir` as the target sees it.
    pub fn runtime_dir(&self) -> PathBuf {
        if self.netns.is_some() {
            PathBuf::from("/tmp/rt")
        } else {
            self.dir.join("rt")
        }
    }

    /// The configuration file as the target sees it.
    fn conf_arg(&self) -> PathBuf {
        if self.netns.is_some() {
            PathBuf::from("/tmp/spread.conf")
        } else {
            self.dir.join("spread.conf")
        }
    }

    /// The target's log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("target.log")
    }
}

/// Lines of a log that mean the daemon hit a fatal path: 5.0.1's `Alarmp(SPLOG_FATAL…)`
/// ("Exit caused by Alarm!"), an assertion, a Rust panic.
pub fn fatal_lines(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("Alarm")
            || l.contains("FATAL")
            || l.contains("Assertion")
            || l.contains("panicked")
        {
            // 5.0.1 prints the reason on the line before "Exit caused by Alarm!".
            if l.contains("Exit caused by Alarm") && i > 0 && !out.contains(&lines[i - 1]) {
                out.push(lines[i - 1]);
            }
            out.push(l);
        }
    }
    out
}

/// A target process started by the fuzzer.
#[derive(Debug)]
pub struct TargetProc {
    launch: Launch,
    child: Option<Child>,
    log_seen: usize,
    peak_rss_kb: u64,
    /// Times started.
    pub starts: u32,
}

impl Launch {
    /// The port of start number `n` (from 0).
    pub fn port_of(&self, n: u32) -> u16 {
        if self.reset.is_some() {
            self.port
        } else {
            self.port + 2 * (n % 8) as u16
        }
    }
}

fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl TargetProc {
    /// Writes the configuration and starts the daemon (not waiting for it).
    pub fn start(launch: Launch) -> Result<Self> {
        let mut t = Self {
            launch,
            child: None,
            log_seen: 0,
            peak_rss_kb: 0,
            starts: 0,
        };
        t.spawn()?;
        Ok(t)
    }

    fn spawn(&mut self) -> Result<()> {
        let l = &self.launch;
        std::fs::create_dir_all(&l.dir).with_context(|| format!("create {}", l.dir.display()))?;
        let port = l.port_of(self.starts);
        std::fs::write(
            l.dir.join("spread.conf"),
            l.conf.replace("{port}", &port.to_string()),
        )?;
        let rt = l.dir.join("rt");
        std::fs::create_dir_all(&rt)?;
        std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(l.log_path())?;
        self.log_seen = std::fs::metadata(l.log_path()).map_or(0, |m| m.len() as usize);
        let mut argv: Vec<String> = Vec::new();
        if have("stdbuf") {
            argv.extend(["stdbuf".into(), "-oL".into()]);
        }
        argv.push(l.bin.display().to_string());
        argv.extend([
            "-n".into(),
            l.name.clone(),
            "-c".into(),
            l.conf_arg().display().to_string(),
        ]);
        let mut cmd = match &l.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args([
                    "netns",
                    "exec",
                    ns,
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    r#"mount --bind "$0" /tmp && exec "$@""#,
                ])
                .arg(&l.dir)
                .args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("MBUS_UNIX_SOCKET_DIR", l.runtime_dir());
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", l.bin.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Waits until `addr` accepts a connection (the daemon is up).
    pub async fn wait_ready(&mut self, addr: &Address, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(why) = self.exited() {
                bail!("target exited while starting: {why}");
            }
            if connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("target did not accept connections within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `Some(why)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => Some(format!("target process exited: {st}")),
            Ok(None) => None,
            Err(e) => Some(format!("target process: {e}")),
        }
    }

    /// Fatal lines the log gained since the last start.
    pub fn fatal_log(&self) -> Option<String> {
        let text = std::fs::read(self.launch.log_path()).ok()?;
        let text = String::from_utf8_lossy(text.get(self.log_seen..)?);
        let lines = fatal_lines(&text);
        (!lines.is_empty()).then(|| lines.join(" | "))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.launch.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Samples the process's peak resident set (`VmHWM`); returns the highest seen (kB).
    pub fn sample_rss(&mut self) -> u64 {
        if let Some(c) = &self.child {
            if let Some(kb) = read_status_kb(c.id(), "VmHWM:") {
                self.peak_rss_kb = self.peak_rss_kb.max(kb);
            }
        }
        self.peak_rss_kb
    }

    /// Current resident set (`VmRSS`, kB).
    pub fn rss_kb(&self) -> Option<u64> {
        self.child
            .as_ref()
            .and_then(|c| read_status_kb(c.id(), "VmRSS:"))
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts again (a fresh target for minimization), on the next port unless
    /// the launch has a `reset`.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        if let Some(reset) = self.launch.reset {
            reset(&self.launch)?;
        }
        self.spawn()
    }

    /// The client port of the running start.
    pub fn port(&self) -> u16 {
        self.launch.port_of(self.starts.saturating_sub(1))
    }

    /// The launch settings.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }
}

impl Drop for TargetProc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's own peak resident set (kB).
pub fn own_peak_rss_kb() -> Option<u64> {
    read_status_kb(std::process::id(), "VmHWM:")
}

/// A directory for one run's files under `out`.
pub fn run_dir(out: &Path, mode: &str, seed: u64) -> PathBuf {
    out.join(format!("{mode}-{seed}-{}", std::process::id()))
}
