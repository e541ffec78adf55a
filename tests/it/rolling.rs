//! A rolling replacement, as an operator does it: a ring of three real Spread 5.0.1 daemons
//! (`MBUS_REAL_SPREAD`; without it, three of ours — a rolling restart) in network namespaces
//! under steady AGREED traffic from one client on each daemon; each daemon in turn is killed
//! and our `spread` started in its place, and its client reconnects and rejoins. Checked: the
//! real daemons never die or log an alarm; any two client sessions see the messages they
//! both received in one order, and between two such messages both received exactly the same
//! ones (a session that stays connected loses nothing). Skipped (with a message) when not
//! root.
//!
//! The clients are this test binary re-executed inside the namespaces with
//! `MBUS_ROLLING_CLIENT=<name>|<connect string>|<send ms>` ([`rolling_client_helper`]); they
//! print `SESSION <n>` at every (re)join and `GOT <n> <body>` for every message.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mbus::client::{Mailbox, Message, ServiceType};

use crate::netns::{child_lines_until, real_spread, NetLab};

const HELPER_ENV: &str = "MBUS_ROLLING_CLIENT";
const PORT: u16 = 4803;
/// Interval between two messages of one client.
const TICK: Duration = Duration::from_millis(25);
/// The ring runs this long before the first replacement, and between replacements.
const SETTLE: Duration = Duration::from_secs(5);
/// After the last send, clients keep receiving this long.
const DRAIN: Duration = Duration::from_secs(4);

/// Client helper (run only when re-executed with `MBUS_ROLLING_CLIENT`).
#[test]
#[ignore = "helper process of rolling tests"]
fn rolling_client_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (name, addr) = (parts[0].to_owned(), parts[1].to_owned());
    let send_for = Duration::from_millis(parts[2].parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bound = send_for + DRAIN + Duration::from_secs(30);
        tokio::time::timeout(bound, client(&name, &addr, send_for))
            .await
            .expect("client run timed out");
    });
}

/// Sends one AGREED message per [`TICK`] for `send_for` and prints everything received; a
/// session that breaks (its daemon killed) is opened again and the group joined again.
async fn client(name: &str, addr: &str, send_for: Duration) {
    let start = tokio::time::Instant::now();
    let stop_sending = start + send_for;
    let end = stop_sending + DRAIN;
    let mut session = 0u32;
    let mut k = 0u64;
    while tokio::time::Instant::now() < end {
        let Ok(mut mb) = Mailbox::connect(addr, name, false).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if mb.join("grp").await.is_err() {
            continue;
        }
        session += 1;
        println!("SESSION {session}");
        let (mut tx, mut rx) = mb.split();
        let s = session;
        let mut reader = tokio::spawn(async move {
            loop {
                match rx.receive().await {
                    Ok(Message::Data(d)) => {
                        println!("GOT {s} {}", String::from_utf8_lossy(&d.body));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = &mut reader => break,
                _ = tick.tick() => {
                    let now = tokio::time::Instant::now();
                    if now >= end {
                        reader.abort();
                        break;
                    }
                    if now < stop_sending {
                        k += 1;
                        let body = format!("{name}-{k}");
                        if tx.multicast(ServiceType::AGREED, "grp", 0, body.as_bytes()).await.is_err() {
                            reader.abort();
                            break;
                        }
                    }
                }
            }
        }
    }
    println!("DONE");
}

/// One client's output: per session, the bodies received in order.
fn sessions(name: &str, lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for l in lines {
        if let Some(rest) = l.strip_prefix("SESSION ") {
            out.entry(rest.parse().unwrap_or(0)).or_default();
        } else if let Some(rest) = l.strip_prefix("GOT ") {
            if let Some((s, body)) = rest.split_once(' ') {
                out.entry(s.parse().unwrap_or(0))
                    .or_default()
                    .push(body.to_owned());
            }
        }
    }
    out.into_iter()
        .map(|(s, v)| (format!("{name}#{s}"), v))
        .collect()
}

/// Any two sessions: the messages both received come in the same order, and between the
/// first and the last of them both received exactly the same messages.
fn check_sessions(all: &[(String, Vec<String>)]) -> Result<(), String> {
    for (i, (na, a)) in all.iter().enumerate() {
        let pos_a: BTreeMap<&str, usize> =
            a.iter().enumerate().map(|(p, b)| (b.as_str(), p)).collect();
        if pos_a.len() != a.len() {
            return Err(format!("{na} received a message twice"));
        }
        for (nb, b) in all.iter().skip(i + 1) {
            let common: Vec<(usize, usize)> = b
                .iter()
                .enumerate()
                .filter_map(|(pb, m)| pos_a.get(m.as_str()).map(|&pa| (pa, pb)))
                .collect();
            if common.windows(2).any(|w| w[1].0 < w[0].0) {
                return Err(format!("{na} and {nb} disagree on the order"));
            }
            let (Some(first), Some(last)) = (common.first(), common.last()) else {
                continue;
            };
            let span_a = last.0 - first.0 + 1;
            let span_b = last.1 - first.1 + 1;
            if span_a != common.len() || span_b != common.len() {
                return Err(format!(
                    "{na} and {nb} were in the group together but did not receive the same \
                     messages: {} in common, {span_a} at {na}, {span_b} at {nb} in that span",
                    common.len()
                ));
            }
        }
    }
    Ok(())
}

/// Three daemons (real if `MBUS_REAL_SPREAD`), one steady client on each; each daemon in
/// turn is killed and replaced by ours.
#[test]
fn rolling_replacement_under_steady_traffic_loses_nothing() {
    let Some(mut lab) = NetLab::new(&[3]) else {
        return;
    };
    let names = ["r1", "r2", "r3"];
    let extra = "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n\
                 SocketPortReuse = ON\n";
    let conf = lab.spread_conf(&names, PORT, extra);
    let ours = env!("CARGO_BIN_EXE_spread");
    let first = real_spread().unwrap_or_else(|| ours.to_owned());
    let mut pids = Vec::new();
    for (i, n) in names.iter().enumerate() {
        pids.push(lab.start_daemon(i, &first, n, &conf).expect("start daemon"));
    }
    let send_for = SETTLE * 4;
    let exe = std::env::current_exe().unwrap();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = lab.command(i, exe.to_str().unwrap());
            cmd.args([
                "--exact",
                "rolling::rolling_client_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                HELPER_ENV,
                format!("c{}|{PORT}|{}", i + 1, send_for.as_millis()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
            cmd.spawn().expect("spawn client")
        })
        .collect();
    let t0 = Instant::now();
    for (i, n) in names.iter().enumerate() {
        std::thread::sleep(SETTLE);
        lab.kill(pids[i]);
        lab.start_daemon(i, ours, n, &conf).expect("start ours");
        eprintln!("{:?}: {n} replaced by ours", t0.elapsed());
        if let Err(e) = lab.check_real_daemons() {
            panic!("after replacing {n}: {e}");
        }
    }
    let deadline = t0 + send_for + DRAIN + Duration::from_secs(30);
    let mut all = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let lines = child_lines_until(&mut c, deadline);
        assert!(
            lines.iter().any(|l| l == "DONE"),
            "client c{} did not finish ({} lines)\n{}",
            i + 1,
            lines.len(),
            (0..3)
                .map(|j| lab.log(j, names[j]))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        all.extend(sessions(&format!("c{}", i + 1), &lines));
    }
    let counts: Vec<(String, usize)> = all.iter().map(|(n, v)| (n.clone(), v.len())).collect();
    eprintln!("sessions and messages received: {counts:?}");
    // Every client rejoined after its daemon was replaced, and the new sessions carry traffic.
    assert!(all.len() >= 6, "{counts:?}");
    assert!(all.iter().all(|(_, v)| !v.is_empty()), "{counts:?}");
    if let Err(e) = check_sessions(&all) {
        panic!("{e}\n{counts:?}");
    }
}

#[test]
fn the_session_check_catches_a_gap_and_a_reorder() {
    let s = |n: &str, v: &[&str]| (n.to_owned(), v.iter().map(|x| (*x).to_owned()).collect());
    assert!(check_sessions(&[s("a", &["1", "2", "3"]), s("b", &["2", "3", "4"])]).is_ok());
    assert!(check_sessions(&[s("a", &["1", "2", "3"]), s("b", &["1", "3"])]).is_err());
    assert!(check_sessions(&[s("a", &["1", "2", "3"]), s("b", &["2", "1"])]).is_err());
    assert!(check_sessions(&[s("a", &["1", "1"])]).is_err());
}
