//! Control packets against one [`Daemon`] built from the configuration of capture k
//! (`tests/data/daemon/k_monitor_status.hex`: d1, d2, d3 on 10.98.0.1-3, hash 0x9f2ad697).

use super::*;
use crate::daemon::{ring_config, Input};
use crate::ring::Port;
use crate::wire::daemon::{Endian, HEADER_LEN, MAX_PROCS_RING};

const D1: DaemonId = DaemonId(0x5c8d_7aef);
const D2: DaemonId = DaemonId(0x14c5_65a0);
const D3: DaemonId = DaemonId(0xef46_226e);
const HASH: u32 = 0x9f2a_d697;
const START: Instant = Instant(5_000_000);

/// The STATUS request spmonitor (as d1, return port 6543) sent in capture k.
const K_REQUEST: &str =
    "80000081ef7a8d5cef7a8d5c00000000000000008f1900000000000097d62a9f0000000000000000";
/// The first 40 bytes of d1's 136-byte reply in capture k.
const K_REPLY_HEADER: &str =
    "8000008100000000ef7a8d5c000000000000000000000000000000000000000060000000000000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn node(me: usize, dangerous: bool) -> Daemon {
    let text =
        format!(
        "Spread_Segment 10.98.0.255:4803 {{\n d1 10.98.0.1\n d2 10.98.0.2\n d3 10.98.0.3\n}}\n{}",
        if dangerous { "DangerousMonitor = yes\n" } else { "" }
    );
    let config = Config::parse(&text, "k.conf").unwrap();
    let host = config.hosts().nth(me).unwrap().0;
    assert_eq!(ring_config(&config, host).conf_hash, HASH);
    let mut n = Daemon::from_config(&config, host, START, 1);
    while n.poll_output().is_some() {}
    n
}

fn control(kind: u32, from: DaemonId, body: &[i16]) -> Vec<u8> {
    let mut h = PacketHeader::new(kind, DaemonId(from.0), HASH);
    h.seq = crate::wire::daemon::Seq(7000);
    let body = match kind {
        TypeBits::PARTITION => PacketBody::Partition(PartitionBody {
            components: body.to_vec(),
        }),
        TypeBits::FC => PacketBody::Fc(FcBody {
            entries: body.chunks(2).map(|c| [c[0], c[1]]).collect(),
        }),
        TypeBits::RELOAD => PacketBody::Reload,
        _ => PacketBody::Status(None),
    };
    Packet { header: h, body }.to_vec()
}

fn feed(n: &mut Daemon, now: Instant, from: DaemonId, bytes: &[u8]) -> Vec<MonitorOutput> {
    n.handle(
        now,
        Input::Packet {
            from,
            port: Port::Data,
            bytes: Bytes::copy_from_slice(bytes),
        },
    );
    let mut got = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Monitor(m) = o {
            got.push(m);
        }
    }
    got
}

/// spmonitor's whole 128-entry array with `first` for the configured daemons.
fn full(first: &[i16], pairs: bool) -> Vec<i16> {
    let mut v = first.to_vec();
    v.resize(MAX_PROCS_RING * if pairs { 2 } else { 1 }, 0);
    v
}

#[test]
fn status_request_of_capture_k_gets_5_0_1s_reply() {
    let mut n = node(0, false);
    let now = START + Duration::from_secs(10);
    let got = feed(&mut n, now, D1, &unhex(K_REQUEST));
    let [MonitorOutput::StatusReply { to, port, bytes }] = got.as_slice() else {
        panic!("one status reply expected: {got:?}");
    };
    assert_eq!((*to, *port), (D1, 6543));
    assert_eq!(bytes.len(), HEADER_LEN + StatusRecord::LEN);
    assert_eq!(bytes[..HEADER_LEN], unhex(K_REPLY_HEADER)[..]);
    let rec = StatusRecord::decode(&mut &bytes[HEADER_LEN..], Endian::Little).unwrap();
    assert_eq!(rec, n.status_record(now));
    assert_eq!(rec.sec, 10);
    assert_eq!(rec.my_id as u32, D1.0);
    assert_eq!(rec.state, STATE_SEG, "just started: SEG (ALIVEs), as 5.0.1");
    assert_eq!(rec.gstate, GSTATE_OP);
    // The defaults 5.0.1 reported in capture k.
    assert_eq!(
        (rec.window, rec.personal_window, rec.accelerated_ring),
        (160, 20, 0)
    );
    assert_eq!(rec.accelerated_window, 15);
    assert_eq!(
        (rec.major_version, rec.minor_version, rec.patch_version),
        (5, 0, 1)
    );
    assert_eq!((rec.num_sessions, rec.num_groups), (0, 0));
    assert_eq!(n.monitor_stats().status_replies, 1);
}

#[test]
fn status_request_from_another_daemons_address_answers_its_requester() {
    // Sent from d2's address as d2, to d1: the reply goes to d2's address.
    let mut n = node(0, false);
    let got = feed(&mut n, START, D2, &control(TypeBits::STATUS, D2, &[]));
    assert!(
        matches!(got.as_slice(), [MonitorOutput::StatusReply { to, port: 7000, .. }] if *to == D2),
        "{got:?}"
    );
}

#[test]
fn control_packets_failing_the_network_checks_are_dropped() {
    let mut n = node(0, true);
    let mut wrong_hash = control(TypeBits::STATUS, D1, &[]);
    wrong_hash[28] ^= 1;
    let mut long = control(TypeBits::STATUS, D1, &[]);
    long.push(0);
    let cases: [(DaemonId, Vec<u8>); 4] = [
        (D1, wrong_hash),
        (D1, long),
        // Claims d2 but comes from d1's address.
        (D1, control(TypeBits::STATUS, D2, &[])),
        // Unknown transmitter.
        (D1, control(TypeBits::STATUS, DaemonId(0x1234_5678), &[])),
    ];
    for (from, bytes) in cases {
        assert!(feed(&mut n, START, from, &bytes).is_empty());
    }
    assert_eq!(n.topology_stats().rejected_total(), 4);
    assert_eq!(n.monitor_stats().status_replies, 0);
}

#[test]
fn partition_and_fc_need_dangerous_monitor() {
    let mut n = node(0, false);
    let before = n.engine().status();
    assert!(feed(
        &mut n,
        START,
        D1,
        &control(TypeBits::PARTITION, D1, &full(&[0, 1, 1], false))
    )
    .is_empty());
    assert!(feed(
        &mut n,
        START,
        D1,
        &control(
            TypeBits::FC,
            D1,
            &full(&[5, -1, -1, -1, -1, -1, 7, -1], true)
        )
    )
    .is_empty());
    assert_eq!(n.monitor_stats().denied, 2);
    assert_eq!(n.engine().status(), before);
    // No partition: d2's packets still reach the engine.
    assert!(n.monitor.admit(D2));
}

#[test]
fn partition_drops_other_components_until_timeout() {
    let mut n = node(0, true);
    assert!(feed(
        &mut n,
        START,
        D1,
        &control(TypeBits::PARTITION, D1, &full(&[0, 1, 0], false))
    )
    .is_empty());
    assert_eq!(n.monitor_stats().partitions, 1);
    // A valid HURRY from d2 (it passes §1.1) never reaches the engine: counted here.
    let engine_seen = n.engine().stats();
    n.handle(
        START,
        Input::Packet {
            from: D2,
            port: Port::Data,
            bytes: crate::wire::daemon::Packet::hurry(DaemonId(D2.0), HASH)
                .to_vec()
                .into(),
        },
    );
    assert_eq!(n.monitor_stats().partition_drops, 1);
    assert_eq!(n.engine().stats(), engine_seen);
    assert!(n.monitor.admit(D3));
    assert_eq!(
        n.poll_timeout().map(|t| t <= START + PARTITION_TIMEOUT),
        Some(true)
    );
    n.handle_timeout(START + PARTITION_TIMEOUT);
    assert!(n.monitor.admit(D2), "cleared after Partition_timeout");
}

#[test]
fn partition_minus_one_means_exit() {
    let mut n = node(1, true);
    let got = feed(
        &mut n,
        START,
        D1,
        &control(TypeBits::PARTITION, D1, &full(&[0, -1, 0], false)),
    );
    assert_eq!(got, [MonitorOutput::Exit]);
    // A short body (fewer entries than daemons) is ignored.
    let mut m = node(1, true);
    assert!(feed(
        &mut m,
        START,
        D1,
        &control(TypeBits::PARTITION, D1, &[0, -1])
    )
    .is_empty());
    assert_eq!(m.monitor_stats().ignored, 1);
}

#[test]
fn fc_changes_windows_and_minus_one_keeps() {
    // d2 (index 1): personal 7, accelerated kept; Window (entry 3) 90.
    let mut n = node(1, true);
    let fc = full(&[5, 5, 7, -1, 5, 5, 90, -1], true);
    assert!(feed(&mut n, START, D1, &control(TypeBits::FC, D1, &fc)).is_empty());
    let s = n.engine().status();
    assert_eq!(
        (s.window, s.personal_window, s.accelerated_window),
        (90, 7, 15)
    );
    let rec = n.status_record(START);
    assert_eq!((rec.window, rec.personal_window), (90, 7));
    // All −1: nothing changes.
    let keep = full(&[-1; 8], true);
    feed(&mut n, START, D1, &control(TypeBits::FC, D1, &keep));
    assert_eq!(n.engine().status(), s);
    assert_eq!(n.monitor_stats().flow_changes, 2);
}

#[test]
fn reload_is_refused_without_dangerous_monitor() {
    let mut n = node(0, false);
    assert!(feed(&mut n, START, D3, &control(TypeBits::RELOAD, D3, &[])).is_empty());
    assert_eq!(n.monitor_stats().reloads_unsupported, 1);
    assert_eq!(n.monitor_stats().denied, 1);
}

#[test]
fn reload_with_dangerous_monitor_asks_the_shell_to_reread_the_file() {
    let mut n = node(0, true);
    let got = feed(&mut n, START, D3, &control(TypeBits::RELOAD, D3, &[]));
    assert_eq!(got, [MonitorOutput::Reload]);
    assert_eq!(n.monitor_stats().reloads_unsupported, 0);
}

#[test]
fn control_type_on_the_token_port_or_short_datagrams_are_not_answered() {
    let mut n = node(0, false);
    let req = unhex(K_REQUEST);
    n.handle(
        START,
        Input::Packet {
            from: D1,
            port: Port::Token,
            bytes: Bytes::copy_from_slice(&req),
        },
    );
    assert!(!std::iter::from_fn(|| n.poll_output()).any(|o| matches!(o, Output::Monitor(_))));
    assert!(feed(&mut n, START, D1, &req[..3]).is_empty());
    assert_eq!(n.monitor_stats(), MonitorStats::default());
}

/// §1.1 is applied once, by the network layer: a protocol packet that fails it never reaches
/// the engine (whose own counters do not move), one that passes is handled by it.
#[test]
fn protocol_packets_are_accepted_once_before_the_engine() {
    let mut n = node(0, false);
    let hurry = |hash| crate::wire::daemon::Packet::hurry(D2, hash).to_vec();
    let before = n.engine().stats();
    let wrong_hash = hurry(HASH ^ 1);
    // Claims d2 but comes from d3's address.
    let spoofed = hurry(HASH);
    assert!(feed(&mut n, START, D2, &wrong_hash).is_empty());
    assert!(feed(&mut n, START, D3, &spoofed).is_empty());
    assert_eq!(n.topology_stats().rejected_total(), 2);
    assert_eq!(n.engine().stats(), before, "the engine saw neither");
    assert!(feed(&mut n, START, D2, &hurry(HASH)).is_empty());
    assert_eq!(
        n.topology_stats().rejected_total(),
        2,
        "a good HURRY passes"
    );
}
