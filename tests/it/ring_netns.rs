//! Three daemons in network namespaces (real segment broadcasts on a bridge, [`NetLab`]), one
//! client per daemon running inside its daemon's namespace: one total order for AGREED traffic
//! sent concurrently from all three. With `MBUS_REAL_SPREAD=/path/to/5.0.1/spread`, the first
//! daemon is the real Spread 5.0.1: a mixed ring. Skipped (with a message) when not root.
//!
//! The clients are this test binary re-executed inside the namespaces with
//! `MBUS_RING_CLIENT=<name>|<connect string>|<messages>[|<clients>]` ([`ring_client_helper`],
//! spawned by [`spawn_client`], also for `ring_multiseg` and `mixed_ring`): they
//! join `grp`, wait for three members, send, and print every body received as `GOT <body>`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use mbus::client::{Mailbox, Message, ServiceType};

use crate::netns::{child_lines_until, NetLab};

const HELPER_ENV: &str = "MBUS_RING_CLIENT";
const REAL_ENV: &str = "MBUS_REAL_SPREAD";
/// Messages each client sends.
const N: usize = 30;
/// Bound on the whole client run (ring formation, joins, traffic).
const CLIENT_BOUND: Duration = Duration::from_secs(60);

/// Client helper (run only when re-executed with `MBUS_RING_CLIENT`).
#[test]
#[ignore = "helper process of ring_netns tests"]
fn ring_client_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (name, addr, n) = (parts[0], parts[1], parts[2].parse::<usize>().unwrap());
    let clients = parts.get(3).map_or(3, |c| c.parse::<usize>().unwrap());
    let pause = Duration::from_millis(parts.get(4).map_or(0, |c| c.parse::<u64>().unwrap()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(CLIENT_BOUND, client(name, addr, n, clients, pause))
            .await
            .expect("client run timed out");
    });
}

/// Spawns [`ring_client_helper`] in node `i` of `lab` with `spec`
/// (`<name>|<connect string>|<messages>|<clients>[|<pause ms between sends>]`), its standard
/// output piped.
pub(crate) fn spawn_client(lab: &NetLab, i: usize, spec: &str) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = lab.command(i, exe.to_str().unwrap());
    cmd.args([
        "--exact",
        "ring_netns::ring_client_helper",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, spec)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd.spawn().expect("spawn client")
}

/// One client process's work: connect to `addr` (retrying while the daemon starts), join `grp` at once, wait until `clients`
/// members are in — a session the daemon closes before that is opened again (printed
/// `RECONNECT`) — send `n` AGREED messages and print every message of all `clients` senders
/// (`JOINED`, `GOT …`, `DONE` on standard output).
async fn client(name: &str, addr: &str, n: usize, clients: usize, pause: Duration) {
    let mut mb = 'session: loop {
        let mut mb = match Mailbox::connect(addr, name, true).await {
            Ok(m) => m,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if mb.join("grp").await.is_err() {
            println!("RECONNECT");
            continue;
        }
        loop {
            match mb.receive().await {
                Ok(Message::Membership(m)) if m.members.len() == clients => break 'session mb,
                Ok(_) => {}
                Err(e) => {
                    println!("RECONNECT {e}");
                    continue 'session;
                }
            }
        }
    };
    println!("JOINED");
    for k in 0..n {
        let body = format!("{name}-{k}");
        mb.multicast(ServiceType::AGREED, "grp", 0, body.as_bytes())
            .await
            .unwrap();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let mut got = 0;
    while got < clients * n {
        match mb.receive().await {
            Ok(Message::Data(d)) => {
                println!("GOT {}", String::from_utf8_lossy(&d.body));
                got += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("{name}: receive: {e}"),
        }
    }
    println!("DONE");
}

fn run_ring(real_first: Option<&str>) {
    let Some(mut lab) = NetLab::new(&[3]) else {
        return;
    };
    let port = 4803;
    let extra = "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n\
                 SocketPortReuse = ON\n";
    let conf = lab.spread_conf(&["d1", "d2", "d3"], port, extra);
    let ours = env!("CARGO_BIN_EXE_spread");
    for i in 0..3 {
        let bin = match (i, real_first) {
            (0, Some(real)) => real,
            _ => ours,
        };
        lab.start_daemon(i, bin, &format!("d{}", i + 1), &conf)
            .expect("start daemon");
    }
    // The Unix socket /tmp/PORT in the node's private /tmp (both daemons listen there).
    let clients: Vec<_> = (0..3)
        .map(|i| spawn_client(&lab, i, &format!("c{}|{port}|{N}|3", i + 1)))
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
        assert!(
            lines.iter().any(|l| l == "DONE"),
            "client did not finish: {lines:?}\nd1: {}\nd2: {}\nd3: {}",
            lab.log(0, "d1"),
            lab.log(1, "d2"),
            lab.log(2, "d3")
        );
        seqs.push(got);
    }
    eprintln!("three clients done in {:?}", start.elapsed());
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
    assert_eq!(seqs[0].len(), 3 * N);
    assert_eq!(seqs[0], seqs[1], "d1 and d2 clients disagree");
    assert_eq!(seqs[0], seqs[2], "d1 and d3 clients disagree");
    for i in 1..=3 {
        let mine: Vec<&String> = seqs[0]
            .iter()
            .filter(|b| b.starts_with(&format!("c{i}-")))
            .collect();
        assert_eq!(mine.len(), N, "every message of c{i} once");
    }
}

/// Our three daemons over real broadcast: one total order.
#[test]
fn netns_three_daemons_one_total_order() {
    run_ring(None);
}

/// The real Spread 5.0.1 as d1 with our d2 and d3 (only with `MBUS_REAL_SPREAD`).
#[test]
fn netns_mixed_ring_with_real_spread() {
    let Ok(real) = std::env::var(REAL_ENV) else {
        eprintln!("skipped: set {REAL_ENV} to a Spread 5.0.1 daemon binary");
        return;
    };
    run_ring(Some(&real));
}

/// Our own broadcasts come back to our ring sockets (every socket of the host bound to the
/// segment port gets a copy). A socket filter drops them in the kernel by default, so the
/// daemon never reads them; `MBUS_RING_OWN_FILTER=0` leaves them to the core, which drops
/// each one (§1.1 `own`). Two of our daemons on a bridge, both flooding: with the filter no
/// own copy reaches the core, without it every broadcast comes back once.
#[test]
fn netns_own_broadcasts_are_dropped_before_the_daemon_reads_them() {
    const PORT: u16 = 4803;
    let Some(mut lab) = NetLab::new(&[2]) else {
        return;
    };
    let conf = lab.spread_conf(&["d1", "d2"], PORT, "RuntimeDir = /tmp/rt\n");
    let bin = env!("CARGO_BIN_EXE_spread");
    let metrics = ["--metrics", "127.0.0.1:9803"];
    lab.start_daemon_env(0, bin, "d1", &conf, &metrics, &[])
        .expect("start d1");
    lab.start_daemon_env(
        1,
        bin,
        "d2",
        &conf,
        &metrics,
        &[("MBUS_RING_OWN_FILTER", "0")],
    )
    .expect("start d2");
    let addrs: Vec<String> = (0..2)
        .map(|i| format!("{PORT}@{}", lab.nodes[i].addr))
        .collect();
    // Both flood, each read by the other daemon's client (retried while the ring forms).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        loop {
            let out = lab
                .command(from, env!("CARGO_BIN_EXE_mbus-bench"))
                .args(["-s", &addrs[from], "--reader", &addrs[to]])
                .args(["-m", "300", "-b", "100", "--json", "--timeout", "10"])
                .output()
                .expect("run mbus-bench");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "flood {from} -> {to} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let counter = |i: usize, name: &str| -> u64 {
        let get = "import urllib.request as u;\
                   print(u.urlopen('http://127.0.0.1:9803/metrics', timeout=5).read().decode())";
        let out = lab
            .command(i, "python3")
            .args(["-c", get])
            .output()
            .expect("read metrics");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in d{}'s metrics", i + 1))
    };
    let own = "spread_packets_dropped_total{reason=\"own\"} ";
    let sent = "spread_datagrams_sent_total ";
    let (own1, sent1) = (counter(0, own), counter(0, sent));
    let (own2, sent2) = (counter(1, own), counter(1, sent));
    assert!(sent1 >= 20 && sent2 >= 20, "sent {sent1} and {sent2}");
    assert_eq!(own1, 0, "d1 (filter on) read {own1} of its own datagrams");
    // Its 300 messages left in broadcasts (many small ones per datagram), tokens unicast.
    eprintln!("d1: {sent1} sent, {own1} own read; d2: {sent2} sent, {own2} own read");
    assert!(
        own2 >= 10,
        "d2 (filter off) dropped only {own2} own copies of {sent2} datagrams sent"
    );
}
