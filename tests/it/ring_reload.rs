//! Live reconfiguration in network namespaces ([`NetLab`]): a running ring grows and shrinks
//! by editing `spread.conf` and reloading every daemon — with `SIGHUP` (an mbus addition), with
//! a RELOAD control packet as `spmonitor` sends it (built with our wire codec, sent from a
//! configured daemon's address), and with the real 5.0.1 `spmonitor` (menu `r`) in a mixed
//! ring (`ring_reload_mixed`). Clients on the daemons that stay keep their sessions and see
//! one order throughout.
//! Skipped (with a message) when not root; the mixed test also needs `MBUS_REAL_SPREAD` and
//! `MBUS_REAL_SPREAD_BIN_DIR`.
//!
//! The clients are this test binary re-executed inside the namespaces with
//! `MBUS_RELOAD_CLIENT=<mode>|<name>|<connect string>` ([`reload_client_helper`]): `send`
//! joins `grp`, prints `MEMBERS <n>` at every membership of `grp` and `GOT <body>` for every
//! message, and once both senders are in `grp` sends an AGREED message every 50 ms until its standard input says `stop`;
//! then it sends `END-<name>` and prints `DONE` once it has received the `END` of every
//! sender. `sit` only joins `grp` and stays. A session that breaks prints `LOST`.

use std::io::Write as _;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mbus::client::{Mailbox, Message, ServiceType};
use spread::config::Config;
use spread::ids::DaemonId;
use spread::ring::RingConfig;
use spread::wire::daemon::{Packet, PacketBody, PacketHeader, TypeBits};

use crate::netns::{udp_tool, NetLab};

const HELPER_ENV: &str = "MBUS_RELOAD_CLIENT";
pub(crate) const PORT: u16 = 4803;
/// Bound on every wait of these tests (a ring forming, a reload, a client finishing).
const STEP: Duration = Duration::from_secs(40);
/// Senders among the clients (the `send` clients of each test).
const SENDERS: usize = 2;

/// Client helper (run only when re-executed with `MBUS_RELOAD_CLIENT`).
#[test]
#[ignore = "helper process of ring_reload tests"]
fn reload_client_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<String> = spec.split('|').map(str::to_owned).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (mode, name, addr) = (&parts[0], &parts[1], &parts[2]);
        let bound = Duration::from_secs(300);
        let _ = tokio::time::timeout(bound, client(mode, name, addr)).await;
    });
}

async fn client(mode: &str, name: &str, addr: &str) {
    let mut mb = loop {
        match Mailbox::connect(addr, name, true).await {
            Ok(m) => break m,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    mb.join("grp").await.expect("join");
    println!("JOINED");
    let (mut tx, mut rx) = mb.split();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut _keep = None;
    // Senders start once both are in `grp`, so each gets all of the other's messages.
    let both_in = std::sync::Arc::new(tokio::sync::Notify::new());
    if mode == "send" {
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.trim() == "stop" {
                    let _ = stop_tx.send(());
                    return;
                }
                line.clear();
            }
        });
        let me = name.to_owned();
        let start = both_in.clone();
        tokio::spawn(async move {
            start.notified().await;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for k in 0u64.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stop_rx => break,
                }
                let body = format!("{me}-{k}");
                if tx
                    .multicast(ServiceType::AGREED, "grp", 0, body.as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let end = format!("END-{me}");
            let _ = tx
                .multicast(ServiceType::AGREED, "grp", 0, end.as_bytes())
                .await;
            // Keep the sender (and so the session) open until the process ends.
            std::future::pending::<()>().await;
        });
    } else {
        drop(stop_tx);
        _keep = Some(tx);
    }
    let mut ends = 0;
    loop {
        match rx.receive().await {
            Ok(Message::Membership(m)) => {
                println!("MEMBERS {}", m.members.len());
                if m.members.len() >= SENDERS {
                    both_in.notify_one();
                }
            }
            Ok(Message::Data(d)) => {
                let body = String::from_utf8_lossy(&d.body).into_owned();
                ends += usize::from(body.starts_with("END-"));
                println!("GOT {body}");
                if mode == "send" && ends == SENDERS {
                    println!("DONE");
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                println!("LOST {e}");
                return;
            }
        }
    }
}

/// A client process with its output lines on a channel.
pub(crate) struct Client {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Client {
    pub(crate) fn spawn(lab: &NetLab, node: usize, mode: &str, name: &str) -> Self {
        Self::spawn_at(lab, node, mode, name, &PORT.to_string())
    }

    /// A `mode` client called `name` on node `node`, connecting to `addr` (a Spread connect
    /// string: `PORT` for the Unix socket, `PORT@IP` for TCP).
    pub(crate) fn spawn_at(lab: &NetLab, node: usize, mode: &str, name: &str, addr: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = lab.command(node, exe.to_str().unwrap());
        cmd.args([
            "--exact",
            "ring_reload::reload_client_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, format!("{mode}|{name}|{addr}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn client");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (≤ [`STEP`]) for a line equal to `want`; `Err` with what was seen.
    pub(crate) fn wait_for(&mut self, want: &str) -> Result<(), String> {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l == want;
                    self.seen.push(l);
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) => {
                    let tail: Vec<&String> = self
                        .seen
                        .iter()
                        .filter(|l| !l.starts_with("GOT "))
                        .collect();
                    return Err(format!("no `{want}` within {STEP:?}; saw {tail:?}"));
                }
            }
        }
    }

    fn stop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"stop\n");
            let _ = stdin.flush();
        }
    }

    /// The data bodies received so far.
    fn got(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix("GOT "))
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `conf` as node `i`'s `/tmp/spread.conf`, and as `/tmp/rt/tmp/spread.conf`: a
/// daemon that chrooted into `RuntimeDir = /tmp/rt` re-reads `/tmp/spread.conf` there.
pub(crate) fn write_conf(lab: &NetLab, i: usize, conf: &str) {
    let tmp = &lab.nodes[i].tmp;
    std::fs::write(tmp.join("spread.conf"), conf).expect("write conf");
    let inner = tmp.join("rt").join("tmp");
    std::fs::create_dir_all(&inner).expect("rt/tmp");
    std::fs::write(inner.join("spread.conf"), conf).expect("write chroot conf");
}

/// A one-segment spread.conf listing `d1..=dk` on the first `k` nodes of `lab`, then `extra`.
pub(crate) fn conf_of(lab: &NetLab, k: usize, extra: &str) -> String {
    let mut text = format!("Spread_Segment {}:{PORT} {{\n", lab.bcast(0));
    for (i, n) in lab.nodes.iter().take(k).enumerate() {
        text += &format!("  d{} {}\n", i + 1, n.addr);
    }
    text + "}\n" + extra
}

fn sighup(pid: u32) {
    let st = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -HUP {pid}");
}

/// Sends, from node `i`'s address, the RELOAD control packet `spmonitor` would send as
/// daemon `name` of the running configuration `conf` to that daemon.
fn send_reload(lab: &NetLab, i: usize, name: &str, conf: &str) {
    let config = Config::parse(conf, "running.conf").expect("conf");
    let (_, host) = config.find_host(name).expect("host");
    let hash = RingConfig::from_config(&config, name)
        .expect("ring")
        .conf_hash;
    let id = DaemonId(host.vid);
    let mut header = PacketHeader::new(TypeBits::RELOAD, id, hash);
    header.proc_id = id;
    let bytes = Packet {
        header,
        body: PacketBody::Reload,
    }
    .to_vec();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let ip = lab.nodes[i].addr;
    let spec = format!("sendrecv:0:{ip}:0:{ip}:{PORT}:{hex}");
    let st = udp_tool(lab, i, &spec).status().expect("udp tool");
    assert!(st.success(), "RELOAD packet sent");
}

/// Waits (≤ [`STEP`]) until the daemon `pid` has exited.
fn wait_exit(lab: &mut NetLab, pid: u32, what: &str) {
    let deadline = Instant::now() + STEP;
    while lab.alive(pid) {
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The senders' messages: each client got every message of its own once and in order, the
/// other's in order without duplicates (a message sent while a reload briefly split the ring
/// is delivered only in the sender's part, as EVS says), and the messages both got come in
/// one order at both.
fn assert_one_order(c1: &Client, c2: &Client) {
    let (a, b) = (c1.got(), c2.got());
    for (who, seq) in [("c1", &a), ("c2", &b)] {
        for s in ["c1", "c2"] {
            let got: Vec<u64> = seq
                .iter()
                .filter_map(|m| m.strip_prefix(&format!("{s}-")))
                .map(|k| k.parse().unwrap())
                .collect();
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "{who}: {s}'s messages in order, once"
            );
            if who == s {
                let want: Vec<u64> = (0..got.len() as u64).collect();
                assert_eq!(got, want, "{who} got every message of its own");
                assert!(
                    got.len() > 50,
                    "{s} sent throughout ({} messages)",
                    got.len()
                );
            }
        }
    }
    let common_a: Vec<&str> = a.iter().copied().filter(|m| b.contains(m)).collect();
    let common_b: Vec<&str> = b.iter().copied().filter(|m| a.contains(m)).collect();
    assert_eq!(common_a, common_b, "the two clients saw different orders");
    let only = a.len() + b.len() - 2 * common_a.len();
    eprintln!(
        "one order: {} messages at both, {only} seen by one side only (sent during a split)",
        common_a.len()
    );
    let one_side: Vec<String> = a
        .iter()
        .filter(|m| !b.contains(m))
        .map(|m| format!("c1 only: {m}"))
        .chain(
            b.iter()
                .filter(|m| !a.contains(m))
                .map(|m| format!("c2 only: {m}")),
        )
        .collect();
    assert!(
        only * 4 <= common_a.len(),
        "too many messages seen by one side only: {one_side:?}"
    );
    for c in [c1, c2] {
        assert!(
            !c.seen.iter().any(|l| l.starts_with("LOST")),
            "a session broke"
        );
    }
}

/// Our daemons: d1, d2, d3 grow to four (d4 started with the new file) and shrink to d1, d2
/// (d3 and d4 exit, no longer in the file). Reloads by SIGHUP and by RELOAD packets; a
/// broken file is refused with its `path:line:col:` line and changes nothing.
#[test]
fn netns_ring_grows_to_four_and_shrinks_to_two_by_reload() {
    let Some(mut lab) = NetLab::new(&[4]) else {
        return;
    };
    let ours = env!("CARGO_BIN_EXE_spread");
    // An explicit protocol line, so that d4, started fresh with the new file, has the hash
    // the reloaded daemons compute (without one, 5.0.1 switches to the Accelerated Ring at a
    // reload; see spread::daemon::reload).
    let extra = "DangerousMonitor = yes\nAcceleratedRing = false\n";
    let conf3 = conf_of(&lab, 3, extra);
    let conf4 = conf_of(&lab, 4, extra);
    let conf2 = conf_of(&lab, 2, extra);
    let mut pids = Vec::new();
    for i in 0..3 {
        pids.push(
            lab.start_daemon(i, ours, &format!("d{}", i + 1), &conf3)
                .expect("start"),
        );
    }
    let mut c1 = Client::spawn(&lab, 0, "send", "c1");
    let mut c2 = Client::spawn(&lab, 1, "send", "c2");
    let _c3 = Client::spawn(&lab, 2, "sit", "c3");
    let logs = |lab: &NetLab| {
        (0..lab.nodes.len().min(4))
            .map(|i| format!("d{}: {}", i + 1, lab.log(i, &format!("d{}", i + 1))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let step = |c: &mut Client, want: &str, lab: &NetLab| {
        if let Err(e) = c.wait_for(want) {
            panic!("{e}\n{}", logs(lab));
        }
    };
    step(&mut c1, "MEMBERS 3", &lab);
    let t0 = Instant::now();
    // Grow: d4 starts with the four-daemon file; d1, d2 reload on SIGHUP, d3 on RELOAD.
    pids.push(lab.start_daemon(3, ours, "d4", &conf4).expect("start d4"));
    let _c4 = Client::spawn(&lab, 3, "sit", "c4");
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..3 {
        write_conf(&lab, i, &conf4);
    }
    send_reload(&lab, 2, "d3", &conf3);
    sighup(pids[0]);
    sighup(pids[1]);
    step(&mut c1, "MEMBERS 4", &lab);
    eprintln!("grown to four in {:?}", t0.elapsed());
    // A broken file: refused, the running configuration kept.
    write_conf(&lab, 0, &format!("{conf4}\nSpread_Segment {{\n"));
    sighup(pids[0]);
    std::thread::sleep(Duration::from_secs(1));
    let log = lab.log(0, "d1");
    let located = |l: &str| {
        l.split("/tmp/spread.conf:").nth(1).is_some_and(|rest| {
            let mut it = rest.split(':');
            let num = |x: Option<&str>| x.is_some_and(|v| v.parse::<u32>().is_ok());
            num(it.next()) && num(it.next())
        })
    };
    assert!(
        log.lines().any(located),
        "no path:line:col: line for the broken file:\n{log}"
    );
    assert!(log.contains("configuration reload refused"), "{log}");
    assert!(lab.alive(pids[0]), "d1 survived a broken file");
    // Shrink to d1, d2: RELOAD to d1 (from its address, with the four-daemon hash), SIGHUP
    // to the others; d3 and d4 are no longer in the file and exit.
    let t1 = Instant::now();
    for i in 0..4 {
        write_conf(&lab, i, &conf2);
    }
    send_reload(&lab, 0, "d1", &conf4);
    for &pid in &pids[1..] {
        sighup(pid);
    }
    wait_exit(&mut lab, pids[2], "d3");
    wait_exit(&mut lab, pids[3], "d4");
    step(&mut c1, "MEMBERS 2", &lab);
    eprintln!("shrunk to two in {:?}", t1.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    c1.stop();
    c2.stop();
    step(&mut c1, "DONE", &lab);
    step(&mut c2, "DONE", &lab);
    assert_one_order(&c1, &c2);
    for (i, want) in [(0, "monitor RELOAD request"), (1, "SIGHUP received")] {
        let log = lab.log(i, &format!("d{}", i + 1));
        assert!(log.contains(want), "d{}: {log}", i + 1);
    }
    let d3 = lab.log(2, "d3");
    assert!(d3.contains("no longer in the configuration"), "d3: {d3}");
}
