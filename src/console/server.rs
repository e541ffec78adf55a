//! Control-socket server: accepts Unix-socket and TCP connections, frames requests (§7.4),
//! identifies the peer (Unix: SO_PEERCRED; TCP: a login when the listener demands one),
//! checks each command against the roles, and hands admitted lines to the owner task. A malformed frame closes only
//! that connection; idle connections close after the configured timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::access::{
    Access, ListenerRules, AUTH_FAILED, AUTH_REQUIRED, FIRST_DELAY_MS, NOT_AUTHORIZED,
};
use super::frame::{decode_client, encode_response, ClientFrame};

/// The answer to one command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// Text output (may be empty).
    pub text: String,
    /// Close this connection after sending the reply.
    pub close: bool,
}

/// Who is on the other end of a control connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// Unique per connection in this process (keys per-session state such as transactions).
    pub id: u64,
    /// The authenticated user: the peer's OS user on a Unix socket, the login name over TCP;
    /// `None` before a login or when authentication is off.
    pub user: Option<String>,
    /// The user's roles from the password store.
    pub roles: Vec<String>,
    /// The peer, as shown in accounting lines (`uid 1000`, `127.0.0.1:40312`).
    pub peer: String,
}

/// One command line and where to send its reply.
#[derive(Debug)]
pub struct Request {
    /// The session the line came from.
    pub session: Session,
    /// The command line (lossily decoded as UTF-8).
    pub line: String,
    /// Reply channel.
    pub reply: oneshot::Sender<Reply>,
}

/// What a connection task tells the owner task.
#[derive(Debug)]
pub enum Event {
    /// A command line to run.
    Line(Request),
    /// The connection with this session id closed (drop its per-session state).
    Closed(u64),
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

/// Accepts connections until `shutdown` turns true; `access` decides who may log in and run
/// what (see [`super::access`]). Every task started here holds a clone
/// of `alive`, so the owner can wait for the last reply to be written before exiting.
pub async fn serve(
    listener: Listener,
    requests: mpsc::Sender<Event>,
    limits: Limits,
    access: AccessHandle,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let current = access.read().clone();
    let rules = match &listener {
        Listener::Unix(u) => {
            let path = u
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default();
            current.for_unix(&path)
        }
        Listener::Tcp(t) => match t.local_addr() {
            Ok(a) => current.for_tcp(a),
            Err(_) => ListenerRules {
                password: true,
                authorize: true,
            },
        },
    };
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
                let access = access.clone();
                tokio::spawn(async move {
                    let _alive = alive;
                    let mut st = SessionState::new(rules, access);
                    match conn {
                        Conn::Unix(s) => {
                            st.identify_unix(&s);
                            connection(s, req.clone(), limits, sd, &mut st).await;
                        }
                        Conn::Tcp(s, peer) => {
                            st.ip = Some(peer.ip());
                            st.session.peer = peer.to_string();
                            connection(s, req.clone(), limits, sd, &mut st).await;
                        }
                    }
                    let _ = req.send(Event::Closed(st.session.id)).await;
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
    Tcp(tokio::net::TcpStream, SocketAddr),
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    match l {
        Listener::Unix(u) => u.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(t) => t.accept().await.map(|(s, peer)| {
            let _ = s.set_nodelay(true);
            Conn::Tcp(s, peer)
        }),
    }
}

/// The access rules shared by all listeners of a process; the owner replaces the `Arc` inside
/// when the configuration changes (the per-listener password requirement is fixed when the
/// listener starts).
pub type AccessHandle = Arc<parking_lot::RwLock<Arc<Access>>>;

/// Most failed logins on one connection before it is closed.
pub const MAX_LOGINS_PER_CONNECTION: u32 = 3;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Per-connection authentication state.
struct SessionState {
    session: Session,
    rules: ListenerRules,
    handle: AccessHandle,
    /// Logged in (or needs no login).
    authenticated: bool,
    ip: Option<IpAddr>,
    failures: u32,
}

impl SessionState {
    fn new(rules: ListenerRules, handle: AccessHandle) -> Self {
        Self {
            session: Session {
                id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                ..Session::default()
            },
            authenticated: !rules.password,
            rules,
            handle,
            ip: None,
            failures: 0,
        }
    }

    /// The access rules in force now (a configuration change replaces them).
    fn access(&self) -> Arc<Access> {
        self.handle.read().clone()
    }

    /// A Unix-socket peer is its OS user (SO_PEERCRED); roles come from the store.
    fn identify_unix(&mut self, s: &tokio::net::UnixStream) {
        match s.peer_cred() {
            Ok(c) => {
                let uid = c.uid();
                let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map_or_else(|| format!("uid{uid}"), |u| u.name);
                self.session.roles = self.access().store.roles(&name);
                self.session.peer = format!("uid {uid}");
                self.session.user = Some(name);
            }
            Err(e) => {
                tracing::warn!("no peer credentials on a control connection: {e}");
                self.session.peer = "unix".into();
            }
        }
        self.authenticated = true;
    }

    fn who(&self) -> String {
        format!(
            "session={} user={} peer={}",
            self.session.id,
            self.session.user.as_deref().unwrap_or("-"),
            self.session.peer
        )
    }

    /// Decides on a command line: `Err(reply)` if it must not run. Accounts every attempt.
    fn admit(&self, line: &str) -> Result<(), &'static str> {
        let shown: String = line.trim().chars().take(200).collect::<String>();
        let verdict = if !self.authenticated {
            Err(AUTH_REQUIRED)
        } else if self.rules.authorize && !self.access().policy.allows(&self.session.roles, line) {
            Err(NOT_AUTHORIZED)
        } else {
            Ok(())
        };
        let result = match verdict {
            Ok(()) => "allowed",
            Err(AUTH_REQUIRED) => "refused (not logged in)",
            Err(_) => "refused (not authorized)",
        };
        self.access()
            .account(&format!("acct {} command={shown:?} {result}", self.who()));
        verdict
    }

    /// Handles a login; returns the reply and whether to close the connection.
    async fn login(&mut self, user: String, password: String) -> (String, bool) {
        let now_ms = epoch_ms();
        let ip = self.ip;
        if let Some(ip) = ip {
            if let Err(wait) = self.access().limiter.lock().check(ip, now_ms) {
                self.access().account(&format!(
                    "acct {} login user={user} refused (locked out)",
                    self.who()
                ));
                return (
                    format!(
                        "Too many failed logins from {ip}; try again in {} s.",
                        wait.div_ceil(1000)
                    ),
                    true,
                );
            }
        }
        let access = self.access();
        let u = user.clone();
        let roles = tokio::task::spawn_blocking(move || access.store.verify(&u, &password))
            .await
            .ok()
            .flatten();
        match roles {
            Some(roles) => {
                if let Some(ip) = ip {
                    self.access().limiter.lock().success(ip);
                }
                self.session.user = Some(user.clone());
                self.session.roles = roles;
                self.authenticated = true;
                self.access()
                    .account(&format!("acct {} login ok", self.who()));
                (format!("Authenticated as {user}."), false)
            }
            None => {
                self.failures += 1;
                let delay = ip.map_or(FIRST_DELAY_MS, |ip| {
                    self.access().limiter.lock().failure(ip, now_ms)
                });
                self.access()
                    .account(&format!("acct {} login user={user} failed", self.who()));
                tokio::time::sleep(Duration::from_millis(delay)).await;
                (
                    AUTH_FAILED.to_string(),
                    self.failures >= MAX_LOGINS_PER_CONNECTION,
                )
            }
        }
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    requests: mpsc::Sender<Event>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    st: &mut SessionState,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    loop {
        loop {
            let (frame, used) = match decode_client(&buf) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!("closing control connection: {e}");
                    return;
                }
            };
            let _ = buf.split_to(used);
            let reply = match frame {
                ClientFrame::Auth { user, password } => {
                    let (text, close) = st.login(user, password).await;
                    Reply { text, close }
                }
                ClientFrame::Command(payload) => {
                    let line = String::from_utf8_lossy(&payload).into_owned();
                    match st.admit(&line) {
                        Err(text) => Reply {
                            text: text.into(),
                            close: false,
                        },
                        Ok(()) => {
                            let (tx, rx) = oneshot::channel();
                            let req = Request {
                                session: st.session.clone(),
                                line,
                                reply: tx,
                            };
                            if requests.send(Event::Line(req)).await.is_err() {
                                return;
                            }
                            let Ok(reply) = rx.await else { return };
                            reply
                        }
                    }
                }
            };
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
