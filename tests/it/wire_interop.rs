//! Our daemon codecs against a real Spread 5.0.1 daemon, inside a namespace lab.
//! Runs only when `MBUS_REAL_SPREAD` names a 5.0.1 `spread` binary (and as root);
//! otherwise prints why it was skipped.
//!
//! * What the real daemon broadcasts decodes, re-encodes byte for byte, and carries the id
//!   and configuration hash we compute for a configuration that is in no capture.
//! * The real daemon accepts a STATUS request we encode (its §1.1 checks: hash, known
//!   transmitter, source IP) and its reply decodes; with a wrong hash it stays silent.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use spread::ids::{daemon_id, HashDaemon, HashInput, HashSegment};
use spread::wire::daemon::{Packet, PacketBody, PacketHeader, TypeBits};

use crate::netns::{datagrams, udp_tool, NetLab};

const ENV: &str = "MBUS_REAL_SPREAD";

fn config(lab: &NetLab) -> (String, HashInput) {
    let names = ["d1", "d2"];
    let mut text = format!("Spread_Segment {}:4803 {{\n", lab.bcast(0));
    for (i, n) in names.iter().enumerate() {
        text += &format!("  {n} {}\n", lab.nodes[i].addr);
    }
    text += "}\nRuntimeDir = /tmp/rt\nDaemonUser = nobody\nDaemonGroup = nogroup\n";
    let hash = HashInput {
        segments: vec![HashSegment {
            port: 4803,
            addrs: vec![IpAddr::V4(lab.bcast(0))],
            daemons: names
                .iter()
                .enumerate()
                .map(|(i, n)| HashDaemon {
                    name: n.to_string(),
                    addr: IpAddr::V4(lab.nodes[i].addr),
                    id: daemon_id(n),
                })
                .collect(),
        }],
        ..HashInput::default()
    };
    (text, hash)
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
    let (conf, hash) = config(&lab);
    let conf_hash = hash.conf_hash();
    let dir = lab.nodes[0].tmp.clone();
    std::fs::write(dir.join("spread.conf"), conf).unwrap();
    std::fs::create_dir_all(dir.join("rt")).unwrap();
    std::process::Command::new("chmod")
        .args(["777", dir.join("rt").to_str().unwrap()])
        .status()
        .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();

    // Listen as "d2" while the real d1 starts alone: ALIVE at 0 and 0.25 s, JOINs from 0.5 s.
    let listener = udp_tool(&lab, 1, "listen:2.2:0.0.0.0:4803")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut cmd = lab.command(0, bin.to_str().unwrap());
    cmd.args(["-n", "d1", "-c", "/tmp/spread.conf"])
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    lab.spawn(cmd).unwrap();
    let heard = datagrams(&listener.wait_with_output().unwrap().stdout);

    let logged = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
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
        let hex: String = req.to_vec().iter().map(|b| format!("{b:02x}")).collect();
        let spec = format!(
            "sendrecv:1.0:{}:6543:{}:4803:{hex}",
            lab.nodes[1].addr, lab.nodes[0].addr
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
}
