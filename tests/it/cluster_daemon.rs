//! `eccmgr` and three `mbus-node` processes in two subclusters (from the `# Subcluster:`
//! comments of a two-segment `mbus.conf`) attached to a real Spread-compatible daemon over
//! TCP on loopback. The daemon is killed and restarted on the same port: the manager and the
//! nodes reconnect and the cluster works again.
//!
//! Runs against our `spread` binary, or against `MBUS_TEST_SPREAD` (e.g. the real Spread
//! 5.0.1) when set.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn stderr(&mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut s = String::new();
        if let Some(e) = self.0.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        format!("--- {} ---\n{s}", self.1)
    }
}

fn daemon_binary() -> (PathBuf, bool) {
    match std::env::var_os("MBUS_TEST_SPREAD") {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_spread")), false),
    }
}

fn start_daemon(dir: &Path, port: u16) -> Proc {
    let (bin, real) = daemon_binary();
    let conf = dir.join("spread.conf");
    let mut text = format!(
        "Spread_Segment 127.0.0.255:{port} {{\n    localhost 127.0.0.1\n}}\nRuntimeDir = {}\n",
        dir.display()
    );
    if real {
        text.push_str("DaemonUser = root\nDaemonGroup = root\n");
    }
    // Restart on the same port while old connections are in TIME-WAIT.
    text.push_str("SocketPortReuse = ON\n");
    std::fs::write(&conf, text).unwrap();
    // A killed daemon leaves its Unix socket behind; a new one could not bind it.
    let _ = std::fs::remove_file(format!("/tmp/{port}"));
    let _ = std::fs::remove_file(dir.join(port.to_string()));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    let child = Command::new(bin)
        .args(["-n", "localhost", "-c", conf.to_str().unwrap()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn daemon");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    Proc(child, "daemon")
}

/// Runs `ec_console SOCK LINE…` in batch mode and returns what it printed.
pub(crate) fn console(sock: &Path, line: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_ec_console"))
        .arg(sock)
        .args(line.split(' '))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` every 100 ms until it gives a value; after `timeout` panics with `logs()`.
pub(crate) fn eventually(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<String>,
    mut logs: impl FnMut() -> String,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stderr_of(procs: &mut [Proc]) -> String {
    let logs: Vec<String> = procs.iter_mut().map(Proc::stderr).collect();
    logs.join("\n")
}

#[test]
fn cluster_daemon_three_nodes_two_subclusters_and_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon_dir = dir.path().join("d");
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let mut daemon = start_daemon(&daemon_dir, port);
    let mbus_conf = dir.path().join("mbus.conf");
    std::fs::write(
        &mbus_conf,
        "# Subcluster: east => mgr.example.com\nSpread_Segment 10.9.0.255:4803 {\n  n1 10.9.0.1\n  n2 10.9.0.2\n}\n\
         # Subcluster: west = mgr.example.com\nSpread_Segment 10.9.1.255:4803 {\n  n3 10.9.1.3\n}\n",
    )
    .unwrap();
    let sock = dir.path().join("ctl");
    let conf = dir.path().join("eccluster.conf");
    std::fs::write(
        &conf,
        format!(
            "Control_Listener {{ Listen \"{}\" {{ }} }}\n",
            sock.display()
        ),
    )
    .unwrap();
    let addr = format!("{port}@127.0.0.1");
    let spawn = |bin: &str, args: &[&str], name: &'static str| {
        Proc(
            Command::new(bin)
                .args(args)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            name,
        )
    };
    let mut procs = vec![spawn(
        env!("CARGO_BIN_EXE_eccmgr"),
        &[
            "-c",
            conf.to_str().unwrap(),
            "-s",
            &addr,
            "-m",
            mbus_conf.to_str().unwrap(),
        ],
        "eccmgr",
    )];
    // A mapped command with 250 kB of output: the answer travels in 3 chunks.
    let node_conf = dir.path().join("node.conf");
    std::fs::write(
        &node_conf,
        r#"cluster { Command "big output" { Program = "/bin/sh" Args = ( "-c" "head -c 250000 /dev/zero | tr '\\0' x" ) Max_Output = 300000 } }"#,
    )
    .unwrap();
    for (n, name) in [("n1", "n1"), ("n2", "n2"), ("n3", "n3")] {
        procs.push(spawn(
            env!("CARGO_BIN_EXE_mbus-node"),
            &[
                "-s",
                &addr,
                "-n",
                n,
                "-m",
                mbus_conf.to_str().unwrap(),
                "-c",
                node_conf.to_str().unwrap(),
            ],
            name,
        ));
    }
    let sock_ref: &Path = &sock;
    let members = |want: usize| {
        move || {
            let m = console(sock_ref, "show cluster membership");
            (m.matches("Node Type: Momentum").count() == want).then_some(m)
        }
    };
    let m = eventually("3 nodes", Duration::from_secs(20), members(3), || {
        stderr_of(&mut procs)
    });
    assert!(
        m.contains("Subcluster: west") && m.contains("Groups: ec_console, ec_sc_east, ec_cluster"),
        "{m}"
    );
    assert!(m.contains("Node Type: Manager"), "{m}");

    assert_eq!(
        console(&sock, "subcluster broadcast west cluster nodename"),
        "Sent to 1 node(s) on ec_sc_west.\n"
    );
    let r = eventually(
        "west answer",
        Duration::from_secs(10),
        || {
            let r = console(&sock, "retrieve cluster nodename");
            (!r.contains("no response yet")).then_some(r)
        },
        || stderr_of(&mut procs),
    );
    assert_eq!(r, "n3:\nn3\n");

    // Large answer: chunked on the bus, reassembled by the manager, 32-bit reply frame.
    assert_eq!(console(&sock, "unicast n1 big output"), "");
    let big = eventually(
        "big answer",
        Duration::from_secs(20),
        || {
            let r = console(&sock, "retrieve_node n1 big output");
            (!r.contains("no response yet")).then_some(r)
        },
        || stderr_of(&mut procs),
    );
    assert_eq!(
        big.trim_end().len(),
        250_000,
        "{}",
        &big[..big.len().min(200)]
    );
    assert!(big.trim_end().bytes().all(|b| b == b'x'));

    // A node dies: a later broadcast shows it as not answered (it left the group).
    console(&sock, "broadcast version");
    drop(procs.remove(2)); // n2
    eventually("n2 gone", Duration::from_secs(20), members(2), || {
        stderr_of(&mut procs)
    });
    console(&sock, "broadcast cluster nodeaddr");
    let r = eventually(
        "answers",
        Duration::from_secs(10),
        || {
            let r = console(&sock, "retrieve cluster nodeaddr");
            (r == "n1:\n10.9.0.1:4802\n\nn3:\n10.9.1.3:4802\n").then_some(r)
        },
        || stderr_of(&mut procs),
    );
    assert!(!r.contains("n2:"), "{r}");

    // Daemon restart: everyone reconnects.
    daemon.0.kill().unwrap();
    let _ = daemon.0.wait();
    let down = console(&sock, "broadcast version");
    assert!(
        down.starts_with("Not connected to the bus") || down.starts_with("Sent to"),
        "{down}"
    );
    let _daemon = start_daemon(&daemon_dir, port);
    eventually(
        "rejoin after daemon restart",
        Duration::from_secs(30),
        members(2),
        || stderr_of(&mut procs),
    );
    let info = console(&sock, "info");
    assert!(info.starts_with(&format!("Daemon: {addr} [#")), "{info}");
}
