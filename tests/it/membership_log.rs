//! `spread -l y`: the membership log 5.0.1 writes (a file named after the daemon, in
//! `RuntimeDir` once chrooted), from our daemon in a network namespace — `B` at start, `M` at
//! the singleton ring, `C`/`D` for a TCP session and a Unix-socket session — and, with
//! `MBUS_REAL_SPREAD`, the same run of the real 5.0.1 daemon: the same kinds of lines in the
//! same order, the same widths and the same text once the numbers are masked.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::netns::{real_spread, NetLab};
use crate::ring_reload::Client;

/// Runs `bin -l y` as `d1` alone in a lab node, with a TCP session (`alice`) and then a
/// Unix-socket session (`bob`) that join `grp` and end; returns the membership log's lines.
fn run_logged(bin: &str) -> Option<Vec<String>> {
    let mut lab = NetLab::new(&[1])?;
    let extra = "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n";
    let addr = lab.nodes[0].addr;
    let conf = format!(
        "Spread_Segment {}:4803 {{\n  d1 {addr}\n}}\n{extra}",
        lab.bcast(0)
    );
    let tmp = lab.nodes[0].tmp.clone();
    std::fs::write(tmp.join("spread.conf"), conf).unwrap();
    let rt = tmp.join("rt");
    std::fs::create_dir_all(&rt).unwrap();
    std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = std::fs::File::create(tmp.join("d1.log")).unwrap();
    let real = real_spread().is_some_and(|r| r == bin);
    let mut cmd = if real {
        let mut c = lab.command(0, "stdbuf");
        c.args(["-oL", bin]);
        c
    } else {
        lab.command(0, bin)
    };
    cmd.args(["-l", "y", "-n", "d1", "-c", "/tmp/spread.conf"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let pid = lab.spawn(cmd).expect("start daemon");
    // The first (singleton) ring, then the sessions.
    std::thread::sleep(Duration::from_secs(3));
    for (name, at) in [
        ("alice", format!("4803@{addr}")),
        ("bob", "4803".to_owned()),
    ] {
        let mut c = Client::spawn_at(&lab, 0, "sit", name, &at);
        c.wait_for("MEMBERS 1").expect("client joined");
        drop(c);
        std::thread::sleep(Duration::from_millis(700));
    }
    let log = std::fs::read_to_string(tmp.join("d1.log")).unwrap_or_default();
    assert!(lab.alive(pid), "{bin} died:\n{log}");
    if real {
        assert!(
            !log.contains("Alarm"),
            "the real daemon raised an alarm:\n{log}"
        );
    }
    let file = rt.join("d1");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().filter(|l| l.starts_with('D')).count() == 2 {
            return Some(text.lines().map(str::to_owned).collect());
        }
        assert!(
            Instant::now() < deadline,
            "{bin}: membership log {} incomplete:\n{text}\ndaemon log:\n{log}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A line with every number masked (`#`), widths kept apart: the text 5.0.1's format leaves.
fn masked(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Kinds of lines, the masked text and the widths (mailbox numbers aside: 5.0.1 prints a
/// socket number, we a session number, both `%3d`).
fn shape(lines: &[String]) -> Vec<(char, String, usize)> {
    lines
        .iter()
        .map(|l| (l.chars().next().unwrap_or(' '), masked(l), l.len()))
        .collect()
}

#[test]
fn netns_membership_log_is_5_0_1_s() {
    let Some(ours) = run_logged(env!("CARGO_BIN_EXE_spread")) else {
        return;
    };
    let kinds: String = ours.iter().filter_map(|l| l.chars().next()).collect();
    assert_eq!(kinds, "BMCDCD", "{ours:#?}");
    let ip = "10.98.0.1";
    assert_eq!(ours[0].len(), 15, "B %13ld: {:?}", ours[0]);
    assert!(
        ours[1].ends_with(" >   0"),
        "the singleton ring: {:?}",
        ours[1]
    );
    assert_eq!(
        ours[1].len(),
        2 + 13 + 1 + 13 + 1 + 11 + 3 + 3,
        "{:?}",
        ours[1]
    );
    assert_eq!(masked(&ours[2]), format!("C # # # {} alice", masked(ip)));
    assert_eq!(ours[2].len(), 2 + 13 + 1 + 11 + 1 + 3 + 1 + 16 + 1 + 10);
    assert_eq!(masked(&ours[3]), format!("D # # # {} alice #", masked(ip)));
    assert_eq!(ours[3].len(), 2 + 13 + 1 + 11 + 1 + 3 + 1 + 46 + 1 + 10 + 2);
    assert_eq!(masked(&ours[4]), "C # # # address conversion failed bob");
    let Some(real) = real_spread() else {
        eprintln!("real 5.0.1 comparison skipped: set MBUS_REAL_SPREAD");
        return;
    };
    let theirs = run_logged(&real).expect("lab");
    eprintln!("ours:\n{}\n5.0.1:\n{}", ours.join("\n"), theirs.join("\n"));
    assert_eq!(
        shape(&ours),
        shape(&theirs),
        "ours and 5.0.1's membership logs differ"
    );
}
