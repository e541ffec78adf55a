//! Our daemon codecs against a real Spread 5.0.1 daemon, inside a namespace lab.
//! Runs only when `MBUS_REAL_SPREAD` names a 5.0.1 `spread` binary (and as root);
//! otherwise prints why it was skipped.
//!
//! * What the real daemon broadcasts decodes, re-encodes byte for byte, and carries the id
//!   and configuration hash we compute for a configuration that is in no capture.
//! * The real daemon accepts a STATUS request we encode (its §1.1 checks: hash, known
//!   transmitter, source IP) and its reply decodes; with a wrong hash it stays silent.

use std::process::Stdio;
use std::time::Duration;

use spread::config::Config;
use spread::ids::{conf_hash, daemon_id};
use spread::wire::daemon::{
    Packet, PacketBody, PacketHeader, StatusRecord, Token, TokenBody, TypeBits,
};

use crate::netns::{datagrams, datagrams_with_port, udp_tool, NetLab, Tool};

const ENV: &str = "MBUS_REAL_SPREAD";

/// The lab's spread.conf (d1 on node 0, d2 on node 1) and its hash, computed by us.
fn config(lab: &NetLab) -> (String, u32) {
    let extra = "RuntimeDir = /tmp/rt\nDaemonUser = nobody\nDaemonGroup = nogroup\n";
    let text = lab.spread_conf(&["d1", "d2"], 4803, extra);
    let hash = conf_hash(&Config::parse(&text, "lab.conf").unwrap());
    (text, hash)
}

/// Starts the real daemon as d1 on node 0.
fn start_real_d1(lab: &mut NetLab, bin: &std::ffi::OsStr, conf: &str) {
    lab.start_daemon(0, bin.to_str().unwrap(), "d1", conf)
        .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn real_daemon_speaks_our_codecs() {
    let Some(bin) = std::env::var_os(ENV) else {
        eprintln!("wire interop skipped: set {ENV}=/path/to/spread-5.0.1/sbin/spread");
        return;
    };
    let Some(mut lab) = NetLab::new(&[2]) else {
        return;
    };
    let (conf, conf_hash) = config(&lab);

    // Listen as "d2" while the real d1 starts alone: ALIVE at 0 and 0.25 s, JOINs from 0.5 s.
    let listener = Tool::start(udp_tool(&lab, 1, "listen:2.2:0.0.0.0:4803"));
    start_real_d1(&mut lab, &bin, &conf);
    let heard = datagrams(&listener.finish());

    let logged = lab.log(0, "d1");
    assert!(
        logged.contains(&format!(
            "Hash value for this configuration is: {conf_hash}"
        )),
        "daemon computed another hash than our {conf_hash}:\n{logged}"
    );
    let d1 = daemon_id("d1");
    let (mut alive, mut join) = (0, 0);
    for (src, bytes) in &heard {
        assert_eq!(*src, lab.nodes[0].addr);
        let p = Packet::from_datagram(bytes).unwrap();
        assert_eq!(&p.to_vec(), bytes, "re-encode");
        assert_eq!(p.header.conf_hash, conf_hash);
        assert_eq!(p.header.transmiter_id, d1);
        match &p.body {
            PacketBody::Alive(a) => {
                assert_eq!(a.members, [d1]);
                alive += 1;
            }
            PacketBody::Join(j) => {
                assert_eq!(j.reps.first().map(|r| r.proc_id), Some(d1));
                join += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(alive >= 1 && join >= 2, "heard {alive} ALIVE, {join} JOIN");

    // STATUS request from d2's configured address; reply to d2:<seq>.
    let status = |hash: u32| {
        let mut req = Packet {
            header: PacketHeader::new(TypeBits::STATUS, daemon_id("d2"), hash),
            body: PacketBody::Status(None),
        };
        req.header.seq = spread::wire::daemon::Seq(6543);
        let spec = format!(
            "sendrecv:1.0:{}:6543:{}:4803:{}",
            lab.nodes[1].addr,
            lab.nodes[0].addr,
            hex(&req.to_vec())
        );
        let out = udp_tool(&lab, 1, &spec)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        datagrams(&out.stdout)
    };
    let replies = status(conf_hash);
    assert_eq!(replies.len(), 1, "{replies:?}");
    let reply = Packet::from_datagram(&replies[0].1).unwrap();
    assert_eq!(reply.to_vec(), replies[0].1);
    let PacketBody::Status(Some(rec)) = reply.body else {
        panic!("not a status reply: {reply:?}")
    };
    assert_eq!(rec.my_id as u32, d1.0);
    assert_eq!(
        (rec.major_version, rec.minor_version, rec.patch_version),
        (5, 0, 1)
    );
    assert_eq!(rec.num_procs, 1, "daemons in its current ring: it is alone");
    assert_eq!(
        (rec.window, rec.personal_window, rec.accelerated_ring),
        (160, 20, 0)
    );
    assert!(
        status(conf_hash ^ 1).is_empty(),
        "answered a request with a wrong hash"
    );
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
}

#[test]
fn real_daemon_gathers_our_alive_and_sends_us_form1() {
    let Some(bin) = std::env::var_os(ENV) else {
        eprintln!("wire interop skipped: set {ENV}=/path/to/spread-5.0.1/sbin/spread");
        return;
    };
    let Some(mut lab) = NetLab::new(&[2]) else {
        return;
    };
    let (conf, conf_hash) = config(&lab);
    let (d1, d2) = (daemon_id("d1"), daemon_id("d2"));
    // We are d2: broadcast our ALIVE every 100 ms and listen on 4803/4804 for 3.5 s.
    let alive = Packet::alive(d2, conf_hash, vec![d2]).to_vec();
    let spec = format!(
        "periodic:3.5:100:4803:{}:4803:{}",
        lab.bcast(0),
        hex(&alive)
    );
    let us = Tool::start(udp_tool(&lab, 1, &spec));
    start_real_d1(&mut lab, &bin, &conf);
    let heard = datagrams_with_port(&us.finish());

    let mut saw_us_in_alive = false;
    let mut join_members = None;
    let mut form1 = None;
    for (src, bytes, port) in &heard {
        if *src == lab.nodes[1].addr {
            continue; // our own broadcasts
        }
        if *port == 4804 {
            let t = Token::from_datagram(bytes).unwrap();
            assert_eq!(&t.to_vec(), bytes, "token re-encode");
            assert_eq!(t.header.conf_hash, conf_hash);
            if let TokenBody::Form1(f) = t.body {
                form1 = Some(f);
            }
        } else {
            let p = Packet::from_datagram(bytes).unwrap();
            assert_eq!(&p.to_vec(), bytes, "packet re-encode");
            match p.body {
                PacketBody::Alive(a) if a.members.contains(&d2) => saw_us_in_alive = true,
                PacketBody::Join(j) => join_members = Some(j.members.members),
                _ => {}
            }
        }
    }
    assert!(
        saw_us_in_alive,
        "the real daemon never listed us in its ALIVE"
    );
    assert_eq!(join_members, Some(vec![d1, d2]), "JOIN members");
    let f = form1.expect("no FORM1 sent to us");
    assert_eq!(f.members.members, [d1]);
    assert_eq!(f.members.pending, [d2]);
    assert_eq!(f.reps.reps.first().map(|r| r.proc_id), Some(d1));
    assert_eq!(f.rings.len(), 1, "one old-ring entry (d1's own)");
    if let Err(e) = lab.check_real_daemons() {
        panic!("{e}");
    }
}

/// Asks daemon `name` on node `i` for its status, as spmonitor would (from its own address).
fn query_status(lab: &NetLab, i: usize, name: &str, conf_hash: u32) -> Option<StatusRecord> {
    let req = Packet::status_request(daemon_id(name), conf_hash, 6543);
    let a = lab.nodes[i].addr;
    let spec = format!("sendrecv:0.5:{a}:6543:{a}:4803:{}", hex(&req.to_vec()));
    let out = udp_tool(lab, i, &spec).output().ok()?;
    let (_, bytes) = datagrams(&out.stdout).into_iter().next()?;
    match Packet::from_datagram(&bytes).ok()?.body {
        PacketBody::Status(Some(rec)) => Some(rec),
        _ => None,
    }
}

/// Runs real daemons on every node and waits (≤ 20 s) until each reports a ring of all of
/// them with the same leader: the lab carries 5.0.1's broadcasts, tokens and (with several
/// segments) routed unicasts.
fn real_ring_forms(sizes: &[usize]) {
    let Some(bin) = std::env::var_os(ENV) else {
        eprintln!("wire interop skipped: set {ENV}=/path/to/spread-5.0.1/sbin/spread");
        return;
    };
    let Some(mut lab) = NetLab::new(sizes) else {
        return;
    };
    let names: Vec<String> = (0..lab.nodes.len()).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let extra = "RuntimeDir = /tmp/rt\nDaemonUser = nobody\nDaemonGroup = nogroup\n";
    let conf = lab.spread_conf(&refs, 4803, extra);
    let hash = conf_hash(&Config::parse(&conf, "lab.conf").unwrap());
    for (i, n) in names.iter().enumerate() {
        lab.start_daemon(i, bin.to_str().unwrap(), n, &conf)
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let recs: Vec<Option<StatusRecord>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| query_status(&lab, i, n, hash))
            .collect();
        let formed = recs.iter().all(|r| {
            r.is_some_and(|r| {
                usize::try_from(r.num_procs) == Ok(names.len())
                    && r.leader_id as u32 == daemon_id("n0").0
            })
        });
        if formed {
            if let Err(e) = lab.check_real_daemons() {
                panic!("{e}");
            }
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no common ring of {} after 20 s: {recs:?}\n{}",
            names.len(),
            lab.log(0, "n0")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn real_daemons_form_one_ring_in_a_lab_segment() {
    real_ring_forms(&[3]);
}

#[test]
fn real_daemons_form_one_ring_across_the_lab_router() {
    real_ring_forms(&[2, 1]);
}
