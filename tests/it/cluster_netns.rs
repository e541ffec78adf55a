//! A two-segment ring in network namespaces this test creates and removes: segment 0 holds the
//! manager host and two east nodes, segment 1 one west node; every host runs its own daemon;
//! `eccmgr` and the `mbus-node` agents attach to their local daemon; subclusters come from the
//! `# Subcluster:` comments of the two-segment `mbus.conf` they all read.
//!
//! Uses `MBUS_TEST_SPREAD` (e.g. the real Spread 5.0.1) or our `spread` (whose ring spans
//! segments through ROUTED copies and relays, fact sheet §15). Skips (with a message) when
//! not root.

use std::process::Stdio;
use std::time::Duration;

use crate::cluster_daemon::{console, eventually};
use crate::netns::NetLab;

#[test]
fn cluster_netns_two_segments_two_subclusters() {
    let Some(mut lab) = NetLab::new(&[3, 1]) else {
        return;
    };
    let (bin, real) = match std::env::var("MBUS_TEST_SPREAD") {
        Ok(p) => (p, true),
        Err(_) => (env!("CARGO_BIN_EXE_spread").to_string(), false),
    };
    let names = ["mgr", "n1", "n2", "n3"];
    let port = 4803;
    let mut mbus = String::new();
    for s in 0..lab.segments {
        mbus += if s == 0 {
            "# Subcluster: east => mgr.example.com\n"
        } else {
            "# Subcluster: west = mgr.example.com\n"
        };
        mbus += &format!("Spread_Segment {}:{port} {{\n", lab.bcast(s));
        for (i, n) in lab.nodes.iter().enumerate().filter(|(_, n)| n.segment == s) {
            mbus += &format!("  {} {}\n", names[i], n.addr);
        }
        mbus += "}\n";
    }
    mbus += "RuntimeDir = /tmp/rt\n";
    if real {
        mbus += "DaemonUser = root\nDaemonGroup = root\n";
    }
    for (i, n) in names.iter().enumerate() {
        std::fs::write(lab.nodes[i].tmp.join("mbus.conf"), &mbus).unwrap();
        lab.start_daemon(i, &bin, n, &mbus).unwrap();
    }
    // Each process attaches to the daemon of its own host, at the host's ring address.
    let daemons: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("{port}@{}", n.addr))
        .collect();
    let daemon = daemons[0].clone();
    // The manager's control socket lives in its node's /tmp, reachable from here.
    std::fs::write(
        lab.nodes[0].tmp.join("eccluster.conf"),
        "Control_Listener { Listen \"/tmp/ctl\" { } }\n",
    )
    .unwrap();
    let mut cmd = lab.command(0, env!("CARGO_BIN_EXE_eccmgr"));
    cmd.args([
        "-c",
        "/tmp/eccluster.conf",
        "-s",
        &daemon,
        "-m",
        "/tmp/mbus.conf",
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(lab.nodes[0].tmp.join("eccmgr.log")).unwrap());
    lab.spawn(cmd).unwrap();
    let mut node_pids = Vec::new();
    for (i, n) in names.iter().enumerate().skip(1) {
        let mut cmd = lab.command(i, env!("CARGO_BIN_EXE_mbus-node"));
        cmd.args(["-s", &daemons[i], "-n", n, "-m", "/tmp/mbus.conf"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lab.nodes[i].tmp.join("node.log")).unwrap());
        node_pids.push(lab.spawn(cmd).unwrap());
    }
    let sock = lab.nodes[0].tmp.join("ctl");
    let logs_of = |lab: &NetLab| {
        let mut s =
            std::fs::read_to_string(lab.nodes[0].tmp.join("eccmgr.log")).unwrap_or_default();
        for (i, n) in names.iter().enumerate() {
            s += &format!("--- {n} daemon ---\n{}", lab.log(i, n));
        }
        s
    };
    let m = eventually(
        "three nodes from two segments",
        Duration::from_secs(60),
        || {
            let m = console(&sock, "show cluster membership");
            (m.matches("Node Type: Momentum").count() == 3).then_some(m)
        },
        || logs_of(&lab),
    );
    assert!(
        m.contains("#mgr\nNode Name: (Null)\nSubcluster: (Null)\nNode Type: Manager"),
        "{m}"
    );
    assert!(m.contains("Node Name: n3\nSubcluster: west"), "{m}");
    assert!(
        m.contains("Groups: ec_console, ec_sc_east, ec_cluster"),
        "{m}"
    );

    assert_eq!(
        console(&sock, "subcluster broadcast west cluster nodename"),
        "Sent to 1 node(s) on ec_sc_west.\n"
    );
    assert_eq!(
        console(&sock, "subcluster broadcast east cluster info"),
        "Sent to 2 node(s) on ec_sc_east.\n"
    );
    let west = eventually(
        "west answer",
        Duration::from_secs(20),
        || {
            let r = console(&sock, "retrieve cluster nodename");
            (!r.contains("no response yet")).then_some(r)
        },
        || logs_of(&lab),
    );
    assert_eq!(west, "n3:\nn3\n");
    let east = eventually(
        "east answers",
        Duration::from_secs(20),
        || {
            let r = console(&sock, "retrieve cluster info");
            (!r.contains("no response yet")).then_some(r)
        },
        || logs_of(&lab),
    );
    assert!(
        east.starts_with("n1:\nDaemon: ")
            && east.contains("\nn2:\nDaemon: ")
            && !east.contains("n3:"),
        "{east}"
    );

    // The west node's process dies after a broadcast: retrieve shows it as not answered or
    // answered, never pending forever; membership drops to two nodes.
    lab.kill(node_pids[2]);
    eventually(
        "n3 gone",
        Duration::from_secs(30),
        || {
            let m = console(&sock, "show cluster membership");
            (m.matches("Node Type: Momentum").count() == 2).then_some(m)
        },
        || logs_of(&lab),
    );
}
