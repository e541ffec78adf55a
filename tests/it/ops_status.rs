//! `mbus-status` against running rings: our three daemons on 127.0.0.1-3 ([`Ring`]), our
//! three daemons in network namespaces ([`NetLab`]), three real 5.0.1 daemons there (with
//! `MBUS_REAL_SPREAD`), and a one-host configuration — where the unmodified 5.0.1 `spmonitor`
//! (with `MBUS_REAL_SPREAD_BIN_DIR`) must keep working too.

use std::io::{Read as _, Write as _};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;
use crate::netns::{real_spread, NetLab};
use crate::ring::{Ring, FORM_BOUND};

const STATUS: &str = env!("CARGO_BIN_EXE_mbus-status");

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Every daemon answered, in OP, in one ring of `n` with one leader.
fn one_ring(v: &serde_json::Value, n: i64) -> bool {
    let Some(rows) = v.as_array() else {
        return false;
    };
    let leaders: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["status"]["leader"].as_str().map(str::to_owned))
        .collect();
    rows.len() == n as usize
        && leaders.len() == 1
        && rows.iter().all(|r| {
            r["status"]["state"] == "OP"
                && r["status"]["group_state"] == "GOP"
                && r["status"]["ring_members"] == n
        })
}

/// Runs `cmd` (an `mbus-status … --json`) until its answer shows one ring of `n`.
fn until_one_ring(
    mut cmd: impl FnMut() -> Command,
    n: i64,
    logs: impl Fn() -> String,
) -> serde_json::Value {
    let end = Instant::now() + FORM_BOUND;
    loop {
        let o = cmd().output().expect("run mbus-status");
        if o.status.success() {
            let v = json_of(&o);
            if one_ring(&v, n) {
                return v;
            }
        }
        assert!(
            Instant::now() < end,
            "no ring of {n} in mbus-status: {}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn local_status(ring: &Ring, extra: &[&str]) -> Command {
    let mut c = Command::new(STATUS);
    c.arg("-c")
        .arg(ring.dir.path().join("d1.conf"))
        .args(["-n", "d1"])
        .args(extra);
    c
}

#[test]
fn status_table_of_a_loopback_ring_and_a_lost_daemon() {
    let mut ring = Ring::with_options(3, "");
    let v = until_one_ring(|| local_status(&ring, &["--json"]), 3, || ring.logs());
    assert_eq!(v[0]["name"], "d1");
    assert_eq!(v[0]["status"]["version"], "5.0.1");
    let o = local_status(&ring, &[]).output().expect("table");
    assert!(o.status.success(), "{o:?}");
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    eprintln!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("DAEMON"), "{table}");
    for (i, l) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cells[0], format!("d{}", i + 1), "{table}");
        assert_eq!(&cells[2..5], ["OP", "GOP", "3"], "{table}");
    }
    // --watch refreshes (not a terminal: the tables follow each other).
    let o = local_status(&ring, &["--watch", "0.2", "--count", "2"])
        .output()
        .expect("watch");
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("DAEMON").count(), 2, "{text}");
    // A daemon gone: 'no reply', exit status 3, the others in a ring of two.
    ring.kill(2);
    let end = Instant::now() + FORM_BOUND;
    loop {
        let o = local_status(&ring, &["--json"]).output().expect("status");
        let v = json_of(&o);
        let two = v[0]["status"]["ring_members"] == 2 && v[1]["status"]["ring_members"] == 2;
        if two && v[2]["status"].is_null() {
            assert_eq!(o.status.code(), Some(3));
            break;
        }
        assert!(Instant::now() < end, "{v}\n{}", ring.logs());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn status_of_a_host_not_in_the_configuration_is_a_one_line_error() {
    let ring = Ring::with_options(1, "");
    let o = Command::new(STATUS)
        .arg("-c")
        .arg(ring.dir.path().join("d1.conf"))
        .args(["-n", "nobody"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("mbus-status: ") && err.contains("nobody"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Three daemons in namespaces, daemon `i` running `bins[i]` (ours or a real 5.0.1);
/// `mbus-status` runs in d1's namespace. Returns the table.
fn netns_ring(bins: [&str; 3]) -> Option<String> {
    let mut lab = NetLab::new(&[3])?;
    let port = 4803;
    let extra = "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n";
    let conf = lab.spread_conf(&["d1", "d2", "d3"], port, extra);
    for (i, bin) in bins.iter().enumerate() {
        lab.start_daemon(i, bin, &format!("d{}", i + 1), &conf)
            .expect("start daemon");
    }
    let status = |args: &[&str]| {
        let mut c = lab.command(0, STATUS);
        c.args(["-c", "/tmp/spread.conf"]).args(args);
        c.stdin(Stdio::null());
        c
    };
    let logs = || {
        (0..3)
            .map(|i| lab.log(i, &format!("d{}", i + 1)))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    until_one_ring(|| status(&["--json"]), 3, logs);
    let o = status(&[]).output().expect("table");
    assert!(o.status.success(), "{o:?}");
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn status_table_of_our_ring_in_namespaces() {
    let ours = env!("CARGO_BIN_EXE_spread");
    if let Some(t) = netns_ring([ours; 3]) {
        eprintln!("ours:\n{t}");
    }
}

#[test]
fn status_table_of_a_real_5_0_1_ring_in_namespaces() {
    let Some(real) = real_spread() else {
        eprintln!("skipped: set MBUS_REAL_SPREAD to a Spread 5.0.1 daemon binary");
        return;
    };
    if let Some(t) = netns_ring([&real; 3]) {
        eprintln!("real 5.0.1:\n{t}");
        assert!(t.contains("5.0.1"), "{t}");
    }
}

#[test]
fn status_table_of_a_mixed_ring_in_namespaces() {
    let Some(real) = real_spread() else {
        eprintln!("skipped: set MBUS_REAL_SPREAD to a Spread 5.0.1 daemon binary");
        return;
    };
    let ours = env!("CARGO_BIN_EXE_spread");
    if let Some(t) = netns_ring([&real, ours, ours]) {
        eprintln!("real d1, ours d2 d3:\n{t}");
    }
}

/// A one-host configuration: `mbus-status` and, with `MBUS_REAL_SPREAD_BIN_DIR`, the real
/// `spmonitor` (menu "0" activates the status display, then quit) both read our daemon.
#[test]
fn one_host_configuration_answers_mbus_status_and_spmonitor() {
    let ring = Ring::with_options(1, "");
    let v = until_one_ring(|| local_status(&ring, &["--json"]), 1, || ring.logs());
    assert_eq!(v[0]["status"]["leader"], "d1");
    let Ok(dir) = std::env::var("MBUS_REAL_SPREAD_BIN_DIR") else {
        eprintln!("MBUS_REAL_SPREAD_BIN_DIR unset: spmonitor part skipped");
        return;
    };
    let mut child = Command::new(std::path::Path::new(&dir).join("spmonitor"))
        .args(["-n", "d1", "-t", "1", "-p"])
        .arg(free_port().to_string())
        .arg("-c")
        .arg(ring.dir.path().join("d1.conf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spmonitor");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"0\nall\n\n").expect("menu");
    std::thread::sleep(Duration::from_secs(3));
    let _ = stdin.write_all(b"q\n");
    drop(stdin);
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(
        out.contains("Status at d1 V 5.00. 1 (state 1, gstate 1)"),
        "{out}"
    );
    assert!(
        out.contains("Membership  :  1  procs in 1 segments, leader is d1"),
        "{out}"
    );
}
