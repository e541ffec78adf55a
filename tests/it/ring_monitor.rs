//! The monitor side of our `spread` (fact sheet §11), against three daemons on 127.0.0.1-3
//! (the [`Ring`] of `ring.rs`): this test plays `spmonitor` from d1's address with d1's id,
//! as the real tool does, and sends STATUS / FC / PARTITION packets to the daemons' data
//! ports; with `MBUS_REAL_SPREAD_BIN_DIR` set (the directory of a 5.0.1 `spmonitor`), the real
//! tool is also run against our daemons with its menu scripted on stdin.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spread::config::Config;
use spread::wire::daemon::{
    DaemonId, FcBody, Packet, PacketBody, PacketHeader, PartitionBody, Seq, StatusRecord, TypeBits,
    MAX_PROCS_RING,
};
use tokio::net::UdpSocket;

use crate::harness::free_port;
use crate::ring::{addr, Ring, FORM_BOUND};

/// A monitor on d1's address, speaking for d1.
struct Monitor {
    sock: UdpSocket,
    /// Daemon ids in configuration order.
    ids: Vec<u32>,
    hash: u32,
    /// The daemons' data port.
    port: u16,
}

impl Monitor {
    async fn new(ring: &Ring) -> Self {
        let text = std::fs::read_to_string(ring.dir.path().join("d1.conf")).expect("d1.conf");
        let config = Config::parse(&text, "d1.conf").expect("config");
        let ids: Vec<u32> = config.hosts().map(|(_, h)| h.vid).collect();
        let first = config.hosts().next().expect("a host").0;
        let hash = spread::daemon::ring_config(&config, first).conf_hash;
        let sock = UdpSocket::bind((addr(0).as_str(), 0))
            .await
            .expect("bind monitor");
        Self {
            sock,
            ids,
            hash,
            port: ring.port,
        }
    }

    fn packet(&self, kind: u32, body: PacketBody) -> Vec<u8> {
        let mut h = PacketHeader::new(kind, DaemonId(self.ids[0]), self.hash);
        let port = self.sock.local_addr().expect("local addr").port();
        h.seq = Seq(u32::from(port));
        Packet { header: h, body }.to_vec()
    }

    async fn send(&self, i: usize, bytes: &[u8]) {
        self.sock
            .send_to(bytes, (addr(i).as_str(), self.port))
            .await
            .expect("send to daemon");
    }

    /// Asks daemon `i` for its status; `None` if no reply within 1 s.
    async fn status(&self, i: usize) -> Option<(PacketHeader, StatusRecord)> {
        let req = self.packet(TypeBits::STATUS, PacketBody::Status(None));
        self.send(i, &req).await;
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, self.sock.recv_from(&mut buf)).await
        {
            let Ok(p) = Packet::from_datagram(&buf[..n]) else {
                continue;
            };
            if let PacketBody::Status(Some(rec)) = p.body {
                if p.header.proc_id == DaemonId(self.ids[i]) {
                    return Some((p.header, rec));
                }
            }
        }
        None
    }

    /// Polls daemon `i` until `pred` holds of its status.
    async fn until(
        &self,
        ring: &Ring,
        i: usize,
        what: &str,
        pred: impl Fn(&StatusRecord) -> bool,
    ) -> StatusRecord {
        let deadline = Instant::now() + FORM_BOUND;
        let mut last = None;
        loop {
            if let Some((_, rec)) = self.status(i).await {
                if pred(&rec) {
                    return rec;
                }
                last = Some(rec);
            }
            assert!(
                Instant::now() < deadline,
                "d{}: {what} never seen; last status {last:?}\n{}",
                i + 1,
                ring.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn until_ring_of(&self, ring: &Ring, i: usize, procs: i16) -> StatusRecord {
        self.until(ring, i, "an installed ring", |r| {
            r.state == 1 && r.num_procs == procs
        })
        .await
    }

    /// spmonitor's FC packet: every configured daemon gets `personal`, the ring `window`.
    fn fc(&self, window: i16, personal: i16) -> Vec<u8> {
        let n = self.ids.len();
        let mut entries = vec![[0i16; 2]; MAX_PROCS_RING];
        for e in entries.iter_mut().take(n) {
            *e = [personal, -1];
        }
        entries[n] = [window, -1];
        self.packet(TypeBits::FC, PacketBody::Fc(FcBody { entries }))
    }

    /// spmonitor's PARTITION packet (the whole 128-entry array).
    fn partition(&self, components: &[i16]) -> Vec<u8> {
        let mut c = components.to_vec();
        c.resize(MAX_PROCS_RING, 0);
        self.packet(
            TypeBits::PARTITION,
            PacketBody::Partition(PartitionBody { components: c }),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_replies_follow_the_ring_and_sessions() {
    let ring = Ring::with_options(3, "");
    let mon = Monitor::new(&ring).await;
    for i in 0..3 {
        let rec = mon.until_ring_of(&ring, i, 3).await;
        assert_eq!(rec.my_id as u32, mon.ids[i]);
        assert_eq!(
            rec.leader_id as u32, mon.ids[0],
            "leader: first in configuration"
        );
        assert_eq!(
            (rec.major_version, rec.minor_version, rec.patch_version),
            (5, 0, 1)
        );
        assert_eq!(rec.num_segments, 1);
        assert!(rec.membership_changes >= 1);
        // 5.0.1's defaults (as in capture k).
        assert_eq!(
            (
                rec.window,
                rec.personal_window,
                rec.accelerated_ring,
                rec.accelerated_window
            ),
            (160, 20, 0, 15)
        );
    }
    // The reply's header is 5.0.1's: only type, proc_id and data_len set.
    let (h, _) = mon.status(1).await.expect("status of d2");
    assert_eq!(
        (h.transmiter_id, h.conf_hash, h.data_len),
        (DaemonId(0), 0, StatusRecord::LEN as u16)
    );

    // A session on d2 joins a group: d2 counts the session, everybody the group, and the
    // JOIN went round the ring.
    let mut mb = ring.connect(1, "c2").await;
    mb.join("grp").await.expect("join");
    let d2 = mon
        .until(&ring, 1, "one session in one group", |r| {
            r.num_sessions == 1 && r.num_groups == 1
        })
        .await;
    assert!(d2.packet_sent >= 1, "{d2:?}");
    let d1 = mon
        .until(&ring, 0, "the group at d1", |r| r.num_groups == 1)
        .await;
    assert!(d1.packet_recv >= 1 && d1.highest_seq >= 1, "{d1:?}");
    assert_eq!(d1.num_sessions, 0);

    // DangerousMonitor is off: FC and PARTITION are ignored.
    for i in 0..3 {
        mon.send(i, &mon.fc(50, 5)).await;
        mon.send(i, &mon.partition(&[0, 0, 1])).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..3 {
        let rec = mon.until_ring_of(&ring, i, 3).await;
        assert_eq!((rec.window, rec.personal_window), (160, 20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_monitor_changes_windows_partitions_and_terminates() {
    let mut ring = Ring::with_options(3, "DangerousMonitor = yes\n");
    let mon = Monitor::new(&ring).await;
    for i in 0..3 {
        mon.until_ring_of(&ring, i, 3).await;
    }
    for i in 0..3 {
        mon.send(i, &mon.fc(100, 10)).await;
    }
    for i in 0..3 {
        mon.until(&ring, i, "window 100, personal window 10", |r| {
            (r.window, r.personal_window) == (100, 10)
        })
        .await;
    }
    // {d1, d2} | {d3}: the token and packets no longer cross, two rings form.
    for i in 0..3 {
        mon.send(i, &mon.partition(&[0, 0, 1])).await;
    }
    mon.until_ring_of(&ring, 2, 1).await;
    mon.until_ring_of(&ring, 0, 2).await;
    mon.until_ring_of(&ring, 1, 2).await;
    // Component −1: d3 exits.
    mon.send(2, &mon.partition(&[0, 0, -1])).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ring.exited(2) {
        assert!(
            Instant::now() < deadline,
            "d3 did not exit\n{}",
            ring.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ring.logs().contains("instructed to exit by the monitor"));
}

/// The real `spmonitor` of 5.0.1 against our daemons: menu "0" (activate status), "all",
/// empty line, then "q" after a few status rounds; its report must name each daemon and the
/// 3-daemon ring led by d1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_spmonitor_reads_our_status() {
    let Ok(dir) = std::env::var("MBUS_REAL_SPREAD_BIN_DIR") else {
        eprintln!("MBUS_REAL_SPREAD_BIN_DIR unset: skipped");
        return;
    };
    let ring = Ring::with_options(3, "");
    let mon = Monitor::new(&ring).await;
    for i in 0..3 {
        mon.until_ring_of(&ring, i, 3).await;
    }
    let mut child = Command::new(std::path::Path::new(&dir).join("spmonitor"))
        .args(["-n", "d1", "-t", "1", "-p"])
        .arg(free_port().to_string())
        .arg("-c")
        .arg(ring.dir.path().join("d1.conf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spmonitor");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"0\nall\n\n").expect("menu");
    tokio::time::sleep(Duration::from_secs(4)).await;
    stdin.write_all(b"q\n").expect("quit");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read output");
    for d in ["d1", "d2", "d3"] {
        assert!(
            out.contains(&format!("Status at {d} V 5.00. 1 (state 1, gstate 1)")),
            "no status of {d}:\n{out}"
        );
    }
    assert!(
        out.contains("Membership  :  3  procs in 1 segments, leader is d1, regular protocol"),
        "{out}"
    );
}
