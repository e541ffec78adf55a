//! Stateful target: hostile clients driving a [`Clients`]'s sessions (handshake, requests,
//! group state, delivery, timers, back-pressure: slow, stalled and vanishing readers).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};

use super::{records, Record};
use crate::clients::{Clients, DaemonConfig, SessionInput, SessionOutput};
use crate::daemon::{Daemon, Input, Output};
use crate::session::{Peer, SessionId, LARGEST_MESSAGE};
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

/// What the harness knows about one connection: what its socket has not taken.
#[derive(Debug, Default)]
pub(super) struct Conn {
    /// Lengths of the sends not yet reported as written, oldest first.
    unwritten: VecDeque<usize>,
    /// Reported blocked, and nothing written since.
    blocked: bool,
}

/// Hostile clients against one whole [`crate::Daemon`] alone (named `localhost`, quota 4, slow-reader limit 16).
/// SessionInput: a script of records `[tag u8][len u16 LE][payload]` (see [`super::records`]); the
/// session is `tag >> 3`, the kind `tag & 7`:
///
/// * 0: bytes from the client (the connection is opened first if it is not; TCP from
///   127.0.0.1);
/// * 1: the shell reports on the client's socket: `payload[0]` bit 0 set: it refused bytes
///   (blocked; a reader that stops reading); else bit 1 set: `payload[1]` of the oldest
///   messages were written (a slow reader); else everything was written;
/// * 2: the client closed;
/// * 3: the connection opens, from TCP 10.0.0.`payload[0]` / the Unix socket / in-process by
///   `payload[1] % 3`;
/// * 4: time passes, `payload` = u16 LE milliseconds, then due timers fire;
/// * 5..7: bytes from the client, as 0.
///
/// Checks after every input: outputs only go to open connections and nothing follows a
/// `Close` (a vanished reader gets nothing more); each `Send` is one whole daemon→client
/// message (or a short handshake reply); no message is queued for a connection whose socket
/// is blocked with `MaxSessionMessages` messages unwritten (5.0.1's slow-reader rule: it is
/// killed instead), nor past the byte cap; the number of outputs per input, of connections
/// and of sessions stay bounded; `poll_timeout` never lies in the past of a
/// `handle_timeout` that just ran.
pub fn client_session(data: &[u8]) {
    run(data);
}

/// One record of a client script, decoded (the format of [`client_session`];
/// `node_stateful` reads the same records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClientStep {
    /// Client events, in order (a connect comes before the first bytes of a session).
    Inputs(Vec<SessionInput>),
    /// Time passes (ms); then due timers fire.
    Advance(u64),
}

/// Decodes one record of a client script against the harness's view of the connections
/// (`conns`: opened on connect / first bytes, forgotten on close, read counts taken on drain).
pub(super) fn client_step(rec: Record<'_>, conns: &mut BTreeMap<SessionId, Conn>) -> ClientStep {
    let id = SessionId(u64::from(rec.tag >> 3) % SESSION_IDS);
    let input = match rec.tag & 7 {
        1 => {
            let flags = rec.payload.first().copied().unwrap_or(0);
            let conn = conns.get_mut(&id);
            if flags & 1 == 1 {
                if let Some(c) = conn {
                    c.blocked = true;
                }
                SessionInput::Blocked { session: id }
            } else {
                let want = match (flags & 2, rec.payload.get(1)) {
                    (2, Some(&n)) => usize::from(n),
                    _ => usize::MAX,
                };
                let messages = conn.map_or(0, |c| {
                    let n = want.min(c.unwritten.len());
                    c.unwritten.drain(..n);
                    c.blocked = false;
                    n
                });
                SessionInput::Drained {
                    session: id,
                    messages,
                }
            }
        }
        2 => {
            conns.remove(&id);
            SessionInput::Closed { session: id }
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
            SessionInput::Connected { session: id, peer }
        }
        4 => {
            return ClientStep::Advance(match rec.payload {
                [a, b, ..] => u64::from(u16::from_le_bytes([*a, *b])),
                [a] => u64::from(*a),
                [] => 1,
            })
        }
        _ => {
            let bytes = SessionInput::Bytes {
                session: id,
                data: Bytes::copy_from_slice(rec.payload),
            };
            if let Entry::Vacant(e) = conns.entry(id) {
                e.insert(Conn::default());
                let connect = SessionInput::Connected {
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
fn run(data: &[u8]) -> crate::clients::ClientStats {
    // The whole daemon, alone: a one-daemon ring that has formed.
    let (mut daemon, mut now) = Daemon::settled_alone(
        daemon_config("localhost"),
        Instant(1_000_000),
        1_700_000_000,
    );
    let mut conns: BTreeMap<SessionId, Conn> = BTreeMap::new();
    for rec in records(data) {
        match client_step(rec, &mut conns) {
            ClientStep::Advance(ms) => {
                let until = now + Duration::from_millis(ms);
                // Every timer due by then fires (the ring's included), in order.
                for _ in 0..MAX_OUTPUTS_PER_INPUT {
                    now = match daemon.poll_timeout() {
                        Some(t) if t <= until => t.max(now),
                        _ => break,
                    };
                    daemon.handle_timeout(now);
                    drain(&mut daemon, &mut conns);
                }
                now = until;
                daemon.handle_timeout(now);
                drain(&mut daemon, &mut conns);
                if let Some(t) = daemon.poll_timeout() {
                    assert!(t > now, "a due timer survived handle_timeout");
                }
                continue;
            }
            ClientStep::Inputs(inputs) => {
                for input in inputs {
                    daemon.handle(now, Input::Client(input));
                    drain(&mut daemon, &mut conns);
                }
            }
        }
        check_counts(daemon.clients(), &conns);
    }
    daemon.clients().stats().clone()
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
pub(super) fn check_counts(daemon: &Clients, conns: &BTreeMap<SessionId, Conn>) {
    assert!(daemon.connection_count() <= conns.len().max(1) + SESSION_IDS as usize);
    assert!(daemon.session_count() <= MAX_SESSIONS);
    assert!(daemon.session_count() <= daemon.connection_count());
    let stats = daemon.stats();
    assert!(stats.accepted <= stats.connections);
}

/// Drains the outputs of one input and checks them.
fn drain(daemon: &mut Daemon, conns: &mut BTreeMap<SessionId, Conn>) {
    for _ in 0..MAX_OUTPUTS_PER_INPUT {
        match daemon.poll_output() {
            None => return,
            Some(Output::Client(out)) => check_output(out, conns),
            Some(Output::Transmit(t)) => panic!("a one-daemon ring sent a datagram: {t:?}"),
            Some(Output::Monitor(_)) => {}
        }
    }
    panic!("more than {MAX_OUTPUTS_PER_INPUT} outputs for one input");
}

/// One client output: only to an open connection, nothing after its `Close`; a `Send` is one
/// whole message or a short handshake reply.
pub(super) fn check_output(out: SessionOutput, conns: &mut BTreeMap<SessionId, Conn>) {
    match out {
        SessionOutput::Send { session, data } => {
            let conn = conns
                .get_mut(&session)
                .unwrap_or_else(|| panic!("Send to {session:?}, which is not connected"));
            if check_send(&data) {
                check_admitted(session, conn, data.len());
            }
            conn.unwritten.push_back(data.len());
        }
        SessionOutput::Close { session } => {
            assert!(
                conns.remove(&session).is_some(),
                "Close of {session:?}, which is not connected"
            );
        }
    }
}

/// A `Send` is one whole daemon→client message (returns true), or a short handshake reply.
pub(super) fn check_send(data: &Bytes) -> bool {
    let mut buf = BytesMut::from(&data[..]);
    match decode_frame(&mut buf, Direction::ToClient) {
        Ok(Some(_)) if buf.is_empty() => true,
        _ => {
            assert!(
                data.len() <= MAX_HANDSHAKE_REPLY,
                "a {}-byte Send is neither a whole message nor a handshake reply",
                data.len()
            );
            false
        }
    }
}

/// A message (only open sessions get whole messages) may be queued only as 5.0.1 would:
/// not for a socket blocked with [`MAX_SESSION_MESSAGES`] messages unwritten, and never
/// past `MAX_SESSION_MESSAGES` × [`LARGEST_MESSAGE`] unwritten bytes.
fn check_admitted(session: SessionId, conn: &Conn, len: usize) {
    assert!(
        !(conn.blocked && conn.unwritten.len() >= MAX_SESSION_MESSAGES),
        "{session:?}: a message queued behind {} unwritten on a blocked socket",
        conn.unwritten.len()
    );
    let bytes: usize = conn.unwritten.iter().sum();
    assert!(
        bytes == 0 || bytes + len <= MAX_SESSION_MESSAGES * LARGEST_MESSAGE,
        "{session:?}: {bytes} unwritten bytes and {len} more"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::client::{GroupName, ServiceType};

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

    /// A client script in [`client_session`]'s record format.
    #[derive(Default)]
    struct Script(Vec<u8>);

    impl Script {
        fn rec(&mut self, session: u8, kind: u8, payload: &[u8]) -> &mut Self {
            self.0.push(session << 3 | kind);
            self.0
                .extend_from_slice(&u16::try_from(payload.len()).unwrap().to_le_bytes());
            self.0.extend_from_slice(payload);
            self
        }

        /// Hello and NULL authentication of `name`.
        fn connect(&mut self, session: u8, name: &str, membership: bool) -> &mut Self {
            let mut hello = Vec::new();
            crate::wire::client::encode_hello(
                &crate::wire::client::Hello::new(name.as_bytes(), membership, false),
                &mut hello,
            );
            let mut auth = b"NULL".to_vec();
            auth.resize(90, 0);
            self.rec(session, 0, &hello).rec(session, 0, &auth)
        }

        fn request(
            &mut self,
            session: u8,
            service: ServiceType,
            me: &str,
            body: &[u8],
        ) -> &mut Self {
            let mut out = BytesMut::new();
            crate::wire::client::encode_header(
                &crate::wire::client::MessageHeader {
                    service,
                    sender: GroupName::new(me.as_bytes()),
                    num_groups: 1,
                    hint: crate::wire::client::Hint::new(0, crate::wire::client::ByteOrder::Little),
                    data_len: body.len() as i32,
                    order: crate::wire::client::ByteOrder::Little,
                },
                &mut out,
            );
            GroupName::new(b"g").encode(&mut out);
            out.extend_from_slice(body);
            self.rec(session, 0, &out)
        }
    }

    /// Readers `a` (slow: writes 3 messages per round) and `b` (stalled: blocked, never
    /// written) in group `g`, sender `c`; `b` vanishes at the end if `vanish`.
    fn slow_and_stalled(vanish: bool) -> Vec<u8> {
        let mut s = Script::default();
        s.connect(1, "a", true)
            .connect(2, "b", true)
            .connect(3, "c", false);
        s.request(1, ServiceType::JOIN_MESS, "#a#localhost", b"")
            .request(2, ServiceType::JOIN_MESS, "#b#localhost", b"")
            .rec(1, 1, &[0])
            .rec(2, 1, &[0])
            .rec(2, 1, &[1]);
        let rounds = if vanish { 8 } else { 24 };
        for i in 0..rounds {
            s.request(3, ServiceType::RELIABLE, "#c#localhost", &[i; 100])
                .rec(1, 1, &[2, 1]);
        }
        if vanish {
            s.rec(2, 2, &[]);
            s.request(3, ServiceType::RELIABLE, "#c#localhost", b"after");
        }
        s.rec(1, 1, &[0]);
        s.0
    }

    /// The hand-written back-pressure seeds are committed as generated here (set
    /// `MBUS_WRITE_SEEDS=1` to rewrite them) and reach the states they are about.
    #[test]
    fn back_pressure_seeds_are_current_and_reach_the_kill() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/client_session");
        for (name, script, kills) in [
            ("slow-and-stalled-readers", slow_and_stalled(false), 1),
            ("stalled-reader-vanishes", slow_and_stalled(true), 0),
        ] {
            let path = dir.join(name);
            if std::env::var_os("MBUS_WRITE_SEEDS").is_some() {
                std::fs::write(&path, &script).unwrap();
            }
            assert_eq!(std::fs::read(&path).unwrap(), script, "{name} is stale");
            let stats = run(&script);
            assert_eq!(stats.accepted, 3, "{name}: {stats:?}");
            assert_eq!(stats.slow_reader_kills, kills, "{name}: {stats:?}");
        }
    }
}
