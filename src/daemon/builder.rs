//! Embedding a daemon in a program: [`DaemonBuilder`] → [`RunningDaemon`], for one host (a
//! one-daemon ring) as for a host of a ring, with its sockets open (clients over TCP and the
//! Unix socket, the ring over UDP) and in-process sessions
//! ([`RunningDaemon::connect_in_process`]) without a socket.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mbus::client::{ConnectOptions, Mailbox};
//! use mbus::daemon::DaemonBuilder;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let text = "Spread_Segment 127.0.0.255:4803 {\n localhost 127.0.0.1\n}\n";
//! let config = Arc::new(spread::config::Config::parse(text, "spread.conf")?);
//! let daemon = DaemonBuilder::new(config).name("localhost").start()?;
//! let pipe = daemon.connect_in_process().await?;
//! let mut mb = Mailbox::connect_stream(pipe, &ConnectOptions::new("me", true)).await?;
//! mb.join("local").await?;
//! daemon.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use spread::config::{Config, HostId};
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{bind, resolve_me, CoreHandle, CoreStopped, DaemonError, DaemonOptions, Server};

/// What to start: the configuration, which host of it, where the Unix socket goes.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    config: Arc<Config>,
    name: Option<String>,
    opts: DaemonOptions,
}

impl DaemonBuilder {
    /// A daemon of `config`: the host named with [`DaemonBuilder::name`], else the first host
    /// whose address is an address of this machine (as `spread` without `-n`).
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            name: None,
            opts: DaemonOptions::default(),
        }
    }

    /// This process is the host called `name` (as `spread -n NAME`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Directory of the client Unix socket `DIR/PORT` (default `/tmp`, as 5.0.1).
    #[must_use]
    pub fn unix_socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.opts.unix_socket_dir = dir.into();
        self
    }

    /// Runs the secure ring with these keys (mbus extension, docs/security.md): every
    /// daemon of the ring needs the same keys.
    #[must_use]
    pub fn link_keys(mut self, ring: super::SecureRing) -> Self {
        self.opts.link = Some(ring);
        self
    }

    /// Finds the own host, opens its sockets and starts serving (call inside a tokio
    /// runtime). Errors: the host is not in the configuration or not local, or a socket could
    /// not be opened.
    pub fn start(self) -> Result<RunningDaemon, DaemonError> {
        let me = resolve_me(&self.config, self.name.as_deref())?;
        let bound = bind(&self.config, me, &self.opts)?;
        let port = bound.clients.port;
        let server = Server::start(self.config, me, bound, &self.opts)?;
        let core = server.core.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(RunningDaemon {
            me,
            port,
            core,
            stop: Some(stop),
            task,
        })
    }
}

/// A daemon serving in the background; dropping it shuts it down.
#[derive(Debug)]
pub struct RunningDaemon {
    me: HostId,
    port: u16,
    core: CoreHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), DaemonError>>,
}

impl RunningDaemon {
    /// The configured host this daemon is.
    pub fn host(&self) -> HostId {
        self.me
    }

    /// Its segment port P (clients: TCP P and `DIR/P`; ring: UDP P and P+1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The core: in-process sessions, counters.
    pub fn handle(&self) -> &CoreHandle {
        &self.core
    }

    /// Opens a session without a socket: the client's end of an in-memory pipe (speak the
    /// client protocol over it, e.g. [`crate::client::Mailbox::connect_stream`]).
    pub async fn connect_in_process(&self) -> Result<DuplexStream, CoreStopped> {
        self.core.connect_in_process().await
    }

    /// Closes every session and socket (the Unix socket file is removed) and waits until
    /// everything has stopped.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "daemon task ended abnormally");
                Ok(())
            }
        }
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
