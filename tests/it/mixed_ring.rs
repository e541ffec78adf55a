//! Mixed rings at the moments users hit them: our daemon and a real Spread 5.0.1 daemon
//! (`MBUS_REAL_SPREAD`) in network namespaces on one bridge, with clients that connect and
//! join while the ring forms, after a daemon restart, and under the Accelerated Ring. Without
//! `MBUS_REAL_SPREAD` the same scenarios run with our daemon in both places (the timing still
//! matters). Skipped (with a message) when not root.
//!
//! Every scenario fails if a real daemon died or its log shows a fatal alarm
//! ([`NetLab::check_real_daemons`]). `MBUS_MIXED_ROUNDS=N` repeats each scenario N times.
//!
//! The clients are `ring_netns`'s client helper re-executed inside the namespaces.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::netns::{child_lines_until, real_spread, NetLab};

const ROUNDS_ENV: &str = "MBUS_MIXED_ROUNDS";
const PORT: u16 = 4803;
/// Bound on one client run (connect, join, traffic).
const CLIENT_BOUND: Duration = Duration::from_secs(60);
/// Longest a daemon may take to open its client socket.
const LISTEN_BOUND: Duration = Duration::from_secs(10);

/// Two daemons on one bridge: `real_at` (if `MBUS_REAL_SPREAD` is set) is the real one.
struct Pair {
    lab: NetLab,
    conf: String,
    bins: [String; 2],
    pids: [u32; 2],
}

impl Pair {
    fn new(real_at: usize, extra: &str) -> Option<Self> {
        let lab = NetLab::new(&[2])?;
        let ours = env!("CARGO_BIN_EXE_spread").to_owned();
        let mut bins = [ours.clone(), ours];
        if let Some(real) = real_spread() {
            bins[real_at] = real;
        }
        let extra = format!(
            "DaemonUser = nobody\nDaemonGroup = nogroup\nRuntimeDir = /tmp/rt\n\
             SocketPortReuse = ON\n{extra}"
        );
        let conf = lab.spread_conf(&["accA", "accB"], PORT, &extra);
        Some(Self {
            lab,
            conf,
            bins,
            pids: [0; 2],
        })
    }

    fn name(i: usize) -> &'static str {
        ["accA", "accB"][i]
    }

    /// Starts daemon `i` and waits until its client socket exists.
    fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// [`Pair::start`] with more arguments (ours only).
    fn start_with(&mut self, i: usize, args: &[&str]) {
        let sock = self.lab.nodes[i].tmp.join(PORT.to_string());
        let _ = std::fs::remove_file(&sock);
        let args = if self.bins[i] == env!("CARGO_BIN_EXE_spread") {
            args
        } else {
            &[]
        };
        self.pids[i] = self
            .lab
            .start_daemon_args(
                i,
                &self.bins[i].clone(),
                Self::name(i),
                &self.conf.clone(),
                args,
            )
            .expect("start daemon");
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(
                t0.elapsed() < LISTEN_BOUND,
                "{} never listened: {}",
                Self::name(i),
                self.lab.log(i, Self::name(i))
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self, i: usize) {
        self.lab.kill(self.pids[i]);
    }

    fn spawn_client(&self, i: usize, name: &str, n: usize, pause_ms: u64) -> Child {
        crate::ring_netns::spawn_client(&self.lab, i, &format!("{name}|{PORT}|{n}|2|{pause_ms}"))
    }

    /// One client per daemon, started now; both must finish with the same order of all
    /// `2 n` messages, and the real daemon must be alive and without alarms.
    fn traffic(&mut self, what: &str, n: usize) {
        self.paced_traffic(what, n, 0);
    }

    /// [`Pair::traffic`] with a pause of `pause_ms` after each message a client sends.
    fn paced_traffic(&mut self, what: &str, n: usize, pause_ms: u64) {
        let clients = [
            self.spawn_client(0, "ca", n, pause_ms),
            self.spawn_client(1, "cb", n, pause_ms),
        ];
        let deadline = Instant::now() + CLIENT_BOUND + Duration::from_secs(5);
        let mut seqs = Vec::new();
        for (i, mut c) in clients.into_iter().enumerate() {
            let lines = child_lines_until(&mut c, deadline);
            if !lines.iter().any(|l| l == "DONE") {
                let real = self.lab.check_real_daemons().err().unwrap_or_default();
                self.keep_logs();
                panic!(
                    "{what}: the client on {} did not finish ({} lines, last {:?})\n{real}\naccA: {}\naccB: {}",
                    Self::name(i),
                    lines.len(),
                    lines.last(),
                    tail(&self.lab.log(0, "accA")),
                    tail(&self.lab.log(1, "accB"))
                );
            }
            seqs.push(
                lines
                    .iter()
                    .filter_map(|l| l.strip_prefix("GOT ").map(str::to_owned))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(seqs[0].len(), 2 * n, "{what}: every message once");
        assert_eq!(
            seqs[0], seqs[1],
            "{what}: the two clients disagree on the order"
        );
        if let Err(e) = self.lab.check_real_daemons() {
            panic!("{what}: {e}");
        }
    }
}

impl Pair {
    /// Copies both daemons' logs out of the lab (removed on drop) for a failed run:
    /// `$TMPDIR/mbus-mixed-<pid>-<name>.log`.
    fn keep_logs(&self) {
        for i in 0..2 {
            let to = std::env::temp_dir().join(format!(
                "mbus-mixed-{}-{}.log",
                std::process::id(),
                Self::name(i)
            ));
            let _ = std::fs::write(&to, self.lab.log(i, Self::name(i)));
            eprintln!("log of {} kept at {}", Self::name(i), to.display());
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn rounds() -> usize {
    std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The first daemon starts, the second as soon as the first listens, and a client on each
/// connects and joins at once: the joins travel while the ring forms and the group state is
/// exchanged. The real daemon is `real_at`.
fn joins_during_formation(real_at: usize, extra: &str) {
    for round in 0..rounds() {
        let Some(mut p) = Pair::new(real_at, extra) else {
            return;
        };
        let t0 = Instant::now();
        p.start(0);
        p.start(1);
        p.traffic(&format!("round {round}"), 50);
        eprintln!("round {round}: formed and ordered in {:?}", t0.elapsed());
    }
}

#[test]
fn clients_join_while_the_ring_forms_real_first() {
    joins_during_formation(0, "");
}

/// As [`clients_join_while_the_ring_forms_real_first`], both with `AcceleratedRing = true`.
#[test]
fn clients_join_while_the_accelerated_ring_forms() {
    joins_during_formation(0, "AcceleratedRing = true\n");
}

#[test]
fn clients_join_while_the_ring_forms_ours_first() {
    joins_during_formation(1, "");
}

/// A settled ring is cut in two (each daemon runs a ring of its own), then healed, and
/// clients on both daemons connect and join at once, while the two rings merge and their
/// group states are exchanged. The real daemon is `real_at`.
fn joins_during_a_merge(real_at: usize) {
    for round in 0..rounds() {
        let Some(mut p) = Pair::new(real_at, "") else {
            return;
        };
        p.start(0);
        p.start(1);
        std::thread::sleep(Duration::from_secs(3));
        p.lab.set_link(1, false).expect("cut");
        // 5.0.1 notices the lost token in ~3 s and forms a ring of its own.
        std::thread::sleep(Duration::from_secs(6));
        p.lab.set_link(1, true).expect("heal");
        let t0 = Instant::now();
        p.traffic(&format!("round {round} merge"), 50);
        eprintln!("round {round}: merged and ordered in {:?}", t0.elapsed());
    }
}

#[test]
fn clients_join_while_two_rings_merge_real_first() {
    joins_during_a_merge(0);
}

#[test]
fn clients_join_while_two_rings_merge_ours_first() {
    joins_during_a_merge(1);
}

/// A settled ring with traffic; then our daemon is killed and restarted and a client on it
/// joins at once (the first step of a rolling replacement).
#[test]
fn a_restarted_daemon_whose_client_joins_at_once() {
    for round in 0..rounds() {
        let Some(mut p) = Pair::new(0, "") else {
            return;
        };
        p.start(0);
        p.start(1);
        p.traffic(&format!("round {round} settled"), 50);
        p.kill(1);
        // The survivor notices the death (~3 s with 5.0.1's timeouts) while ours restarts.
        std::thread::sleep(Duration::from_millis(500));
        p.start(1);
        p.traffic(&format!("round {round} after restart"), 50);
    }
}

/// Accelerated Ring in both configurations, ring settled: a client on each daemon sends 500
/// AGREED messages while the other does; both receive all 1000 in one order.
#[test]
fn accelerated_ring_delivers_everything_in_one_order() {
    for round in 0..rounds() {
        let Some(mut p) = Pair::new(0, "AcceleratedRing = true\n") else {
            return;
        };
        p.start(0);
        p.start(1);
        std::thread::sleep(Duration::from_secs(4));
        p.traffic(&format!("round {round} accelerated"), 500);
    }
}

/// Paced traffic on a settled ring whose leader is ours (accA has the lower address) and whose
/// other daemon is the real 5.0.1: between messages the ring falls idle and our leader holds
/// the token; each message of its own client then leaves with the held token at once
/// (`Engine::revisit_held_token`). The real successor must take those tokens as ordinary
/// visits: both clients get every message in one order, the real daemon stays alive without
/// an alarm.
#[test]
fn paced_traffic_from_our_leader_holding_the_token_with_a_real_successor() {
    for round in 0..rounds() {
        let Some(mut p) = Pair::new(1, "") else {
            return;
        };
        p.start(0);
        p.start(1);
        std::thread::sleep(Duration::from_secs(3));
        p.paced_traffic(&format!("round {round}"), 25, 40);
    }
}

/// Request/response across a mixed ring (mbus-bench's ping and echo): the echo on our
/// daemon and the pinger on the real one, then the other way round, then both on ours. Our
/// daemon keeps the token for its clients' answers (`ring::reply`) with a real 5.0.1 daemon
/// as its only neighbour: every round trip completes, the real daemon stays up without an
/// alarm, and ours did keep tokens and got answers.
#[test]
fn request_response_while_our_daemon_keeps_the_token_for_answers() {
    for round in 0..rounds() {
        let Some(mut p) = Pair::new(1, "") else {
            return;
        };
        p.start_with(0, &["--metrics", "127.0.0.1:9803"]);
        p.start(1);
        std::thread::sleep(Duration::from_secs(3));
        let addrs: Vec<String> = (0..2)
            .map(|i| format!("{PORT}@{}", p.lab.nodes[i].addr))
            .collect();
        let addr = |i: usize| addrs[i].clone();
        for (ping, echo) in [(1usize, 0usize), (0, 1), (0, 0)] {
            let out = p
                .lab
                .command(ping, env!("CARGO_BIN_EXE_mbus-bench"))
                .args(["--latency", "-s", &addr(ping), "--echo", &addr(echo)])
                .args(["-m", "300", "-b", "100", "--service", "agreed", "--json"])
                .args(["--timeout", "60"])
                .output()
                .expect("run mbus-bench");
            let text = String::from_utf8_lossy(&out.stdout);
            let what = format!("round {round}, ping {ping} echo {echo}");
            assert!(
                out.status.success(),
                "{what}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                p.lab.check_real_daemons().err().unwrap_or_default()
            );
            let v: serde_json::Value = serde_json::from_str(&text).expect("mbus-bench JSON");
            assert_eq!(v["failed"], serde_json::json!([]), "{what}: {text}");
            assert_eq!(v["latency"][0]["samples"], 300, "{what}: {text}");
            if let Err(e) = p.lab.check_real_daemons() {
                panic!("{what}: {e}");
            }
        }
        let get = "import urllib.request as u;\
                   print(u.urlopen('http://127.0.0.1:9803/metrics', timeout=5).read().decode())";
        let out = p
            .lab
            .command(0, "python3")
            .args(["-c", get])
            .output()
            .expect("read our metrics");
        let metrics = String::from_utf8_lossy(&out.stdout);
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        let (holds, hits) = (
            value("spread_reply_holds_total "),
            value("spread_reply_hits_total "),
        );
        assert!(
            holds >= 100 && hits >= 100,
            "round {round}: {holds} kept, {hits} answered\n{metrics}"
        );
    }
}
