//! The metrics endpoint (`spread --metrics ADDR:PORT`), scraped over HTTP on loopback from a
//! 3-daemon ring ([`Ring::with_metrics`]) carrying client traffic, and parsed: the exposition
//! is well-formed OpenMetrics text and its numbers are the ring's.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use mbus::client::{Message, ServiceType};

use crate::harness::recv;
use crate::ring::{addr, three_clients, Ring, FORM_BOUND};

/// One scrape: sample name with its labels (`name{k="v",…}` as written) → value.
type Samples = BTreeMap<String, f64>;

/// `GET /metrics` over a plain TCP connection; returns status line, headers and body.
fn get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// Parses an OpenMetrics text exposition strictly: every sample's family was declared by
/// `# TYPE` before it, names and label sets are well-formed, values are numbers, the text
/// ends with `# EOF`. Returns the samples.
fn parse(body: &str) -> Samples {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Samples::new();
    let mut lines = body.lines().peekable();
    let mut saw_eof = false;
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            assert!(lines.peek().is_none(), "text after # EOF");
            saw_eof = true;
            break;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let (kw, name) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            assert!(valid_name(name), "bad family name in {line:?}");
            match kw {
                "TYPE" => {
                    let t = w.next().unwrap_or("");
                    assert!(
                        ["counter", "gauge"].contains(&t),
                        "unexpected type {line:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), t.to_owned()).is_none(),
                        "{name} twice"
                    );
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let name = series.split('{').next().unwrap_or("");
        assert!(valid_name(name), "bad sample name in {line:?}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("label set in braces");
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').expect("label k=v");
                assert!(valid_name(k), "bad label name in {line:?}");
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line:?}"
                );
            }
        }
        let family = types
            .keys()
            .find(|f| name == f.as_str() || name.strip_suffix("_total") == Some(f.as_str()))
            .unwrap_or_else(|| panic!("sample {name} without # TYPE"));
        if types[family] == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter sample {name} without _total"
            );
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(out.insert(series.to_owned(), v).is_none(), "{series} twice");
    }
    assert!(saw_eof, "no # EOF");
    out
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn scrape(ring: &Ring, i: usize) -> Samples {
    let (status, headers, body) = get(&format!("{}:{}", addr(i), ring.metrics[i]), "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(
        headers.contains("Content-Type: application/openmetrics-text"),
        "{headers}"
    );
    parse(&body)
}

fn value(s: &Samples, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("no {series} in the scrape: {:?}", s.keys()))
}

/// Waits until daemon `i`'s scrape satisfies `ok` (the ring settles asynchronously).
async fn scrape_until(ring: &Ring, i: usize, ok: impl Fn(&Samples) -> bool) -> Samples {
    let end = Instant::now() + FORM_BOUND;
    loop {
        let s = scrape(ring, i);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "d{}: metrics never settled: {s:?}",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_is_scraped_and_counts_the_ring_traffic() {
    let ring = Ring::with_metrics(3);
    let mut mbs = three_clients(&ring).await;
    const N: usize = 20;
    for mb in &mut mbs {
        for k in 0..N {
            mb.multicast(ServiceType::AGREED, "grp", 0, format!("a{k}").as_bytes())
                .await
                .expect("multicast");
        }
        mb.multicast(ServiceType::FIFO, "grp", 0, b"fifo-body")
            .await
            .expect("multicast");
    }
    for mb in &mut mbs {
        let mut data = 0;
        while data < 3 * (N + 1) {
            if let Message::Data(_) = recv(mb).await {
                data += 1;
            }
        }
    }
    for i in 0..3 {
        let s = scrape_until(&ring, i, |s| {
            s.get("spread_messages_delivered_total{service=\"agreed\"}") == Some(&(3.0 * N as f64))
        })
        .await;
        let d = format!("d{}", i + 1);
        assert_eq!(value(&s, "spread_ring_members"), 3.0, "{d}");
        assert_eq!(
            value(&s, "spread_membership_state{state=\"op\"}"),
            1.0,
            "{d}"
        );
        assert_eq!(value(&s, "spread_sessions"), 1.0, "{d}");
        assert_eq!(value(&s, "spread_groups"), 1.0, "{d}");
        assert_eq!(value(&s, "spread_group_members"), 3.0, "{d}");
        assert_eq!(
            value(&s, "spread_messages_in_total{service=\"agreed\"}"),
            N as f64,
            "{d}"
        );
        assert_eq!(
            value(&s, "spread_messages_in_total{service=\"fifo\"}"),
            1.0,
            "{d}"
        );
        assert_eq!(
            value(&s, "spread_messages_delivered_total{service=\"fifo\"}"),
            3.0,
            "{d}"
        );
        assert!(
            value(&s, "spread_bytes_in_total{service=\"fifo\"}") > 9.0,
            "{d}"
        );
        assert!(value(&s, "spread_membership_changes_total") >= 1.0, "{d}");
        assert!(value(&s, "spread_exchanges_total") >= 1.0, "{d}");
        assert!(value(&s, "spread_ring_packets_received_total") > 0.0, "{d}");
        assert!(value(&s, "spread_datagrams_sent_total") > 0.0, "{d}");
        assert!(
            value(&s, "spread_ring_highest_seq") >= value(&s, "spread_ring_aru"),
            "{d}"
        );
        assert_eq!(
            value(&s, "spread_packets_dropped_total{reason=\"malformed\"}"),
            0.0,
            "{d}"
        );
        assert_eq!(value(&s, "spread_fatal_for_5_0_1_total"), 0.0, "{d}");
    }
    // The leader times the token's rotations.
    let scrapes: Vec<Samples> = (0..3).map(|i| scrape(&ring, i)).collect();
    let leader = value(&scrapes[0], "spread_ring_leader");
    let lead = scrapes
        .iter()
        .find(|s| value(s, "spread_daemon_id") == leader)
        .expect("the leader is one of the three");
    assert!(value(lead, "spread_token_rotations_total") > 0.0);
    assert!(value(lead, "spread_token_rotation_seconds_total") > 0.0);
    // Other paths and methods get plain errors.
    let a = format!("{}:{}", addr(0), ring.metrics[0]);
    assert_eq!(get(&a, "/").0, "HTTP/1.1 404 Not Found");
    let mut s = std::net::TcpStream::connect(&a).expect("connect");
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n")
        .expect("send");
    let mut t = String::new();
    s.read_to_string(&mut t).expect("read");
    assert!(t.starts_with("HTTP/1.1 405"), "{t}");
}

#[test]
fn garbage_on_the_metrics_port_does_not_stop_the_endpoint() {
    let ring = Ring::with_metrics(1);
    let a = format!("{}:{}", addr(0), ring.metrics[0]);
    let end = Instant::now() + FORM_BOUND;
    let ok = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&a) {
            let _ = s.write_all(&[0xff; 10_000]);
            break true;
        }
        if Instant::now() > end {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ok, "metrics endpoint never listened\n{}", ring.logs());
    // A request that never ends its head is cut off by the size bound; then a good one.
    let (status, _, body) = get(&a, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let s = parse(&body);
    assert!(s.contains_key("spread_sessions"));
}

/// A one-host configuration on a free port in `dir`; returns its path.
fn one_host(dir: &std::path::Path) -> std::path::PathBuf {
    let port = crate::harness::free_port();
    let path = dir.join("spread.conf");
    std::fs::write(
        &path,
        format!("Spread_Segment 127.0.0.255:{port} {{\n  localhost 127.0.0.1\n}}\n"),
    )
    .expect("config");
    path
}

fn spread_cmd(dir: &std::path::Path, conf: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_spread"));
    c.args(["-n", "localhost", "-c"])
        .arg(conf)
        .current_dir(dir)
        .env("MBUS_UNIX_SOCKET_DIR", dir)
        .env_remove("MBUS_METRICS")
        .stdin(std::process::Stdio::null());
    c
}

#[test]
fn metrics_address_from_the_environment_and_bad_addresses_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = one_host(dir.path());
    let port = crate::harness::free_port();
    let mut child = spread_cmd(dir.path(), &conf)
        .env("MBUS_METRICS", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let a = format!("127.0.0.1:{port}");
    let end = Instant::now() + FORM_BOUND;
    while std::net::TcpStream::connect(&a).is_err() {
        assert!(Instant::now() < end, "MBUS_METRICS endpoint never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _, body) = get(&a, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(parse(&body).contains_key("spread_sessions"));
    // The port is taken now: a second daemon's metrics listener fails with one line.
    let other = tempfile::tempdir().expect("tempdir");
    let conf2 = one_host(other.path());
    let o = spread_cmd(other.path(), &conf2)
        .args(["--metrics", &a])
        .output()
        .expect("run");
    let _ = child.kill();
    let _ = child.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains("cannot open metrics listener")),
        "{err}"
    );
    for (args, env, want) in [
        (
            &["--metrics", "nowhere"][..],
            None,
            "spread: --metrics: 'nowhere' is not ADDR:PORT",
        ),
        (
            &[][..],
            Some("nowhere:1"),
            "spread: MBUS_METRICS: 'nowhere:1' is not ADDR:PORT",
        ),
    ] {
        let mut c = spread_cmd(dir.path(), &conf);
        c.args(args);
        if let Some(e) = env {
            c.env("MBUS_METRICS", e);
        }
        let o = c.output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.lines().last().is_some_and(|l| l.starts_with(want)),
            "{err}"
        );
    }
}

/// Large messages are cut into packets of one size: they leave in segmented runs (one system
/// call for up to 44 full packets, `spread_datagrams_segmented_total`) and every daemon still
/// delivers them whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_leave_in_segmented_runs_and_arrive_whole() {
    let ring = Ring::with_metrics(3);
    let mut mbs = three_clients(&ring).await;
    let bodies: Vec<Vec<u8>> = (0..4u8)
        .map(|k| (0..100_000u32).map(|i| (i % 251) as u8 ^ k).collect())
        .collect();
    for b in &bodies {
        mbs[0]
            .multicast(ServiceType::AGREED, "grp", 0, b)
            .await
            .expect("multicast");
    }
    for (i, mb) in mbs.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < bodies.len() {
            if let Message::Data(d) = recv(mb).await {
                got.push(d.body.to_vec());
            }
        }
        assert!(got == bodies, "c{}: bodies differ", i + 1);
    }
    let s = scrape(&ring, 0);
    let (sent, calls, segmented) = (
        value(&s, "spread_datagrams_sent_total"),
        value(&s, "spread_send_calls_total"),
        value(&s, "spread_datagrams_segmented_total"),
    );
    // 4 × 100 000 bytes are ≥ 4 × 68 full packets, nearly all of them in runs.
    assert!(
        segmented >= 250.0,
        "sent {sent}, calls {calls}, segmented {segmented}"
    );
    assert!(
        calls < sent,
        "sent {sent}, calls {calls}, segmented {segmented}"
    );
}
