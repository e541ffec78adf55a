//! The `spread` binary as a process: command line, configuration errors, start-up on a free
//! port (loopback only), clean shutdown on SIGTERM/SIGINT, a second daemon on the same port.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_spread");
/// Upper bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

const USAGE: &str = "Usage: spread\n\
\t[-l y/n]          : print log\n\
\t[-n <proc name>]  : force computer name\n\
\t[-c <file name>]  : specify configuration file\n";

/// A private directory under Cargo's target tmp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port P with TCP P, UDP P and UDP P+1 free on loopback and no `/tmp/P` file.
fn free_port() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        if p >= 65000 || Path::new(&format!("/tmp/{p}")).exists() {
            continue;
        }
        let udp_free = UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
            && UdpSocket::bind((Ipv4Addr::LOCALHOST, p + 1)).is_ok();
        if udp_free {
            return p;
        }
    }
    panic!("no free port found");
}

/// A one-daemon configuration on loopback only (interface block: nothing on the wildcard).
fn loopback_config(dir: &TempDir, port: u16) -> PathBuf {
    let path = dir.path().join("spread.conf");
    std::fs::write(
        &path,
        format!(
            "# test daemon\nEventPriority = INFO\n\
             Spread_Segment 127.0.0.255:{port} {{\n\tlocalhost 127.0.0.1 {{ D C M 127.0.0.1 }}\n}}\n"
        ),
    )
    .unwrap();
    path
}

/// Kills the child if a test fails half-way.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn start(dir: &TempDir, args: &[&str]) -> Self {
        let child = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child: Some(child) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits (bounded) for exit; returns status, stdout, stderr.
    fn wait(mut self) -> (ExitStatus, String, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("spread did not exit within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run_to_end(dir: &TempDir, args: &[&str]) -> (ExitStatus, String, String) {
    Daemon::start(dir, args).wait()
}

/// Waits (bounded) until clients can connect on TCP and on the Unix socket.
fn wait_ready(port: u16) {
    let deadline = Instant::now() + WAIT;
    let sock = format!("/tmp/{port}");
    loop {
        let tcp = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(200),
        )
        .is_ok();
        if tcp && Path::new(&sock).exists() {
            return;
        }
        assert!(Instant::now() < deadline, "daemon on port {port} not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn usage_and_bad_flags() {
    let dir = TempDir::new("usage");
    let (st, out, _) = run_to_end(&dir, &["--help"]);
    assert!(st.success());
    // 5.0.1's usage text first, then mbus's lines (configuration search, RUST_LOG).
    assert!(out.starts_with(USAGE), "{out}");
    assert!(
        out.contains("/usr/local/etc/spread.conf") && out.contains("RUST_LOG"),
        "{out}"
    );
    let (st, out, _) = run_to_end(&dir, &["--version"]);
    assert!(st.success());
    assert!(out.starts_with("spread (mbus) "), "{out}");
    for bad in [&["-x"][..], &["-n"], &["-l", "maybe"]] {
        let (st, _, err) = run_to_end(&dir, bad);
        assert_eq!(st.code(), Some(1), "{bad:?}");
        assert_eq!(err, USAGE, "{bad:?}");
    }
    let (st, _, err) = run_to_end(&dir, &["-n", "abcdefghijklmnopqrstu"]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err, "Usage: proc name abcdefghijklmnopqrstu too long\n");
}

#[test]
fn bad_config_is_one_line_and_exit_1() {
    let dir = TempDir::new("badconf");
    let cases = [
        ("Foo = 1\n", "bad.conf:1:1: unknown keyword 'Foo'"),
        (
            "Spread_Segment 127.0.0.255:4803 {\n\ta 127.0.0.1\n",
            "bad.conf:1:33: unterminated block: this '{' is never closed",
        ),
        (
            "Spread_Segment 127.0.0.255:4803 { a 127.0.0.1 a 127.0.0.2 }",
            "bad.conf:1:47: duplicate host 'a' (already defined at line 1)",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(dir.path().join("bad.conf"), text).unwrap();
        let (st, _, err) = run_to_end(&dir, &["-c", "bad.conf"]);
        assert_eq!(st.code(), Some(1));
        assert_eq!(err, format!("{want}\n"));
    }
}

#[test]
fn embedded_default_is_used_and_logged() {
    if Path::new("/usr/local/etc/spread.conf").exists() {
        println!("skipped: /usr/local/etc/spread.conf exists and would be used");
        return;
    }
    // `-n` names no host, so the daemon stops after loading the configuration (no bind on
    // the shared port 4803).
    let dir = TempDir::new("embedded");
    let (st, out, err) = run_to_end(&dir, &["-n", "nosuchhost"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        out.contains("using the embedded default: one daemon 'localhost' on 127.0.0.1 port 4803"),
        "{out}"
    );
    assert_eq!(
        err,
        "spread: my name 'nosuchhost' is not in the configuration\n"
    );
}

#[test]
fn config_search_falls_back_to_dot_spread_conf() {
    // 5.0.1: the -c file, then ./spread.conf, then the system file.
    let dir = TempDir::new("search");
    std::fs::write(
        dir.path().join("spread.conf"),
        "Spread_Segment 10.0.1.255:4803 { far 10.0.1.10 }\n",
    )
    .unwrap();
    let (st, out, err) = run_to_end(&dir, &["-c", "missing.conf", "-n", "zz"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        out.contains("cannot open configuration file missing.conf"),
        "{out}"
    );
    assert!(
        out.contains("using configuration file ./spread.conf"),
        "{out}"
    );
    assert_eq!(err, "spread: my name 'zz' is not in the configuration\n");
}

#[test]
fn example_config_hosts_are_not_local() {
    let dir = TempDir::new("example");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("mbus.conf.example");
    let (st, out, err) = run_to_end(&dir, &["-c", example.to_str().unwrap(), "-n", "east-mgr"]);
    assert_eq!(st.code(), Some(1));
    assert!(out.contains("using configuration file"), "{out}");
    assert_eq!(
        err,
        "spread: the address 10.0.1.10 of 'east-mgr' is not an address of this machine\n"
    );
}

#[test]
fn event_log_file_receives_the_log() {
    let dir = TempDir::new("logfile");
    let conf = dir.path().join("log.conf");
    std::fs::write(
        &conf,
        "EventLogFile = daemon-%h.log\nEventTimeStamp\n\
         Spread_Segment 10.0.1.255:4803 { far 10.0.1.10 }\n",
    )
    .unwrap();
    let (st, out, err) = run_to_end(&dir, &["-c", "log.conf", "-n", "far"]);
    assert_eq!(st.code(), Some(1));
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let log =
        std::fs::read_to_string(dir.path().join(format!("daemon-{}.log", host.trim()))).unwrap();
    assert!(log.contains("using configuration file log.conf"), "{log}");
    // EventTimeStamp: 5.0.1's default format `%m/%d/%y %H:%M:%S` starts every line.
    let first = log.lines().next().unwrap_or_default();
    let shape: String = first
        .chars()
        .take(18)
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "99/99/99 99:99:99 ", "{first}");
}

#[test]
fn starts_binds_and_cleans_up_on_sigterm() {
    let dir = TempDir::new("start");
    let port = free_port();
    let conf = loopback_config(&dir, port);
    let d = Daemon::start(&dir, &["-c", conf.to_str().unwrap(), "-n", "localhost"]);
    wait_ready(port);
    let sock = format!("/tmp/{port}");
    {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        let meta = std::fs::metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    }
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    // The ring's UDP ports are taken.
    assert!(UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err());
    assert!(UdpSocket::bind((Ipv4Addr::LOCALHOST, port + 1)).is_err());
    // Clients are closed cleanly for now: the connection ends without data.
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);

    d.signal("-TERM");
    let (st, out, err) = d.wait();
    assert!(st.success(), "status {st:?}\n{out}\n{err}");
    assert!(!Path::new(&sock).exists(), "Unix socket not removed");
    assert!(out.contains("SIGTERM received"), "{out}");
    assert!(
        out.contains(&format!("using configuration file {}", conf.display())),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
    // The port can be bound again at once.
    let again = Daemon::start(&dir, &["-c", conf.to_str().unwrap()]);
    wait_ready(port);
    again.signal("-INT");
    let (st, out, _) = again.wait();
    assert!(st.success());
    assert!(out.contains("SIGINT received"), "{out}");
    assert!(!Path::new(&sock).exists());
}

#[test]
fn ipv6_daemon_on_loopback() {
    if UdpSocket::bind("[::1]:0").is_err() {
        println!("skipped: no IPv6 loopback");
        return;
    }
    let dir = TempDir::new("ipv6");
    let port = free_port();
    let conf = dir.path().join("v6.conf");
    std::fs::write(
        &conf,
        format!("Spread_Segment [ff02::1]:{port} {{ six ::1 {{ D C M ::1 }} }}\n"),
    )
    .unwrap();
    let d = Daemon::start(&dir, &["-c", conf.to_str().unwrap()]);
    let deadline = Instant::now() + WAIT;
    let sock = format!("/tmp/{port}");
    while !(Path::new(&sock).exists()
        && TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).is_ok())
    {
        assert!(Instant::now() < deadline, "IPv6 daemon not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(UdpSocket::bind((std::net::Ipv6Addr::LOCALHOST, port + 1)).is_err());
    d.signal("-TERM");
    let (st, out, _) = d.wait();
    assert!(st.success());
    assert!(out.contains("I am 'six'"), "{out}");
    assert!(!Path::new(&sock).exists());
}

#[test]
fn second_daemon_on_same_port_fails_with_one_line() {
    let dir = TempDir::new("second");
    let port = free_port();
    let conf = loopback_config(&dir, port);
    let conf = conf.to_str().unwrap();
    let first = Daemon::start(&dir, &["-c", conf]);
    wait_ready(port);
    let (st, _, err) = run_to_end(&dir, &["-c", conf]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "spread: cannot bind client port 127.0.0.1:{port}: "
        )) && err.ends_with(&format!("is another daemon running on port {port}?\n")),
        "{err}"
    );
    // The first daemon is unharmed: its Unix socket is still there and answers.
    let sock = format!("/tmp/{port}");
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    first.signal("-TERM");
    let (st, _, _) = first.wait();
    assert!(st.success());
    assert!(!Path::new(&sock).exists());
}

fn proc_status_field(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// As root, 5.0.1 chroots into `RuntimeDir` and becomes `DaemonUser`/`DaemonGroup` once its
/// sockets are open; clients still connect, and the Unix socket is still removed at exit.
#[test]
fn drops_privileges_to_daemon_user_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = TempDir::new("privdrop");
    let port = free_port();
    let conf = loopback_config(&dir, port);
    let rt_dir = dir.path().join("rt");
    std::fs::create_dir_all(&rt_dir).unwrap();
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text += &format!(
        "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = {}\nSocketPortReuse = ON\n",
        rt_dir.display()
    );
    std::fs::write(&conf, text).unwrap();
    let d = Daemon::start(&dir, &["-c", conf.to_str().unwrap()]);
    wait_ready(port);
    let deadline = Instant::now() + WAIT;
    while proc_status_field(d.pid(), "Uid:").split_whitespace().next() != Some("65534") {
        assert!(Instant::now() < deadline, "never became nobody");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        proc_status_field(d.pid(), "Uid:"),
        "65534\t65534\t65534\t65534"
    );
    assert_eq!(
        proc_status_field(d.pid(), "Gid:"),
        "65534\t65534\t65534\t65534"
    );
    assert_eq!(proc_status_field(d.pid(), "Groups:"), "65534");
    let root = std::fs::read_link(format!("/proc/{}/root", d.pid())).unwrap();
    assert_eq!(root, rt_dir.canonicalize().unwrap());
    // A client still gets a whole session: join, own membership, own message back.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use mbus::client::{Mailbox, Message, ServiceType};
        let mut mb = tokio::time::timeout(
            WAIT,
            Mailbox::connect(&format!("{port}@127.0.0.1"), "priv", true),
        )
        .await
        .unwrap()
        .unwrap();
        mb.join("g").await.unwrap();
        mb.multicast(ServiceType::AGREED, "g", 1, b"after setuid")
            .await
            .unwrap();
        let mut got_data = false;
        while !got_data {
            match tokio::time::timeout(WAIT, mb.receive())
                .await
                .unwrap()
                .unwrap()
            {
                Message::Data(m) => {
                    assert_eq!(&m.body[..], b"after setuid");
                    got_data = true;
                }
                Message::Membership(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    d.signal("-TERM");
    let (st, out, err) = d.wait();
    assert!(st.success(), "status {st:?}\n{out}\n{err}");
    assert!(
        out.contains("setugid and chroot successful: user nobody, group nogroup"),
        "{out}"
    );
}

/// A `DaemonUser` that does not exist: as 5.0.1, the daemon refuses to run as root.
#[test]
fn unknown_daemon_user_is_fatal_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = TempDir::new("privbad");
    let port = free_port();
    let conf = loopback_config(&dir, port);
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text += "DaemonUser = no-such-user-mbus\nDaemonGroup = nogroup\n";
    std::fs::write(&conf, text).unwrap();
    let (st, out, err) = run_to_end(&dir, &["-c", conf.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1), "{out}\n{err}");
    assert_eq!(
        err,
        "spread: FAILED privilege drop to user/group 'no-such-user-mbus/nogroup' (defined in spread.conf): no user 'no-such-user-mbus'\n"
    );
    assert!(!Path::new(&format!("/tmp/{port}")).exists());
}
