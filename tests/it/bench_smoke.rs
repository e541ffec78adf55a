//! CI smoke of the side-by-side ring benchmark (`bench/ring-compare.py --quick`): our ring
//! only (no real daemon), 2 daemons in namespaces, small counts. It asserts that the script
//! builds the ring, measures every figure and cleans up — nothing about speed.

use std::process::Command;

use crate::netns::{have, is_root};

#[test]
fn ring_compare_script_measures_our_ring_and_cleans_up() {
    if !is_root() || !have("ip") || !have("unshare") || !have("python3") {
        eprintln!("skipped: needs root, ip, unshare and python3");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/bench/ring-compare.py"))
        .args(["--quick", "--real", ""])
        .args(["--ours", env!("CARGO_BIN_EXE_spread")])
        .args(["--bench", env!("CARGO_BIN_EXE_mbus-bench")])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for figure in [
        "flood 1 KB × 200 (s)",
        "CPU/msg 1 KB, all daemons",
        "RTT AGREED d1↔d2 p50",
        "RTT SAFE d1↔d1 p99",
        "peak RSS d1 (MB)",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(figure))
            .unwrap_or_else(|| panic!("no {figure:?} in\n{stdout}"));
        let ours: f64 = line
            .split_whitespace()
            .rev()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no figure for ours in {line:?}"));
        assert!(ours > 0.0, "{line}");
    }
    // The script's namespaces are all named `mbb<pid>…`; none may remain.
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("mbb")),
        "namespaces left behind:\n{left}"
    );
}
