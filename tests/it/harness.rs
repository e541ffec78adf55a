//! Shared helpers for the multi-process tests: start a `spread` daemon on a free loopback port
//! with a generated configuration in a temporary directory, and kill it on drop.
//!
//! Every daemon gets its own port (TCP client port, UDP ring ports `port` and `port + 1`) and
//! its own `RuntimeDir`, so tests running in parallel (threads in one process or nextest's
//! separate processes) never collide. Setting `MBUS_TEST_SPREAD=/path/to/spread` runs the same
//! tests against another daemon binary (e.g. the real Spread 5.0.1) to check the tests
//! themselves.
#![allow(dead_code)] // Shared by several test modules; not every helper is used by each.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a daemon may take to accept its first TCP connection.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many ports to try before giving up on starting a daemon.
const START_ATTEMPTS: usize = 6;
/// Port range the tests draw from (well above the usual well-known and ephemeral ranges' start).
const PORT_LOW: u32 = 20_000;
const PORT_SPAN: u32 = 28_000;

/// Options for a test daemon.
#[derive(Debug, Clone, Default)]
pub(crate) struct DaemonOptions {
    /// `MaxSessionMessages` (default: the daemon's own default).
    pub(crate) max_session_messages: Option<u32>,
    /// Extra configuration lines appended verbatim.
    pub(crate) extra_config: String,
    /// Files written into the daemon's directory (its working directory) before it starts,
    /// e.g. `spread.access_pword`: (name, contents).
    pub(crate) files: Vec<(String, String)>,
}

/// A running `spread` daemon; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub(crate) struct TestDaemon {
    child: Option<Child>,
    /// The client port (TCP `127.0.0.1:port`).
    pub(crate) port: u16,
    /// The temporary directory holding the config, the log and the runtime dir.
    dir: tempfile::TempDir,
    /// True when running the real Spread (its Unix socket is always `/tmp/<port>`).
    real: bool,
}

impl TestDaemon {
    /// Starts a daemon with default options.
    pub(crate) fn start() -> Self {
        Self::start_with(&DaemonOptions::default())
    }

    /// Starts a daemon with `opts`, retrying on another port if the first one is taken.
    pub(crate) fn start_with(opts: &DaemonOptions) -> Self {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match Self::try_start(port, opts) {
                Ok(d) => return d,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start a spread daemon: {last_err}");
    }

    fn try_start(port: u16, opts: &DaemonOptions) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("mbus-it-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let (bin, real) = daemon_binary();
        let conf = dir.path().join("spread.conf");
        fs::write(&conf, config_text(port, dir.path(), opts, real)).map_err(|e| e.to_string())?;
        for (name, text) in &opts.files {
            fs::write(dir.path().join(name), text).map_err(|e| e.to_string())?;
        }
        let child = spawn_daemon(&bin, &conf, dir.path())?;
        let mut d = Self {
            child: Some(child),
            port,
            dir,
            real,
        };
        d.wait_ready()?;
        Ok(d)
    }

    /// Kills the daemon (SIGKILL) and starts it again on the same port with the same
    /// configuration: a daemon restart, as its clients see it.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let (bin, _) = daemon_binary();
        let conf = self.dir.path().join("spread.conf");
        let child = spawn_daemon(&bin, &conf, self.dir.path()).unwrap();
        self.child = Some(child);
        self.wait_ready().unwrap();
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("daemon exited with {status}: {}", self.log()));
                }
            }
            // The TCP listener is opened first and the Unix socket last: ready means both
            // (a test that reads `unix_path` at once must find the socket file).
            if self.unix_socket_answers() {
                if let Ok(s) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200))
                {
                    // Close at once: the daemon drops a connection that sends no hello.
                    drop(s);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "daemon not ready after {START_TIMEOUT:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The TCP connect string, `"<port>@127.0.0.1"`.
    pub(crate) fn tcp(&self) -> String {
        format!("{}@127.0.0.1", self.port)
    }

    /// True once the daemon's Unix-domain client socket accepts a connection (closed at once,
    /// like the TCP probe).
    fn unix_socket_answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.unix_path()).is_ok()
    }

    /// The path of the daemon's Unix-domain client socket.
    pub(crate) fn unix_path(&self) -> PathBuf {
        let in_runtime = self.dir.path().join(self.port.to_string());
        if !self.real && in_runtime.exists() {
            in_runtime
        } else {
            PathBuf::from(format!("/tmp/{}", self.port))
        }
    }

    /// True when the daemon under test is another binary (`MBUS_TEST_SPREAD`, e.g. the real
    /// Spread 5.0.1), for the few checks where we deliberately do better than 5.0.1.
    pub(crate) fn is_real_spread(&self) -> bool {
        self.real
    }

    /// The daemon's log (stdout and stderr) so far.
    pub(crate) fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.path().join("daemon.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The daemon's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A `kB` line of the daemon's `/proc/PID/status` (`VmRSS`, `VmHWM`: the peak).
    pub(crate) fn status_kb(&self, field: &str) -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = text.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The daemon's resident memory now, in kB.
    pub(crate) fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:").unwrap_or(0)
    }

    /// The daemon's open file descriptors.
    pub(crate) fn fd_count(&self) -> usize {
        self.pid()
            .and_then(|p| fs::read_dir(format!("/proc/{p}/fd")).ok())
            .map_or(0, Iterator::count)
    }

    /// True while the daemon process is alive.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the daemon now (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // SIGKILL leaves the socket file behind; remove it, so a restart's `wait_ready`
        // waits for the new daemon's socket and not the stale file.
        let _ = fs::remove_file(self.unix_path());
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill();
        // Our daemon removes its socket on a clean exit only; clean up after SIGKILL.
        let p = PathBuf::from(format!("/tmp/{}", self.port));
        if !self.real && p.exists() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Starts `bin -n localhost -c conf` in `dir`, logging to `dir/daemon.log` (appended).
fn spawn_daemon(bin: &Path, conf: &Path, dir: &Path) -> Result<Child, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    Command::new(bin)
        .arg("-n")
        .arg("localhost")
        .arg("-c")
        .arg(conf)
        .current_dir(dir)
        .env(
            "RUST_LOG",
            std::env::var("MBUS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))
}

/// The daemon under test: `MBUS_TEST_SPREAD` if set, else the `spread` binary of this package.
fn daemon_binary() -> (PathBuf, bool) {
    match std::env::var_os("MBUS_TEST_SPREAD") {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_spread")), false),
    }
}

fn config_text(port: u16, dir: &Path, opts: &DaemonOptions, real: bool) -> String {
    let mut s = format!(
        "Spread_Segment 127.0.0.255:{port} {{\n    localhost 127.0.0.1\n}}\nRuntimeDir = {}\n",
        dir.display()
    );
    if real {
        // The real daemon refuses to run as root without these (it drops privileges).
        s.push_str("DaemonUser = root\nDaemonGroup = root\n");
    }
    if let Some(n) = opts.max_session_messages {
        s.push_str(&format!("MaxSessionMessages = {n}\n"));
    }
    s.push_str(&opts.extra_config);
    s
}

/// Picks a port whose TCP port and both UDP ring ports are free on loopback and whose Unix
/// socket path does not exist. Spreads choices by process id so parallel test processes
/// rarely try the same port; a taken port is caught by the retry in `start_with`.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for _ in 0..1000 {
        let k = NEXT.fetch_add(7, Ordering::Relaxed);
        let p = (PORT_LOW + (seed.wrapping_add(k.wrapping_mul(2)) % PORT_SPAN)) & !1;
        let Ok(p) = u16::try_from(p) else { continue };
        if port_is_free(p) {
            return p;
        }
    }
    panic!("no free port found");
}

fn port_is_free(p: u16) -> bool {
    let lo = Ipv4Addr::LOCALHOST;
    Path::new(&format!("/tmp/{p}")).symlink_metadata().is_err()
        && TcpListener::bind((lo, p)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p + 1)).is_ok()
}

/// Runs `f` repeatedly until it returns `Some`, or panics after `timeout`.
pub(crate) fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a test waits for any one message before failing.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// Receives the next message, failing the test after [`RECV_TIMEOUT`].
pub(crate) async fn recv(mb: &mut mbus::client::Mailbox) -> mbus::client::Message {
    match tokio::time::timeout(RECV_TIMEOUT, mb.receive()).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("{}: receive failed: {e}", mb.private_group()),
        Err(_) => panic!("{}: no message within {RECV_TIMEOUT:?}", mb.private_group()),
    }
}

/// Receives until a regular membership of `group` arrives (skipping anything else) and
/// returns it.
pub(crate) async fn recv_membership(
    mb: &mut mbus::client::Mailbox,
    group: &str,
) -> mbus::client::Membership {
    loop {
        if let mbus::client::Message::Membership(m) = recv(mb).await {
            if m.group == group {
                return m;
            }
        }
    }
}

/// Receives the next message and expects a data message.
pub(crate) async fn recv_data(mb: &mut mbus::client::Mailbox) -> mbus::client::DataMessage {
    match recv(mb).await {
        mbus::client::Message::Data(d) => d,
        other => panic!("{}: expected data, got {other:?}", mb.private_group()),
    }
}

/// Expects that nothing arrives within `wait`.
pub(crate) async fn expect_silence(mb: &mut mbus::client::Mailbox, wait: Duration) {
    if let Ok(r) = tokio::time::timeout(wait, mb.receive()).await {
        panic!("{}: expected nothing, got {r:?}", mb.private_group());
    }
}

/// Connects `name` over TCP to `d` (with membership messages).
pub(crate) async fn connect(d: &TestDaemon, name: &str) -> mbus::client::Mailbox {
    mbus::client::Mailbox::connect(&d.tcp(), name, true)
        .await
        .unwrap_or_else(|e| panic!("connect {name}: {e}"))
}

/// Connects `name` and joins `group`, consuming its own join membership.
pub(crate) async fn connect_and_join(
    d: &TestDaemon,
    name: &str,
    group: &str,
) -> mbus::client::Mailbox {
    let mut mb = connect(d, name).await;
    mb.join(group).await.unwrap();
    let m = recv_membership(&mut mb, group).await;
    assert_eq!(m.changed_member.as_deref(), Some(mb.private_group()));
    mb
}
