//! Three `spread` daemons forming one ring on this machine, at 127.0.0.1, .2 and .3 on one
//! free port (loopback convenience mode: the segment address is a loopback address, so
//! "broadcasts" go by unicast to every other daemon; see `spread::daemon::topology`), with
//! clients on different daemons: one total order for AGREED traffic sent concurrently from all
//! three; network memberships when a daemon is SIGKILLed and when it comes back.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mbus::client::{Cause, Mailbox, Message, ServiceType};

use crate::harness::{free_port, recv, recv_membership};

/// Bound on forming the ring at start (5.0.1: ~2 s; generous for a loaded machine).
pub(crate) const FORM_BOUND: Duration = Duration::from_secs(20);

pub(crate) struct Ring {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    children: Vec<Option<Child>>,
    /// Metrics endpoint port of each daemon (`--metrics addr(i):PORT`); empty: none.
    pub(crate) metrics: Vec<u16>,
}

pub(crate) fn addr(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

impl Ring {
    fn new(n: usize) -> Self {
        Self::with_options(n, "")
    }

    /// `n` daemons whose configuration ends with the option lines `extra`.
    pub(crate) fn with_options(n: usize, extra: &str) -> Self {
        Self::build(n, extra, false)
    }

    /// `n` daemons, each serving its metrics endpoint on its own address ([`Ring::metrics`]).
    pub(crate) fn with_metrics(n: usize) -> Self {
        Self::build(n, "", true)
    }

    fn build(n: usize, extra: &str, metrics: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mbus-ring-")
            .tempdir()
            .expect("tempdir");
        // Ports P, P+1 must be free on every address; free_port checks the wildcard.
        let port = free_port();
        let mut hosts = String::new();
        for i in 0..n {
            let a = addr(i);
            hosts.push_str(&format!("    d{} {a} {{ D {a} C {a} }}\n", i + 1));
        }
        for i in 0..n {
            let rt = dir.path().join(format!("run{i}"));
            fs::create_dir_all(&rt).expect("runtime dir");
            let text = format!(
                "Spread_Segment 127.255.255.255:{port} {{\n{hosts}}}\nRuntimeDir = {}\n{extra}",
                rt.display()
            );
            fs::write(dir.path().join(format!("d{}.conf", i + 1)), text).expect("config");
        }
        let mut r = Self {
            dir,
            port,
            children: (0..n).map(|_| None).collect(),
            metrics: if metrics {
                (0..n).map(|_| free_port()).collect()
            } else {
                Vec::new()
            },
        };
        for i in 0..n {
            r.start(i);
        }
        r
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("d{}.log", i + 1))
    }

    fn start(&mut self, i: usize) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log");
        let log2 = log.try_clone().expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spread"));
        if let Some(p) = self.metrics.get(i) {
            cmd.arg("--metrics").arg(format!("{}:{p}", addr(i)));
        }
        let child = cmd
            .arg("-n")
            .arg(format!("d{}", i + 1))
            .arg("-c")
            .arg(self.dir.path().join(format!("d{}.conf", i + 1)))
            .current_dir(self.dir.path())
            .env(
                "MBUS_UNIX_SOCKET_DIR",
                self.dir.path().join(format!("run{i}")),
            )
            .env(
                "RUST_LOG",
                std::env::var("MBUS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn spread");
        self.children[i] = Some(child);
    }

    /// Whether daemon `i` has exited by itself (it was started and is no longer running).
    pub(crate) fn exited(&mut self, i: usize) -> bool {
        self.children[i]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                format!(
                    "--- d{} ---\n{}",
                    i + 1,
                    fs::read_to_string(self.log_path(i)).unwrap_or_default()
                )
            })
            .collect()
    }

    fn tcp(&self, i: usize) -> String {
        format!("{}@{}", self.port, addr(i))
    }

    pub(crate) async fn connect(&self, i: usize, name: &str) -> Mailbox {
        let deadline = Instant::now() + FORM_BOUND;
        loop {
            match Mailbox::connect(&self.tcp(i), name, true).await {
                Ok(m) => return m,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "connect {name} to d{}: {e}\n{}",
                        i + 1,
                        self.logs()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Waits until `mb`'s view of `group` has exactly `n` members; returns the membership.
async fn until_members(mb: &mut Mailbox, group: &str, n: usize) -> mbus::client::Membership {
    loop {
        let m = recv_membership(mb, group).await;
        if m.members.len() == n {
            return m;
        }
    }
}

/// Connects one client per daemon and joins `grp`; returns them once every one sees 3 members
/// (the ring has formed: the joins crossed it).
pub(crate) async fn three_clients(ring: &Ring) -> Vec<Mailbox> {
    let mut mbs = Vec::new();
    for i in 0..3 {
        let mut mb = ring.connect(i, &format!("c{}", i + 1)).await;
        mb.join("grp").await.expect("join");
        mbs.push(mb);
    }
    for mb in &mut mbs {
        let m = tokio::time::timeout(FORM_BOUND, until_members(mb, "grp", 3))
            .await
            .unwrap_or_else(|_| panic!("no 3-member view\n{}", ring.logs()));
        assert_eq!(m.members, ["#c1#d1", "#c2#d2", "#c3#d3"]);
    }
    mbs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_one_total_order() {
    let ring = Ring::new(3);
    let t0 = Instant::now();
    let mut mbs = three_clients(&ring).await;
    eprintln!("ring formed and joins crossed in {:?}", t0.elapsed());
    const N: usize = 50;
    // Every client sends N AGREED messages concurrently with the others.
    let mut senders = Vec::new();
    for (i, mut mb) in mbs.drain(..).enumerate() {
        senders.push(tokio::spawn(async move {
            for k in 0..N {
                let body = format!("c{}-{k}", i + 1);
                mb.multicast(ServiceType::AGREED, "grp", 0, body.as_bytes())
                    .await
                    .expect("multicast");
            }
            let mut got = Vec::new();
            while got.len() < 3 * N {
                match recv(&mut mb).await {
                    Message::Data(d) => got.push(String::from_utf8_lossy(&d.body).into_owned()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            got
        }));
    }
    let mut seqs = Vec::new();
    for s in senders {
        seqs.push(s.await.expect("client task"));
    }
    assert_eq!(seqs[0].len(), 3 * N);
    assert_eq!(seqs[0], seqs[1], "d1 and d2 clients disagree");
    assert_eq!(seqs[0], seqs[2], "d1 and d3 clients disagree");
    for i in 0..3 {
        let mine: Vec<&String> = seqs[0]
            .iter()
            .filter(|b| b.starts_with(&format!("c{}-", i + 1)))
            .collect();
        let want: Vec<String> = (0..N).map(|k| format!("c{}-{k}", i + 1)).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>(), "FIFO per sender");
    }
    // Interleaved, not one sender after another (the order is a real merge).
    let firsts: Vec<&str> = seqs[0].iter().take(3 * N).map(|s| &s[..2]).collect();
    let switches = firsts.windows(2).filter(|w| w[0] != w[1]).count();
    eprintln!("sender switches in the total order: {switches}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_and_back() {
    let mut ring = Ring::new(3);
    let mut mbs = three_clients(&ring).await;
    mbs[0]
        .multicast(ServiceType::AGREED, "grp", 0, b"x")
        .await
        .unwrap();
    for mb in &mut mbs {
        match recv(mb).await {
            Message::Data(d) => assert_eq!(&d.body[..], b"x"),
            other => panic!("{other:?}"),
        }
    }
    // d3's client goes down with its daemon.
    drop(mbs.pop());
    // SIGKILL d3 (its client's connection just breaks).
    let t = Instant::now();
    ring.kill(2);
    for mb in &mut mbs {
        let first = tokio::time::timeout(Duration::from_secs(20), recv(mb))
            .await
            .unwrap_or_else(|_| panic!("no reaction to the kill\n{}", ring.logs()));
        assert!(
            matches!(&first, Message::Transitional { group, .. } if group == "grp"),
            "TRANSITION_MESS first, got {first:?}"
        );
        let m = recv_membership(mb, "grp").await;
        assert_eq!(m.cause, Cause::Network);
        assert_eq!(m.members, ["#c1#d1", "#c2#d2"]);
        assert_eq!(
            m.vs_sets,
            vec![vec!["#c1#d1".to_owned(), "#c2#d2".to_owned()]]
        );
        assert_eq!(m.group_id.index, 1);
    }
    let noticed = t.elapsed();
    eprintln!("killed daemon noticed in {noticed:?}");
    assert!(noticed < Duration::from_secs(10), "took {noticed:?}");
    // d3 comes back; its new client joins: a plain join if d3 merged first, else (the client
    // was quicker than the merge) a network view bringing the two sides together.
    let t = Instant::now();
    ring.start(2);
    let mut c3 = ring.connect(2, "c3").await;
    c3.join("grp").await.unwrap();
    let m3 = tokio::time::timeout(FORM_BOUND, until_members(&mut c3, "grp", 3))
        .await
        .unwrap_or_else(|_| panic!("d3 did not rejoin\n{}", ring.logs()));
    eprintln!(
        "restarted daemon's client in the group after {:?}",
        t.elapsed()
    );
    assert_eq!(m3.members, ["#c1#d1", "#c2#d2", "#c3#d3"]);
    for mb in &mut mbs {
        let m = until_members(mb, "grp", 3).await;
        assert!(matches!(m.cause, Cause::Join | Cause::Network), "{m:?}");
        assert_eq!(m.group_id, m3.group_id, "same view id at every daemon");
    }
    // And ordered traffic crosses the new ring.
    c3.multicast(ServiceType::SAFE, "grp", 0, b"back")
        .await
        .unwrap();
    for mb in mbs.iter_mut().chain(std::iter::once(&mut c3)) {
        match recv(mb).await {
            Message::Data(d) => assert_eq!(&d.body[..], b"back"),
            other => panic!("{other:?}"),
        }
    }
}

/// SAFE round trips between daemons are never held back by an idle token: a client on d1
/// sends SAFE to a client on d2, which echoes it SAFE; with pauses between pings, so the ring
/// goes idle in between (where an early token hold used to delay SAFE delivery until the
/// leader's 500 ms hurry timer). A bound far above a round trip, far below that timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_round_trips_are_not_held_by_an_idle_token() {
    const PINGS: usize = 40;
    const BOUND: Duration = Duration::from_millis(450);
    let ring = Ring::new(3);
    let mut mbs = three_clients(&ring).await;
    let mut echo = mbs.remove(1);
    let mut ping = mbs.remove(0);
    let echoer = tokio::spawn(async move {
        for _ in 0..PINGS {
            loop {
                if let Message::Data(d) = recv(&mut echo).await {
                    if d.sender == "#c1#d1" {
                        echo.multicast(ServiceType::SAFE, "#c1#d1", 0, &d.body)
                            .await
                            .expect("echo");
                        break;
                    }
                }
            }
        }
    });
    let mut worst = Duration::ZERO;
    for k in 0..PINGS {
        // Let the ring go idle (the leader holds the token) before every ping.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let body = format!("ping-{k}");
        let t0 = Instant::now();
        ping.multicast(ServiceType::SAFE, "grp", 0, body.as_bytes())
            .await
            .expect("ping");
        loop {
            if let Message::Data(d) = recv(&mut ping).await {
                if d.sender == "#c2#d2" && d.body == body.as_bytes() {
                    break;
                }
            }
        }
        let took = t0.elapsed();
        if took > Duration::from_millis(100) {
            eprintln!("ping {k}: {took:?}");
        }
        worst = worst.max(took);
    }
    echoer.await.expect("echoer");
    eprintln!("{PINGS} SAFE round trips d1 -> d2 -> d1, worst {worst:?}");
    assert!(
        worst < BOUND,
        "a SAFE round trip took {worst:?}\n{}",
        ring.logs()
    );
}
