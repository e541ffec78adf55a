//! Opening the daemon's sockets the way 5.0.1 does: the client TCP port on each client
//! interface, the client Unix socket `/tmp/PORT`, the ring's data port P and token port P+1
//! (UDP) on each daemon interface, and one UDP send socket bound to the daemon's own address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use spread::config::{Config, HostId, IfKinds, PortReuse, ScopedIp};
use tracing::{debug, info, warn};

use super::DaemonOptions;

/// Backlog of the client TCP listeners (5.0.1: 25).
const TCP_BACKLOG: i32 = 25;
/// Backlog of the client Unix socket (5.0.1: 5).
const UNIX_BACKLOG: u32 = 5;

/// A socket that could not be opened. Displays as one line naming the address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The host id is not in the configuration.
    #[error("host {0:?} is not in the configuration")]
    NoSuchHost(HostId),
    /// The client TCP port is taken.
    #[error("cannot bind client port {addr}: {err}; is another daemon running on port {port}?")]
    TcpInUse {
        /// The address.
        addr: SocketAddr,
        /// The port.
        port: u16,
        /// The OS error (shown in the message, not as a separate source).
        err: io::Error,
    },
    /// Any other socket failure.
    #[error("cannot open {what} {addr}: {err}")]
    Socket {
        /// Which socket.
        what: &'static str,
        /// Its address.
        addr: String,
        /// The OS error (shown in the message, not as a separate source).
        err: io::Error,
    },
}

/// Removes the Unix socket file when dropped. It keeps its directory open, so the file is
/// removed even after the daemon has chrooted into `RuntimeDir` (see
/// [`privileges`](super::privileges)).
#[derive(Debug)]
pub struct UnixSocketFile {
    path: PathBuf,
    dir: Option<std::fs::File>,
}

impl UnixSocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let removed = match (&self.dir, self.path.file_name()) {
            (Some(dir), Some(name)) => {
                nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                    .map_err(io::Error::from)
            }
            _ => std::fs::remove_file(&self.path),
        };
        match removed {
            Ok(()) => info!(path = %self.path.display(), "removed client Unix socket"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot remove client Unix socket")
            }
        }
    }
}

/// All sockets of one daemon, ready for tokio.
#[derive(Debug)]
pub struct Bound {
    /// The client listeners.
    pub clients: ClientSockets,
    /// Ring data receivers (UDP port P): daemon interfaces and segment addresses.
    pub data: Vec<tokio::net::UdpSocket>,
    /// Ring token receivers (UDP port P + 1), one per daemon interface.
    pub token: Vec<tokio::net::UdpSocket>,
    /// The one socket every ring packet is sent from (own address, ephemeral port):
    /// non-blocking and not registered with the runtime (the ring's outbox watches it only
    /// while datagrams wait for room).
    pub send: std::net::UdpSocket,
}

/// The client side of [`Bound`]: what [`serve_core`](super::serve_core) listens on.
#[derive(Debug)]
pub struct ClientSockets {
    /// The segment port P.
    pub port: u16,
    /// Client TCP listeners (port P), one per client interface (wildcard without a block).
    pub tcp: Vec<tokio::net::TcpListener>,
    /// The client Unix socket listener.
    pub unix: tokio::net::UnixListener,
    /// Removes the Unix socket file on drop.
    pub unix_file: UnixSocketFile,
    /// The metrics endpoint's listener ([`DaemonOptions::metrics`]), if asked for.
    pub metrics: Option<tokio::net::TcpListener>,
}

/// The address to bind for a configured interface (IPv6 scope resolved from `/sys`).
fn sock_addr(a: &ScopedIp, port: u16) -> SocketAddr {
    match a.ip {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V4(ip), port),
        IpAddr::V6(ip) => {
            let scope = a.scope.as_deref().map_or(0, interface_index);
            SocketAddr::V6(std::net::SocketAddrV6::new(ip, port, 0, scope))
        }
    }
}

/// Interface index of a network interface name (0 if unknown), read from sysfs.
pub(crate) fn interface_index(name: &str) -> u32 {
    if name.contains('/') {
        return 0;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn wildcard(ip: &IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    }
}

fn socket_err(what: &'static str, addr: impl ToString) -> impl FnOnce(io::Error) -> BindError {
    let addr = addr.to_string();
    move |err| BindError::Socket { what, addr, err }
}

fn udp(
    addr: SocketAddr,
    reuse: bool,
    what: &'static str,
) -> Result<tokio::net::UdpSocket, BindError> {
    let s = udp_unregistered(addr, reuse, what)?;
    tokio::net::UdpSocket::from_std(s).map_err(socket_err(what, addr))
}

/// A bound non-blocking UDP socket the runtime does not watch.
fn udp_unregistered(
    addr: SocketAddr,
    reuse: bool,
    what: &'static str,
) -> Result<std::net::UdpSocket, BindError> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_err(what, addr))?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(socket_err(what, addr))?;
    }
    s.set_reuse_address(reuse).map_err(socket_err(what, addr))?;
    s.set_nonblocking(true).map_err(socket_err(what, addr))?;
    s.bind(&SockAddr::from(addr))
        .map_err(socket_err(what, addr))?;
    Ok(s.into())
}

fn tcp(addr: SocketAddr, reuse: bool, port: u16) -> Result<tokio::net::TcpListener, BindError> {
    let what = "client port";
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(socket_err(what, addr))?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(socket_err(what, addr))?;
    }
    s.set_reuse_address(reuse).map_err(socket_err(what, addr))?;
    s.set_nonblocking(true).map_err(socket_err(what, addr))?;
    s.bind(&SockAddr::from(addr)).map_err(|err| {
        if err.kind() == io::ErrorKind::AddrInUse {
            BindError::TcpInUse { addr, port, err }
        } else {
            BindError::Socket {
                what,
                addr: addr.to_string(),
                err,
            }
        }
    })?;
    s.listen(TCP_BACKLOG).map_err(socket_err(what, addr))?;
    tokio::net::TcpListener::from_std(s.into()).map_err(socket_err(what, addr))
}

/// Opens every socket of daemon `me`. Must run inside a tokio runtime. The client TCP port is
/// bound first, so a second daemon on the same port fails before it touches anything else.
pub fn bind(config: &Config, me: HostId, opts: &DaemonOptions) -> Result<Bound, BindError> {
    let host = config.host(me).ok_or(BindError::NoSuchHost(me))?;
    let segment = config
        .segments
        .get(me.segment)
        .ok_or(BindError::NoSuchHost(me))?;
    let port = segment.port;
    let reuse = config.socket_port_reuse();
    let implicit = host.interfaces.is_empty();
    let ifaces = host.effective_interfaces();

    // Client TCP: every C interface; the implicit one binds the wildcard address.
    let mut tcp_listeners = Vec::new();
    for i in ifaces
        .iter()
        .filter(|i| implicit || i.kinds.contains(IfKinds::CLIENT))
    {
        let addr = if implicit {
            wildcard(&host.addr.ip, port)
        } else {
            sock_addr(&i.addr, port)
        };
        // `auto` sets SO_REUSEADDR too: on Linux it never lets two listeners share a port,
        // and it lets a restarted daemon bind while old connections sit in TIME_WAIT.
        let l = tcp(addr, reuse != PortReuse::Off, port)?;
        info!(%addr, "listening for clients (TCP)");
        tcp_listeners.push(l);
    }

    let ring = bind_ring(config, segment, host)?;

    // Client Unix socket `/tmp/PORT` (5.0.1: stale file removed first, mode 0666).
    let path = opts.unix_socket_dir.join(port.to_string());
    let _ = std::fs::remove_file(&path);
    let unix = unix_listener(&path)?;
    info!(path = %path.display(), "listening for clients (Unix socket)");
    let metrics = opts.metrics.map(metrics_listener).transpose()?;
    Ok(Bound {
        clients: ClientSockets {
            port,
            tcp: tcp_listeners,
            unix,
            unix_file: UnixSocketFile {
                dir: path.parent().and_then(|d| std::fs::File::open(d).ok()),
                path,
            },
            metrics,
        },
        data: ring.data,
        token: ring.token,
        send: ring.send,
    })
}

/// The metrics endpoint's TCP listener (opened with the other sockets, before privileges are
/// dropped).
fn metrics_listener(addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    let err = |err| BindError::Socket {
        what: "metrics listener",
        addr: addr.to_string(),
        err,
    };
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

/// The ring's UDP sockets.
struct Ring {
    data: Vec<tokio::net::UdpSocket>,
    token: Vec<tokio::net::UdpSocket>,
    send: std::net::UdpSocket,
}

/// Ring sockets as 5.0.1 opens them: data port P and token port P+1 on every D interface
/// (the wildcard address without an interface block), the segment addresses when the segment
/// has several daemons, and the send socket on the daemon's own address.
fn bind_ring(
    config: &Config,
    segment: &spread::config::Segment,
    host: &spread::config::Host,
) -> Result<Ring, BindError> {
    let port = segment.port;
    let token_port = port.wrapping_add(1);
    let reuse = config.socket_port_reuse();
    let implicit = host.interfaces.is_empty();
    let ifaces = host.effective_interfaces();
    let mut data = Vec::new();
    let mut token = Vec::new();
    let mut seg_bound = vec![false; segment.addrs.len()];
    for i in ifaces
        .iter()
        .filter(|i| implicit || i.kinds.contains(IfKinds::DAEMON))
    {
        let (d, t) = if implicit || i.addr.ip.is_unspecified() {
            seg_bound.iter_mut().for_each(|b| *b = true);
            (
                wildcard(&host.addr.ip, port),
                wildcard(&host.addr.ip, token_port),
            )
        } else {
            (sock_addr(&i.addr, port), sock_addr(&i.addr, token_port))
        };
        let is_seg = segment.addrs.iter().position(|a| a.ip == d.ip());
        if let Some(k) = is_seg {
            if let Some(b) = seg_bound.get_mut(k) {
                *b = true;
            }
        }
        let r = reuse == PortReuse::On || is_seg.is_some() || d.ip().is_multicast();
        data.push(udp(d, r, "ring data port")?);
        token.push(udp(t, reuse == PortReuse::On, "ring token port")?);
        info!(data = %d, token = %t, "ring sockets bound (UDP)");
    }
    // With explicit interfaces, broadcasts arrive on the segment address: bind it too when
    // the segment has more than one daemon (as 5.0.1 does on Unix).
    if segment.hosts.len() > 1 {
        for (a, _) in segment.addrs.iter().zip(seg_bound).filter(|(_, b)| !b) {
            let addr = sock_addr(a, port);
            match udp(addr, true, "segment address") {
                Ok(s) => data.push(s),
                Err(e) => warn!(error = %e, "segment address not bound; broadcasts may be missed"),
            }
        }
    }
    join_multicast(config, segment, host, &data);

    let send_addr = sock_addr(&host.addr, 0);
    let send = udp_unregistered(send_addr, false, "ring send socket")?;
    if super::own_echo::enabled_from_env() {
        if let Ok(from) = send.local_addr() {
            for d in &data {
                if let Err(e) = super::own_echo::drop_from(d, from) {
                    debug!(error = %e, "own-broadcast filter refused; the core drops those copies");
                }
            }
        }
    }
    Ok(Ring { data, token, send })
}

fn unix_listener(path: &Path) -> Result<tokio::net::UnixListener, BindError> {
    let shown = path.display().to_string();
    let what = "client Unix socket";
    let s = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(socket_err(what, &shown))?;
    let addr = SockAddr::unix(path).map_err(socket_err(what, &shown))?;
    s.bind(&addr).map_err(socket_err(what, &shown))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(socket_err(what, &shown))?;
    }
    s.listen(i32::try_from(UNIX_BACKLOG).unwrap_or(5))
        .map_err(socket_err(what, &shown))?;
    s.set_nonblocking(true).map_err(socket_err(what, &shown))?;
    let std_listener: std::os::unix::net::UnixListener = s.into();
    tokio::net::UnixListener::from_std(std_listener).map_err(socket_err(what, &shown))
}

/// Joins the segment's multicast addresses on every data socket (IPv4: on the daemon's
/// address; IPv6: on its interface). Failures are logged (5.0.1 makes them fatal unless
/// `IgnoreMulticastJoinErrors`; the ring issue decides what to do without them).
fn join_multicast(
    config: &Config,
    segment: &spread::config::Segment,
    host: &spread::config::Host,
    data: &[tokio::net::UdpSocket],
) {
    for a in segment.addrs.iter().filter(|a| a.ip.is_multicast()) {
        for s in data {
            let sock = socket2::SockRef::from(s);
            let r = match (a.ip, host.addr.ip) {
                (IpAddr::V4(m), IpAddr::V4(me)) => sock.join_multicast_v4(&m, &me),
                (IpAddr::V6(m), _) => {
                    let idx = host.addr.scope.as_deref().map_or(0, interface_index);
                    sock.join_multicast_v6(&m, idx)
                }
                _ => Ok(()),
            };
            if let Err(e) = r {
                let ignore = config.options.ignore_multicast_join_errors.unwrap_or(false);
                warn!(group = %a.ip, error = %e, ignore, "cannot join multicast group");
            }
        }
    }
}
