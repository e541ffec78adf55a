//! Daemon addresses in libspread's notation.

use std::fmt;
use std::path::PathBuf;

use super::Error;

/// The default Spread port (and Unix socket `/tmp/4803`).
pub const DEFAULT_PORT: u16 = 4803;

/// Where a daemon listens for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// TCP to `host:port` (`"<port>@<host>"`; the host may be a name, IPv4 or IPv6 address).
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A Unix-domain socket (`"<port>"` → `/tmp/<port>`, or an absolute or relative path).
    Unix(PathBuf),
}

impl Address {
    /// Parses libspread's connect string: `""` → `/tmp/4803`; `"<port>"` → `/tmp/<port>`;
    /// `"<port>@<host>"` → TCP; anything containing `/` → that Unix socket path.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let illegal = || Error::IllegalSpread(s.to_owned());
        if s.is_empty() {
            return Ok(Self::Unix(unix_path(DEFAULT_PORT)));
        }
        if s.contains('/') && !s.contains('@') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        match s.split_once('@') {
            None => {
                let port = parse_port(s).ok_or_else(illegal)?;
                Ok(Self::Unix(unix_path(port)))
            }
            Some((port, host)) => {
                let port = parse_port(port).ok_or_else(illegal)?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(illegal());
                }
                Ok(Self::Tcp {
                    host: host.to_owned(),
                    port,
                })
            }
        }
    }
}

impl std::str::FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "{port}@[{host}]"),
            Self::Tcp { host, port } => write!(f, "{port}@{host}"),
            Self::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|p| *p != 0)
}

fn unix_path(port: u16) -> PathBuf {
    PathBuf::from(format!("/tmp/{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libspread_forms() {
        assert_eq!(
            Address::parse("").unwrap(),
            Address::Unix("/tmp/4803".into())
        );
        assert_eq!(
            Address::parse("4804").unwrap(),
            Address::Unix("/tmp/4804".into())
        );
        assert_eq!(
            Address::parse("4803@127.0.0.1").unwrap(),
            Address::Tcp {
                host: "127.0.0.1".into(),
                port: 4803
            }
        );
        assert_eq!(
            Address::parse("4803@[::1]").unwrap(),
            Address::Tcp {
                host: "::1".into(),
                port: 4803
            }
        );
        assert_eq!(
            Address::parse("/run/mbus/4803").unwrap(),
            Address::Unix("/run/mbus/4803".into())
        );
        assert_eq!(
            Address::parse("4803@[::1]").unwrap().to_string(),
            "4803@[::1]"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["x", "4803@", "@host", "99999@h", "0", "-1@h", "48 03"] {
            let e = Address::parse(bad).unwrap_err();
            assert_eq!(e.code(), -1, "{bad}");
        }
    }
}
