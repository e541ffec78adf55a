//! The network side of the daemon over real UDP: the one core task owns the sans-IO
//! [`spread::Daemon`] (sessions, groups, token ring, membership, the network layer's rules)
//! and a [`Net`] that maps daemon ids to socket addresses and moves the datagrams; one receive
//! task per ring socket feeds the core.
//!
//! The core decides every datagram's destination ([`spread::daemon::topology`]: relays,
//! ROUTED copies, scast, loopback segments, acceptance); here a [`Target`] becomes an address:
//! a daemon's configured address at port P or P+1, or my segment's broadcast address.
//! Datagrams whose source address is not a configured daemon's are dropped and counted here
//! (the core never sees them).
//!
//! The datagrams of one core step leave together through an [`Outbox`]: `sendmmsg(2)` batches,
//! and a backlog sent when the socket is writable again instead of dropping on `WouldBlock`
//! (set `MBUS_RING_SENDMMSG=0` in the environment for one `sendto` per datagram); runs of one
//! size to one address leave segmented, and the receive tasks read coalesced runs and several
//! datagrams per `recvmmsg(2)` ([`super::gso`]; `MBUS_RING_GSO=0` turns that off).
//!
//! # Monitor (fact sheet §11)
//!
//! STATUS replies leave from the ring send socket (5.0.1 uses another socket of its own; the
//! monitor does not check the source port) to the requester's configured address at the port
//! it asked for. A PARTITION that puts this daemon in component −1 fires
//! [`Core::exit_signal`], which ends [`super::serve`], as 5.0.1 exits.
//!
//! # Flow control
//!
//! While [`WATER_MARK`] client messages wait for the ring, the core handles no client input
//! ([`Core::accepts_input`]), as 5.0.1 stops reading its sessions: the daemon's queue of
//! waiting submissions stays near the mark instead of growing with a flood (the readers'
//! input budget bounds what is read meanwhile).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use spread::config::{Config, HostId};
use spread::daemon::{Input, MonitorOutput, Output, Settings, Target, Transmit};
use spread::ring::{DaemonId, Port};
use spread::{ClientStats, Daemon, SessionInput, SessionOutput};
#[cfg(any(test, not(target_os = "linux")))]
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use super::outbox::Outbox;
use super::session::Packet;

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
    /// Datagrams sent in segmented runs (one system call per run).
    pub segmented: u64,
}

/// Daemon ids to socket addresses, and the send socket.
#[derive(Debug)]
pub(crate) struct Net {
    outbox: Outbox,
    port: u16,
    /// Configured daemons: id, address.
    daemons: Vec<(DaemonId, Ipv4Addr)>,
    /// My segment's broadcast address.
    segment: Option<Ipv4Addr>,
    unknown_source: u64,
}

impl Net {
    /// The addresses of `config` for host `me`, sending from `send`.
    pub(crate) fn new(config: &Config, me: HostId, send: std::net::UdpSocket) -> Self {
        // bind() does not set it; segment broadcasts need it.
        if let Err(e) = send.set_broadcast(true) {
            warn!(error = %e, "SO_BROADCAST on the ring send socket failed");
        }
        let daemons = config
            .hosts()
            .filter_map(|(_, h)| match h.addr.ip {
                IpAddr::V4(a) => Some((DaemonId(h.vid), a)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let segment = config.segments.get(me.segment).and_then(|s| {
            s.addrs.iter().find_map(|a| match a.ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
        });
        let batching = std::env::var("MBUS_RING_SENDMMSG").map_or(true, |v| v != "0");
        Self {
            outbox: Outbox::new(send, batching, super::gso::enabled_from_env()),
            port: config.segments.get(me.segment).map_or(0, |s| s.port),
            daemons,
            segment,
            unknown_source: 0,
        }
    }

    /// A configuration reload: the daemons and my segment's address of `config` (`me` is this
    /// daemon in it). Daemons no longer configured keep their addresses (the core drops
    /// their datagrams; a reload may wait for OP, and until then the ring runs on the old
    /// configuration).
    fn reconfigure(&mut self, config: &Config, me: HostId) {
        let old = std::mem::replace(&mut self.daemons, Self::new_daemons(config));
        for (id, a) in old {
            if !self.daemons.iter().any(|(d, _)| *d == id) {
                self.daemons.push((id, a));
            }
        }
        if let Some(seg) = Self::segment_addr(config, me) {
            self.segment = Some(seg);
        }
    }

    fn new_daemons(config: &Config) -> Vec<(DaemonId, Ipv4Addr)> {
        config
            .hosts()
            .filter_map(|(_, h)| match h.addr.ip {
                IpAddr::V4(a) => Some((DaemonId(h.vid), a)),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    fn segment_addr(config: &Config, me: HostId) -> Option<Ipv4Addr> {
        config.segments.get(me.segment).and_then(|s| {
            s.addrs.iter().find_map(|a| match a.ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
        })
    }

    fn addr_of(&self, id: DaemonId) -> Option<Ipv4Addr> {
        self.daemons.iter().find(|(d, _)| *d == id).map(|(_, a)| *a)
    }

    fn send(&mut self, t: Transmit) {
        let ip = match t.to {
            Target::Daemon(d) => self.addr_of(d),
            Target::Segment => self.segment,
        };
        let Some(ip) = ip else {
            debug!(to = ?t.to, "datagram for an address we do not have dropped");
            return;
        };
        let port = match t.port {
            Port::Data => self.port,
            Port::Token => self.port.wrapping_add(1),
        };
        self.outbox.push(SocketAddr::new(ip.into(), port), t.bytes);
    }

    fn source(&mut self, from: SocketAddr) -> Option<DaemonId> {
        let id = match from.ip() {
            IpAddr::V4(a) => self.daemons.iter().find(|(_, x)| *x == a).map(|(d, _)| *d),
            IpAddr::V6(_) => None,
        };
        if id.is_none() {
            self.unknown_source += 1;
            debug!(%from, "datagram from an unconfigured address dropped");
        }
        id
    }
}

pub use spread::daemon::{WATER_MARK, WATER_MARK_BYTES};

/// What the core task drives: the daemon, and its sockets when it has any (an embedded
/// one-daemon ring needs none: its token comes back without a socket).
#[derive(Debug)]
pub(crate) struct Core {
    daemon: Daemon,
    net: Option<Net>,
    /// Fired when a monitor PARTITION tells this daemon to exit.
    exit: Arc<Notify>,
    /// The configuration file a RELOAD or SIGHUP re-reads (none: nothing to reload).
    config_file: Option<std::path::PathBuf>,
    /// The time of the last input (a RELOAD obeyed while outputs are drained uses it).
    last_now: spread::time::Instant,
    /// The membership log file (`-l y`), when enabled.
    memb_log: Option<std::fs::File>,
}

impl Core {
    /// Host `me` of `config`, sending from `send`.
    #[cfg(test)]
    pub(crate) fn with_sockets(config: &Config, me: HostId, send: std::net::UdpSocket) -> Self {
        Self::with_sockets_and_link(config, me, send, None)
    }

    /// Host `me` of `config`, sending from `send`; `link`: the secure ring, if on.
    pub(crate) fn with_sockets_and_link(
        config: &Config,
        me: HostId,
        send: std::net::UdpSocket,
        link: Option<spread::daemon::LinkSettings>,
    ) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let clock = u32::try_from(clock).unwrap_or(u32::MAX);
        let mut settings = Settings::from_config(config, me, clock);
        super::add_access_rules(&mut settings.clients);
        settings.link = link;
        if let Some(wait) = reply_wait_from_env() {
            settings.ring.reply_wait = wait;
        }
        let mut c = Self::new(settings, clock);
        c.daemon.set_config(config);
        c.net = Some(Net::new(config, me, send));
        c.flush_sends();
        c
    }

    /// A daemon without sockets.
    pub(crate) fn new(settings: Settings, clock_secs: u32) -> Self {
        Self {
            daemon: Daemon::new(settings, spread::time::Instant(0), clock_secs),
            net: None,
            exit: Arc::new(Notify::new()),
            config_file: None,
            last_now: spread::time::Instant(0),
            memb_log: None,
        }
    }

    /// `-l y`: appends 5.0.1's membership log to the file `path` (5.0.1: the daemon's name,
    /// in the working directory — `RuntimeDir` once chrooted), starting with its `B` line.
    pub(crate) fn open_membership_log(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(spread::daemon::memb_log::start_line(wall_secs()).as_bytes())?;
        self.memb_log = Some(f);
        self.daemon.enable_membership_log();
        info!(path = %path.display(), "membership log");
        Ok(())
    }

    /// Writes the membership-log events of the last step.
    fn write_membership_log(&mut self) {
        use std::io::Write as _;
        let Some(f) = &mut self.memb_log else { return };
        while let Some(e) = self.daemon.poll_membership_log() {
            if let Err(err) = f.write_all(e.line(wall_secs()).as_bytes()) {
                warn!(error = %err, "membership log write failed; log closed");
                self.memb_log = None;
                return;
            }
        }
    }

    /// The file a RELOAD control packet or `SIGHUP` re-reads.
    pub(crate) fn set_config_file(&mut self, path: std::path::PathBuf) {
        self.config_file = Some(path);
    }

    /// Re-reads the configuration file and hands it to the daemon (RELOAD obeyed, or
    /// `SIGHUP`). A file that cannot be read or parsed is refused with its `path:line:col:`
    /// line in the log, and the running configuration is kept.
    pub(crate) fn reload(&mut self, now: spread::time::Instant) {
        self.last_now = now;
        let Some(path) = self.config_file.clone() else {
            warn!("configuration reload requested, but this daemon has no configuration file; ignored");
            self.daemon.reload_failed();
            return;
        };
        info!(path = %path.display(), "re-reading the configuration file");
        let parsed = match Config::load_full(&path, &mut super::resolve_host) {
            Ok(p) => p,
            Err(e) => {
                error!("{e}");
                warn!("configuration reload refused; the running configuration is kept");
                self.daemon.reload_failed();
                return;
            }
        };
        for w in &parsed.warnings {
            warn!("configuration: {w}");
        }
        let config = parsed.config;
        let name = self.daemon.name().to_owned();
        if let (Some(n), Some((me, _))) = (&mut self.net, config.find_host(&name)) {
            n.reconfigure(&config, me);
        }
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let outcome = self
            .daemon
            .reload(now, &config, u32::try_from(clock).unwrap_or(u32::MAX));
        info!(?outcome, "configuration reload");
    }

    /// Fired (once) when a monitor PARTITION puts this daemon in component −1; the server
    /// ([`super::serve`]) then shuts down.
    pub(crate) fn exit_signal(&self) -> Arc<Notify> {
        self.exit.clone()
    }

    /// Counters of the UDP side.
    pub(crate) fn net_stats(&self) -> NetStats {
        let Some(n) = &self.net else {
            return NetStats::default();
        };
        let o = n.outbox.stats();
        NetStats {
            unknown_source: n.unknown_source,
            send_drops: o.overflow_drops + o.errors,
            sent: o.sent,
            send_calls: o.syscalls,
            deferred: o.deferred,
            segmented: o.segmented,
        }
    }

    /// Every counter of the core and the UDP side (the metrics endpoint).
    pub(crate) fn metrics(&self) -> super::metrics::Snapshot {
        super::metrics::Snapshot {
            core: self.daemon.metrics(),
            net: self.net_stats(),
        }
    }

    /// Counters of the secure ring (`None`: plain mode).
    pub(crate) fn link_stats(&self) -> Option<spread::daemon::LinkStats> {
        self.daemon.link_stats()
    }

    /// A key rollover step: the secure ring's new keys (false in plain mode).
    pub(crate) fn set_link_keys(&mut self, keys: spread::daemon::Keyring) -> bool {
        self.daemon.set_link_keys(keys)
    }

    /// The daemon (read-only: counters, monitor state).
    #[cfg(test)]
    pub(crate) fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    fn transmit(&mut self, t: Transmit) {
        if let Some(n) = &mut self.net {
            n.send(t);
        }
    }

    /// A monitor outcome: a STATUS reply to send, or the order to exit.
    fn monitor(&mut self, m: MonitorOutput) {
        match m {
            MonitorOutput::StatusReply { to, port, bytes } => {
                let Some(n) = &mut self.net else { return };
                match n.addr_of(to) {
                    Some(ip) => n.outbox.push(SocketAddr::new(ip.into(), port), bytes),
                    None => debug!(%to, "status reply for an unknown daemon dropped"),
                }
            }
            MonitorOutput::Exit => {
                warn!("instructed to exit (monitor partition or configuration reload)");
                self.exit.notify_one();
            }
            MonitorOutput::Reload => self.reload(self.last_now),
        }
    }

    /// Sends every queued datagram (start-up: no session exists yet).
    fn flush_sends(&mut self) {
        while self.poll_output().is_some() {}
    }

    /// A client-session input.
    pub(crate) fn handle(&mut self, now: spread::time::Instant, input: SessionInput) {
        self.last_now = now;
        self.daemon.handle(now, Input::Client(input));
    }

    /// The ring's flow control, decided by the core ([`spread::Daemon::accepts_client_input`]:
    /// 5.0.1's [`WATER_MARK`] messages, and [`WATER_MARK_BYTES`]).
    pub(crate) fn accepts_input(&self) -> bool {
        self.daemon.accepts_client_input()
    }

    /// Timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: spread::time::Instant) {
        self.last_now = now;
        self.daemon.handle_timeout(now);
    }

    /// The next output for a client session; datagrams are queued on the way, and once
    /// everything of this step is out, sent in one go.
    pub(crate) fn poll_output(&mut self) -> Option<SessionOutput> {
        let o = self.poll_step();
        if o.is_none() {
            self.flush_network();
        }
        o
    }

    /// As [`Core::poll_output`], but the step's datagrams stay queued until
    /// [`Core::flush_network`] (so the shell can hand local deliveries out first).
    pub(crate) fn poll_step(&mut self) -> Option<SessionOutput> {
        loop {
            let Some(o) = self.daemon.poll_output() else {
                self.write_membership_log();
                return None;
            };
            match o {
                Output::Client(o) => return Some(o),
                Output::Transmit(t) => self.transmit(t),
                Output::Monitor(m) => self.monitor(m),
            }
        }
    }

    /// Sends the datagrams queued by [`Core::poll_step`].
    pub(crate) fn flush_network(&mut self) {
        if let Some(n) = &mut self.net {
            n.outbox.flush();
        }
    }

    /// Datagrams wait for [`Core::flush_network`].
    pub(crate) fn network_queued(&self) -> bool {
        self.net.as_ref().is_some_and(|n| n.outbox.queued())
    }

    /// Next deadline.
    pub(crate) fn poll_timeout(&self) -> Option<spread::time::Instant> {
        self.daemon.poll_timeout()
    }

    /// Counters of the client side.
    pub(crate) fn stats(&self) -> ClientStats {
        self.daemon.client_stats().clone()
    }

    /// A datagram from a ring socket.
    pub(crate) fn packet(&mut self, now: spread::time::Instant, p: Packet) {
        let Some(net) = &mut self.net else { return };
        let Some(from) = net.source(p.from) else {
            return;
        };
        let port = if p.token { Port::Token } else { Port::Data };
        self.last_now = now;
        self.daemon.handle(
            now,
            Input::Packet {
                from,
                port,
                bytes: p.bytes,
            },
        );
    }
}

/// `MBUS_REPLY_WAIT_US` (an mbus extension): the longest a daemon keeps a visited token for a
/// local client's answer ([`spread::ring::RingConfig::reply_wait`]; 0: never, as 5.0.1).
/// Unset: the core's default. Not a number: the default, with a warning.
fn reply_wait_from_env() -> Option<std::time::Duration> {
    let v = std::env::var("MBUS_REPLY_WAIT_US").ok()?;
    match v.trim().parse::<u64>() {
        Ok(us) => Some(std::time::Duration::from_micros(us.min(100_000))),
        Err(_) => {
            warn!(value = %v, "MBUS_REPLY_WAIT_US is not a number of microseconds; default kept");
            None
        }
    }
}

/// The wall clock in seconds (the membership log's times, as 5.0.1's `E_get_time`).
fn wall_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Receive loop of one ring socket on systems without [`super::ring_rx`]: every datagram
/// goes to the core, until `stop` fires or the core stops.
#[cfg(not(target_os = "linux"))]
pub(crate) async fn receive(
    sock: UdpSocket,
    token: bool,
    core: super::session::CoreHandle,
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
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    tracing::trace!(error = %e, "ring recv error");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring's flow control: with no token going round, client messages pile up for the
    /// ring; at [`WATER_MARK`] the core stops taking client input (and takes it again
    /// once the ring has sent them, which this test does not reach).
    #[tokio::test]
    async fn client_input_stops_at_the_water_mark() {
        use spread::session::{Peer, SessionId};
        use spread::wire::client::{encode_hello, encode_message, GroupName, Hello, ServiceType};
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let text =
            format!("Spread_Segment 127.0.0.255:{port} {{\n e1 127.0.0.1\n e2 127.0.0.2\n}}\n");
        let config = Config::parse(&text, "t.conf").unwrap();
        let me = HostId {
            segment: 0,
            index: 0,
        };
        let s = UdpSocket::bind(("127.0.0.1", port)).await.unwrap();
        let mut c = Core::with_sockets(&config, me, s.into_std().unwrap());
        let now = spread::time::Instant(0);
        let session = SessionId(1);
        c.handle(
            now,
            SessionInput::Connected {
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
                SessionInput::Bytes {
                    session,
                    data: data.into(),
                },
            );
        }
        while c.poll_output().is_some() {}
        assert!(c.accepts_input());
        let mut request = Vec::new();
        let (me, g) = (GroupName::new(b"#a#e1"), GroupName::new(b"g"));
        encode_message(ServiceType::RELIABLE, me, &[g], b"body", &mut request);
        let mut sent = 0;
        while c.accepts_input() && sent < 4 * WATER_MARK {
            let data = request.clone().into();
            c.handle(now, SessionInput::Bytes { session, data });
            while c.poll_output().is_some() {}
            sent += 1;
        }
        assert_eq!(sent, WATER_MARK, "client input stopped at the mark");
        assert_eq!(c.stats().protocol_violations(), 0);
    }

    #[tokio::test]
    async fn datagrams_from_unconfigured_addresses_never_reach_the_daemon() {
        let text = "Spread_Segment 127.0.0.255:4803 {\n e1 127.0.0.1\n e2 127.0.0.2\n}\n";
        let config = Config::parse(text, "t.conf").unwrap();
        let me = HostId {
            segment: 0,
            index: 0,
        };
        let s = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let mut c = Core::with_sockets(&config, me, s.into_std().unwrap());
        let before = c.daemon().engine().stats();
        c.packet(
            spread::time::Instant(0),
            Packet {
                from: "127.0.0.9:4803".parse().unwrap(),
                token: false,
                bytes: bytes::Bytes::from_static(&[0u8; 40]),
            },
        );
        assert_eq!(c.net_stats().unknown_source, 1);
        assert_eq!(c.daemon().engine().stats(), before);
        assert_eq!(c.daemon().topology_stats().rejected_total(), 0);
    }
}
