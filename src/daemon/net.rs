//! UDP transport of the daemon shell: the two ports of Spread 5.0.1 (fact sheet §1).
//!
//! * data port P: own address (or 0.0.0.0) and, when given, the segment broadcast address
//!   (bound with `SO_REUSEADDR`, so several daemons on one host all get each broadcast);
//! * token port P+1: own address (or 0.0.0.0);
//! * every send leaves through ONE extra socket bound to `<own address>:0` with
//!   `SO_BROADCAST`, so receivers see the configured source IP (they check it, §1.1).
//!
//! Receiving is batched: [`DaemonNet::recv_batch`] waits until any socket is readable (token
//! socket first, as 5.0.1 prefers it), then drains every socket without blocking, up to a
//! bound. It is cancel-safe, so it can sit in the owner task's `tokio::select!`.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use bytes::Bytes;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest datagram we accept (tokens may exceed 1472 bytes, up to the UDP limit).
pub const MAX_DATAGRAM: usize = 65_535;
/// Most datagrams returned by one [`DaemonNet::recv_batch`] call.
pub const MAX_RECV_BATCH: usize = 64;
/// Default socket buffer sizes (the kernel may clamp them to `net.core.[rw]mem_max`).
pub const DEFAULT_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Which of the two daemon ports a datagram is for / arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortKind {
    /// Segment port P: packets (data, membership, HURRY, control).
    Data,
    /// P+1: tokens and FORM tokens.
    Token,
}

/// How to open the daemon's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// This daemon's configured address (source of every send).
    pub own_addr: Ipv4Addr,
    /// Segment port P (tokens on P+1).
    pub port: u16,
    /// Bind P and P+1 on 0.0.0.0 (5.0.1 without an interface block) instead of `own_addr`.
    /// Only one daemon per host can do this.
    pub bind_any: bool,
    /// Segment broadcast address to also receive on (needed when not `bind_any`).
    pub segment_bcast: Option<Ipv4Addr>,
    /// `SO_REUSEADDR` on the unicast sockets too (5.0.1 `SocketPortReuse`).
    pub reuse_addr: bool,
    /// `SO_RCVBUF` request.
    pub recv_buffer_bytes: usize,
    /// `SO_SNDBUF` request.
    pub send_buffer_bytes: usize,
}

impl NetConfig {
    /// Defaults for a daemon at `own_addr` on segment port `port`.
    pub fn new(own_addr: Ipv4Addr, port: u16) -> Self {
        Self {
            own_addr,
            port,
            bind_any: false,
            segment_bcast: None,
            reuse_addr: false,
            recv_buffer_bytes: DEFAULT_SOCKET_BUFFER,
            send_buffer_bytes: DEFAULT_SOCKET_BUFFER,
        }
    }
}

impl NetConfig {
    /// The sockets 5.0.1 opens for daemon `name` of `config`: no interface block → P and P+1
    /// on 0.0.0.0 (which also receives the segment broadcasts); otherwise the daemon's own
    /// address plus the segment's broadcast address(es) (the first IPv4 one). `SocketPortReuse
    /// = on` sets `SO_REUSEADDR` on every socket. `None` if `name` is not configured or its
    /// address is not IPv4.
    pub fn from_config(config: &spread::config::Config, name: &str) -> Option<Self> {
        let (id, host) = config.find_host(name)?;
        let seg = config.segments.get(id.segment)?;
        let IpAddr::V4(own_addr) = host.addr.ip else {
            return None;
        };
        let mut c = Self::new(own_addr, seg.port);
        c.bind_any = host.interfaces.is_empty();
        c.segment_bcast = seg.addrs.iter().find_map(|a| match a.ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        c.reuse_addr = config.socket_port_reuse() == spread::config::PortReuse::On;
        Some(c)
    }

    /// The segment broadcast address daemon `name` sends "to its segment" with, `None` when
    /// its configured segment has a single daemon (5.0.1 then broadcasts nothing).
    pub fn scast_addr(config: &spread::config::Config, name: &str) -> Option<Ipv4Addr> {
        let (id, _) = config.find_host(name)?;
        let seg = config.segments.get(id.segment)?;
        if seg.hosts.len() < 2 {
            return None;
        }
        seg.addrs.iter().find_map(|a| match a.ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
    }
}

/// One received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Sender's address (its IP is what 5.0.1 checks; the port is ephemeral).
    pub from: SocketAddr,
    /// Port it arrived on.
    pub port: PortKind,
    /// Payload.
    pub bytes: Bytes,
}

/// Configured daemons' addresses: maps ids (5.0.1 proc ids) to addresses and back, and
/// knows the segment broadcast address ("scast": `None` when this daemon's configured segment
/// has a single daemon, so nothing is broadcast, fact sheet §1 / §15.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    by_id: BTreeMap<u32, Ipv4Addr>,
    by_addr: BTreeMap<Ipv4Addr, u32>,
    bcast: Option<Ipv4Addr>,
}

impl Peers {
    /// From `(id, configured address)` pairs and the own segment's broadcast address.
    pub fn new(
        daemons: impl IntoIterator<Item = (u32, Ipv4Addr)>,
        bcast: Option<Ipv4Addr>,
    ) -> Self {
        let by_id: BTreeMap<u32, Ipv4Addr> = daemons.into_iter().collect();
        let by_addr = by_id.iter().map(|(id, a)| (*a, *id)).collect();
        Self {
            by_id,
            by_addr,
            bcast,
        }
    }

    /// Every configured daemon of `config` (IPv4 ones) and the scast address of daemon `me`
    /// (see [`NetConfig::scast_addr`]).
    pub fn from_config(config: &spread::config::Config, me: &str) -> Self {
        let daemons = config.hosts().filter_map(|(_, h)| match h.addr.ip {
            IpAddr::V4(a) => Some((h.vid, a)),
            IpAddr::V6(_) => None,
        });
        Self::new(daemons, NetConfig::scast_addr(config, me))
    }

    /// Configured address of daemon `id`.
    pub fn addr_of(&self, id: u32) -> Option<Ipv4Addr> {
        self.by_id.get(&id).copied()
    }

    /// The daemon configured at `addr` (the only source address 5.0.1 accepts for it).
    pub fn id_at(&self, addr: IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.by_addr.get(&a).copied(),
            IpAddr::V6(_) => None,
        }
    }

    /// Segment broadcast address, if this daemon broadcasts at all.
    pub fn bcast(&self) -> Option<Ipv4Addr> {
        self.bcast
    }
}

/// The daemon's UDP sockets.
#[derive(Debug)]
pub struct DaemonNet {
    /// Data-port receivers (own address or wildcard, segment address).
    data: Vec<UdpSocket>,
    /// Token-port receivers.
    token: Vec<UdpSocket>,
    send: UdpSocket,
    port: u16,
    /// Receive buffer reused by every batch (locked only while draining, never across an await).
    rx_buf: parking_lot::Mutex<Vec<u8>>,
}

fn udp_socket(addr: SocketAddrV4, reuse: bool, cfg: &NetConfig) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if reuse {
        s.set_reuse_address(true)?;
    }
    s.set_broadcast(true)?;
    // Best effort: the kernel clamps, and an unprivileged process may not raise the limit.
    let _ = s.set_recv_buffer_size(cfg.recv_buffer_bytes);
    let _ = s.set_send_buffer_size(cfg.send_buffer_bytes);
    s.bind(&SockAddr::from(addr))?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

impl DaemonNet {
    /// Opens and binds every socket. Must run inside a tokio runtime.
    pub fn bind(cfg: &NetConfig) -> io::Result<Self> {
        let token_port = cfg
            .port
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "port 65535 has no P+1"))?;
        let listen_ip = if cfg.bind_any {
            Ipv4Addr::UNSPECIFIED
        } else {
            cfg.own_addr
        };
        let data = udp_socket(SocketAddrV4::new(listen_ip, cfg.port), cfg.reuse_addr, cfg)?;
        let token = udp_socket(
            SocketAddrV4::new(listen_ip, token_port),
            cfg.reuse_addr,
            cfg,
        )?;
        let mut data = vec![data];
        if let Some(b) = cfg.segment_bcast.filter(|_| !cfg.bind_any) {
            data.push(udp_socket(SocketAddrV4::new(b, cfg.port), true, cfg)?);
        }
        let send = udp_socket(SocketAddrV4::new(cfg.own_addr, 0), false, cfg)?;
        Ok(Self {
            data,
            token: vec![token],
            send,
            port: cfg.port,
            rx_buf: parking_lot::Mutex::new(vec![0u8; MAX_DATAGRAM]),
        })
    }

    /// Wraps sockets bound elsewhere (e.g. the shell's `bind()`, which handles interface
    /// blocks, IPv6 and multicast): `data` on port P, `token` on P+1, `send` on the own
    /// address. Turns on `SO_BROADCAST` on `send` (needed to send to a segment broadcast
    /// address) and requests the buffer sizes of `buffers` (best effort).
    pub fn from_sockets(
        port: u16,
        data: Vec<UdpSocket>,
        token: Vec<UdpSocket>,
        send: UdpSocket,
        buffers: Option<(usize, usize)>,
    ) -> io::Result<Self> {
        send.set_broadcast(true)?;
        if let Some((rcv, snd)) = buffers {
            for s in data.iter().chain(&token) {
                let _ = socket2::SockRef::from(s).set_recv_buffer_size(rcv);
            }
            let _ = socket2::SockRef::from(&send).set_send_buffer_size(snd);
        }
        Ok(Self {
            data,
            token,
            send,
            port,
            rx_buf: parking_lot::Mutex::new(vec![0u8; MAX_DATAGRAM]),
        })
    }

    /// The UDP port of `kind` (P or P+1).
    pub fn port(&self, kind: PortKind) -> u16 {
        match kind {
            PortKind::Data => self.port,
            PortKind::Token => self.port.wrapping_add(1),
        }
    }

    /// Address of the sending socket (own address, ephemeral port).
    pub fn send_addr(&self) -> io::Result<SocketAddr> {
        self.send.local_addr()
    }

    /// Sends `bytes` to `to` (a daemon's configured address or the segment broadcast
    /// address) on its `kind` port, from the sending socket.
    pub async fn send(&self, to: IpAddr, kind: PortKind, bytes: &[u8]) -> io::Result<()> {
        let addr = SocketAddr::new(to, self.port(kind));
        let n = self.send.send_to(bytes, addr).await?;
        if n != bytes.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short UDP send"));
        }
        Ok(())
    }

    /// Sends to configured daemon `id` (unicast, possibly to oneself over loopback).
    /// `NotFound` if `id` is not configured.
    pub async fn send_to_daemon(
        &self,
        peers: &Peers,
        id: u32,
        kind: PortKind,
        bytes: &[u8],
    ) -> io::Result<()> {
        let addr = peers.addr_of(id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("daemon {id:08x} not configured"),
            )
        })?;
        self.send(addr.into(), kind, bytes).await
    }

    /// Broadcasts to the own segment ("scast"); does nothing when [`Peers::bcast`] is `None`.
    pub async fn send_broadcast(
        &self,
        peers: &Peers,
        kind: PortKind,
        bytes: &[u8],
    ) -> io::Result<()> {
        match peers.bcast() {
            Some(b) => self.send(b.into(), kind, bytes).await,
            None => Ok(()),
        }
    }

    /// Like [`DaemonNet::send`] but never waits: `WouldBlock` when the socket buffer is full
    /// (UDP semantics: the caller counts it as a drop).
    pub fn try_send(&self, to: IpAddr, kind: PortKind, bytes: &[u8]) -> io::Result<()> {
        let addr = SocketAddr::new(to, self.port(kind));
        self.send.try_send_to(bytes, addr).map(|_| ())
    }

    fn sockets(&self) -> impl Iterator<Item = (&UdpSocket, PortKind)> {
        // Token first: 5.0.1 gives the token socket priority.
        self.token
            .iter()
            .map(|s| (s, PortKind::Token))
            .chain(self.data.iter().map(|s| (s, PortKind::Data)))
    }

    /// Ready when any socket may have a datagram (registers interest in all of them).
    async fn any_readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            for (s, _) in self.sockets() {
                if let std::task::Poll::Ready(r) = s.poll_recv_ready(cx) {
                    return std::task::Poll::Ready(r);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Waits until at least one datagram is available, then appends up to `max`
    /// (at most [`MAX_RECV_BATCH`]) to `out` without waiting again. Returns how many.
    /// Cancel-safe.
    pub async fn recv_batch(&self, out: &mut Vec<Received>, max: usize) -> io::Result<usize> {
        let max = max.clamp(1, MAX_RECV_BATCH);
        loop {
            self.any_readable().await?;
            let got = self.drain(out, max)?;
            // Readiness can be stale (another reader took the datagram): wait again.
            if got > 0 {
                return Ok(got);
            }
        }
    }

    /// Takes up to `max` waiting datagrams without blocking, token sockets first.
    fn drain(&self, out: &mut Vec<Received>, max: usize) -> io::Result<usize> {
        let mut buf = self.rx_buf.lock();
        let buf = buf.as_mut_slice();
        let mut got = 0;
        for (sock, port) in self.sockets() {
            while got < max {
                match sock.try_recv_from(buf) {
                    Ok((n, from)) => {
                        let bytes = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                        out.push(Received { from, port, bytes });
                        got += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP-induced errors on unconnected UDP sockets: skip, keep draining.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(got)
    }

    /// Receive loop: forwards every datagram to `tx` until `tx` is closed.
    pub async fn run_receiver(self: Arc<Self>, tx: mpsc::Sender<Received>) -> io::Result<()> {
        let mut batch = Vec::with_capacity(MAX_RECV_BATCH);
        loop {
            batch.clear();
            self.recv_batch(&mut batch, MAX_RECV_BATCH).await?;
            for r in batch.drain(..) {
                if tx.send(r).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Binds daemons at the given loopback addresses on a shared free port pair, retrying on
    /// collisions with other tests.
    fn bind_all(addrs: &[Ipv4Addr], bcast: Option<Ipv4Addr>) -> Vec<DaemonNet> {
        let base = 20_000 + (std::process::id() % 20_000) as u16;
        for attempt in 0..200u16 {
            let port = base.wrapping_add(attempt * 7) % 40_000 + 20_000;
            let nets: io::Result<Vec<_>> = addrs
                .iter()
                .map(|a| {
                    let mut c = NetConfig::new(*a, port);
                    c.segment_bcast = bcast;
                    DaemonNet::bind(&c)
                })
                .collect();
            if let Ok(n) = nets {
                return n;
            }
        }
        panic!("no free port pair");
    }

    async fn recv_n(net: &DaemonNet, n: usize) -> Vec<Received> {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while out.len() < n {
                net.recv_batch(&mut out, MAX_RECV_BATCH).await.unwrap();
            }
        })
        .await
        .expect("datagrams did not arrive in 5 s");
        out
    }

    #[tokio::test]
    async fn unicast_token_and_broadcast_on_loopback() {
        let a = Ipv4Addr::new(127, 0, 0, 1);
        let b = Ipv4Addr::new(127, 0, 0, 2);
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let nets = bind_all(&[a, b], Some(bcast));
        let (na, nb) = (&nets[0], &nets[1]);
        na.send(b.into(), PortKind::Data, b"data").await.unwrap();
        na.send(b.into(), PortKind::Token, b"token").await.unwrap();
        let got = recv_n(nb, 2).await;
        assert!(
            got.iter().all(|r| r.from.ip() == IpAddr::from(a)),
            "{got:?}"
        );
        assert!(got.contains(&Received {
            from: na.send_addr().unwrap(),
            port: PortKind::Token,
            bytes: Bytes::from_static(b"token"),
        }));
        assert!(got
            .iter()
            .any(|r| r.port == PortKind::Data && r.bytes == "data"));
        // A broadcast reaches both daemons, the sender included (5.0.1 drops its own by id).
        nb.send(bcast.into(), PortKind::Data, b"all").await.unwrap();
        for n in [na, nb] {
            let got = recv_n(n, 1).await;
            assert_eq!(got[0].bytes, "all");
            assert_eq!(got[0].from.ip(), IpAddr::from(b));
            assert_eq!(got[0].port, PortKind::Data);
        }
    }

    #[test]
    fn config_decides_binding_and_scast() {
        let text =
            "Spread_Segment 10.98.4.255:4803 {\n e1 10.98.4.1\n e2 10.98.4.2 { D 10.98.4.2 }\n}\n\
                    Spread_Segment 10.98.5.255:4900 {\n w1 10.98.5.1\n}\nSocketPortReuse = ON\n";
        let c = spread::config::Config::parse(text, "t.conf").unwrap();
        let e1 = NetConfig::from_config(&c, "e1").unwrap();
        assert!(e1.bind_any && e1.reuse_addr);
        assert_eq!((e1.own_addr, e1.port), (Ipv4Addr::new(10, 98, 4, 1), 4803));
        let e2 = NetConfig::from_config(&c, "e2").unwrap();
        assert!(!e2.bind_any);
        assert_eq!(e2.segment_bcast, Some(Ipv4Addr::new(10, 98, 4, 255)));
        assert_eq!(NetConfig::from_config(&c, "w1").unwrap().port, 4900);
        assert!(NetConfig::from_config(&c, "zz").is_none());
        assert_eq!(
            NetConfig::scast_addr(&c, "e1"),
            Some(Ipv4Addr::new(10, 98, 4, 255))
        );
        assert_eq!(NetConfig::scast_addr(&c, "w1"), None);
        let peers = Peers::from_config(&c, "w1");
        assert_eq!(peers.bcast(), None);
        assert_eq!(
            peers.id_at(IpAddr::V4(Ipv4Addr::new(10, 98, 4, 2))),
            Some(spread::ids::daemon_id("e2").0)
        );
    }

    #[tokio::test]
    async fn peers_route_by_id_and_map_sources() {
        let a = Ipv4Addr::new(127, 0, 0, 6);
        let b = Ipv4Addr::new(127, 0, 0, 7);
        let nets = bind_all(&[a, b], None);
        let peers = Peers::new([(0x11, a), (0x22, b)], None);
        assert_eq!(peers.id_at(IpAddr::V4(b)), Some(0x22));
        assert_eq!(peers.id_at(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))), None);
        nets[0]
            .send_to_daemon(&peers, 0x22, PortKind::Token, b"t")
            .await
            .unwrap();
        // No broadcast address: scast is a no-op, not an error.
        nets[0]
            .send_broadcast(&peers, PortKind::Data, b"nobody")
            .await
            .unwrap();
        assert!(nets[0]
            .send_to_daemon(&peers, 0x33, PortKind::Data, b"x")
            .await
            .is_err());
        let got = recv_n(&nets[1], 1).await;
        assert_eq!(peers.id_at(got[0].from.ip()), Some(0x11));
        assert_eq!(
            (got[0].port, &got[0].bytes[..]),
            (PortKind::Token, &b"t"[..])
        );
    }

    #[tokio::test]
    async fn bursts_are_received_in_batches() {
        let a = Ipv4Addr::new(127, 0, 0, 3);
        let b = Ipv4Addr::new(127, 0, 0, 4);
        let nets = bind_all(&[a, b], None);
        let pkt = vec![7u8; 1472];
        for _ in 0..200 {
            nets[0].send(b.into(), PortKind::Data, &pkt).await.unwrap();
        }
        let mut out = Vec::new();
        let mut calls = 0;
        tokio::time::timeout(Duration::from_secs(5), async {
            while out.len() < 200 {
                nets[1].recv_batch(&mut out, MAX_RECV_BATCH).await.unwrap();
                calls += 1;
            }
        })
        .await
        .expect("burst did not arrive");
        assert_eq!(out.len(), 200);
        assert!(calls < 200, "no batching: {calls} calls");
        assert!(out.iter().all(|r| r.bytes.len() == 1472));
    }

    /// Figures for the report: `cargo test --lib daemon::net -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "measurement, not a check"]
    async fn loopback_throughput() {
        let a = Ipv4Addr::new(127, 0, 0, 8);
        let b = Ipv4Addr::new(127, 0, 0, 9);
        let nets = bind_all(&[a, b], None);
        let nets = Arc::new(nets);
        const N: usize = 50_000;
        let rx = {
            let nets = nets.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(MAX_RECV_BATCH);
                let (mut got, mut calls) = (0, 0);
                let start = std::time::Instant::now();
                while got < N {
                    out.clear();
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        nets[1].recv_batch(&mut out, MAX_RECV_BATCH),
                    )
                    .await;
                    match r {
                        Ok(n) => got += n.unwrap(),
                        Err(_) => break, // the rest were dropped by the kernel
                    }
                    calls += 1;
                }
                (got, calls, start.elapsed())
            })
        };
        let pkt = vec![7u8; 1472];
        let start = std::time::Instant::now();
        for i in 0..N {
            nets[0].send(b.into(), PortKind::Data, &pkt).await.unwrap();
            if i % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let sent = start.elapsed();
        let (got, calls, took) = rx.await.unwrap();
        eprintln!(
            "sent {N} x 1472 B in {sent:?} ({:.0}/s); received {got} in {calls} batches in {took:?}",
            N as f64 / sent.as_secs_f64()
        );
    }

    #[tokio::test]
    async fn wraps_sockets_bound_elsewhere() {
        // As the shell's bind() does: plain sockets without SO_BROADCAST on the send socket.
        let a = Ipv4Addr::new(127, 0, 0, 10);
        let b = Ipv4Addr::new(127, 0, 0, 11);
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let nets = bind_all(&[b], Some(bcast));
        let port = nets[0].port(PortKind::Data);
        let send = UdpSocket::bind((a, 0)).await.unwrap();
        let wrapped =
            DaemonNet::from_sockets(port, Vec::new(), Vec::new(), send, Some((1 << 20, 1 << 20)))
                .unwrap();
        wrapped
            .send(bcast.into(), PortKind::Data, b"bc")
            .await
            .unwrap();
        wrapped
            .send(b.into(), PortKind::Token, b"tk")
            .await
            .unwrap();
        let got = recv_n(&nets[0], 2).await;
        assert!(got
            .iter()
            .any(|r| r.port == PortKind::Data && r.bytes == "bc"));
        assert!(got
            .iter()
            .any(|r| r.port == PortKind::Token && r.bytes == "tk"));
    }

    #[tokio::test]
    async fn receiver_task_forwards_until_closed() {
        let a = Ipv4Addr::new(127, 0, 0, 5);
        let nets = bind_all(&[a], None);
        let net = Arc::new(nets.into_iter().next().unwrap());
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(net.clone().run_receiver(tx));
        net.send(a.into(), PortKind::Token, b"self").await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.port, &r.bytes[..]), (PortKind::Token, &b"self"[..]));
        drop(rx);
        net.send(a.into(), PortKind::Data, b"x").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
