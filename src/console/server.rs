//! Control-socket server: accepts Unix-socket and TCP connections, frames requests (§7.4) and
//! hands each command line to the owner task over a channel. A malformed frame closes only
//! that connection; idle connections close after the configured timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::frame::{decode_request, encode_response};

/// The answer to one command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// Text output (may be empty).
    pub text: String,
    /// Close this connection after sending the reply.
    pub close: bool,
}

/// One command line and where to send its reply.
#[derive(Debug)]
pub struct Request {
    /// The command line (lossily decoded as UTF-8).
    pub line: String,
    /// Reply channel.
    pub reply: oneshot::Sender<Reply>,
}

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Idle connections are closed after this long (Control_Listener `Timeout`, default 60 s).
    pub idle: Duration,
    /// Most simultaneous connections per listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// A bound control listener.
#[derive(Debug)]
pub enum Listener {
    /// Unix-domain socket.
    Unix(UnixListener),
    /// TCP socket.
    Tcp(TcpListener),
}

/// Accepts connections until `shutdown` turns true. Every task started here holds a clone
/// of `alive`, so the owner can wait for the last reply to be written before exiting.
pub async fn serve(
    listener: Listener,
    requests: mpsc::Sender<Request>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok(conn) => {
                let req = requests.clone();
                let sd = shutdown.clone();
                let alive = alive.clone();
                tokio::spawn(async move {
                    let _alive = alive;
                    match conn {
                        Conn::Unix(s) => connection(s, req, limits, sd).await,
                        Conn::Tcp(s) => connection(s, req, limits, sd).await,
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("control accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    match l {
        Listener::Unix(u) => u.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(t) => t.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Conn::Tcp(s)
        }),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    requests: mpsc::Sender<Request>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    loop {
        loop {
            let decoded = match decode_request(&buf) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!("closing control connection: {e}");
                    return;
                }
            };
            let _ = buf.split_to(decoded.consumed);
            let line = String::from_utf8_lossy(&decoded.payload).into_owned();
            let (tx, rx) = oneshot::channel();
            if requests.send(Request { line, reply: tx }).await.is_err() {
                return;
            }
            let Ok(reply) = rx.await else { return };
            out.clear();
            encode_response(reply.text.as_bytes(), &mut out);
            if s.write_all(&out).await.is_err() || reply.close {
                let _ = s.shutdown().await;
                return;
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(limits.idle, s.read_buf(&mut buf)) => r,
            _ = shutdown.changed() => return,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}
