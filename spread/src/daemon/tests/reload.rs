//! Live reconfiguration ([`crate::daemon::reload`]) with whole daemons built from parsed
//! configuration files, in memory: a ring grows and shrinks under its clients, a changed
//! daemon forces a singleton ring and a re-merge, a reload outside OP waits for OP.

use super::*;
use crate::config::Config;

/// A configuration of daemons `d1..=dN` named in `hosts` (10.98.0.x, x = the digit).
fn conf(hosts: &[usize]) -> Config {
    conf_with(hosts, |i| format!("10.98.0.{i}"))
}

fn conf_with(hosts: &[usize], addr: impl Fn(usize) -> String) -> Config {
    let mut text = String::from("Spread_Segment 10.98.0.255:4803 {\n");
    for &i in hosts {
        text.push_str(&format!(" d{i} {}\n", addr(i)));
    }
    // An explicit protocol line: without one, 5.0.1 (and this daemon) switch to the
    // Accelerated Ring at a reload, and a daemon started fresh with the new file would not
    // match (see `a_default_file_reloads_into_the_accelerated_ring_as_5_0_1`).
    text.push_str("}\nDangerousMonitor = yes\nAcceleratedRing = false\n");
    Config::parse(&text, "r.conf").expect("valid")
}

/// Four daemons d1..d4 (ids from their names), none started.
fn net4() -> Net {
    let all = conf(&[1, 2, 3, 4]);
    Net::with_ids(all.hosts().map(|(_, h)| DaemonId(h.vid)).collect(), 0)
}

/// Starts node `i` (d{i+1}) from `config`.
fn start_from(net: &mut Net, i: usize, config: &Config) {
    let (me, _) = config.find_host(&name(i)).expect("configured");
    net.nodes[i] = Some(Daemon::from_config(config, me, net.now, CLOCK));
    net.drain(i);
}

fn reload(net: &mut Net, i: usize, config: &Config) -> ReloadOutcome {
    let now = net.now;
    let node = net.nodes[i].as_mut().expect("running");
    let r = node.reload(now, config, CLOCK);
    let exit = matches!(r, ReloadOutcome::Exit(_));
    net.drain(i);
    if exit {
        // 5.0.1 exits.
        net.crash(i);
    }
    r
}

/// Client `s` on node `i` joined to `grp`, then its queue emptied.
fn member(net: &mut Net, i: usize, s: u64) {
    net.connect(i, s, &user_of(s));
    net.send(i, s, ServiceType::JOIN_MESS, &["grp"], b"");
}

/// The bodies of the AGREED data messages `s` on `i` got, in order.
fn data(net: &mut Net, i: usize, s: u64) -> Vec<Vec<u8>> {
    net.take(i, s)
        .iter()
        .filter(|f| is(f, ServiceType::AGREED) && !is(f, ServiceType::REG_MEMB_MESS))
        .map(|f| f.body().to_vec())
        .collect()
}

#[test]
fn a_ring_grows_and_shrinks_by_reloading_its_configuration() {
    let mut net = net4();
    let three = conf(&[1, 2, 3]);
    for i in 0..3 {
        start_from(&mut net, i, &three);
    }
    net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    for i in 0..3 {
        member(&mut net, i, i as u64 + 1);
    }
    net.run_for(Duration::from_millis(500));
    let mut sent = 0u32;
    let mut say = |net: &mut Net, k: usize| {
        for i in 0..k {
            sent += 1;
            let s = i as u64 + 1;
            net.send(i, s, ServiceType::AGREED, &["grp"], &sent.to_be_bytes());
        }
    };
    say(&mut net, 3);
    // d4 starts with the four-daemon file: its hash differs, the ring does not hear it.
    let four = conf(&[1, 2, 3, 4]);
    start_from(&mut net, 3, &four);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.ring_of(0).len(), 3, "d4 is not heard before the reload");
    for i in 0..3 {
        assert_eq!(
            reload(&mut net, i, &four),
            ReloadOutcome::Applied { singleton: false }
        );
        say(&mut net, 3);
    }
    let t = net.until_ring(&[0, 1, 2, 3], Duration::from_secs(15));
    assert!(t < Duration::from_secs(10), "grown in {t:?}");
    say(&mut net, 3);
    net.run_for(Duration::from_secs(1));
    // Shrink to d1, d2: d3 is no longer in the file and exits, as 5.0.1.
    let two = conf(&[1, 2]);
    for i in 0..4 {
        let r = reload(&mut net, i, &two);
        if i < 2 {
            assert_eq!(r, ReloadOutcome::Applied { singleton: false });
        } else {
            assert!(matches!(r, ReloadOutcome::Exit(_)), "{r:?}");
        }
    }
    say(&mut net, 2);
    net.until_ring(&[0, 1], Duration::from_secs(15));
    say(&mut net, 2);
    net.run_for(Duration::from_secs(1));
    // d1's and d2's clients kept their sessions throughout and saw one order.
    let (a, b) = (data(&mut net, 0, 1), data(&mut net, 1, 2));
    assert_eq!(a, b);
    assert_eq!(a.len(), sent as usize, "every message delivered");
    for i in 0..2 {
        let n = net.nodes[i].as_ref().expect("running");
        assert_eq!(n.session_count(), 1);
        assert_eq!(n.reload_stats().applied, 2);
        assert_eq!(n.groups().members(&GroupName::new(b"grp")).len(), 2);
    }
}

#[test]
fn a_changed_daemon_forces_a_singleton_ring_then_a_merge() {
    let mut net = net4();
    let three = conf(&[1, 2, 3]);
    for i in 0..3 {
        start_from(&mut net, i, &three);
    }
    net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    // d3 moves to another address: d3 itself exits, d1 and d2 go alone, then merge.
    let moved = conf_with(&[1, 2, 3], |i| {
        if i == 3 {
            "10.98.0.33".into()
        } else {
            format!("10.98.0.{i}")
        }
    });
    assert!(matches!(
        reload(&mut net, 2, &moved),
        ReloadOutcome::Exit(_)
    ));
    for i in 0..2 {
        assert_eq!(
            reload(&mut net, i, &moved),
            ReloadOutcome::Applied { singleton: true }
        );
        assert!(net.nodes[i].as_ref().expect("running").reload_singleton());
    }
    net.until_ring(&[0, 1], Duration::from_secs(20));
    for i in 0..2 {
        let n = net.nodes[i].as_ref().expect("running");
        assert!(!n.reload_singleton());
        assert_eq!(n.reload_stats().singletons, 1);
        assert_eq!(n.reload_stats().remerges, 1);
    }
}

#[test]
fn a_reload_outside_op_waits_for_op() {
    let mut net = net4();
    let two = conf(&[1, 2]);
    start_from(&mut net, 0, &two);
    // Just started: SEG, not OP.
    let three = conf(&[1, 2, 3]);
    assert_eq!(reload(&mut net, 0, &three), ReloadOutcome::Deferred);
    start_from(&mut net, 1, &three);
    start_from(&mut net, 2, &three);
    net.until_ring(&[0, 1, 2], Duration::from_secs(15));
    let s = net.nodes[0].as_ref().expect("running").reload_stats();
    assert_eq!((s.deferred, s.applied), (1, 1));
}

#[test]
fn a_file_without_this_daemon_makes_it_exit() {
    let mut net = net4();
    let two = conf(&[1, 2]);
    start_from(&mut net, 0, &two);
    let node = net.nodes[0].as_mut().expect("running");
    let r = node.reload(net.now, &conf(&[2, 3]), CLOCK);
    assert!(
        matches!(r, ReloadOutcome::Exit(ref why) if why.contains("d1")),
        "{r:?}"
    );
    let mut exits = 0;
    while let Some(o) = node.poll_output() {
        exits += usize::from(o == Output::Monitor(MonitorOutput::Exit));
    }
    assert_eq!(exits, 1);
}

#[test]
fn a_default_file_reloads_into_the_accelerated_ring_as_5_0_1() {
    let default = |hosts: &[usize]| {
        let mut text = String::from("Spread_Segment 10.98.0.255:4803 {\n");
        for &i in hosts {
            text.push_str(&format!(" d{i} 10.98.0.{i}\n"));
        }
        Config::parse(&(text + "}\n"), "d.conf").expect("valid")
    };
    let mut net = net4();
    let three = default(&[1, 2, 3]);
    for i in 0..3 {
        start_from(&mut net, i, &three);
    }
    net.until_ring(&[0, 1, 2], Duration::from_secs(10));
    let e = net.nodes[0].as_ref().expect("running").engine();
    // Start-up: "Original Ring" (fact sheet §9).
    assert!(!e.status().accelerated);
    assert_eq!(e.cfg.conf_hash, 0x9f2a_d697);
    let four = default(&[1, 2, 3, 4]);
    for i in 0..3 {
        reload(&mut net, i, &four);
    }
    net.until_ring(&[0, 1, 2], Duration::from_secs(15));
    let e = net.nodes[0].as_ref().expect("running").engine();
    // What a real 5.0.1 d1 logged after the same reload: "Hash value for this configuration
    // is: 324576905" (0x1358a689, "Accelerated Ring"), not the start-up 0x90e6412f.
    assert_eq!(e.cfg.conf_hash, 0x1358_a689);
    assert!(e.status().accelerated);
}
