//! `mbus-fuzz-net` against our daemon: a short run of each mode (the CI run of the network
//! fuzzer), and the saved failing inputs played back. Peer mode needs root and `ip` (its
//! namespace lab) and skips itself with a message without them.
//!
//! The replay files under `tests/data/fuzz-net/` are minimized inputs that kill a real
//! Spread 5.0.1 daemon (its scatter assertion on an over-long client message; its
//! `G_handle_join in GGATHER` alarm when a peer's JOIN arrives during the group-state
//! exchange; its `Sess_handle_kill: Illegal private name` alarm when a peer's GROUPS message
//! arrives as a KILL); our daemon must play them back without a fault. Inputs the fuzzer finds in our
//! daemon are added there as regressions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mbus::fuzznet::netns;

use crate::harness::free_port;

const FUZZ: &str = env!("CARGO_BIN_EXE_mbus-fuzz-net");
const SPREAD: &str = env!("CARGO_BIN_EXE_spread");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz-net")
        .join(name)
}

/// Runs the fuzzer against a daemon it spawns on a fresh port (`PORT` in `args`), again on
/// another port when the daemon could not start (the port was taken meanwhile by another
/// test's daemon: its UDP ports or /tmp/PORT); at most 3 tries.
fn fuzz_spawned(args: &[&str]) -> (Output, String) {
    let mut last = None;
    for _ in 0..3 {
        let port = free_port().to_string();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "PORT" { port.as_str() } else { a })
            .collect();
        let (out, text) = fuzz(&args);
        if !text.contains("target exited while starting") {
            return (out, text);
        }
        last = Some((out, text));
    }
    last.expect("three tries")
}

fn fuzz(args: &[&str]) -> (Output, String) {
    // Kept after the test: a failure's replay file is named in the table.
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-net");
    let out = Command::new(FUZZ)
        .args(args)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run mbus-fuzz-net");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// A client-mode table with no fault, more than 20 executions and more than 10 probe rounds.
fn assert_clean_client_run(text: &str) {
    assert_eq!(row(text, "fault"), "none", "{text}");
    let execs: u64 = row(text, "executions").parse().unwrap_or(0);
    assert!(execs > 20, "only {execs} executions: {text}");
    assert!(
        row(text, "probe rounds").parse::<u64>().unwrap_or(0) > 10,
        "{text}"
    );
}

/// The value of a row of the final table.
fn row<'a>(table: &'a str, key: &str) -> &'a str {
    table
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map_or("", str::trim)
}

fn peer_lab_or_skip() -> bool {
    if let Err(why) = netns::available() {
        eprintln!("mbus-fuzz-net peer mode skipped: {why}");
        return false;
    }
    true
}

#[test]
fn client_mode_short_run_finds_no_fault_in_our_daemon() {
    let (out, text) = fuzz_spawned(&[
        "client",
        "--spawn",
        SPREAD,
        "--port",
        "PORT",
        "--seed",
        "7",
        "-t",
        "20",
        "-j",
        "8",
        "--no-minimize",
    ]);
    assert!(out.status.success(), "{text}");
    assert_clean_client_run(&text);
}

#[test]
fn peer_mode_short_run_finds_no_fault_in_our_daemon() {
    if !peer_lab_or_skip() {
        return;
    }
    let (out, text) = fuzz(&[
        "peer",
        "--spawn",
        SPREAD,
        "--port",
        "4975",
        "--seed",
        "11",
        "-t",
        "30",
        "--no-minimize",
    ]);
    assert!(out.status.success(), "{text}");
    assert_eq!(row(&text, "fault"), "none", "{text}");
    assert!(
        row(&text, "executions").parse::<u64>().unwrap_or(0) >= 2,
        "{text}"
    );
    assert!(
        row(&text, "mutations").parse::<u64>().unwrap_or(0) > 0,
        "{text}"
    );
}

#[test]
fn the_client_input_that_aborts_5_0_1_does_not_hurt_our_daemon() {
    let file = data("client-5.0.1-scatter-assertion.replay");
    let (out, text) = fuzz_spawned(&[
        "replay",
        file.to_str().unwrap_or_default(),
        "--spawn",
        SPREAD,
        "--port",
        "PORT",
    ]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no fault"), "{text}");
}

#[test]
fn the_peer_inputs_that_kill_5_0_1_do_not_hurt_our_daemon() {
    if !peer_lab_or_skip() {
        return;
    }
    for name in [
        "peer-5.0.1-g-handle-join-in-ggather.replay",
        "peer-5.0.1-sess-handle-kill-illegal-name.replay",
    ] {
        let file = data(name);
        let (out, text) = fuzz(&[
            "replay",
            file.to_str().unwrap_or_default(),
            "--spawn",
            SPREAD,
            "--port",
            "4975",
        ]);
        assert!(out.status.success(), "{name}: {text}");
        assert!(text.contains("no fault"), "{name}: {text}");
    }
}

#[test]
fn a_replay_file_without_a_mode_is_a_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.replay");
    std::fs::write(&f, "connect 0\n").expect("write");
    let (out, text) = fuzz(&["replay", f.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("mbus-fuzz-net:") && text.contains("mode"),
        "{text}"
    );
}

/// `client --ring spread.conf`: the fuzzed sessions go to every daemon of a 3-daemon ring of
/// ours and the probe's two sessions sit on d1 and d2, so its order and membership checks
/// span the ring; a short run finds nothing and every daemon is still running.
#[test]
fn client_mode_against_a_whole_ring_finds_no_fault() {
    let mut ring = crate::ring::Ring::with_metrics(3);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let conf = ring.dir.path().join("d1.conf");
    let (out, text) = fuzz(&[
        "client",
        "--ring",
        conf.to_str().unwrap(),
        "--seed",
        "11",
        "-t",
        "20",
        "-j",
        "6",
        "--no-minimize",
    ]);
    assert!(out.status.success(), "{text}\n{}", ring.logs());
    assert_clean_client_run(&text);
    for i in 0..3 {
        assert!(!ring.exited(i), "d{} exited:\n{}", i + 1, ring.logs());
    }
    // Every daemon served fuzzed sessions (its metrics count them).
    for i in 0..3 {
        let accepted = sessions_accepted(&format!("{}:{}", crate::ring::addr(i), ring.metrics[i]));
        assert!(accepted > 10, "d{}: {accepted} sessions", i + 1);
    }
}

/// `spread_sessions_accepted_total` scraped from a daemon's metrics endpoint.
fn sessions_accepted(addr: &str) -> u64 {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find_map(|l| l.strip_prefix("spread_sessions_accepted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
