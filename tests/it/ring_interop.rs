//! Our ring engine (`spread::ring::Engine`) against a real Spread 5.0.1 daemon in a
//! namespace lab: the two must form one ring. Runs only when `MBUS_REAL_SPREAD` names a 5.0.1
//! `spread` binary (and as root); otherwise prints why it was skipped.
//!
//! The engine runs in a child process inside its namespace: this test binary re-executed
//! with `MBUS_RING_HELPER=<name>|<seconds>|<config path>` runs only
//! [`ring_engine_helper`], a small blocking UDP loop around the sans-IO engine that prints
//! `CONF`/`DELIVER`/`STATS` lines.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use spread::config::Config;
use spread::ids::daemon_id;
use spread::ring::{ConfigKind, DaemonId, Dest, Engine, Input, Output, Port, RingConfig, Service};
use spread::wire::daemon::{Endian, Message, MessageHeader};

use crate::netns::NetLab;

const ENV: &str = "MBUS_REAL_SPREAD";
const HELPER_ENV: &str = "MBUS_RING_HELPER";

/// Helper entry point (a no-op unless re-executed with `MBUS_RING_HELPER`).
#[test]
fn ring_engine_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (name, secs, path) = (parts[0], parts[1].parse::<u64>().unwrap(), parts[2]);
    let submit_after = parts
        .get(3)
        .map(|ms| Duration::from_millis(ms.parse().unwrap()));
    run_engine(name, Duration::from_secs(secs), path, submit_after);
}

#[allow(clippy::disallowed_methods)] // a shell around the sans-IO core reads the clock
fn run_engine(name: &str, run_for: Duration, path: &str, submit_after: Option<Duration>) {
    let cfg = Config::load(std::path::Path::new(path)).unwrap();
    let rc = RingConfig::from_config(&cfg, name).unwrap();
    let seg = &cfg.segments[0];
    let port = seg.port;
    let bcast = seg.addrs[0].ip;
    let addrs: BTreeMap<DaemonId, IpAddr> = cfg
        .hosts()
        .map(|(_, h)| (DaemonId(h.vid), h.addr.ip))
        .collect();
    let me_ip = addrs[&rc.me];
    let hash = rc.conf_hash;
    let data = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    let token = UdpSocket::bind(("0.0.0.0", port + 1)).unwrap();
    let out = UdpSocket::bind((me_ip, 0)).unwrap();
    out.set_broadcast(true).unwrap();
    let (tx, rx) = mpsc::channel::<(Port, IpAddr, Vec<u8>)>();
    for (sock, p) in [(data, Port::Data), (token, Port::Token)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, src)) = sock.recv_from(&mut buf) {
                if tx.send((p, src.ip(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
    }
    let start = std::time::Instant::now();
    let now = || spread::time::Instant(1_000_000 + start.elapsed().as_micros() as u64);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let mut e = Engine::new(rc, now(), wall);
    let mut submit_after = submit_after;
    while start.elapsed() < run_for {
        if submit_after.is_some_and(|t| start.elapsed() >= t) {
            submit_after = None;
            e.handle(
                now(),
                Input::Submit {
                    service: Service::Safe,
                    payload: safe_message(name),
                },
            );
        }
        while let Some(o) = e.poll_output() {
            match o {
                Output::Send { to, port: p, bytes } => {
                    trace("TX", hash, p, &bytes);
                    let ip = match to {
                        Dest::Broadcast | Dest::Segment => bcast,
                        Dest::Unicast(d) => addrs[&d],
                    };
                    let dport = if p == Port::Data { port } else { port + 1 };
                    let _ = out.send_to(&bytes, SocketAddr::new(ip, dport));
                }
                Output::Deliver(d) => {
                    let c = d.class;
                    println!("DELIVER {} {} {} {c:?}", d.sender, d.payload.len(), d.ring);
                }
                Output::Configuration(c) => {
                    let m: Vec<String> = c.members.iter().map(|d| d.to_string()).collect();
                    println!("CONF {:?} {} {}", c.kind, c.ring, m.join(","));
                }
            }
        }
        let wait = e
            .poll_timeout()
            .map_or(50_000, |t| t.as_micros().saturating_sub(now().as_micros()))
            .min(50_000);
        if let Ok((p, ip, bytes)) = rx.recv_timeout(Duration::from_micros(wait)) {
            trace("RX", hash, p, &bytes);
            if let Some((id, _)) = addrs.iter().find(|(_, a)| **a == ip) {
                let input = Input::Packet {
                    from: *id,
                    port: p,
                    bytes: Bytes::from(bytes),
                };
                e.handle(now(), input);
            }
        }
        if e.poll_timeout().is_some_and(|t| t <= now()) {
            e.handle_timeout(now());
        }
    }
    println!(
        "STATS {:?} state {:?} ring {}",
        e.stats(),
        e.state(),
        e.ring_id()
    );
}

/// A 5.0.1 SAFE message from `#ring#<daemon>` to group `g` (48-byte header, one group name,
/// body), as a client of ours would have sent it.
fn safe_message(daemon: &str) -> Bytes {
    let mut sender = [0u8; 32];
    let name = format!("#ring#{daemon}");
    sender[..name.len()].copy_from_slice(name.as_bytes());
    let mut group = [0u8; 32];
    group[0] = b'g';
    let m = Message {
        header: MessageHeader {
            endian: Endian::NATIVE,
            kind: 0x20,
            sender,
            num_groups: 1,
            hint: [0, 0, 0, 0],
            data_len: 5,
        },
        groups: vec![group],
        body: Bytes::from_static(b"hello"),
    };
    let mut v = Vec::new();
    m.encode(&mut v);
    Bytes::from(v)
}

/// One line per datagram (lengths and decoded kind) when `MBUS_RING_TRACE` is set.
fn trace(dir: &str, hash: u32, port: Port, bytes: &[u8]) {
    if std::env::var_os("MBUS_RING_TRACE").is_none() {
        return;
    }
    let d = spread::wire::daemon::Datagram::decode(hash, port == Port::Token, bytes);
    let mut s = format!("{d:?}");
    s.truncate(1200);
    println!("{dir} {port:?} {} {s}", bytes.len());
}

/// Runs real 5.0.1 daemons on nodes `0..reals` (started `delay` before ours) and our engine
/// on the last node for `secs`; returns the engine's output lines, or None when skipped.
/// With `kill_after`, real daemon 0 is SIGKILLed that long after ours started.
fn lab_run(
    names: &[&str],
    reals: usize,
    delay: Duration,
    secs: u64,
    kill_after: Option<Duration>,
    submit_after_ms: Option<u64>,
) -> Option<(String, String)> {
    let Some(bin) = std::env::var_os(ENV) else {
        eprintln!("ring interop skipped: set {ENV}=/path/to/spread-5.0.1/sbin/spread");
        return None;
    };
    let mut lab = NetLab::new(&[names.len()])?;
    let extra = "RuntimeDir = /tmp/rt\nDaemonUser = nobody\nDaemonGroup = nogroup\n\
                 DebugFlags = { PRINT EXIT MEMBERSHIP }\n";
    let conf = lab.spread_conf(names, 4803, extra);
    let ours = names.len() - 1;
    std::fs::write(lab.nodes[ours].tmp.join("spread.conf"), &conf).unwrap();
    let mut pids = Vec::new();
    for (i, name) in names.iter().enumerate().take(reals) {
        pids.push(
            lab.start_daemon(i, bin.to_str().unwrap(), name, &conf)
                .unwrap(),
        );
    }
    std::thread::sleep(delay);
    let exe = std::env::current_exe().unwrap();
    let mut cmd = lab.command(ours, exe.to_str().unwrap());
    cmd.args([
        "--exact",
        "ring_interop::ring_engine_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(
        HELPER_ENV,
        match submit_after_ms {
            Some(ms) => format!("{}|{secs}|/tmp/spread.conf|{ms}", names[ours]),
            None => format!("{}|{secs}|/tmp/spread.conf", names[ours]),
        },
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        lab.kill(pids[0]);
    }
    // The helper exits by itself after `secs`.
    let out = child.wait_with_output().unwrap();
    // The test harness prints "test … ... " before the helper's first line: split it off.
    let text = String::from_utf8_lossy(&out.stdout).replace(" ... ", "\n");
    let log = lab.log(0, names[0]);
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}\nengine:\n{text}");
    }
    if std::env::var_os("MBUS_RING_TRACE").is_some() {
        eprintln!("engine:\n{text}\nreal {} log:\n{log}", names[0]);
    }
    Some((text, log))
}

/// The members of the last regular configuration the engine reported.
fn last_regular(text: &str) -> String {
    text.lines()
        .rfind(|l| l.starts_with(&format!("CONF {:?}", ConfigKind::Regular)))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_default()
        .to_string()
}

fn id(name: &str) -> String {
    DaemonId(daemon_id(name).0).to_string()
}

/// A real daemon and ours start together: ours represents it, creates FORM1, the real one
/// leads the new ring; both install it and ours delivers the real daemon's GROUPS message.
#[test]
fn real_daemon_and_our_engine_form_one_ring() {
    let Some((text, log)) = lab_run(&["d1", "d2"], 1, Duration::ZERO, 8, None, Some(5000)) else {
        return;
    };
    let (d1, d2) = (id("d1"), id("d2"));
    assert_eq!(
        last_regular(&text),
        format!("{d1},{d2}"),
        "no common ring with the real daemon.\nengine:\n{text}\nreal d1 log:\n{log}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("STATS") && l.contains("Op")),
        "{text}"
    );
    // After a join 5.0.1 multicasts its GROUPS state message as the first message of the ring:
    // our engine ordered and delivered it.
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("DELIVER {d1} "))),
        "no message from the real daemon delivered:\n{text}"
    );
    // Our SAFE message is delivered in the regular configuration only once the ring aru
    // shows the real daemon has it: it took our packet and reported it on the token.
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("DELIVER {d2} ")) && l.ends_with("Safe")),
        "our SAFE message was not delivered:\n{text}"
    );
}

/// Ours joins a running ring of two real daemons (fact sheet capture c): the real leader
/// gathers with its ring running, ours (SEG_REP) creates FORM1 → d1 (RING_REP) → d2.
#[test]
fn our_engine_joins_a_running_ring_of_real_daemons() {
    let Some((text, log)) = lab_run(
        &["d1", "d2", "d3"],
        2,
        Duration::from_secs(4),
        10,
        None,
        None,
    ) else {
        return;
    };
    let (d1, d2, d3) = (id("d1"), id("d2"), id("d3"));
    assert_eq!(
        last_regular(&text),
        format!("{d1},{d2},{d3}"),
        "did not join the real ring.\nengine:\n{text}\nreal d1 log:\n{log}"
    );
    // One GROUPS message for the synced set {d1, d2}, sent by d1 (capture c).
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("DELIVER {d1} "))),
        "no GROUPS message from d1:\n{text}"
    );
}

/// The real daemon of a two-daemon ring is SIGKILLed: after Token_timeout ours reports the
/// transitional configuration {d2} and then a regular configuration of itself alone.
#[test]
fn our_engine_survives_the_real_daemon_being_killed() {
    let kill = Some(Duration::from_secs(5));
    let Some((text, log)) = lab_run(&["d1", "d2"], 1, Duration::ZERO, 10, kill, None) else {
        return;
    };
    let (d1, d2) = (id("d1"), id("d2"));
    let confs: Vec<&str> = text.lines().filter(|l| l.starts_with("CONF ")).collect();
    let both = format!("{d1},{d2}");
    let first = confs.iter().position(|l| l.ends_with(&both));
    assert!(first.is_some(), "no common ring first:\n{text}\n{log}");
    let after: Vec<&&str> = confs.iter().skip(first.unwrap_or(0) + 1).collect();
    assert!(
        after.len() >= 2
            && after[0].starts_with("CONF Transitional")
            && after[0].ends_with(&format!(" {d2}"))
            && after[1].starts_with("CONF Regular")
            && after[1].ends_with(&format!(" {d2}")),
        "expected transitional then regular {{d2}} after the kill:\n{text}"
    );
}
