//! Log aggregation end to end: three node shells tail real log files and a manager shell with
//! `as_logger` appends what they ship under its base directory (in-memory bus, real files).

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use mbus::cluster::bus::MemHub;
use mbus::cluster::duravip::LogPlumber;
use mbus::cluster::manager::{register_defaults, ManagerCore, ManagerSettings};
use mbus::cluster::node::{NodeCore, NodeIdentity};
use mbus::cluster::shell::{run_manager, run_node};
use mbus::console::client::{ConsoleClient, Endpoint};
use mbus::console::server::{Limits, Listener};
use mbus::ecconf::Config;

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const LINES_PER_NODE: usize = 2000;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_ship_their_logs_to_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("eccluster");
    let hub = MemHub::new();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut socks = Vec::new();
    for n in NODES {
        let log = dir.path().join(format!("{n}.mainlog"));
        append(&log, "written before the node started: not shipped\n");
        let conf = format!("cluster {{ logs = [ mainlog = \"{}\" ] }}\n", log.display());
        let config = Config::from_str(&format!("{n}.conf"), &conf, Path::new(".")).unwrap();
        let sock = dir.path().join(format!("{n}.ctl"));
        let listener = Listener::Unix(tokio::net::UnixListener::bind(&sock).unwrap());
        socks.push(sock);
        let core = NodeCore::new(NodeIdentity::new(n, "east"), "", "", config, None);
        let h = hub.clone();
        let pname = format!("ec0-{n}");
        tokio::spawn(run_node(
            core,
            move || std::future::ready(h.connect(&pname, n)),
            vec![listener],
            Limits::default(),
            Box::new(LogPlumber::default()),
            stop_rx.clone(),
        ));
    }
    // Let every tail find its starting point (the end of the file) before writing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let mut bytes = 0usize;
    for (i, n) in NODES.iter().enumerate() {
        let mut text = String::new();
        for k in 0..LINES_PER_NODE {
            text.push_str(&format!(
                "{}:{n}:message {k} of a busy MTA\n",
                1_733_100_000 + k
            ));
        }
        bytes += text.len();
        append(&dir.path().join(format!("{n}.mainlog")), &text);
        if i == 0 {
            // n1's lines wait in its buffer: the manager is not there yet.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    }
    let conf = format!("as_logger {{ base_dir = \"{}\" }}\n", base.display());
    let mut config = Config::from_str("eccluster.conf", &conf, Path::new(".")).unwrap();
    register_defaults(&mut config);
    let msock = dir.path().join("mgr.ctl");
    let listener = Listener::Unix(tokio::net::UnixListener::bind(&msock).unwrap());
    let h = hub.clone();
    let manager_started = Instant::now();
    let mgr = tokio::spawn(run_manager(
        ManagerCore::new(ManagerSettings::default(), "mgr", config, None),
        move || std::future::ready(h.connect("mgr", "mgr")),
        vec![listener],
        Limits::default(),
        None,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = NODES.iter().all(|n| {
            std::fs::read_to_string(base.join(n).join("mainlog"))
                .is_ok_and(|t| t.lines().count() == LINES_PER_NODE)
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "logs not aggregated in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lag = started.elapsed();
    let catch_up = manager_started.elapsed();
    for n in NODES {
        let text = std::fs::read_to_string(base.join(n).join("mainlog")).unwrap();
        assert!(!text.contains("not shipped"));
        for (k, line) in text.lines().enumerate() {
            assert_eq!(
                line,
                format!("{}:{n}:message {k} of a busy MTA", 1_733_100_000 + k)
            );
        }
    }
    // Both sides agree on the position: every node's acknowledged offset is its byte count.
    let mut c = ConsoleClient::connect(
        &Endpoint::Unix(socks[0].display().to_string()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let per_node = bytes / NODES.len();
    let want = format!("[subscriber: 'mgr' @ 00000000:{per_node:08x}]");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.command("cluster show logs").await.unwrap();
        if r.contains(&want) {
            assert!(r.contains("dropped: 0 lines, 0 bytes"), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut m = ConsoleClient::connect(
        &Endpoint::Unix(msock.display().to_string()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let view = m.command("show logs").await.unwrap();
    for n in NODES {
        assert!(
            view.contains(&format!("{n} mainlog\n\t[on disk: {per_node} bytes]")),
            "{view}"
        );
    }
    println!(
        "log aggregation: {} lines, {bytes} bytes from {} nodes; all on the manager's disk {catch_up:?} after it started, {lag:?} after the first line was written (the manager starts late on purpose)\n{view}",
        LINES_PER_NODE * NODES.len(),
        NODES.len()
    );
    mgr.abort();
}
