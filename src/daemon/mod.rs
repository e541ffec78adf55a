//! The tokio shell of the daemon: finding which configured host this process is, opening its
//! sockets ([`bind()`]) and running until shut down ([`run`], [`serve`]).
//!
//! Client sessions and the ring are driven from [`serve`]; until they land, accepted client
//! connections are closed at once (a client sees the connection end before any reply).

mod bind;
pub mod log_time;
pub mod net;

use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

pub use bind::{bind, BindError, Bound, UnixSocketFile};
use spread::config::{Config, HostId, UNIX_SOCKET_DIR};
use tracing::{debug, info, warn};

/// Settings of the shell that are not in the configuration file.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Directory of the client Unix socket `DIR/PORT` (5.0.1: `/tmp`).
    pub unix_socket_dir: PathBuf,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            unix_socket_dir: PathBuf::from(UNIX_SOCKET_DIR),
        }
    }
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
    serve(config, me, bound, shutdown).await
}

/// Serves on already opened sockets until `shutdown` completes, then closes everything and
/// removes the Unix socket file.
pub async fn serve(
    config: Arc<Config>,
    me: HostId,
    bound: Bound,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let name = config.host(me).map_or("?", |h| h.name.as_str());
    info!(name, port = bound.port, "daemon ready");
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in bound.tcp {
        let mut stop = stop_tx.subscribe();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.recv() => break,
                    r = listener.accept() => match r {
                        Ok((stream, peer)) => on_client(Client::Tcp(stream), &peer.to_string()),
                        Err(e) => accept_failed(&e).await,
                    },
                }
            }
        });
    }
    let unix = bound.unix;
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                r = unix.accept() => match r {
                    Ok((stream, _)) => on_client(Client::Unix(stream), "unix"),
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

/// What happens to a new client connection. Client sessions are not served yet: the
/// connection is closed cleanly.
fn on_client(client: Client, peer: &str) {
    debug!(
        peer,
        "client connection closed: client sessions are not served yet"
    );
    drop(client);
}

/// Accept errors (e.g. out of file descriptors) must not spin: log and pause briefly.
async fn accept_failed(e: &std::io::Error) {
    warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
