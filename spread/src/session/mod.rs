//! Per-client sessions: the connect handshake (hello, authentication, accept or one reject
//! byte), then a stream of requests ([`request`]).
//!
//! A session's life, as 5.0.1 lives it:
//!
//! 1. **Hello** (at most [`HELLO_TIMEOUT`] after the connection; silent close otherwise):
//!    version bytes (2 or 3), flags, name length, name. Judged as soon as its fixed part is in
//!    ([`crate::wire::client::decode_hello`]). The daemon then checks the quota, invents a name
//!    for an empty one, and refuses a name in use.
//! 2. **Auth** (libraries ≥ 3.16 only): the daemon sends the enabled methods, the client
//!    answers 90 bytes. Partial answers wait at most [`AUTH_TIMEOUT`] (5.0.1 would refuse a
//!    short read at once; we tolerate a split answer but still refuse a stalled one).
//! 3. **Open**: requests until KILL, a violation, a closed socket or a slow-reader kill.
//!
//! The [`crate::Daemon`] drives sessions and owns the cross-session rules (names, quota).

pub mod auth;
pub mod backlog;
pub mod request;

use std::net::IpAddr;
use std::time::Duration;

use bytes::BytesMut;

use crate::time::Instant;
use crate::wire::client::{GroupName, Version};

pub use auth::{AuthConfig, AuthMethod, IpRule};
pub use backlog::{Backlog, Overflow, LARGEST_MESSAGE};
pub use request::{next_request, Request, Violation};

/// How long a new connection may take to send its hello (5.0.1: 1 s).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a partial 90-byte authentication answer may stay incomplete.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Identifies one client connection; chosen by the caller (the I/O shell), unique while the
/// connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// Where a connection comes from (for the `IP` authentication method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// TCP from this address.
    Tcp(IpAddr),
    /// The Unix-domain socket.
    Unix,
    /// A client in the same process (no socket).
    InProcess,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the hello until the deadline.
    Hello {
        /// Silent close at this time.
        deadline: Instant,
    },
    /// Name reserved, auth list sent, waiting for the 90-byte answer.
    Auth {
        /// Set once a partial answer is buffered: refuse at this time.
        deadline: Option<Instant>,
    },
    /// `PWORD` chosen: waiting for the user name and password (40 bytes).
    Pword {
        /// Refuse at this time.
        deadline: Instant,
        /// `IP` runs after `PWORD` (it came later in the client's choice or is required).
        then_ip: bool,
    },
    /// Accepted.
    Open,
}

/// One client connection's state.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub id: SessionId,
    /// Its origin.
    pub peer: Peer,
    /// Where it is.
    pub phase: Phase,
    /// Bytes received and not yet consumed.
    pub inbuf: BytesMut,
    /// Library version from the hello.
    pub version: Version,
    /// Wants membership messages (flags bit 0, as 5.0.1 reads it).
    pub membership: bool,
    /// Priority nibble (stored, no effect, as in 5.0.1).
    pub priority: u8,
    /// The private group `#name#daemon` (set after the hello).
    pub private_group: GroupName,
    /// Messages handed to the shell and not yet reported written (the slow-reader rule).
    pub backlog: Backlog,
    /// Stamp of the last data message delivered to it (deduplicates multi-group sends).
    pub last_delivery: u64,
}

impl Session {
    /// A session that just connected at `now`.
    pub fn new(id: SessionId, peer: Peer, now: Instant) -> Self {
        Self {
            id,
            peer,
            phase: Phase::Hello {
                deadline: now + HELLO_TIMEOUT,
            },
            inbuf: BytesMut::new(),
            version: Version::V5_0_1,
            membership: false,
            priority: 0,
            private_group: GroupName::default(),
            backlog: Backlog::default(),
            last_delivery: 0,
        }
    }

    /// The deadline of its armed timer, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Hello { deadline } => Some(deadline),
            Phase::Auth { deadline } => deadline,
            Phase::Pword { deadline, .. } => Some(deadline),
            Phase::Open => None,
        }
    }

    /// True once accepted.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }
}

/// The private group name of session `name` on daemon `daemon`: `#name#daemon`, cut to 31
/// bytes as 5.0.1 does.
pub fn private_group_name(name: &[u8], daemon: &[u8]) -> GroupName {
    let mut text = Vec::with_capacity(2 + name.len() + daemon.len());
    text.push(b'#');
    text.extend_from_slice(name);
    text.push(b'#');
    text.extend_from_slice(daemon);
    text.truncate(31);
    GroupName::new(&text)
}

/// A name for a session that asked for none: `r<n>-<conn>` cut to 9 characters, as 5.0.1
/// (`n` random below 9999, `conn` the connection number standing in for 5.0.1's socket fd).
pub fn generated_name(random: u64, conn: u64) -> Vec<u8> {
    let mut s = format!("r{}-{}", random % 9999, conn).into_bytes();
    s.truncate(9);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            private_group_name(b"alice", b"localhost"),
            GroupName::new(b"#alice#localhost")
        );
        let long = private_group_name(b"abcdefghij", b"a_very_long_daemon_nm");
        assert_eq!(long.text().len(), 31);
        assert_eq!(generated_name(592, 9), b"r592-9".to_vec());
        assert_eq!(generated_name(9998, 123_456), b"r9998-123".to_vec());
        assert!(generated_name(u64::MAX, u64::MAX).len() <= 9);
    }
}
