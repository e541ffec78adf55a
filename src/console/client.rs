//! Console client side: endpoint syntax of `ec_console` (§7.1) and a framed connection that
//! logs in when the server asks (`Authorization required for console session`, §7.2).

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::access::AUTH_REQUIRED;
use super::frame::{decode_response, encode_auth, encode_request};

/// The text `ec_console --man` prints.
pub const MANUAL: &str = "\
EC_CONSOLE(1)

NAME
    ec_console - console of eccmgr and the mbus node agents

SYNOPSIS
    ec_console [remoteaddr [command ...]] [--man]

REMOTEADDR
    (none)               the Unix socket /tmp/2025
    /path/to/socket      a Unix socket; the server identifies you by your OS user
    NNNN                 the Unix socket /tmp/NNNN
    host:port, [v6]:port TCP
    user@host:port       TCP, logging in as user: the server answers
                         'Authorization required for console session' and
                         ec_console asks 'Password:' without echo
                         ($EC_CONSOLE_PASSWORD is used when set, for scripts)
    ssh://...            not supported (refused with one line)

MODES
    Interactive (a terminal, no command words): the server's version banner, then the
    prompt 'HH:MM:SS remoteaddr> ', line editing, history in ~/.ec_console_history and
    tab completion. 'quit', 'exit' or end of file leave; '\\pager' toggles sending long
    output through $PAGER (default less).
    Batch (command words, or standard input not a terminal): each command's output is
    printed; exit status 0, 1 if the connection or the login fails, 2 if a command was
    refused.

COMMANDS
    'help' on eccmgr or on a node lists them; 'xml <command>' answers in XML.
";

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/tmp/2025";

/// Where a console connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix-domain socket path.
    Unix(String),
    /// `host:port` (IPv6 hosts in brackets).
    Tcp(String),
    /// `user@host:port`: TCP, logging in as `user` (the password is asked for).
    Login {
        /// User name.
        user: String,
        /// `host:port`.
        addr: String,
    },
}

impl Endpoint {
    /// Parses the `remoteaddr` argument of `ec_console`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(Self::Unix(DEFAULT_SOCKET.into()));
        }
        if s.starts_with("ssh://") {
            return Err(format!("{s}: SSH-tunnelled endpoints are not supported"));
        }
        if let Some((user, addr)) = s.split_once('@') {
            if !super::auth::valid_user(user) {
                return Err(format!("{s}: bad user name before '@'"));
            }
            return match Self::parse(addr) {
                Ok(Self::Tcp(addr)) => Ok(Self::Login {
                    user: user.into(),
                    addr,
                }),
                _ => Err(format!(
                    "{s}: expected user@host:port (Unix sockets identify the OS user)"
                )),
            };
        }
        if s.starts_with('/') {
            return Ok(Self::Unix(s.into()));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::Unix(format!("/tmp/{s}")));
        }
        let port = if s.starts_with('[') {
            s.split_once("]:").map(|(_, p)| p)
        } else {
            s.rsplit_once(':').map(|(_, p)| p)
        };
        match port.map(str::parse::<u16>) {
            Some(Ok(_)) => Ok(Self::Tcp(s.into())),
            _ => Err(format!(
                "{s}: expected a socket path, host:port or [ipv6]:port"
            )),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) | Self::Tcp(p) => f.write_str(p),
            Self::Login { user, addr } => write!(f, "{user}@{addr}"),
        }
    }
}

/// The default password source: `$EC_CONSOLE_PASSWORD` if set (batch use), else prints
/// `Authorization required for console session` and reads `Password:` from the terminal
/// without echo. `None` when neither is available.
pub fn prompt_password(user: &str) -> Option<String> {
    if let Ok(p) = std::env::var("EC_CONSOLE_PASSWORD") {
        return Some(p);
    }
    eprintln!("{AUTH_REQUIRED}");
    tracing::debug!("asking for the password of {user}");
    rpassword::prompt_password("Password: ").ok()
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Supplies the password for a user when a server asks for a login.
pub type PasswordSource = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// A connected console session.
pub struct ConsoleClient {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    user: Option<String>,
    password: Option<PasswordSource>,
    logged_in: bool,
}

impl fmt::Debug for ConsoleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleClient").finish_non_exhaustive()
    }
}

impl ConsoleClient {
    /// Connects (bounded by `timeout`).
    pub async fn connect(ep: &Endpoint, timeout: Duration) -> std::io::Result<Self> {
        let stream: Box<dyn Stream> = match ep {
            Endpoint::Unix(p) => {
                Box::new(tokio::time::timeout(timeout, UnixStream::connect(p)).await??)
            }
            Endpoint::Tcp(a) | Endpoint::Login { addr: a, .. } => {
                Box::new(tokio::time::timeout(timeout, TcpStream::connect(a.as_str())).await??)
            }
        };
        let user = match ep {
            Endpoint::Login { user, .. } => Some(user.clone()),
            _ => None,
        };
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(4096),
            user,
            password: None,
            logged_in: false,
        })
    }

    /// Replaces the password prompt (default: [`prompt_password`]).
    pub fn set_password_source(&mut self, source: PasswordSource) {
        self.password = Some(source);
    }

    /// Logs in as `user`; returns the server's reply, or `PermissionDenied` carrying it.
    pub async fn login(&mut self, user: &str, password: &str) -> std::io::Result<String> {
        let mut out = BytesMut::new();
        encode_auth(user, password, &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stream.write_all(&out).await?;
        let reply = self.read_reply().await?;
        if reply.starts_with("Authenticated as ") {
            self.logged_in = true;
            Ok(reply)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                reply,
            ))
        }
    }

    /// Sends one command line and returns its reply text. When the server answers
    /// [`AUTH_REQUIRED`], asks for the password (once per session), logs in and re-sends.
    pub async fn command(&mut self, line: &str) -> std::io::Result<String> {
        let reply = self.command_once(line).await?;
        if reply != AUTH_REQUIRED || self.logged_in {
            return Ok(reply);
        }
        let user = self
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into());
        let password = match self.password.as_mut() {
            Some(source) => source(&user),
            None => prompt_password(&user),
        };
        let Some(password) = password else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                AUTH_REQUIRED,
            ));
        };
        self.login(&user, &password).await?;
        self.command_once(line).await
    }

    async fn command_once(&mut self, line: &str) -> std::io::Result<String> {
        let mut out = BytesMut::new();
        encode_request(line.as_bytes(), &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stream.write_all(&out).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> std::io::Result<String> {
        loop {
            match decode_response(&self.buf) {
                Ok(Some(d)) => {
                    let _ = self.buf.split_to(d.consumed);
                    return Ok(String::from_utf8_lossy(&d.payload).into_owned());
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e.to_string(),
                    ))
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_names_every_endpoint_form() {
        for form in [
            "user@host:port",
            "ssh://",
            "/tmp/2025",
            "--man",
            "\\pager",
            "exit",
        ] {
            assert!(MANUAL.contains(form), "{form}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(Endpoint::parse(""), Ok(Endpoint::Unix("/tmp/2025".into())));
        assert_eq!(
            Endpoint::parse("/tmp/2030"),
            Ok(Endpoint::Unix("/tmp/2030".into()))
        );
        assert_eq!(
            Endpoint::parse("2030"),
            Ok(Endpoint::Unix("/tmp/2030".into()))
        );
        assert_eq!(
            Endpoint::parse("localhost:2025"),
            Ok(Endpoint::Tcp("localhost:2025".into()))
        );
        assert_eq!(
            Endpoint::parse("[fd82::1]:2424"),
            Ok(Endpoint::Tcp("[fd82::1]:2424".into()))
        );
        assert_eq!(
            Endpoint::parse("admin@localhost:2025"),
            Ok(Endpoint::Login {
                user: "admin".into(),
                addr: "localhost:2025".into()
            })
        );
        assert_eq!(
            Endpoint::parse("john@127.0.0.1:2025").unwrap().to_string(),
            "john@127.0.0.1:2025"
        );
        assert!(Endpoint::parse("admin@/tmp/2025").is_err());
        assert!(Endpoint::parse("@h:1").is_err());
        assert_eq!(
            Endpoint::parse("ssh://u@h/ecuser@h:2025"),
            Err("ssh://u@h/ecuser@h:2025: SSH-tunnelled endpoints are not supported".into())
        );
        assert!(Endpoint::parse("localhost").is_err());
    }
}
