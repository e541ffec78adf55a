//! The tokio shell of the daemon: finding which configured host this process is, opening its
//! sockets ([`bind()`]) and running until shut down ([`run`], [`serve`]).
//!
//! Client sessions are served by one core task (`session`): [`serve`] starts it and hands it
//! every accepted connection; [`serve_core`] does the same for a core the caller started with
//! [`spawn_core`] (to also open in-process sessions with [`CoreHandle::connect_in_process`]).
//!
//! The core task owns the sans-IO [`spread::Daemon`] — the whole daemon: sessions, groups,
//! token ring, membership and the network layer's rules — for one configured host (a
//! one-daemon ring) as for several, over the ring sockets of [`bind()`] with one receive task
//! per socket. The shell only maps daemon ids to socket addresses and moves bytes.

mod alarm;
mod bind;
mod builder;
mod client_io;
pub(crate) mod gso;
pub mod log_file;
pub mod log_time;
pub mod metrics;
pub(crate) mod outbox;
mod own_echo;
pub mod privileges;
pub(crate) mod ring_net;
#[cfg(target_os = "linux")]
mod ring_rx;
pub mod secure;
pub(crate) mod session;

use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

pub use bind::{bind, BindError, Bound, ClientSockets, UnixSocketFile};
pub use builder::{DaemonBuilder, RunningDaemon};
pub use ring_net::{NetStats, WATER_MARK, WATER_MARK_BYTES};
pub use secure::SecureRing;
pub use session::{spawn_core, CoreHandle, CoreStopped};
use spread::config::{Config, HostId, UNIX_SOCKET_DIR};
use spread::session::Peer;
use tracing::{debug, info, warn};

/// Settings of the shell that are not in the configuration file.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Directory of the client Unix socket `DIR/PORT` (5.0.1: `/tmp`).
    pub unix_socket_dir: PathBuf,
    /// Serve the metrics endpoint ([`metrics`]) on this address (mbus addition; off by
    /// default).
    pub metrics: Option<SocketAddr>,
    /// The configuration file a monitor RELOAD or `SIGHUP` re-reads; with one, [`serve_with`]
    /// also re-reads it on `SIGHUP` (an mbus addition). None: RELOAD is logged and ignored.
    pub config_file: Option<PathBuf>,
    /// `-l y`: write 5.0.1's membership log to a file named after the daemon in the working
    /// directory (after the chroot into `RuntimeDir`, as 5.0.1).
    pub membership_log: bool,
    /// The secure ring (mbus extension; `None`: 5.0.1's plain wire).
    pub link: Option<SecureRing>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            unix_socket_dir: PathBuf::from(UNIX_SOCKET_DIR),
            metrics: None,
            config_file: None,
            membership_log: false,
            link: None,
        }
    }
}

/// Looks a name-only host of the configuration up with the system resolver.
pub fn resolve_host(name: &str) -> Vec<IpAddr> {
    use std::net::ToSocketAddrs as _;
    (name, 0u16)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// The daemon could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A socket could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// This process is not one of the configured hosts.
    #[error(transparent)]
    Me(#[from] MeError),
}

/// Why this process's own host entry could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeError {
    /// `-n NAME` names no host of the configuration.
    #[error("my name '{0}' is not in the configuration")]
    UnknownName(String),
    /// The named host's address is not an address of this machine.
    #[error("the address {addr} of '{name}' is not an address of this machine")]
    NotLocal {
        /// The host.
        name: String,
        /// Its configured address.
        addr: IpAddr,
    },
    /// No configured host has an address of this machine.
    #[error("none of this machine's addresses matches a host in the configuration (use -n NAME)")]
    NoLocalHost,
}

/// Whether `ip` is an address of this machine: binding a UDP socket to it succeeds.
pub fn is_local_address(ip: IpAddr, scope: Option<&str>) -> bool {
    let addr = match ip {
        IpAddr::V4(_) => SocketAddr::new(ip, 0),
        IpAddr::V6(v6) => {
            let idx = scope.map_or(0, bind::interface_index);
            SocketAddr::V6(std::net::SocketAddrV6::new(v6, 0, 0, idx))
        }
    };
    UdpSocket::bind(addr).is_ok()
}

/// Finds this daemon's entry: the host called `name` (whose address must be local), or else
/// the first host in configuration order whose address is an address of this machine
/// (5.0.1 `Conf_load_conf_file`).
pub fn resolve_me(config: &Config, name: Option<&str>) -> Result<HostId, MeError> {
    match name {
        Some(n) => {
            let (id, h) = config
                .find_host(n)
                .ok_or_else(|| MeError::UnknownName(n.to_owned()))?;
            if is_local_address(h.addr.ip, h.addr.scope.as_deref()) {
                Ok(id)
            } else {
                Err(MeError::NotLocal {
                    name: h.name.clone(),
                    addr: h.addr.ip,
                })
            }
        }
        None => config
            .hosts()
            .find(|(_, h)| is_local_address(h.addr.ip, h.addr.scope.as_deref()))
            .map(|(id, _)| id)
            .ok_or(MeError::NoLocalHost),
    }
}

/// Opens the sockets of `me` and serves until `shutdown` completes (Unix socket directory
/// from [`DaemonOptions::default`]).
pub async fn run(
    config: Arc<Config>,
    me: HostId,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    run_with(config, me, DaemonOptions::default(), shutdown).await
}

/// [`run`] with explicit shell options.
pub async fn run_with(
    config: Arc<Config>,
    me: HostId,
    opts: DaemonOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let bound = bind(&config, me, &opts)?;
    serve_with(config, me, bound, &opts, shutdown).await
}

/// Serves on already opened sockets until `shutdown` completes, then closes everything and
/// removes the Unix socket file.
pub async fn serve(
    config: Arc<Config>,
    me: HostId,
    bound: Bound,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    serve_with(config, me, bound, &DaemonOptions::default(), shutdown).await
}

/// [`serve`] with shell options: with [`DaemonOptions::config_file`], a monitor RELOAD and
/// `SIGHUP` re-read that file.
pub async fn serve_with(
    config: Arc<Config>,
    me: HostId,
    bound: Bound,
    opts: &DaemonOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let server = Server::start(config, me, bound, opts)?;
    if opts.config_file.is_some() {
        reload_on_sighup(server.core.clone());
    }
    server.run(shutdown).await
}

/// `SIGHUP` re-reads the configuration file (an mbus addition; 5.0.1 only reloads on a
/// monitor RELOAD). The task ends with the core.
fn reload_on_sighup(core: CoreHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler; reload with the monitor instead");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received: reloading the configuration");
            if core.reload().await.is_err() {
                break;
            }
        }
    });
}

/// A daemon whose core and ring receivers run; [`Server::run`] serves its client listeners
/// until shut down.
struct Server {
    config: Arc<Config>,
    me: HostId,
    core: CoreHandle,
    core_task: tokio::task::JoinHandle<()>,
    receivers: tokio::task::JoinSet<()>,
    stop_tx: tokio::sync::broadcast::Sender<()>,
    /// Fired when a monitor PARTITION tells this daemon to exit.
    exit: Arc<tokio::sync::Notify>,
    /// The client listeners (the ring sockets are the core's already).
    clients: ClientSockets,
}

impl Server {
    /// Starts the core (one host or several: the same ring daemon, a one-host configuration
    /// being a one-daemon ring) and a receive task per ring socket.
    fn start(
        config: Arc<Config>,
        me: HostId,
        bound: Bound,
        opts: &DaemonOptions,
    ) -> Result<Self, DaemonError> {
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut stop = stop_tx.subscribe();
        let core_stop = async move {
            let _ = stop.recv().await;
        };
        let Bound {
            clients,
            data,
            token,
            send,
        } = bound;
        let settings = opts.link.as_ref().map(SecureRing::settings);
        let mut ring = ring_net::Core::with_sockets_and_link(&config, me, send, settings);
        if let Some(path) = &opts.config_file {
            ring.set_config_file(path.clone());
        }
        if opts.membership_log {
            let name = config.host(me).map_or("spread", |h| h.name.as_str());
            if let Err(e) = ring.open_membership_log(std::path::Path::new(name)) {
                warn!(error = %e, file = name, "cannot open the membership log; not written");
            }
        }
        let exit = ring.exit_signal();
        let ring_socks: Vec<(tokio::net::UdpSocket, bool)> = data
            .into_iter()
            .map(|s| (s, false))
            .chain(token.into_iter().map(|s| (s, true)))
            .collect();
        // Linux: the core task reads the ring sockets itself (`ring_rx`); elsewhere a
        // receive task per socket hands datagrams over.
        #[cfg(target_os = "linux")]
        let (core, core_task) = session::spawn_core_with(ring, core_stop, ring_socks);
        #[cfg(not(target_os = "linux"))]
        let (core, core_task) = session::spawn_core_with(ring, core_stop, Vec::new());
        let mut receivers = tokio::task::JoinSet::new();
        if let Some(ring) = &opts.link {
            info!(
                sealing = %ring.keys.sealing(),
                keys = ring.keys.ids().len(),
                "secure ring on: daemon datagrams sealed (AES-256-GCM); plain ones refused"
            );
            if let Some(file) = ring.watched() {
                receivers.spawn(secure::watch(file, core.clone(), stop_tx.subscribe()));
            }
        }
        #[cfg(not(target_os = "linux"))]
        for (sock, is_token) in ring_socks {
            receivers.spawn(ring_net::receive(
                sock,
                is_token,
                core.clone(),
                stop_tx.subscribe(),
            ));
        }
        Ok(Self {
            config,
            me,
            core,
            core_task,
            receivers,
            stop_tx,
            exit,
            clients,
        })
    }

    /// Serves the client listeners until `shutdown` completes or the monitor says exit, then
    /// stops the core and the receivers.
    async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let Self {
            config,
            me,
            core,
            core_task,
            mut receivers,
            stop_tx,
            exit,
            clients,
        } = self;
        // A monitor PARTITION with component -1 for this daemon ends it too (as 5.0.1 exits).
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                () = exit.notified() => warn!("shutting down: instructed to exit (monitor partition or configuration reload)"),
            }
        };
        let r = serve_core(config, me, core, clients, shutdown).await;
        let _ = stop_tx.send(());
        let _ = core_task.await;
        while receivers.join_next().await.is_some() {}
        r
    }
}

/// Adds the `IP` allow rules from `spread.access_ip` (looked up as 5.0.1 does:
/// `./spread.access_ip`, then `/etc/spread.access_ip`) when `IP` is enabled, and the `PWORD`
/// users from `spread.access_pword` (`./spread.access_pword`, then
/// `/etc/spread.access_pword`) when `PWORD` is.
pub(crate) fn add_access_rules(cfg: &mut spread::DaemonConfig) {
    use spread::session::AuthMethod;
    let wants = |m| cfg.auth.allowed.contains(&m) || cfg.auth.required.contains(&m);
    let (wants_ip, wants_pword) = (wants(AuthMethod::Ip), wants(AuthMethod::Pword));
    if wants_ip {
        for path in ["spread.access_ip", "/etc/spread.access_ip"] {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            match spread::session::auth::parse_access_ip(&text) {
                Ok(rules) => cfg.auth.ip_rules = rules,
                Err(line) => warn!(path, line, "spread.access_ip: bad line; IP rules ignored"),
            }
            break;
        }
    }
    if wants_pword {
        let mut found = false;
        for path in ["spread.access_pword", "/etc/spread.access_pword"] {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            found = true;
            match spread::session::auth::parse_access_pword(&text) {
                Ok(users) => {
                    info!(path, users = users.len(), "PWORD users loaded");
                    cfg.auth.pword_users = users;
                }
                Err(e) => warn!("{path}: {e}; no PWORD user (every PWORD login is refused)"),
            }
            break;
        }
        if !found {
            warn!(
                "PWORD is enabled but neither ./spread.access_pword nor /etc/spread.access_pword \
                 can be read: every PWORD login is refused"
            );
        }
    }
}

/// [`serve`] with a core the caller started ([`spawn_core`]), on the client sockets of
/// [`bind()`] ([`Bound::clients`]); returns when `shutdown` completes (the core keeps running
/// until its own shutdown).
pub async fn serve_core(
    config: Arc<Config>,
    me: HostId,
    core: CoreHandle,
    bound: ClientSockets,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let name = config.host(me).map_or("?", |h| h.name.as_str());
    info!(name, port = bound.port, "daemon ready");
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in bound.tcp {
        let mut stop = stop_tx.subscribe();
        let core = core.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.recv() => break,
                    r = listener.accept() => match r {
                        Ok((stream, peer)) => on_client(&core, Client::Tcp(stream), Peer::Tcp(peer.ip())).await,
                        Err(e) => accept_failed(&e).await,
                    },
                }
            }
        });
    }
    if let Some(listener) = bound.metrics {
        tasks.spawn(metrics::serve(listener, core.clone(), stop_tx.subscribe()));
    }
    let unix = bound.unix;
    let mut stop = stop_tx.subscribe();
    let unix_core = core.clone();
    tasks.spawn(async move {
        let core = unix_core;
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                r = unix.accept() => match r {
                    Ok((stream, _)) => on_client(&core, Client::Unix(stream), Peer::Unix).await,
                    Err(e) => accept_failed(&e).await,
                },
            }
        }
    });
    shutdown.await;
    info!("shutting down");
    let _ = stop_tx.send(());
    while tasks.join_next().await.is_some() {}
    drop(bound.unix_file);
    Ok(())
}

/// A freshly accepted client connection.
#[derive(Debug)]
pub enum Client {
    /// Over TCP.
    Tcp(tokio::net::TcpStream),
    /// Over the Unix socket.
    Unix(tokio::net::UnixStream),
}

/// Send and receive buffer size asked for on client TCP sockets.
const SESSION_SOCKET_BUFFER: usize = 200 * 1024;

/// Hands a new client connection to the core (TCP: `TCP_NODELAY`, `SO_KEEPALIVE` and larger
/// buffers, as 5.0.1).
async fn on_client(core: &CoreHandle, client: Client, peer: Peer) {
    let r = match client {
        Client::Tcp(stream) => {
            let _ = stream.set_nodelay(true);
            let sock = socket2::SockRef::from(&stream);
            let _ = sock.set_keepalive(true);
            // 5.0.1 raises both buffers step by step up to about 200 KB.
            let _ = sock.set_send_buffer_size(SESSION_SOCKET_BUFFER);
            let _ = sock.set_recv_buffer_size(SESSION_SOCKET_BUFFER);
            core.accept(stream, peer).await
        }
        Client::Unix(stream) => core.accept(stream, peer).await,
    };
    if r.is_err() {
        debug!(?peer, "client connection dropped: core stopped");
    }
}

/// Accept errors (e.g. out of file descriptors) must not spin: log and pause briefly.
async fn accept_failed(e: &std::io::Error) {
    warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
