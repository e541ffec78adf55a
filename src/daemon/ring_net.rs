//! The daemon of a ring over real UDP: the sans-IO [`spread::node::Node`] (sessions, groups,
//! token ring, membership) owned by the one core task, the ring sockets opened by
//! [`super::bind()`], one receive task per socket feeding the core.
//!
//! # Sending
//!
//! Every datagram leaves from the one send socket bound to the daemon's own address (receivers
//! check the source address, fact sheet §1.1): unicasts to a daemon's configured address on
//! port P or P+1; "broadcasts" to the segment address — **except when the segment address is a
//! loopback address (127.0.0.0/8)**: then a copy is sent by unicast to every other daemon of
//! the configuration. That is our convenience mode for several daemons on one machine at
//! distinct 127.0.0.x addresses (Linux does not broadcast on `lo`); a 5.0.1 daemon would send
//! to the loopback segment address instead.
//!
//! The datagrams of one core step leave together through an [`Outbox`]: `sendmmsg(2)` batches,
//! and a backlog sent when the socket is writable again instead of dropping on `WouldBlock`
//! (set `MBUS_RING_SENDMMSG=0` in the environment for one `sendto` per datagram).
//!
//! # Monitor (fact sheet §11)
//!
//! Control packets from `spmonitor` arrive on the data port like any packet from a configured
//! daemon's address and go to the node ([`spread::node::monitor`]). STATUS replies leave from
//! the ring send socket (5.0.1 uses another socket of its own; the monitor does not check the
//! source port) to the requester's configured address at the port it asked for. A PARTITION
//! that puts this daemon in component −1 fires [`RingCore::exit_signal`], which ends
//! [`super::serve`], as 5.0.1 exits.
//!
//! # Several segments (fact sheet §15)
//!
//! "Scast to my segment" sends to my segment's address only if my *configured* segment has
//! more than one daemon; otherwise nothing is sent. An engine broadcast of a data packet
//! (message classes) first goes, for every other segment that has members in the installed
//! ring (file order), as a copy with type bit ROUTED unicast to that segment's relay (its
//! first ring member in configuration order), then to my segment. A daemon receiving a
//! ROUTED data packet re-broadcasts it to its segment (ROUTED cleared, `transmiter_id` :=
//! itself, header in the sender's byte order) if its configured segment has more than one
//! daemon, then processes it (ROUTED cleared) as usual.
//!
//! The membership engine sends ALIVE and JOIN as `Dest::Segment` (scast only) and unicasts
//! JOINs to the other segments' representatives itself, as 5.0.1 does; an engine broadcast
//! that is not a data packet would still go to my segment plus a plain unicast to every
//! daemon of the other segments.
//!
//! # Receiving
//!
//! Datagrams whose source address is not a configured daemon's are dropped and counted here;
//! everything else is for the engine, which checks the rest.
//!
//! # Flow control
//!
//! While [`WATER_MARK`] client messages wait for the ring, the core handles no client input
//! ([`Core::accepts_input`]), as 5.0.1 stops reading its sessions: the node's queue of
//! waiting submissions stays near the mark instead of growing with a flood (the readers'
//! input budget bounds what is read meanwhile).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use spread::config::{Config, HostId};
use spread::node::{ring_config, MonitorConfig, MonitorOutput, Node, NodeInput, NodeOutput};
use spread::ring::{DaemonId, Dest, Port};
use spread::wire::daemon::{PacketHeader, ProcId, TypeBits};
use spread::{Input, Output, Stats};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tracing::{debug, trace, warn};

use super::outbox::Outbox;
use super::session::{Core, CoreHandle, Packet};

/// Counters of the UDP side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams from addresses that are not configured daemons.
    pub unknown_source: u64,
    /// Datagrams dropped: the send backlog was full, or the kernel rejected them.
    pub send_drops: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Send system calls (fewer than `sent` when `sendmmsg` batches).
    pub send_calls: u64,
    /// Datagrams that waited for the socket to become writable (none dropped for that).
    pub deferred: u64,
    /// ROUTED packets re-broadcast to my segment.
    pub relayed: u64,
}

/// A ring daemon as the core task drives it.
#[derive(Debug)]
pub struct RingCore {
    node: Node,
    outbox: Outbox,
    /// Fired when a monitor PARTITION tells this daemon to exit.
    exit: Arc<Notify>,
    port: u16,
    /// Configured daemons in configuration order: id, address, segment index.
    daemons: Vec<(DaemonId, Ipv4Addr, usize)>,
    me: DaemonId,
    /// My segment index.
    my_seg: usize,
    /// Configured daemons of my segment (scast sends nothing when it is 1).
    my_seg_size: usize,
    /// Number of configured segments.
    segments: usize,
    /// Configuration hash (checked before relaying a ROUTED packet).
    conf_hash: u32,
    /// Segment address "broadcasts" go to; `None`: unicast to every other daemon.
    bcast: Option<Ipv4Addr>,
    net: NetStats,
}

impl RingCore {
    /// The ring daemon of host `me`, sending from `send`.
    pub fn new(config: &Config, me: HostId, send: Arc<UdpSocket>) -> Self {
        // bind() does not set it; segment broadcasts need it.
        if let Err(e) = send.set_broadcast(true) {
            tracing::warn!(error = %e, "SO_BROADCAST on the ring send socket failed");
        }
        let dcfg = super::core_config(config, me);
        let rcfg = ring_config(config, me);
        let port = config.segments.get(me.segment).map_or(0, |s| s.port);
        let daemons: Vec<(DaemonId, Ipv4Addr, usize)> = config
            .hosts()
            .filter_map(|(hid, h)| match h.addr.ip {
                IpAddr::V4(a) => Some((DaemonId(h.vid), a, hid.segment)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let my_seg_size = config.segments.get(me.segment).map_or(0, |s| s.hosts.len());
        let seg_addr = config.segments.get(me.segment).and_then(|s| {
            s.addrs.iter().find_map(|a| match a.ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
        });
        let bcast = seg_addr.filter(|a| !a.is_loopback());
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let me_id = rcfg.me;
        let conf_hash = rcfg.conf_hash;
        let mut node = Node::new(
            dcfg,
            rcfg,
            spread::time::Instant(0),
            u32::try_from(clock).unwrap_or(u32::MAX),
        );
        node.configure_monitor(MonitorConfig::from_config(config, me));
        let batching = std::env::var("MBUS_RING_SENDMMSG").map_or(true, |v| v != "0");
        let mut c = Self {
            node,
            outbox: Outbox::new(send, batching),
            exit: Arc::new(Notify::new()),
            port,
            daemons,
            me: me_id,
            my_seg: me.segment,
            my_seg_size,
            segments: config.segments.len(),
            conf_hash,
            bcast,
            net: NetStats::default(),
        };
        c.flush_sends();
        c
    }

    fn send_to(&mut self, ip: Ipv4Addr, port: Port, bytes: &Bytes) {
        let p = match port {
            Port::Data => self.port,
            Port::Token => self.port.wrapping_add(1),
        };
        self.outbox
            .push(SocketAddr::new(ip.into(), p), bytes.clone());
    }

    /// A monitor outcome: a STATUS reply to send, or the order to exit.
    fn monitor(&mut self, m: MonitorOutput) {
        match m {
            MonitorOutput::StatusReply { to, port, bytes } => {
                match self.daemons.iter().find(|(d, _, _)| *d == to) {
                    Some(&(_, ip, _)) => self.outbox.push(SocketAddr::new(ip.into(), port), bytes),
                    None => debug!(%to, "status reply for an unknown daemon dropped"),
                }
            }
            MonitorOutput::Exit => {
                warn!("instructed to exit by the monitor");
                self.exit.notify_one();
            }
        }
    }

    /// Fired (once) when a monitor PARTITION puts this daemon in component −1; the server
    /// ([`super::serve`]) then shuts down.
    pub fn exit_signal(&self) -> Arc<Notify> {
        self.exit.clone()
    }

    fn out(&mut self, to: Dest, port: Port, bytes: &Bytes) {
        match to {
            Dest::Unicast(id) => {
                if let Some(&(_, ip, _)) = self.daemons.iter().find(|(d, _, _)| *d == id) {
                    self.send_to(ip, port, bytes);
                }
            }
            Dest::Broadcast => {
                if self.segments > 1 {
                    self.send_other_segments(port, bytes);
                }
                self.scast(port, bytes);
            }
            Dest::Segment => self.scast(port, bytes),
        }
    }

    /// A broadcast's copies for the other segments: a ROUTED copy to each relay for a data
    /// packet, a plain unicast to every daemon of the other segments for anything else.
    fn send_other_segments(&mut self, port: Port, bytes: &Bytes) {
        let data = port == Port::Data && packet_kind(bytes) & TypeBits::REGULAR != 0;
        if data {
            let members = self.node.engine().members();
            let mut relays: Vec<Ipv4Addr> = Vec::new();
            let mut done: Vec<usize> = Vec::new();
            for &(d, ip, seg) in &self.daemons {
                if seg != self.my_seg && !done.contains(&seg) && members.contains(&d) {
                    done.push(seg);
                    relays.push(ip);
                }
            }
            if relays.is_empty() {
                return;
            }
            let mut routed = bytes.to_vec();
            if PacketHeader::rewrite(&mut routed, |h| {
                h.kind = TypeBits(h.kind.0 | TypeBits::ROUTED);
            })
            .is_err()
            {
                return;
            }
            let routed = Bytes::from(routed);
            for ip in relays {
                self.send_to(ip, port, &routed);
            }
        } else {
            let others: Vec<Ipv4Addr> = self
                .daemons
                .iter()
                .filter(|(_, _, s)| *s != self.my_seg)
                .map(|(_, a, _)| *a)
                .collect();
            for ip in others {
                self.send_to(ip, port, bytes);
            }
        }
    }

    /// "Scast to my segment": nothing when my configured segment has only me; else the
    /// segment address, or (loopback mode) a unicast to every other daemon of my segment.
    fn scast(&mut self, port: Port, bytes: &Bytes) {
        if self.my_seg_size <= 1 {
            return;
        }
        match self.bcast {
            Some(b) => self.send_to(b, port, bytes),
            None => {
                let others: Vec<Ipv4Addr> = self
                    .daemons
                    .iter()
                    .filter(|(d, _, s)| *d != self.me && *s == self.my_seg)
                    .map(|(_, a, _)| *a)
                    .collect();
                for ip in others {
                    self.send_to(ip, port, bytes);
                }
            }
        }
    }

    /// A ROUTED data packet from `from`: relays it to my segment (§15.3) and returns the copy
    /// to process (ROUTED cleared, everything else as received). `None`: drop it (not an
    /// acceptable packet; the engine would reject it too).
    fn relay(&mut self, from: DaemonId, bytes: &[u8]) -> Option<bytes::Bytes> {
        let h = PacketHeader::decode(&mut &bytes[..]).ok()?;
        if h.conf_hash != self.conf_hash
            || h.transmiter_id != ProcId(from.0)
            || from == self.me
            || bytes.len() != spread::wire::daemon::HEADER_LEN + usize::from(h.data_len)
        {
            return None;
        }
        let mut plain = bytes.to_vec();
        PacketHeader::rewrite(&mut plain, |h| {
            h.kind = TypeBits(h.kind.0 & !TypeBits::ROUTED);
        })
        .ok()?;
        if self.my_seg_size > 1 {
            let mut out = plain.clone();
            let me = ProcId(self.me.0);
            PacketHeader::rewrite(&mut out, |h| h.transmiter_id = me).ok()?;
            self.net.relayed += 1;
            self.scast(Port::Data, &Bytes::from(out));
        }
        Some(plain.into())
    }

    /// Counters of the UDP side.
    pub fn net_stats(&self) -> NetStats {
        let o = self.outbox.stats();
        NetStats {
            send_drops: o.overflow_drops + o.errors,
            sent: o.sent,
            send_calls: o.syscalls,
            deferred: o.deferred,
            ..self.net
        }
    }

    /// The node (read-only: counters, monitor state).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends every queued datagram; client outputs stay queued (the node keeps their order).
    fn flush_sends(&mut self) {
        // Node outputs are drained in poll_output; this only runs at start-up when no session
        // exists, so any client output here cannot occur.
        while let Some(o) = self.node.poll_output() {
            match o {
                NodeOutput::Send { to, port, bytes } => self.out(to, port, &bytes),
                NodeOutput::Monitor(m) => self.monitor(m),
                NodeOutput::Client(_) => {}
            }
        }
        self.outbox.flush();
    }
}

/// Client messages waiting for the ring (not yet sent by the engine) at which the daemon
/// stops handling client input until the ring has sent some (5.0.1's `WATER_MARK`: it stops
/// reading sessions while its protocol queue is this long).
pub const WATER_MARK: usize = 500;

impl Core for RingCore {
    fn handle(&mut self, now: spread::time::Instant, input: Input) {
        self.node.handle(now, NodeInput::Client(input));
    }

    /// The ring's flow control, as 5.0.1's: no client input while [`WATER_MARK`] messages
    /// wait to be sent (ring packets, timers and write progress go on).
    fn accepts_input(&self) -> bool {
        self.node.backlog().0 + self.node.engine().send_queue_len() < WATER_MARK
    }

    fn handle_timeout(&mut self, now: spread::time::Instant) {
        self.node.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        loop {
            let Some(o) = self.node.poll_output() else {
                // Everything of this step is out: send it in one go.
                self.outbox.flush();
                return None;
            };
            match o {
                NodeOutput::Client(o) => return Some(o),
                NodeOutput::Send { to, port, bytes } => self.out(to, port, &bytes),
                NodeOutput::Monitor(m) => self.monitor(m),
            }
        }
    }

    fn poll_timeout(&self) -> Option<spread::time::Instant> {
        self.node.poll_timeout()
    }

    fn stats(&self) -> Stats {
        self.node.daemon().stats().clone()
    }

    fn packet(&mut self, now: spread::time::Instant, p: Packet) {
        let from = match p.from.ip() {
            IpAddr::V4(a) => self
                .daemons
                .iter()
                .find(|(_, x, _)| *x == a)
                .map(|(d, _, _)| *d),
            IpAddr::V6(_) => None,
        };
        let Some(from) = from else {
            self.net.unknown_source += 1;
            debug!(from = %p.from, "datagram from an unconfigured address dropped");
            return;
        };
        let port = if p.token { Port::Token } else { Port::Data };
        let mut bytes = p.bytes;
        if port == Port::Data && packet_kind(&bytes) & TypeBits::ROUTED != 0 {
            match self.relay(from, &bytes) {
                Some(b) => bytes = b,
                None => return,
            }
        }
        self.node
            .handle(now, NodeInput::Packet { from, port, bytes });
    }
}

/// The type bits of a data-port datagram (0 if it has no valid header).
fn packet_kind(bytes: &[u8]) -> u32 {
    PacketHeader::decode(&mut &bytes[..]).map_or(0, |h| h.kind.0)
}

/// Receive loop of one ring socket: every datagram goes to the core, until `stop` fires or the
/// core stops.
pub async fn receive(
    sock: UdpSocket,
    token: bool,
    core: CoreHandle,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let bytes = bytes::Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if core.packet(Packet { from, token, bytes }).await.is_err() {
                        return;
                    }
                }
                // ICMP errors on unconnected sockets: keep going (pause on anything else, so
                // a persistent error cannot spin).
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    trace!(error = %e, "ring recv error");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use spread::wire::daemon::HEADER_LEN;

    /// Two loopback "segments": e1, e2 in segment 0 and w1 alone in segment 1, on a port free
    /// on 127.0.0.1 (loopback mode: "scast" = unicast to the other daemons of my segment).
    fn lab() -> (Config, u16) {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let text = format!(
            "Spread_Segment 127.0.0.255:{port} {{\n e1 127.0.0.1\n e2 127.0.0.2\n}}\n\
             Spread_Segment 127.0.1.255:{port} {{\n w1 127.0.1.1\n}}\n"
        );
        (Config::parse(&text, "t.conf").unwrap(), port)
    }

    /// An AGREED|ROUTED data packet with a 4-byte body from `from`.
    fn routed(from: u32, hash: u32) -> Vec<u8> {
        let mut h = PacketHeader::new(TypeBits::AGREED | TypeBits::ROUTED, ProcId(from), hash);
        h.data_len = 4;
        let mut v = Vec::new();
        h.encode(&mut v);
        v.put_slice(b"body");
        assert_eq!(v.len(), HEADER_LEN + 4);
        v
    }

    async fn core_at(config: &Config, me: HostId, ip: &str, port: u16) -> RingCore {
        let s = UdpSocket::bind((ip, port)).await.unwrap();
        RingCore::new(config, me, Arc::new(s))
    }

    /// What the core loop does after every input: take the client outputs (none here), which
    /// sends the step's datagrams.
    fn drain(c: &mut RingCore) {
        while c.poll_output().is_some() {}
    }

    fn vid(config: &Config, seg: usize, index: usize) -> u32 {
        config
            .host(HostId {
                segment: seg,
                index,
            })
            .unwrap()
            .vid
    }

    /// The ring's flow control: with no token going round, client messages pile up for the
    /// ring; at [`WATER_MARK`] the core stops taking client input (and takes it again
    /// once the ring has sent them, which this test does not reach).
    #[tokio::test]
    async fn client_input_stops_at_the_water_mark() {
        use spread::session::{Peer, SessionId};
        use spread::wire::client::{encode_hello, encode_message, GroupName, Hello, ServiceType};
        let (config, port) = lab();
        let me = HostId {
            segment: 0,
            index: 0,
        };
        let mut c = core_at(&config, me, "127.0.0.1", port).await;
        let now = spread::time::Instant(0);
        let session = SessionId(1);
        c.handle(
            now,
            Input::Connected {
                session,
                peer: Peer::Unix,
            },
        );
        let mut hello = Vec::new();
        encode_hello(&Hello::new(b"a", false, false), &mut hello);
        let mut auth = b"NULL".to_vec();
        auth.resize(90, 0);
        for data in [hello, auth] {
            c.handle(
                now,
                Input::Bytes {
                    session,
                    data: data.into(),
                },
            );
        }
        drain(&mut c);
        assert!(c.accepts_input());
        let mut request = Vec::new();
        let (me, g) = (GroupName::new(b"#a#e1"), GroupName::new(b"g"));
        encode_message(ServiceType::RELIABLE, me, &[g], b"body", &mut request);
        let mut sent = 0;
        while c.accepts_input() && sent < 4 * WATER_MARK {
            let data = request.clone().into();
            c.handle(now, Input::Bytes { session, data });
            drain(&mut c);
            sent += 1;
        }
        assert_eq!(sent, WATER_MARK, "client input stopped at the mark");
        assert_eq!(c.stats().protocol_violations(), 0);
    }

    /// Every data-class datagram arriving on `s` within `secs`.
    async fn data_packets(s: &UdpSocket, secs: f64) -> Vec<PacketHeader> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        let end = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, s.recv_from(&mut buf)).await {
            if let Ok(h) = PacketHeader::decode(&mut &buf[..n]) {
                if h.kind.0 & TypeBits::REGULAR != 0 {
                    out.push(h);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn routed_packet_is_relayed_to_my_segment_with_my_id() {
        let (config, port) = lab();
        let e2 = UdpSocket::bind(("127.0.0.2", port)).await.unwrap();
        let w1 = UdpSocket::bind(("127.0.1.1", port)).await.unwrap();
        let me = HostId {
            segment: 0,
            index: 0,
        };
        let mut c = core_at(&config, me, "127.0.0.1", port).await;
        let (e1_id, w1_id) = (vid(&config, 0, 0), vid(&config, 1, 0));
        let hash = ring_config(&config, me).conf_hash;
        c.packet(
            spread::time::Instant(0),
            Packet {
                from: SocketAddr::new(Ipv4Addr::new(127, 0, 1, 1).into(), port),
                token: false,
                bytes: routed(w1_id, hash).into(),
            },
        );
        drain(&mut c);
        assert_eq!(c.net_stats().relayed, 1);
        let got = data_packets(&e2, 0.5).await;
        assert_eq!(got.len(), 1, "one relayed copy to e2: {got:?}");
        assert_eq!(got[0].kind.0, TypeBits::AGREED, "ROUTED cleared");
        assert_eq!(got[0].transmiter_id, ProcId(e1_id));
        assert_eq!(got[0].proc_id, ProcId(w1_id));
        assert_eq!(got[0].data_len, 4);
        // Nothing goes back to the other segment.
        assert!(data_packets(&w1, 0.2).await.is_empty());
    }

    #[tokio::test]
    async fn routed_packet_with_wrong_hash_or_source_is_not_relayed() {
        let (config, port) = lab();
        let _e2 = UdpSocket::bind(("127.0.0.2", port)).await.unwrap();
        let me = HostId {
            segment: 0,
            index: 0,
        };
        let mut c = core_at(&config, me, "127.0.0.1", port).await;
        let w1_id = vid(&config, 1, 0);
        let hash = ring_config(&config, me).conf_hash;
        let from = SocketAddr::new(Ipv4Addr::new(127, 0, 1, 1).into(), port);
        for bytes in [routed(w1_id, hash ^ 1), routed(vid(&config, 0, 1), hash)] {
            c.packet(
                spread::time::Instant(0),
                Packet {
                    from,
                    token: false,
                    bytes: bytes.into(),
                },
            );
        }
        assert_eq!(c.net_stats().relayed, 0);
    }

    #[tokio::test]
    async fn daemon_alone_in_its_segment_neither_relays_nor_scasts() {
        let (config, port) = lab();
        let e1 = UdpSocket::bind(("127.0.0.1", port)).await.unwrap();
        let me = HostId {
            segment: 1,
            index: 0,
        };
        let mut c = core_at(&config, me, "127.0.1.1", port).await;
        let hash = ring_config(&config, me).conf_hash;
        // The start-up datagrams wait for the fresh socket to be writable; let them go.
        let settle = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while c.outbox.backlog_len() > 0 && tokio::time::Instant::now() < settle {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let sent_before = c.net_stats().sent;
        c.packet(
            spread::time::Instant(0),
            Packet {
                from: SocketAddr::new(Ipv4Addr::new(127, 0, 0, 2).into(), port),
                token: false,
                bytes: routed(vid(&config, 0, 1), hash).into(),
            },
        );
        drain(&mut c);
        assert_eq!(c.net_stats().relayed, 0);
        assert_eq!(c.net_stats().sent, sent_before);
        assert!(data_packets(&e1, 0.2).await.is_empty());
    }
}
