//! Our daemons over two segments (fact sheet §15) in network namespaces: two bridges joined by
//! a router namespace (`ip_forward=1`, no directed-broadcast forwarding), one
//! `Spread_Segment` per bridge, one client per daemon inside its daemon's namespace. The
//! daemons must form one ring across the router (ROUTED copies to the other segment's relay,
//! relayed there as a segment broadcast) and every client must see the same total order of
//! the AGREED messages all clients send concurrently. Skipped (with a message) when not root.
//!
//! The clients are `ring_netns`'s client helper re-executed inside the namespaces: they join
//! `grp`, wait for every client, send, and print every body received as `GOT <body>`.

use std::time::{Duration, Instant};

use crate::netns::{child_lines_until, NetLab};
use crate::ring_netns::spawn_client;

const REAL_ENV: &str = "MBUS_REAL_SPREAD";
/// Messages each client sends.
const N: usize = 30;
/// Bound on the whole client run (ring formation across segments, joins, traffic).
const CLIENT_BOUND: Duration = Duration::from_secs(60);
/// A cut daemon loses its link this long after the start (the first ring has formed)...
const CUT_FROM: Duration = Duration::from_secs(6);
/// ... for this long (WAN Token_timeout 5 s, then SEG, GATHER 2.5 s, FORM: a ring of its own).
const CUT_FOR: Duration = Duration::from_secs(12);

/// Runs our daemons in segments of `sizes` (daemon `real.0` is the binary `real.1` if given)
/// and one client per daemon; asserts one total order.
fn run(sizes: &[usize], real: Option<(usize, &str)>) {
    run_with(sizes, real, Cut::None);
}

/// What goes wrong before the clients start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Nothing.
    None,
    /// Daemon `.0` loses its link ([`CUT_FROM`], [`CUT_FOR`]).
    Daemon(usize),
    /// The router stops forwarding for as long (LAN timeouts: `WideAreaNetwork = no`).
    Router,
}

/// [`run`], with a daemon or the router cut ([`Cut`]) from the start of the first ring until
/// the parts run rings of their own; the clients start after the heal, so the rings must
/// merge first — a cut daemon's through its first foreign packet (fact sheet §15.5: the first
/// ring member of its segment forwards it to the leader, who looks up), the segments' at the
/// lookup (30 s after installation with `WideAreaNetwork = no`).
fn run_with(sizes: &[usize], real: Option<(usize, &str)>, cut: Cut) {
    match real {
        Some((i, bin)) => run_mixed(sizes, &[i], bin, cut, ""),
        None => run_mixed(sizes, &[], "", cut, ""),
    }
}

/// [`run_with`] with the real binary `bin` at every daemon of `reals` and `conf_extra`
/// appended to the configuration (e.g. `AcceleratedRing = true`).
fn run_mixed(sizes: &[usize], reals: &[usize], bin: &str, cut: Cut, conf_extra: &str) {
    let Some(mut lab) = NetLab::new(sizes) else {
        return;
    };
    let total: usize = sizes.iter().sum();
    let port = 4803;
    let names: Vec<String> = (1..=total).map(|i| format!("d{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // As real deployments: the real daemon drops privileges to DaemonUser (default
    // "spread", absent here).
    let mut extra = String::from(
        "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\nSocketPortReuse = ON\n",
    );
    if cut == Cut::Router {
        extra += "WideAreaNetwork = no\n";
    }
    extra += conf_extra;
    let conf = lab.spread_conf(&name_refs, port, &extra);
    let ours = env!("CARGO_BIN_EXE_spread");
    for (i, name) in names.iter().enumerate() {
        let exe = if reals.contains(&i) { bin } else { ours };
        lab.start_daemon(i, exe, name, &conf).expect("start daemon");
    }
    match cut {
        Cut::None => {}
        Cut::Daemon(c) => {
            std::thread::sleep(CUT_FROM);
            lab.set_link(c, false).expect("cut");
            std::thread::sleep(CUT_FOR);
            lab.set_link(c, true).expect("heal");
        }
        Cut::Router => {
            std::thread::sleep(CUT_FROM);
            lab.set_forwarding(false).expect("cut");
            std::thread::sleep(CUT_FOR);
            lab.set_forwarding(true).expect("heal");
        }
    }
    let clients: Vec<_> = (0..total)
        .map(|i| spawn_client(&lab, i, &format!("c{}|{port}|{N}|{total}", i + 1)))
        .collect();
    let start = Instant::now();
    let mut seqs = Vec::new();
    let deadline = start + CLIENT_BOUND + Duration::from_secs(10);
    for mut c in clients {
        let lines = child_lines_until(&mut c, deadline);
        let got: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("GOT ").map(str::to_owned))
            .collect();
        if !lines.iter().any(|l| l == "DONE") {
            let logs: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{n}: {}", lab.log(i, n)))
                .collect();
            panic!("client did not finish: {lines:?}\n{}", logs.join("\n"));
        }
        seqs.push(got);
    }
    eprintln!(
        "{total} clients over segments {sizes:?} done in {:?}",
        start.elapsed()
    );
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
    assert_eq!(seqs[0].len(), total * N);
    for (i, s) in seqs.iter().enumerate().skip(1) {
        assert_eq!(&seqs[0], s, "clients of d1 and d{} disagree", i + 1);
    }
    for i in 1..=total {
        let mine = seqs[0]
            .iter()
            .filter(|b| b.starts_with(&format!("c{i}-")))
            .count();
        assert_eq!(mine, N, "every message of c{i} once");
    }
}

/// Two daemons east, one west (the `n_multiseg_*` layout): one ring, one total order.
#[test]
fn netns_two_segments_2_1_one_total_order() {
    run(&[2, 1], None);
}

/// Two daemons on each side (the `n_multiseg22_*` layout): one ring, one total order.
#[test]
fn netns_two_segments_2_2_one_total_order() {
    run(&[2, 2], None);
}

/// The real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) as the first east daemon (ring
/// leader, east relay) with ours in 2+2: a mixed ring across two segments.
#[test]
fn netns_two_segments_mixed_real_leader() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run(&[2, 2], Some((0, &real)));
}

/// The real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) as the first west daemon (the relay
/// of our ROUTED copies into the west) with ours in 2+2.
#[test]
fn netns_two_segments_mixed_real_west_relay() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run(&[2, 2], Some((2, &real)));
}

/// The real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) alone in the west (2+1) with ours in
/// the east.
#[test]
fn netns_two_segments_mixed_real_alone_west() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run(&[2, 1], Some((2, &real)));
}

/// The real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) as the second east daemon in 2+2: our
/// first east daemon is its segment representative (the real one is REPRESENTED by ours) and
/// the ring leader.
#[test]
fn netns_two_segments_mixed_real_represented_by_ours() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run(&[2, 2], Some((1, &real)));
}

/// 2+2, ours only: w2 cut off until it runs a ring of its own; the rings merge when w1
/// forwards w2's first foreign packet to the leader.
#[test]
fn netns_two_segments_2_2_cut_daemon_merges_on_a_foreign_packet() {
    run_with(&[2, 2], None, Cut::Daemon(3));
}

/// As above with the real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) as w1, the first
/// west daemon of the ring: it forwards the foreign packet to our leader.
#[test]
fn netns_two_segments_mixed_real_forwards_a_foreign_packet() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run_with(&[2, 2], Some((2, &real)), Cut::Daemon(3));
}

/// As above with the real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) as the ring leader e1:
/// our w1 forwards the foreign packet to it, it looks up our cut w2.
#[test]
fn netns_two_segments_mixed_real_leader_looks_up_on_a_foreign_packet() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run_with(&[2, 2], Some((0, &real)), Cut::Daemon(3));
}

/// 2+2 with the real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) as w2 and the router cut:
/// rings {e1,e2} and {w1,w2}; after the heal e1's lookup (unicast JOINs to w1 and w2) is
/// answered by the real w2 with a REFER to our w1 (fact sheet §15.5), and the rings merge.
#[test]
fn netns_two_segments_mixed_real_router_cut_merges_at_the_lookup() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run_with(&[2, 2], Some((3, &real)), Cut::Router);
}

/// 2+2, ours only, router cut: two rings, merged after the heal by the lookup (unicast JOINs
/// to the missing daemons, REFER from the other ring's non-leader).
#[test]
fn netns_two_segments_2_2_router_cut_merges_at_the_lookup() {
    run_with(&[2, 2], None, Cut::Router);
}

/// One real Spread 5.0.1 (only with `MBUS_REAL_SPREAD`) in each segment, ours beside each
/// (e1 and w1 real, e2 and w2 ours); every client joins while the ring forms.
#[test]
fn netns_two_segments_mixed_a_real_daemon_in_each_segment() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run_mixed(&[2, 2], &[0, 2], &real, Cut::None, "");
}

/// As above with `AcceleratedRing = true` in every configuration.
#[test]
fn netns_two_segments_mixed_a_real_daemon_in_each_segment_accelerated() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run_mixed(
        &[2, 2],
        &[0, 2],
        &real,
        Cut::None,
        "AcceleratedRing = true\n",
    );
}

/// Ours only, 2+2, Accelerated Ring.
#[test]
fn netns_two_segments_2_2_accelerated_one_total_order() {
    run_mixed(&[2, 2], &[], "", Cut::None, "AcceleratedRing = true\n");
}
