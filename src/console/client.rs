//! Console client side: endpoint syntax of `ec_console` (§7.1) and a framed connection.

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::frame::{decode_response, encode_request};

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/tmp/2025";

/// Where a console connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix-domain socket path.
    Unix(String),
    /// `host:port` (IPv6 hosts in brackets).
    Tcp(String),
}

impl Endpoint {
    /// Parses the `remoteaddr` argument of `ec_console`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(Self::Unix(DEFAULT_SOCKET.into()));
        }
        if s.starts_with("ssh://") || s.contains('@') {
            return Err(format!(
                "{s}: authenticated and SSH-tunnelled endpoints are not supported"
            ));
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
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connected console session.
pub struct ConsoleClient {
    stream: Box<dyn Stream>,
    buf: BytesMut,
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
            Endpoint::Tcp(a) => {
                Box::new(tokio::time::timeout(timeout, TcpStream::connect(a.as_str())).await??)
            }
        };
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends one command line and returns its reply text.
    pub async fn command(&mut self, line: &str) -> std::io::Result<String> {
        let mut out = BytesMut::new();
        encode_request(line.as_bytes(), &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stream.write_all(&out).await?;
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
        assert!(Endpoint::parse("admin@localhost:2025").is_err());
        assert!(Endpoint::parse("localhost").is_err());
    }
}
