//! The secure ring (`--link-key`, docs/security.md) end to end, with embedded daemons on
//! 127.0.0.1, .2 and .3 (loopback segment: each daemon binds its own address) so the test can
//! read their link counters:
//!
//! * a secure ring forms and delivers AGREED traffic in one order;
//! * a valid 5.0.1 datagram injected from a configured daemon's address without a tag, one
//!   with an altered tag and one sealed under another key are dropped and counted, and the
//!   clients see nothing of them;
//! * datagrams captured on the wire (at an absent daemon's sockets) and replayed later from
//!   their sender's address are dropped;
//! * a key rollover by the documented procedure (key files rewritten, watched by the daemons)
//!   under traffic loses no message and changes no membership;
//! * three `spread --link-key` processes in network namespaces (real segment broadcasts on a
//!   bridge, [`NetLab`]) form a ring and deliver in one order.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mbus::client::{ConnectOptions, Mailbox, Message, ServiceType};
use mbus::daemon::{DaemonBuilder, RunningDaemon, SecureRing};
use spread::config::Config;
use spread::daemon::link::{BootId, Keyring, Link, LinkSettings, LinkStats};
use spread::daemon::{Output, Target};
use spread::ring::{DaemonId, Port};

use crate::harness::{free_port, recv, recv_membership};
use crate::netns::{child_lines_until, NetLab};
use crate::ring::FORM_BOUND;
use crate::ring_netns::spawn_client;

const KEY: [u8; 32] = [0x5a; 32];

fn config(port: u16) -> Arc<Config> {
    let mut hosts = String::new();
    for i in 1..=3 {
        let a = format!("127.0.0.{i}");
        hosts.push_str(&format!("    d{i} {a} {{ D {a} C {a} }}\n"));
    }
    let text = format!("Spread_Segment 127.255.255.255:{port} {{\n{hosts}}}\n");
    Arc::new(Config::parse(&text, "secure.conf").expect("config"))
}

fn start(config: &Arc<Config>, i: usize, ring: SecureRing, dir: &std::path::Path) -> RunningDaemon {
    let sock = dir.join(format!("u{i}"));
    std::fs::create_dir_all(&sock).expect("socket dir");
    DaemonBuilder::new(config.clone())
        .name(format!("d{i}"))
        .unix_socket_dir(sock)
        .link_keys(ring)
        .start()
        .expect("start daemon")
}

async fn client(d: &RunningDaemon, name: &str) -> Mailbox {
    let pipe = d.connect_in_process().await.expect("pipe");
    Mailbox::connect_stream(pipe, &ConnectOptions::new(name, true))
        .await
        .expect("connect")
}

/// Joins `grp` with one client per daemon and waits until each sees all of them.
async fn clients(ds: &[&RunningDaemon]) -> Vec<Mailbox> {
    let mut mbs = Vec::new();
    for (i, d) in ds.iter().enumerate() {
        let mut mb = client(d, &format!("c{}", i + 1)).await;
        mb.join("grp").await.expect("join");
        mbs.push(mb);
    }
    for mb in &mut mbs {
        let deadline = Instant::now() + FORM_BOUND;
        loop {
            assert!(Instant::now() < deadline, "no {}-member view", ds.len());
            let m = recv_membership(mb, "grp").await;
            if m.members.len() == ds.len() {
                break;
            }
        }
    }
    mbs
}

async fn stats(d: &RunningDaemon) -> LinkStats {
    d.handle()
        .link_stats()
        .await
        .expect("core")
        .expect("secure ring on")
}

/// Nothing arrives at `mb` for `wait`.
async fn quiet(mb: &mut Mailbox, wait: Duration) {
    if let Ok(m) = tokio::time::timeout(wait, mb.receive()).await {
        panic!("{}: unexpected {m:?}", mb.private_group());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_ring_forms_and_orders_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(free_port());
    let ring = || SecureRing::from_keys(Keyring::single(&KEY));
    let ds: Vec<RunningDaemon> = (1..=3)
        .map(|i| start(&config, i, ring(), dir.path()))
        .collect();
    let mut mbs = clients(&ds.iter().collect::<Vec<_>>()).await;
    const N: usize = 40;
    let mut tasks = Vec::new();
    for (i, mut mb) in mbs.drain(..).enumerate() {
        tasks.push(tokio::spawn(async move {
            for k in 0..N {
                let body = format!("c{}-{k}-{}", i + 1, "x".repeat(900));
                mb.multicast(ServiceType::AGREED, "grp", 0, body.as_bytes())
                    .await
                    .expect("multicast");
            }
            let mut got = Vec::new();
            while got.len() < 3 * N {
                if let Message::Data(d) = recv(&mut mb).await {
                    got.push(String::from_utf8_lossy(&d.body).into_owned());
                }
            }
            got
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("client"));
    }
    assert_eq!(seqs[0], seqs[1]);
    assert_eq!(seqs[0], seqs[2]);
    for d in &ds {
        let s = stats(d).await;
        assert!(s.sealed > 0 && s.opened > 0, "{s:?}");
        assert_eq!(s.dropped(), 0, "{s:?}");
    }
}

/// Valid plain 5.0.1 datagrams of daemon `name` of `config` (its ALIVEs, JOINs, …), as the
/// sans-IO core sends them during its first seconds: (destination, port, bytes).
fn plain_datagrams(config: &Config, name: &str) -> Vec<(DaemonId, Port, Vec<u8>)> {
    let (me, _) = config.find_host(name).expect("host");
    let mut d = spread::Daemon::from_config(config, me, spread::time::Instant(0), 1_700_000_000);
    let mut out = Vec::new();
    let mut now = spread::time::Instant(0);
    for _ in 0..200 {
        while let Some(o) = d.poll_output() {
            if let Output::Transmit(t) = o {
                if let Target::Daemon(to) = t.to {
                    out.push((to, t.port, t.bytes.to_vec()));
                }
            }
        }
        let Some(t) = d.poll_timeout() else { break };
        if t.as_micros() > 4_000_000 {
            break;
        }
        now = t.max(now);
        d.handle_timeout(now);
    }
    out
}

fn addr_of(config: &Config, id: DaemonId) -> Ipv4Addr {
    config
        .hosts()
        .find(|(_, h)| h.vid == id.0)
        .map(|(_, h)| match h.addr.ip {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => panic!("v4 only"),
        })
        .expect("configured")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_and_replayed_datagrams_are_dropped_without_effect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = config(port);
    let ring = || SecureRing::from_keys(Keyring::single(&KEY));
    // d3 is configured but absent: the attacker holds its address and ports.
    let d1 = start(&config, 1, ring(), dir.path());
    let d2 = start(&config, 2, ring(), dir.path());
    let wire_p = UdpSocket::bind(("127.0.0.3", port)).expect("d3's data port");
    let wire_t = UdpSocket::bind(("127.0.0.3", port + 1)).expect("d3's token port");
    let mut mbs = clients(&[&d1, &d2]).await;

    // Traffic; the data packets reach the absent d3's port too (captured there).
    for k in 0..10 {
        mbs[0]
            .multicast(ServiceType::AGREED, "grp", 0, format!("m{k}").as_bytes())
            .await
            .expect("multicast");
    }
    for mb in &mut mbs {
        for _ in 0..10 {
            assert!(matches!(recv(mb).await, Message::Data(_)));
        }
    }
    wire_p
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut captured = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(3);
    while captured.len() < 10 && Instant::now() < deadline {
        if let Ok((n, from)) = wire_p.recv_from(&mut buf) {
            if from.ip() == Ipv4Addr::new(127, 0, 0, 1) {
                captured.push(buf[..n].to_vec());
            }
        }
    }
    assert!(
        !captured.is_empty(),
        "nothing of d1's captured at d3's port"
    );
    for c in &captured {
        assert_eq!(&c[..4], b"MBS2", "sealed on the wire");
        assert!(
            !c.windows(2).any(|w| w == b"m1"),
            "the body is encrypted: {c:02x?}"
        );
    }
    let (b1, b2) = (stats(&d1).await, stats(&d2).await);

    // 1. Replays, from d1's own address (any port of 127.0.0.1), to d2.
    let spoof_d1 = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for c in &captured {
        spoof_d1.send_to(c, ("127.0.0.2", port)).unwrap();
    }
    // 2. Valid plain 5.0.1 datagrams of d3 (JOINs, ALIVEs) from d3's address.
    let plain = plain_datagrams(&config, "d3");
    assert!(!plain.is_empty());
    for (to, p, bytes) in &plain {
        let dst = (
            addr_of(&config, *to),
            if *p == Port::Token { port + 1 } else { port },
        );
        let s = if *p == Port::Token { &wire_t } else { &wire_p };
        s.send_to(bytes, dst).unwrap();
    }
    // 3. A captured datagram with its tag altered, from d1's address.
    let mut forged = captured[0].clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    spoof_d1.send_to(&forged, ("127.0.0.2", port)).unwrap();
    // 4. d3's datagrams sealed under another key.
    let mut other = Link::new(
        config
            .find_host("d3")
            .map(|(_, h)| DaemonId(h.vid))
            .unwrap(),
        LinkSettings {
            keys: Keyring::single(&[0x11; 32]),
            boot: BootId {
                epoch: 1,
                random: 2,
            },
        },
    );
    for (to, p, bytes) in &plain {
        let dst = (
            addr_of(&config, *to),
            if *p == Port::Token { port + 1 } else { port },
        );
        wire_p.send_to(&other.seal(*to, *p, bytes), dst).unwrap();
    }

    // Nothing of it reaches the clients; everything is counted.
    for mb in &mut mbs {
        quiet(mb, Duration::from_secs(2)).await;
    }
    let (a1, a2) = (stats(&d1).await, stats(&d2).await);
    let plain_to = |id: &str| {
        let (_, h) = config.find_host(id).unwrap();
        plain.iter().filter(|(to, ..)| to.0 == h.vid).count() as u64
    };
    assert_eq!(a2.replayed - b2.replayed, captured.len() as u64, "{a2:?}");
    assert_eq!(a2.forged - b2.forged, 1, "{a2:?}");
    assert_eq!(a1.plain - b1.plain, plain_to("d1"), "{a1:?}");
    assert_eq!(a2.plain - b2.plain, plain_to("d2"), "{a2:?}");
    assert_eq!(a1.unknown_key - b1.unknown_key, plain_to("d1"), "{a1:?}");
    assert_eq!(a2.unknown_key - b2.unknown_key, plain_to("d2"), "{a2:?}");
    // The ring still works.
    mbs[1]
        .multicast(ServiceType::AGREED, "grp", 0, b"after")
        .await
        .expect("multicast");
    for mb in &mut mbs {
        match recv(mb).await {
            Message::Data(d) => assert_eq!(&d.body[..], b"after"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn hex(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rollover_under_traffic_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(free_port());
    let (old, new) = ([0x21u8; 32], [0x42u8; 32]);
    let files: Vec<_> = (1..=3)
        .map(|i| dir.path().join(format!("d{i}.key")))
        .collect();
    for f in &files {
        std::fs::write(f, hex(&old) + "\n").unwrap();
    }
    let ds: Vec<RunningDaemon> = (1..=3)
        .map(|i| {
            let ring = SecureRing::load(&files[i - 1]).expect("key file");
            start(&config, i, ring, dir.path())
        })
        .collect();
    let mut mbs = clients(&ds.iter().collect::<Vec<_>>()).await;
    const N: usize = 400;
    let mut tasks = Vec::new();
    for (i, mut mb) in mbs.drain(..).enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut sent = 0;
            while got.len() < 3 * N {
                if sent < N {
                    let body = format!("c{}-{sent}", i + 1);
                    mb.multicast(ServiceType::AGREED, "grp", 0, body.as_bytes())
                        .await
                        .expect("multicast");
                    sent += 1;
                }
                let wait = if sent < N { 15 } else { 20_000 };
                match tokio::time::timeout(Duration::from_millis(wait), mb.receive()).await {
                    Ok(Ok(Message::Data(d))) => {
                        got.push(String::from_utf8_lossy(&d.body).into_owned());
                    }
                    Ok(Ok(other)) => panic!("membership changed: {other:?}"),
                    Ok(Err(e)) => panic!("receive: {e}"),
                    Err(_) if sent < N => {}
                    Err(_) => panic!("lost: {} of {} arrived", got.len(), 3 * N),
                }
            }
            got
        }));
    }
    // The documented procedure: OLD NEW everywhere, then NEW OLD, then NEW.
    let steps = [
        format!("{}\n{}\n", hex(&old), hex(&new)),
        format!("{}\n{}\n", hex(&new), hex(&old)),
        format!("{}\n", hex(&new)),
    ];
    for step in &steps {
        for f in &files {
            std::fs::write(f, step).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Every daemon has read it (polled every second).
        tokio::time::sleep(Duration::from_millis(1600)).await;
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("client"));
    }
    assert_eq!(seqs[0], seqs[1]);
    assert_eq!(seqs[0], seqs[2]);
    for d in &ds {
        let s = stats(d).await;
        assert_eq!(s.dropped(), 0, "{s:?}");
    }
    // The old key is gone: a datagram sealed under it (from d1's address) is refused.
    let before = stats(&ds[1]).await.unknown_key;
    let d1 = config
        .find_host("d1")
        .map(|(_, h)| DaemonId(h.vid))
        .unwrap();
    let mut old_link = Link::new(
        d1,
        LinkSettings {
            keys: Keyring::single(&old),
            boot: BootId {
                epoch: 1,
                random: 1,
            },
        },
    );
    let port = ds[1].port();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(
            &old_link.seal(DaemonId(0), Port::Data, b"x"),
            ("127.0.0.2", port),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&ds[1]).await.unknown_key == before {
        assert!(Instant::now() < deadline, "old-key datagram not refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn netns_secure_ring_over_real_broadcast() {
    let Some(mut lab) = NetLab::new(&[3]) else {
        return;
    };
    let port = 4803;
    let conf = lab.spread_conf(&["d1", "d2", "d3"], port, "");
    let ours = env!("CARGO_BIN_EXE_spread");
    for i in 0..3 {
        let key = lab.nodes[i].tmp.join("ring.key");
        std::fs::write(&key, hex(&KEY) + "\n").expect("key file");
        let name = format!("d{}", i + 1);
        lab.start_daemon_args(i, ours, &name, &conf, &["--link-key", "/tmp/ring.key"])
            .expect("start daemon");
    }
    const N: usize = 30;
    let clients: Vec<_> = (0..3)
        .map(|i| spawn_client(&lab, i, &format!("c{}|{port}|{N}|3", i + 1)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(70);
    let mut seqs = Vec::new();
    for mut c in clients {
        let lines = child_lines_until(&mut c, deadline);
        assert!(
            lines.iter().any(|l| l == "DONE"),
            "client did not finish: {lines:?}\nd1: {}",
            lab.log(0, "d1")
        );
        let got: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("GOT ").map(str::to_owned))
            .collect();
        seqs.push(got);
    }
    assert_eq!(seqs[0].len(), 3 * N);
    assert_eq!(seqs[0], seqs[1]);
    assert_eq!(seqs[0], seqs[2]);
    for i in 0..3 {
        let log = lab.log(i, &format!("d{}", i + 1));
        assert!(log.contains("secure ring on"), "{log}");
        assert!(!log.contains("dropped"), "{log}");
    }
}

/// Replaces node `i`'s `ring.key` atomically with `text`, mode 640 and group `nogroup`, as
/// docs/security.md asks for a daemon that runs as `DaemonUser`.
fn install_key_file(lab: &NetLab, i: usize, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = &lab.nodes[i].tmp;
    let tmp = dir.join("ring.key.new");
    std::fs::write(&tmp, text).expect("key file");
    let group = nix::unistd::Group::from_name("nogroup")
        .ok()
        .flatten()
        .expect("group nogroup");
    nix::unistd::chown(&tmp, None, Some(group.gid)).expect("chown key file");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    std::fs::rename(&tmp, dir.join("ring.key")).expect("rename key file");
}

/// Real configurations chroot into `RuntimeDir` and run as `DaemonUser`: the key file stays
/// outside the chroot and is still re-read at every rollover step (through the directory
/// opened at start-up); the ring goes on ordering messages under the new key alone.
#[test]
fn netns_key_rollover_inside_the_chroot() {
    let Some(mut lab) = NetLab::new(&[2]) else {
        return;
    };
    let port = 4803;
    let extra = "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n";
    let conf = lab.spread_conf(&["d1", "d2"], port, extra);
    let ours = env!("CARGO_BIN_EXE_spread");
    let new = [0x42u8; 32];
    for i in 0..2 {
        install_key_file(&lab, i, &(hex(&KEY) + "\n"));
        let name = format!("d{}", i + 1);
        lab.start_daemon_args(i, ours, &name, &conf, &["--link-key", "/tmp/ring.key"])
            .expect("start daemon");
    }
    let logs = |lab: &NetLab| [lab.log(0, "d1"), lab.log(1, "d2")];
    // The ring forms, chrooted.
    std::thread::sleep(Duration::from_secs(3));
    for log in logs(&lab) {
        assert!(log.contains("chroot successful"), "{log}");
    }
    // OLD NEW, NEW OLD, NEW on both daemons; each step re-read by both.
    let steps = [
        format!("{}\n{}\n", hex(&KEY), hex(&new)),
        format!("{}\n{}\n", hex(&new), hex(&KEY)),
        format!("{}\n", hex(&new)),
    ];
    for (n, text) in steps.iter().enumerate() {
        for i in 0..2 {
            install_key_file(&lab, i, text);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let replaced = logs(&lab)
                .iter()
                .all(|l| l.matches("keys replaced").count() > n);
            if replaced {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rollover step {} not read: {:?}",
                n + 1,
                logs(&lab)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Messages cross the ring under the new key.
    const N: usize = 20;
    let clients: Vec<_> = (0..2)
        .map(|i| spawn_client(&lab, i, &format!("c{}|{port}|{N}|2", i + 1)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seqs = Vec::new();
    for mut c in clients {
        let lines = child_lines_until(&mut c, deadline);
        assert!(
            lines.iter().any(|l| l == "DONE"),
            "client did not finish: {lines:?}\n{:?}",
            logs(&lab)
        );
        seqs.push(
            lines
                .iter()
                .filter(|l| l.starts_with("GOT "))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(seqs[0].len(), 2 * N);
    assert_eq!(seqs[0], seqs[1]);
    for log in logs(&lab) {
        assert!(!log.contains("cannot read link key file"), "{log}");
        assert!(!log.contains("not one of mine"), "{log}");
    }
}
