//! Authentication methods a session may use at connect time: `NULL` and `IP` as 5.0.1 ships
//! them, and `PWORD` as 5.0.1 defines it for builds with it (its `auth-pword` module): after
//! the 90-byte choice the client sends its user name (32 bytes, NUL-padded) and password (8
//! bytes, NUL-padded), and the daemon answers one byte, 1 (accepted) or 0 (refused), checking
//! them against `spread.access_pword` (`user:hash` lines). 5.0.1 stores DES `crypt(3)`
//! hashes; mbus accepts SHA-crypt (`$6$…` or `$5$…`, e.g. `openssl passwd -6`) and refuses
//! DES entries (see docs/security.md).

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
    /// User name and password checked against `spread.access_pword`.
    Pword,
}

impl AuthMethod {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Ip => "IP",
            Self::Pword => "PWORD",
        }
    }

    /// The method with wire name `name`.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"NULL" => Some(Self::Null),
            b"IP" => Some(Self::Ip),
            b"PWORD" => Some(Self::Pword),
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

/// Bytes of the user name a `PWORD` client sends (NUL-padded).
pub const PWORD_USER_LEN: usize = 32;
/// Bytes of the password a `PWORD` client sends (NUL-padded; longer passwords are cut).
pub const PWORD_PASSWORD_LEN: usize = 8;
/// The daemon's answer to a `PWORD` exchange: accepted.
pub const PWORD_OK: u8 = 1;
/// The daemon's answer to a `PWORD` exchange: refused.
pub const PWORD_REFUSED: u8 = 0;

/// One line of `spread.access_pword`.
#[derive(Clone, PartialEq, Eq)]
pub struct PwordUser {
    /// User name (at most [`PWORD_USER_LEN`] bytes).
    pub name: Vec<u8>,
    /// Its password hash (SHA-crypt `$6$…` / `$5$…`).
    pub hash: String,
}

impl std::fmt::Debug for PwordUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PwordUser({})", String::from_utf8_lossy(&self.name))
    }
}

/// Why a line of `spread.access_pword` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PwordFileError {
    /// Not `user:hash`.
    #[error("line {0}: not user:hash")]
    Syntax(usize),
    /// A user name longer than 32 bytes.
    #[error("line {0}: user name longer than 32 bytes")]
    LongName(usize),
    /// A 5.0.1 DES `crypt(3)` hash (or another format mbus does not check).
    #[error(
        "line {0}: not a SHA-crypt hash ($6$… or $5$…; 5.0.1's DES crypt is not accepted: \
         re-hash with `openssl passwd -6`)"
    )]
    Hash(usize),
}

/// Parses `spread.access_pword`: `user:hash` lines, `#` comments and blank lines ignored.
pub fn parse_access_pword(text: &str) -> Result<Vec<PwordUser>, PwordFileError> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, hash) = line.split_once(':').ok_or(PwordFileError::Syntax(n + 1))?;
        let (name, hash) = (name.trim(), hash.trim());
        if name.is_empty() || hash.is_empty() {
            return Err(PwordFileError::Syntax(n + 1));
        }
        if name.len() > PWORD_USER_LEN {
            return Err(PwordFileError::LongName(n + 1));
        }
        if !(hash.starts_with("$6$") || hash.starts_with("$5$")) {
            return Err(PwordFileError::Hash(n + 1));
        }
        users.push(PwordUser {
            name: name.as_bytes().to_vec(),
            hash: hash.to_owned(),
        });
    }
    Ok(users)
}

/// The bytes of a NUL-padded field up to its first NUL.
fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or_default()
}

/// Which methods are enabled and required (config `AllowedAuthMethods` /
/// `RequiredAuthMethods`), the IP allow rules and the `PWORD` users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Methods offered to clients, in order (default: `NULL` only).
    pub allowed: Vec<AuthMethod>,
    /// Methods run even if the client did not choose them.
    pub required: Vec<AuthMethod>,
    /// Allow rules for the `IP` method.
    pub ip_rules: Vec<IpRule>,
    /// Users of the `PWORD` method (`spread.access_pword`).
    pub pword_users: Vec<PwordUser>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allowed: vec![AuthMethod::Null],
            required: Vec::new(),
            ip_rules: Vec::new(),
            pword_users: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// True if `m` is enabled.
    pub fn allows(&self, m: AuthMethod) -> bool {
        self.allowed.contains(&m)
    }

    /// True if the user name and password fields of a `PWORD` exchange (NUL-padded, as the
    /// client sent them) name a user of `spread.access_pword` whose hash the password matches.
    pub fn check_pword(&self, user: &[u8], password: &[u8]) -> bool {
        let (user, password) = (until_nul(user), until_nul(password));
        let Ok(password) = std::str::from_utf8(password) else {
            return false;
        };
        let Some(u) = self.pword_users.iter().find(|u| u.name == user) else {
            return false;
        };
        if u.hash.starts_with("$6$") {
            sha_crypt::sha512_check(password, &u.hash).is_ok()
        } else {
            sha_crypt::sha256_check(password, &u.hash).is_ok()
        }
    }

    /// Runs method `m` for a peer (`PWORD` needs the exchange: [`AuthConfig::check_pword`];
    /// here it fails).
    pub fn run(&self, m: AuthMethod, peer: Peer) -> bool {
        match m {
            AuthMethod::Pword => false,
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

    /// The methods to run for a 3.16+ client's choice (method names from the 90-byte reply),
    /// in order: every named method must be enabled and at least one named (else `None`);
    /// required methods are added after them.
    pub fn methods(&self, chosen: &[Vec<u8>]) -> Option<Vec<AuthMethod>> {
        let mut methods = Vec::new();
        for name in chosen {
            match AuthMethod::from_name(name) {
                Some(m) if self.allows(m) => methods.push(m),
                _ => return None,
            }
        }
        if methods.is_empty() {
            return None;
        }
        for &m in &self.required {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        Some(methods)
    }

    /// Decides a 3.16+ client's choice without a `PWORD` exchange: [`AuthConfig::methods`],
    /// all of which must succeed.
    pub fn decide(&self, chosen: &[Vec<u8>], peer: Peer) -> bool {
        self.methods(chosen)
            .is_some_and(|ms| ms.iter().all(|&m| self.run(m, peer)))
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
            ..AuthConfig::default()
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

#[cfg(test)]
mod pword_tests {
    use super::*;

    /// `openssl passwd -6 -salt saltsalt secret`.
    const SECRET: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    fn field(s: &[u8], len: usize) -> Vec<u8> {
        let mut f = s.to_vec();
        f.resize(len, 0);
        f
    }

    #[test]
    fn access_pword_lines_and_checks() {
        let text = format!("# users\nalice:{SECRET}\n\nbob : {SECRET}\n");
        let users = parse_access_pword(&text).unwrap();
        assert_eq!(users.len(), 2);
        let cfg = AuthConfig {
            allowed: vec![AuthMethod::Pword],
            pword_users: users,
            ..AuthConfig::default()
        };
        let u = |n: &[u8]| field(n, PWORD_USER_LEN);
        let p = |n: &[u8]| field(n, PWORD_PASSWORD_LEN);
        assert!(cfg.check_pword(&u(b"alice"), &p(b"secret")));
        assert!(cfg.check_pword(&u(b"bob"), &p(b"secret")));
        assert!(!cfg.check_pword(&u(b"alice"), &p(b"secreT")));
        assert!(!cfg.check_pword(&u(b"carol"), &p(b"secret")));
        assert!(!cfg.check_pword(&u(b"alice"), &[0xff; 8]));
        assert_eq!(
            cfg.methods(&[b"PWORD".to_vec()]),
            Some(vec![AuthMethod::Pword])
        );
        assert!(
            !cfg.decide(&[b"PWORD".to_vec()], Peer::Unix),
            "needs the exchange"
        );
    }

    #[test]
    fn access_pword_refuses_what_it_cannot_check() {
        assert_eq!(
            parse_access_pword("alice:abJnggxhB/yWI\n"),
            Err(PwordFileError::Hash(1)),
            "5.0.1 DES crypt"
        );
        assert_eq!(
            parse_access_pword("alice\n"),
            Err(PwordFileError::Syntax(1))
        );
        assert_eq!(
            parse_access_pword(&format!("{}:{SECRET}", "a".repeat(33))),
            Err(PwordFileError::LongName(1))
        );
    }
}
