//! Live reconfiguration of mixed rings (the real Spread 5.0.1 daemon as d1, ours as the
//! others) with the real `spmonitor` (menu `r`), in network namespaces: the ring grows and
//! shrinks and stays one ring; a file without an `AcceleratedRing` line reloads into the
//! Accelerated Ring at the real daemon and ours alike. Every test checks that the real daemon
//! is alive and logged no `Alarm`. Skipped unless `MBUS_REAL_SPREAD` and
//! `MBUS_REAL_SPREAD_BIN_DIR` are set (and when not root).

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use spread::config::Config;
use spread::ring::RingConfig;

use crate::netns::{real_spread, NetLab};
use crate::ring_reload::{conf_of, write_conf, Client};

/// Runs the real `spmonitor` as d1 with `/tmp/monitor.conf` (the running file), menu `r`
/// (RELOAD to every daemon of that file), until `client` prints `want`.
fn spmonitor_reload(
    lab: &NetLab,
    bin_dir: &str,
    client: &mut Client,
    want: &str,
) -> Result<(), String> {
    let mut mon = lab.command(0, &format!("{bin_dir}/spmonitor"));
    mon.args(["-n", "d1", "-c", "/tmp/monitor.conf"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut mon = mon.spawn().expect("spmonitor");
    mon.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"r\n")
        .expect("menu r");
    let r = client.wait_for(want);
    let _ = mon.stdin.as_mut().map(|s| s.write_all(b"q\n"));
    std::thread::sleep(Duration::from_millis(300));
    let _ = mon.kill();
    let _ = mon.wait();
    r
}

/// A mixed ring — the real 5.0.1 as d1, ours as d2 and d3 — grows to four (our d4) when the
/// file is edited and the real `spmonitor` (menu `r`, run as d1 with the old file) sends
/// RELOAD to every daemon: one ring of four; then back to three the same way (d4 exits). The
/// real daemon alive, no `Alarm` in its log.
#[test]
fn netns_mixed_ring_reloaded_by_real_spmonitor() {
    let (Some(real), Ok(bin_dir)) = (real_spread(), std::env::var("MBUS_REAL_SPREAD_BIN_DIR"))
    else {
        eprintln!("skipped: set MBUS_REAL_SPREAD and MBUS_REAL_SPREAD_BIN_DIR");
        return;
    };
    let Some(mut lab) = NetLab::new(&[4]) else {
        return;
    };
    let ours = env!("CARGO_BIN_EXE_spread");
    let extra = "DangerousMonitor = yes\nAcceleratedRing = false\nDaemonUser = nobody\n\
                 DaemonGroup = nogroup\nRuntimeDir = /tmp/rt\nSocketPortReuse = ON\n";
    let conf3 = conf_of(&lab, 3, extra);
    let conf4 = conf_of(&lab, 4, extra);
    for i in 0..3 {
        let bin = if i == 0 { real.as_str() } else { ours };
        write_conf(&lab, i, &conf3);
        lab.start_daemon(i, bin, &format!("d{}", i + 1), &conf3)
            .expect("start");
    }
    let mut c2 = Client::spawn(&lab, 1, "sit", "c2");
    let _c1 = Client::spawn(&lab, 0, "sit", "c1");
    let _c3 = Client::spawn(&lab, 2, "sit", "c3");
    let logs = |lab: &NetLab| {
        (0..4)
            .map(|i| format!("d{}: {}", i + 1, lab.log(i, &format!("d{}", i + 1))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Err(e) = c2.wait_for("MEMBERS 3") {
        panic!("{e}\n{}", logs(&lab));
    }
    lab.start_daemon(3, ours, "d4", &conf4).expect("start d4");
    let _c4 = Client::spawn(&lab, 3, "sit", "c4");
    std::thread::sleep(Duration::from_secs(2));
    // spmonitor runs as d1 with the running (old) file; the daemons re-read the new one.
    std::fs::write(lab.nodes[0].tmp.join("monitor.conf"), &conf3).expect("monitor conf");
    for i in 0..3 {
        write_conf(&lab, i, &conf4);
    }
    let t0 = Instant::now();
    let grown = spmonitor_reload(&lab, &bin_dir, &mut c2, "MEMBERS 4");
    if let Err(e) = grown {
        panic!("{e}\n{}", logs(&lab));
    }
    eprintln!("mixed ring grown to four in {:?}", t0.elapsed());
    let real_log = lab.log(0, "d1");
    assert!(
        real_log.contains("Conf_reload_initiate: Added new daemon: name d4"),
        "the real daemon did not reload:\n{real_log}"
    );
    // And back to three: d4 leaves the file (ours exits on the reload, as 5.0.1 would).
    std::fs::write(lab.nodes[0].tmp.join("monitor.conf"), &conf4).expect("monitor conf");
    for i in 0..4 {
        write_conf(&lab, i, &conf3);
    }
    let t1 = Instant::now();
    if let Err(e) = spmonitor_reload(&lab, &bin_dir, &mut c2, "MEMBERS 3") {
        panic!("{e}\n{}", logs(&lab));
    }
    eprintln!("mixed ring shrunk to three in {:?}", t1.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
    let real_log = lab.log(0, "d1");
    assert!(
        !real_log.contains("Alarm"),
        "the real daemon raised an alarm:\n{real_log}"
    );
}

/// 5.0.1's surprise, live: a mixed ring whose file has no `AcceleratedRing` line, reloaded by
/// the real `spmonitor` with the file unchanged, switches to the Accelerated Ring — the real
/// daemon and ours compute the same new hash and stay one ring.
#[test]
fn netns_mixed_ring_with_a_default_file_reloads_into_the_accelerated_ring() {
    let (Some(real), Ok(bin_dir)) = (real_spread(), std::env::var("MBUS_REAL_SPREAD_BIN_DIR"))
    else {
        eprintln!("skipped: set MBUS_REAL_SPREAD and MBUS_REAL_SPREAD_BIN_DIR");
        return;
    };
    let Some(mut lab) = NetLab::new(&[3]) else {
        return;
    };
    let ours = env!("CARGO_BIN_EXE_spread");
    let extra = "DangerousMonitor = yes\nDaemonUser = nobody\nDaemonGroup = nogroup\n\
                 RuntimeDir = /tmp/rt\nSocketPortReuse = ON\n";
    let conf = conf_of(&lab, 3, extra);
    for i in 0..3 {
        let bin = if i == 0 { real.as_str() } else { ours };
        write_conf(&lab, i, &conf);
        lab.start_daemon(i, bin, &format!("d{}", i + 1), &conf)
            .expect("start");
    }
    let mut c2 = Client::spawn(&lab, 1, "sit", "c2");
    let _c1 = Client::spawn(&lab, 0, "sit", "c1");
    let _c3 = Client::spawn(&lab, 2, "sit", "c3");
    let logs = |lab: &NetLab| {
        (0..3)
            .map(|i| format!("d{}: {}", i + 1, lab.log(i, &format!("d{}", i + 1))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Err(e) = c2.wait_for("MEMBERS 3") {
        panic!("{e}\n{}", logs(&lab));
    }
    std::fs::write(lab.nodes[0].tmp.join("monitor.conf"), &conf).expect("monitor conf");
    // The groups do not change (the same three daemons form the ring again): no membership
    // message to wait for; give the ring time to re-form under the new hash.
    let mut mon = lab.command(0, &format!("{bin_dir}/spmonitor"));
    mon.args(["-n", "d1", "-c", "/tmp/monitor.conf"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut mon = mon.spawn().expect("spmonitor");
    let _ = mon.stdin.as_mut().map(|s| s.write_all(b"r\n"));
    std::thread::sleep(Duration::from_secs(5));
    let _ = mon.stdin.as_mut().map(|s| s.write_all(b"q\n"));
    std::thread::sleep(Duration::from_millis(300));
    let _ = mon.kill();
    let _ = mon.wait();
    let accelerated =
        Config::parse(&format!("{conf}AcceleratedRing = true\n"), "a.conf").expect("conf");
    let hash = RingConfig::from_config(&accelerated, "d1")
        .expect("ring")
        .conf_hash;
    let real_log = lab.log(0, "d1");
    assert!(
        real_log.contains(&format!("Hash value for this configuration is: {hash}")),
        "5.0.1 did not reload into the Accelerated Ring hash {hash}:\n{real_log}"
    );
    for i in 1..3 {
        let log = lab.log(i, &format!("d{}", i + 1));
        assert!(log.contains(&format!("new_hash={hash:#010x}")), "{log}");
    }
    // Still one ring: a fourth client on d3 sees all of them.
    let mut c4 = Client::spawn(&lab, 2, "sit", "c4");
    if let Err(e) = c4.wait_for("MEMBERS 4") {
        panic!("{e}\n{}", logs(&lab));
    }
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
}
