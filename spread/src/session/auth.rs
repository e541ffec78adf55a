//! Authentication methods a session may use at connect time (5.0.1 ships `NULL` and `IP`;
//! `PWORD` exists only in special builds and is not offered).

use std::net::{IpAddr, Ipv4Addr};

use super::Peer;

/// One authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// Always succeeds, exchanges no bytes.
    Null,
    /// Succeeds if the peer address matches an allow rule (`spread.access_ip`).
    Ip,
}

impl AuthMethod {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Ip => "IP",
        }
    }

    /// The method with wire name `name`.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"NULL" => Some(Self::Null),
            b"IP" => Some(Self::Ip),
            _ => None,
        }
    }
}

/// One line of `spread.access_ip`: an IPv4 network and prefix length. `unix` in that file is
/// the rule `0.0.0.0/32` (Unix-socket peers have address 0), `local` is `127.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRule {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl IpRule {
    /// The rule that admits Unix-socket (and in-process) peers.
    pub const UNIX: Self = Self {
        network: Ipv4Addr::UNSPECIFIED,
        prefix: 32,
    };

    /// True if `addr` is inside the network.
    pub fn matches(&self, addr: Ipv4Addr) -> bool {
        let prefix = u32::from(self.prefix.min(32));
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.network) & mask
    }
}

/// Which methods are enabled and required (config `AllowedAuthMethods` /
/// `RequiredAuthMethods`), and the IP allow rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Methods offered to clients, in order (default: `NULL` only).
    pub allowed: Vec<AuthMethod>,
    /// Methods run even if the client did not choose them.
    pub required: Vec<AuthMethod>,
    /// Allow rules for the `IP` method.
    pub ip_rules: Vec<IpRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allowed: vec![AuthMethod::Null],
            required: Vec::new(),
            ip_rules: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// True if `m` is enabled.
    pub fn allows(&self, m: AuthMethod) -> bool {
        self.allowed.contains(&m)
    }

    /// Runs method `m` for a peer.
    pub fn run(&self, m: AuthMethod, peer: Peer) -> bool {
        match m {
            AuthMethod::Null => true,
            AuthMethod::Ip => {
                let addr = match peer {
                    Peer::Tcp(IpAddr::V4(a)) => a,
                    Peer::Tcp(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                        Some(a) => a,
                        None => return false,
                    },
                    Peer::Unix | Peer::InProcess => Ipv4Addr::UNSPECIFIED,
                };
                self.ip_rules.iter().any(|r| r.matches(addr))
            }
        }
    }

    /// Decides a 3.16+ client's choice (method names from the 90-byte reply): every named
    /// method must be enabled, at least one must be named, required methods are added, and
    /// all must succeed.
    pub fn decide(&self, chosen: &[Vec<u8>], peer: Peer) -> bool {
        let mut methods = Vec::new();
        for name in chosen {
            match AuthMethod::from_name(name) {
                Some(m) if self.allows(m) => methods.push(m),
                _ => return false,
            }
        }
        if methods.is_empty() {
            return false;
        }
        for &m in &self.required {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        methods.iter().all(|&m| self.run(m, peer))
    }

    /// Decides a pre-3.16 client (no exchange): `IP` if enabled, else `NULL` if enabled.
    pub fn decide_old_library(&self, peer: Peer) -> bool {
        if self.allows(AuthMethod::Ip) {
            self.run(AuthMethod::Ip, peer)
        } else {
            self.allows(AuthMethod::Null)
        }
    }
}

/// Parses `spread.access_ip` as 5.0.1 does: `#` comments, `unix` (Unix-socket peers),
/// `local` (127.0.0.0/8), and `a.b.c.d` or `a.b.c.d/prefix` lines. Lines that do not parse are
/// returned as errors (1-based line numbers); 5.0.1 stops at an incomplete line and exits on a
/// malformed one.
pub fn parse_access_ip(text: &str) -> Result<Vec<IpRule>, usize> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("unix") {
            rules.push(IpRule::UNIX);
            continue;
        }
        if line.starts_with("local") {
            rules.push(IpRule {
                network: Ipv4Addr::new(127, 0, 0, 0),
                prefix: 8,
            });
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or_default();
        let (addr, prefix) = match word.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().ok().filter(|&p| p <= 32)),
            None => (word, Some(32)),
        };
        match (addr.parse::<Ipv4Addr>(), prefix) {
            (Ok(network), Some(prefix)) => rules.push(IpRule { network, prefix }),
            _ => return Err(n + 1),
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_ip_file() {
        let rules = parse_access_ip("# c\nunix\nlocal\n10.1.0.0/16\n192.168.1.7\n").unwrap();
        assert_eq!(rules.len(), 4);
        assert!(rules[2].matches(Ipv4Addr::new(10, 1, 200, 3)));
        assert!(!rules[2].matches(Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(rules[3].prefix, 32);
        assert_eq!(parse_access_ip("ok\n"), Err(1));
        assert_eq!(parse_access_ip("1.2.3.4/40"), Err(1));
    }

    #[test]
    fn null_ip_and_required() {
        let local = Peer::Tcp(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        let other = Peer::Tcp(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        let d = AuthConfig::default();
        assert!(d.decide(&[b"NULL".to_vec()], local));
        assert!(!d.decide(&[b"BOGUS".to_vec()], local));
        assert!(!d.decide(&[], local));
        assert!(!d.decide(&[b"IP".to_vec()], local), "IP not enabled");
        assert!(d.decide_old_library(other));
        let ip = AuthConfig {
            allowed: vec![AuthMethod::Null, AuthMethod::Ip],
            required: vec![AuthMethod::Ip],
            ip_rules: vec![
                IpRule {
                    network: Ipv4Addr::new(127, 0, 0, 0),
                    prefix: 8,
                },
                IpRule::UNIX,
            ],
        };
        assert!(ip.decide(&[b"NULL".to_vec()], local));
        assert!(!ip.decide(&[b"NULL".to_vec()], other), "required IP fails");
        assert!(ip.decide(&[b"IP".to_vec()], Peer::Unix));
        assert!(!ip.decide_old_library(other));
        let none = AuthConfig {
            allowed: vec![],
            ..AuthConfig::default()
        };
        assert!(!none.decide_old_library(local));
        assert!(IpRule {
            network: Ipv4Addr::UNSPECIFIED,
            prefix: 0
        }
        .matches(Ipv4Addr::new(1, 2, 3, 4)));
    }
}
