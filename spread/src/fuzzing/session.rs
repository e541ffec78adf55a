//! Stateful target: hostile clients driving a [`Daemon`]'s sessions (handshake, requests,
//! group state, delivery, timers, back-pressure).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};

use super::{records, Record};
use crate::daemon::{Daemon, DaemonConfig, Input, Output};
use crate::session::{Peer, SessionId};
use crate::time::Instant;
use crate::wire::client::{decode_frame, Direction};
use std::time::Duration;

/// Distinct session ids a script can name (`tag >> 3`).
const SESSION_IDS: u64 = 32;
/// Session quota of the fuzzed daemon: small, so `REJECT_QUOTA` is reachable.
const MAX_SESSIONS: usize = 4;
/// Slow-reader limit of the fuzzed daemon: small, so the kill is reachable.
const MAX_SESSION_MESSAGES: usize = 16;
/// Most outputs one input may produce (every member of every group gets at most one message
/// per request, and a script names at most [`SESSION_IDS`] sessions).
pub(super) const MAX_OUTPUTS_PER_INPUT: usize = 4096;
/// Longest handshake reply (auth list: length byte + at most 255 bytes).
const MAX_HANDSHAKE_REPLY: usize = 256;

/// What the harness knows about one connection.
#[derive(Debug, Default)]
pub(super) struct Conn {
    /// Sends not yet reported as written.
    unread: usize,
}

/// Hostile clients against one [`Daemon`] (named `localhost`, quota 4, slow-reader limit 16).
/// Input: a script of records `[tag u8][len u16 LE][payload]` (see [`super::records`]); the
/// session is `tag >> 3`, the kind `tag & 7`:
///
/// * 0: bytes from the client (the connection is opened first if it is not; TCP from
///   127.0.0.1);
/// * 1: the client read everything sent to it (reported as drained);
/// * 2: the client closed;
/// * 3: the connection opens, from TCP 10.0.0.`payload[0]` / the Unix socket / in-process by
///   `payload[1] % 3`;
/// * 4: time passes, `payload` = u16 LE milliseconds, then due timers fire;
/// * 5..7: bytes from the client, as 0.
///
/// Checks after every input: outputs only go to open connections and nothing follows a
/// `Close`; each `Send` is one whole daemon→client message (or a short handshake reply); the
/// number of outputs per input, of connections and of sessions stay bounded; `poll_timeout`
/// never lies in the past of a `handle_timeout` that just ran.
pub fn client_session(data: &[u8]) {
    run(data);
}

/// One record of a client script, decoded (the format of [`client_session`];
/// `node_stateful` reads the same records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClientStep {
    /// Client events, in order (a connect comes before the first bytes of a session).
    Inputs(Vec<Input>),
    /// Time passes (ms); then due timers fire.
    Advance(u64),
}

/// Decodes one record of a client script against the harness's view of the connections
/// (`conns`: opened on connect / first bytes, forgotten on close, read counts taken on drain).
pub(super) fn client_step(rec: Record<'_>, conns: &mut BTreeMap<SessionId, Conn>) -> ClientStep {
    let id = SessionId(u64::from(rec.tag >> 3) % SESSION_IDS);
    let input = match rec.tag & 7 {
        1 if rec.payload.first().is_some_and(|b| b & 1 == 1) => Input::Blocked { session: id },
        1 => {
            let messages = conns
                .get_mut(&id)
                .map_or(0, |c| std::mem::take(&mut c.unread));
            Input::Drained {
                session: id,
                messages,
            }
        }
        2 => {
            conns.remove(&id);
            Input::Closed { session: id }
        }
        3 => {
            let peer = match rec.payload.get(1).map_or(0, |b| b % 3) {
                0 => Peer::Tcp(IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    0,
                    rec.payload.first().copied().unwrap_or(1),
                ))),
                1 => Peer::Unix,
                _ => Peer::InProcess,
            };
            conns.entry(id).or_default();
            Input::Connected { session: id, peer }
        }
        4 => {
            return ClientStep::Advance(match rec.payload {
                [a, b, ..] => u64::from(u16::from_le_bytes([*a, *b])),
                [a] => u64::from(*a),
                [] => 1,
            })
        }
        _ => {
            let bytes = Input::Bytes {
                session: id,
                data: Bytes::copy_from_slice(rec.payload),
            };
            if let Entry::Vacant(e) = conns.entry(id) {
                e.insert(Conn::default());
                let connect = Input::Connected {
                    session: id,
                    peer: Peer::Tcp(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                };
                return ClientStep::Inputs(vec![connect, bytes]);
            }
            bytes
        }
    };
    ClientStep::Inputs(vec![input])
}

/// [`client_session`]; returns the daemon's counters at the end.
fn run(data: &[u8]) -> crate::daemon::Stats {
    let mut daemon = Daemon::new(daemon_config("localhost"));
    let mut conns: BTreeMap<SessionId, Conn> = BTreeMap::new();
    let mut now = Instant(1_000_000);
    for rec in records(data) {
        match client_step(rec, &mut conns) {
            ClientStep::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                daemon.handle_timeout(now);
                drain(&mut daemon, &mut conns);
                if let Some(t) = daemon.poll_timeout() {
                    assert!(t > now, "a due timer survived handle_timeout");
                }
                continue;
            }
            ClientStep::Inputs(inputs) => {
                for input in inputs {
                    daemon.handle(now, input);
                    drain(&mut daemon, &mut conns);
                }
            }
        }
        check_counts(&daemon, &conns);
    }
    daemon.stats().clone()
}

/// The fuzzed daemon's settings: quota [`MAX_SESSIONS`], slow-reader limit
/// [`MAX_SESSION_MESSAGES`].
pub(super) fn daemon_config(name: &str) -> DaemonConfig {
    let mut config = DaemonConfig::new(name, 0x1cc5_9726, 0x6b05_e7de);
    config.max_sessions = MAX_SESSIONS;
    config.max_session_messages = MAX_SESSION_MESSAGES;
    config
}

/// Connections and sessions stay within what the script opened and the quota.
pub(super) fn check_counts(daemon: &Daemon, conns: &BTreeMap<SessionId, Conn>) {
    assert!(daemon.connection_count() <= conns.len().max(1) + SESSION_IDS as usize);
    assert!(daemon.session_count() <= MAX_SESSIONS);
    assert!(daemon.session_count() <= daemon.connection_count());
    let stats = daemon.stats();
    assert!(stats.accepted <= stats.connections);
}

/// Drains the outputs of one input and checks them.
fn drain(daemon: &mut Daemon, conns: &mut BTreeMap<SessionId, Conn>) {
    for _ in 0..MAX_OUTPUTS_PER_INPUT {
        let Some(out) = daemon.poll_output() else {
            return;
        };
        check_output(out, conns);
    }
    panic!("more than {MAX_OUTPUTS_PER_INPUT} outputs for one input");
}

/// One client output: only to an open connection, nothing after its `Close`; a `Send` is one
/// whole message or a short handshake reply.
pub(super) fn check_output(out: Output, conns: &mut BTreeMap<SessionId, Conn>) {
    match out {
        Output::Send { session, data } => {
            let conn = conns
                .get_mut(&session)
                .unwrap_or_else(|| panic!("Send to {session:?}, which is not connected"));
            conn.unread += 1;
            check_send(&data);
        }
        Output::Close { session } => {
            assert!(
                conns.remove(&session).is_some(),
                "Close of {session:?}, which is not connected"
            );
        }
    }
}

/// A `Send` is one whole daemon→client message, or a short handshake reply.
pub(super) fn check_send(data: &Bytes) {
    let mut buf = BytesMut::from(&data[..]);
    match decode_frame(&mut buf, Direction::ToClient) {
        Ok(Some(_)) if buf.is_empty() => {}
        _ => assert!(
            data.len() <= MAX_HANDSHAKE_REPLY,
            "a {}-byte Send is neither a whole message nor a handshake reply",
            data.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A captured conversation replays as it did against 5.0.1: sessions are accepted and
    /// messages delivered (so the target reaches deep states from its seeds).
    #[test]
    fn captured_conversation_is_served() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/client_session/cap-two_clients_join_leave");
        let stats = run(&std::fs::read(path).unwrap());
        assert_eq!(stats.accepted, 2);
        assert!(stats.requests >= 3, "{stats:?}");
        assert!(stats.messages_out >= 4, "{stats:?}");
        assert_eq!(stats.protocol_violations(), 0);
    }
}
