//! Unit tests of the daemon core: limits, timers, stats, hostile input.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::daemon::{Daemon, Input, Output};
use crate::session::{AuthMethod, IpRule};
use crate::wire::client::{encode_hello, Hello, Hint};

const T0: Instant = Instant(1_000_000);

/// The whole daemon, alone (a one-daemon ring that has formed), driven by client inputs.
pub(super) struct Harness {
    pub(super) d: Daemon,
    now: Instant,
    /// Bytes and closes per session, not auto-drained.
    pub(super) sent: BTreeMap<SessionId, Vec<Bytes>>,
    pub(super) closed: BTreeSet<SessionId>,
    pub(super) auto_drain: bool,
}

impl Harness {
    pub(super) fn new(cfg: DaemonConfig) -> Self {
        let (d, now) = Daemon::settled_alone(cfg, T0, 1_700_000_000);
        Self {
            d,
            now,
            sent: BTreeMap::new(),
            closed: BTreeSet::new(),
            auto_drain: true,
        }
    }

    fn default() -> Self {
        Self::new(DaemonConfig::new("localhost", 1, 2))
    }

    fn pump(&mut self) {
        while let Some(o) = self.d.poll_output() {
            match o {
                Output::Client(SessionOutput::Send { session, data }) => {
                    self.sent.entry(session).or_default().push(data);
                    if self.auto_drain {
                        self.d.handle(
                            self.now,
                            Input::Client(SessionInput::Drained {
                                session,
                                messages: 1,
                            }),
                        );
                    }
                }
                Output::Client(SessionOutput::Close { session }) => {
                    self.closed.insert(session);
                }
                Output::Transmit(t) => panic!("a one-daemon ring sent a datagram: {t:?}"),
                Output::Monitor(_) => {}
            }
        }
    }

    pub(super) fn input(&mut self, i: SessionInput) {
        self.d.handle(self.now, Input::Client(i));
        self.pump();
    }

    pub(super) fn bytes(&mut self, id: u64, b: &[u8]) {
        self.input(SessionInput::Bytes {
            session: SessionId(id),
            data: Bytes::copy_from_slice(b),
        });
    }

    pub(super) fn connect(&mut self, id: u64, name: &str, membership: bool) {
        self.input(SessionInput::Connected {
            session: SessionId(id),
            peer: Peer::Tcp("127.0.0.1".parse().unwrap()),
        });
        let mut hello = Vec::new();
        encode_hello(&Hello::new(name.as_bytes(), membership, false), &mut hello);
        self.bytes(id, &hello);
        let mut auth = b"NULL".to_vec();
        auth.resize(90, 0);
        self.bytes(id, &auth);
    }

    pub(super) fn take(&mut self, id: u64) -> Vec<Bytes> {
        self.sent.remove(&SessionId(id)).unwrap_or_default()
    }

    /// Runs the clock `d` forward, firing every timer on its way.
    pub(super) fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.d.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.d.handle_timeout(self.now);
            self.pump();
        }
        self.now = until;
        self.d.handle_timeout(self.now);
        self.pump();
    }
}

pub(super) fn request(service: ServiceType, sender: &str, groups: &[&str], body: &[u8]) -> Vec<u8> {
    let groups: Vec<GroupName> = groups
        .iter()
        .map(|g| GroupName::new(g.as_bytes()))
        .collect();
    let mut out = Vec::new();
    crate::wire::client::encode_message(
        service,
        GroupName::new(sender.as_bytes()),
        &groups,
        body,
        &mut out,
    );
    out
}

#[test]
fn quota_counts_sessions_past_hello_and_is_configurable() {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.max_sessions = 3;
    let mut h = Harness::new(cfg);
    for i in 0..3 {
        h.connect(i, &format!("s{i}"), true);
    }
    assert_eq!(h.d.clients().session_count(), 3);
    h.input(SessionInput::Connected {
        session: SessionId(9),
        peer: Peer::Unix,
    });
    assert_eq!(h.take(9), vec![Bytes::from_static(&[0xfd])]);
    assert!(h.closed.contains(&SessionId(9)));
    assert_eq!(h.d.clients().stats().rejects[0], 1);
    // A slot frees when a session goes.
    h.input(SessionInput::Closed {
        session: SessionId(0),
    });
    h.connect(10, "again", true);
    assert_eq!(h.d.clients().session_count(), 3);
}

#[test]
fn hello_timeout_is_one_second_and_silent() {
    let mut h = Harness::default();
    h.input(SessionInput::Connected {
        session: SessionId(1),
        peer: Peer::Unix,
    });
    let start = h.now;
    assert_eq!(
        h.d.clients().poll_timeout(),
        Some(start + Duration::from_secs(1))
    );
    h.advance(Duration::from_millis(999));
    assert!(h.closed.is_empty());
    h.advance(Duration::from_millis(1));
    assert!(h.closed.contains(&SessionId(1)));
    assert!(h.take(1).is_empty(), "nothing sent");
    assert_eq!(h.d.clients().stats().hello_timeouts, 1);
    assert_eq!(h.d.clients().poll_timeout(), None);
}

#[test]
fn partial_auth_answer_times_out_with_reject_auth_but_split_answer_works() {
    let mut h = Harness::default();
    h.input(SessionInput::Connected {
        session: SessionId(1),
        peer: Peer::Unix,
    });
    h.bytes(1, &[5, 0, 1, 1, 1, b'a']);
    h.bytes(1, b"NU");
    h.advance(Duration::from_millis(500));
    let mut rest = b"LL".to_vec();
    rest.resize(88, 0);
    h.bytes(1, &rest);
    assert!(h
        .d
        .clients()
        .sessions
        .get(&SessionId(1))
        .is_some_and(Session::is_open));
    h.input(SessionInput::Connected {
        session: SessionId(2),
        peer: Peer::Unix,
    });
    h.bytes(2, &[5, 0, 1, 1, 1, b'b']);
    h.bytes(2, b"NU");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.take(2).last().map(|b| b.to_vec()), Some(vec![0xf7]));
    assert!(h.closed.contains(&SessionId(2)));
}

#[test]
fn ip_auth_and_empty_method_list() {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.auth = AuthConfig {
        allowed: vec![AuthMethod::Ip],
        required: vec![],
        ip_rules: vec![IpRule::UNIX],
        ..AuthConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.input(SessionInput::Connected {
        session: SessionId(1),
        peer: Peer::Unix,
    });
    h.bytes(1, &[5, 0, 1, 1, 1, b'a']);
    assert_eq!(&h.take(1)[0][..], b"\x03IP ");
    let mut auth = b"IP".to_vec();
    auth.resize(90, 0);
    h.bytes(1, &auth);
    assert_eq!(h.take(1)[0][0], 1, "accepted");
    h.input(SessionInput::Connected {
        session: SessionId(2),
        peer: Peer::Tcp("10.0.0.1".parse().unwrap()),
    });
    h.bytes(2, &[5, 0, 1, 1, 1, b'b']);
    h.bytes(2, &auth);
    assert_eq!(h.take(2).last().map(|b| b.to_vec()), Some(vec![0xf7]));
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.auth.allowed.clear();
    let mut h = Harness::new(cfg);
    h.input(SessionInput::Connected {
        session: SessionId(1),
        peer: Peer::Unix,
    });
    h.bytes(1, &[5, 0, 1, 1, 1, b'a']);
    let got: Vec<u8> = h.take(1).concat();
    assert_eq!(got, vec![0x00, 0xf7]);
    assert!(h.closed.contains(&SessionId(1)));
}

#[test]
fn slow_reader_is_killed_and_others_keep_going() {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.max_session_messages = 5;
    let mut h = Harness::new(cfg);
    h.connect(1, "fast", true);
    h.connect(2, "slow", true);
    h.connect(3, "snd", false);
    for id in [1, 2] {
        let me = if id == 1 {
            "#fast#localhost"
        } else {
            "#slow#localhost"
        };
        h.bytes(id, &request(ServiceType::JOIN_MESS, me, &["g"], b""));
    }
    h.sent.clear();
    h.auto_drain = false;
    // slow's socket is full; fast drains everything it gets; slow never does.
    h.input(SessionInput::Blocked {
        session: SessionId(2),
    });
    for i in 0..10u8 {
        h.bytes(
            3,
            &request(ServiceType::AGREED, "#snd#localhost", &["g"], &[i]),
        );
        let n = h.take(1).len();
        h.input(SessionInput::Drained {
            session: SessionId(1),
            messages: n,
        });
    }
    assert!(h.closed.contains(&SessionId(2)), "slow reader killed");
    assert!(!h.closed.contains(&SessionId(1)));
    assert_eq!(h.d.clients().stats().slow_reader_kills, 1);
    assert_eq!(
        h.d.clients().groups().members(&GroupName::new(b"g")).len(),
        1
    );
    // The slow one got exactly 5 (its quota) before the kill; fast got everything.
    assert_eq!(h.take(2).len(), 5);
    h.bytes(
        3,
        &request(ServiceType::AGREED, "#snd#localhost", &["g"], b"z"),
    );
    assert_eq!(h.take(1).len(), 1);
}

#[test]
fn unwritten_messages_kill_only_while_the_socket_is_blocked() {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.max_session_messages = 5;
    let mut h = Harness::new(cfg);
    h.connect(1, "rd", true);
    h.connect(3, "snd", false);
    h.bytes(
        1,
        &request(ServiceType::JOIN_MESS, "#rd#localhost", &["g"], b""),
    );
    h.sent.clear();
    h.auto_drain = false;
    // A burst far over the limit, none written yet, socket not full: all in flight, no kill.
    for i in 0..20u8 {
        h.bytes(
            3,
            &request(ServiceType::AGREED, "#snd#localhost", &["g"], &[i]),
        );
    }
    assert_eq!(h.take(1).len(), 20);
    assert!(!h.closed.contains(&SessionId(1)));
    // The socket refuses bytes; writing 10 clears the block, so the next message is fine.
    h.input(SessionInput::Blocked {
        session: SessionId(1),
    });
    h.input(SessionInput::Drained {
        session: SessionId(1),
        messages: 10,
    });
    h.bytes(
        3,
        &request(ServiceType::AGREED, "#snd#localhost", &["g"], b"a"),
    );
    assert_eq!(h.take(1).len(), 1);
    assert!(!h.closed.contains(&SessionId(1)));
    // Blocked again with 11 unwritten (>= 5): the next message kills it.
    h.input(SessionInput::Blocked {
        session: SessionId(1),
    });
    h.bytes(
        3,
        &request(ServiceType::AGREED, "#snd#localhost", &["g"], b"b"),
    );
    assert!(
        h.closed.contains(&SessionId(1)),
        "blocked slow reader killed"
    );
    assert_eq!(h.d.clients().stats().slow_reader_kills, 1);
}

#[test]
fn violations_are_counted_and_kill_only_the_offender() {
    let mut h = Harness::default();
    h.connect(1, "a", true);
    h.connect(2, "b", true);
    h.bytes(
        1,
        &request(ServiceType::JOIN_MESS, "#a#localhost", &["g"], b""),
    );
    h.bytes(
        2,
        &request(ServiceType::JOIN_MESS, "#b#localhost", &["g"], b""),
    );
    h.sent.clear();
    h.bytes(
        2,
        &request(ServiceType::AGREED, "#a#localhost", &["g"], b"spoof"),
    );
    assert!(h.closed.contains(&SessionId(2)));
    assert_eq!(
        h.d.clients().stats().violations[Violation::Sender.index()],
        1
    );
    assert_eq!(h.d.clients().stats().protocol_violations(), 1);
    let got = h.take(1);
    assert_eq!(got.len(), 1);
    assert_eq!(
        &got[0][..4],
        &[0x80, 0x14, 0x00, 0x80],
        "disconnect membership"
    );
    assert!(h.take(2).is_empty());
    // Inputs for the dead session are ignored and counted.
    h.bytes(2, b"more");
    assert_eq!(h.d.clients().stats().unknown_session_inputs, 1);
}

#[test]
fn big_endian_sender_is_forwarded_little_endian_with_hint_untouched() {
    let mut h = Harness::default();
    h.connect(1, "le", true);
    h.connect(2, "be", true);
    h.bytes(
        1,
        &request(ServiceType::JOIN_MESS, "#le#localhost", &["g"], b""),
    );
    h.sent.clear();
    let mut out = BytesMut::new();
    encode_header(
        &MessageHeader {
            service: ServiceType::AGREED,
            sender: GroupName::new(b"#be#localhost"),
            num_groups: 1,
            hint: Hint::new(0x1234, ByteOrder::Big),
            data_len: 3,
            order: ByteOrder::Big,
        },
        &mut out,
    );
    GroupName::new(b"g").encode(&mut out);
    out.put_slice(b"abc");
    h.bytes(2, &out);
    let got = h.take(1);
    assert_eq!(&got[0][..4], &[0x90, 0, 0, 0x80]);
    assert_eq!(
        &got[0][36..48],
        &[1, 0, 0, 0, 0x00, 0x12, 0x34, 0x00, 3, 0, 0, 0]
    );
    assert_eq!(&got[0][48..], &out[48..]);
}

#[test]
fn pipelined_requests_in_one_chunk_and_byte_by_byte() {
    let mut h = Harness::default();
    h.connect(1, "a", true);
    let mut all = request(ServiceType::JOIN_MESS, "#a#localhost", &["g"], b"");
    for i in 0..20u8 {
        all.extend(request(ServiceType::FIFO, "#a#localhost", &["g"], &[i; 7]));
    }
    all.extend(request(
        ServiceType::LEAVE_MESS,
        "#a#localhost",
        &["g"],
        b"",
    ));
    h.take(1);
    h.bytes(1, &all);
    let one = h.take(1);
    assert_eq!(one.len(), 22);
    let mut h2 = Harness::default();
    h2.connect(1, "a", true);
    h2.take(1);
    for b in &all {
        h2.bytes(1, &[*b]);
    }
    assert_eq!(h2.take(1), one);
}

#[test]
fn generated_names_are_unique() {
    let mut h = Harness::default();
    let mut names = BTreeSet::new();
    for i in 0..200 {
        h.connect(i, "", true);
        let accept = h.take(i).pop().unwrap();
        assert_eq!(accept[0], 1);
        assert!(names.insert(accept[5..].to_vec()));
    }
    assert_eq!(h.d.clients().session_count(), 200);
}

proptest! {
    /// Any bytes from any session: no panic, the others stay served, and every killed session
    /// is accounted for in the stats.
    #[test]
    fn hostile_bytes_never_panic(chunks in proptest::collection::vec(
        (0u64..4, proptest::collection::vec(any::<u8>(), 0..200)), 0..30)) {
        let mut h = Harness::default();
        h.connect(100, "watch", true);
        h.bytes(100, &request(ServiceType::JOIN_MESS, "#watch#localhost", &["g"], b""));
        for id in 0..4 {
            h.input(SessionInput::Connected { session: SessionId(id), peer: Peer::Unix });
        }
        for (id, data) in chunks {
            h.bytes(id, &data);
            h.advance(Duration::from_millis(300));
        }
        prop_assert!(!h.closed.contains(&SessionId(100)));
        h.sent.clear();
        h.bytes(100, &request(ServiceType::SAFE, "#watch#localhost", &["g"], b"ok"));
        prop_assert_eq!(h.take(100).len(), 1);
    }

    /// Random valid-looking requests after a proper handshake never panic either.
    #[test]
    fn hostile_requests_never_panic(reqs in proptest::collection::vec(
        (any::<u32>(), 0i32..4, any::<[u8; 4]>(), 0usize..3), 0..20)) {
        let mut h = Harness::default();
        h.connect(1, "a", true);
        for (t, ng, hint, body) in reqs {
            let mut out = BytesMut::new();
            encode_header(&MessageHeader {
                service: ServiceType(t),
                sender: GroupName::new(b"#a#localhost"),
                num_groups: ng,
                hint: Hint(hint),
                data_len: body as i32,
                order: ByteOrder::Little,
            }, &mut out);
            for i in 0..ng {
                GroupName::new(format!("g{i}").as_bytes()).encode(&mut out);
            }
            out.put_bytes(0, body);
            h.bytes(1, &out);
        }
        let killed = h.closed.contains(&SessionId(1));
        prop_assert_eq!(killed, h.d.clients().connection_count() == 0);
        prop_assert!(h.d.clients().stats().protocol_violations() <= 1);
    }
}

#[test]
fn join_beyond_local_member_limit_gets_reject_mess() {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.max_sessions = MAX_LOCAL_GROUP_MEMBERS + 1;
    let mut h = Harness::new(cfg);
    for i in 0..=MAX_LOCAL_GROUP_MEMBERS as u64 {
        let name = format!("s{i}");
        h.connect(i, &name, false);
        h.bytes(
            i,
            &request(
                ServiceType::JOIN_MESS,
                &format!("#{name}#localhost"),
                &["big"],
                b"",
            ),
        );
    }
    let last = MAX_LOCAL_GROUP_MEMBERS as u64;
    let got = h.take(last);
    let reject = got.last().unwrap();
    assert_eq!(&reject[..4], &[0x80, 0, 0x40, 0x80], "REJECT_MESS");
    assert_eq!(&reject[36..40], &2u32.to_le_bytes(), "group + requester");
    assert_eq!(
        &reject[48..52],
        &[0x80, 0x01, 0, 0x80],
        "old type: CAUSED_BY_JOIN"
    );
    assert_eq!(&reject[52 + 32..52 + 32 + 11], b"#s3122#loca");
    assert_eq!(
        h.d.clients()
            .groups()
            .members(&GroupName::new(b"big"))
            .len(),
        MAX_LOCAL_GROUP_MEMBERS
    );
    assert_eq!(h.d.clients().stats().rejected_joins, 1);
}
