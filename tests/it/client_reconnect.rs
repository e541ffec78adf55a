//! The client library's ergonomics against our daemon binary: the connect builder, messages
//! as a `Stream`, and `ReconnectingMailbox` across daemon restarts (the gap is reported).

use std::time::Duration;

use futures_util::StreamExt as _;
use mbus::client::{AuthMethod, Cause, Error, Mailbox, Message, ReconnectPolicy, ServiceType};

use crate::harness::{recv, recv_membership, TestDaemon, RECV_TIMEOUT};

/// Fast retries, so a restart is noticed and repaired in well under a second.
fn fast_policy(max_attempts: Option<u32>) -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts,
    }
}

async fn next_of(mb: &mut mbus::client::ReconnectingMailbox) -> Result<Message, Error> {
    tokio::time::timeout(RECV_TIMEOUT, mb.next())
        .await
        .expect("no message in time")
        .unwrap_or(Err(Error::NetErrorOnSession))
}

/// Skips messages until a regular membership of `group` that lists `me`.
async fn wait_member(mb: &mut mbus::client::ReconnectingMailbox, group: &str, me: &str) -> Cause {
    loop {
        if let Message::Membership(m) = next_of(mb).await.unwrap() {
            if m.group == group && m.members.iter().any(|x| x == me) {
                return m.cause;
            }
        }
    }
}

#[tokio::test]
async fn reconnecting_mailbox_rejoins_after_daemon_restart_and_reports_the_gap() {
    let mut d = TestDaemon::start();
    let mut mb = Mailbox::builder(&d.tcp())
        .name("rc")
        .timeout(Duration::from_secs(5))
        .reconnect_policy(fast_policy(None))
        .connect_reconnecting()
        .await
        .unwrap();
    let me = mb.private_group();
    assert_eq!(me, "#rc#localhost");
    mb.join("g1").await.unwrap();
    mb.join("g2").await.unwrap();
    wait_member(&mut mb, "g1", &me).await;
    wait_member(&mut mb, "g2", &me).await;

    // The daemon dies; a join made while it is down is remembered.
    d.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    mb.join("g3").await.unwrap();
    assert!(matches!(
        mb.multicast(ServiceType::AGREED, "g1", 0, "lost").await,
        Err(Error::ConnectionClosed(_))
    ));
    d.restart();

    // The caller is told before anything from the new session.
    let Message::Reconnected(r) = next_of(&mut mb).await.unwrap() else {
        panic!("the first message after the restart is not Reconnected");
    };
    assert_eq!(r.previous_private_group, me);
    assert_eq!(r.private_group, me);
    assert_eq!(r.groups, ["g1", "g2", "g3"]);
    assert!(r.attempts >= 1, "{r:?}");
    assert!(!r.cause.is_empty());
    for g in ["g1", "g2", "g3"] {
        assert_eq!(wait_member(&mut mb, g, &me).await, Cause::Join);
    }

    // The new session works both ways.
    let mut other = Mailbox::connect(&d.tcp(), "other", true).await.unwrap();
    other.join("g2").await.unwrap();
    other
        .multicast(ServiceType::AGREED, "g2", 3, b"after restart")
        .await
        .unwrap();
    mb.multicast(ServiceType::AGREED, "g2", 4, "from rc")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Message::Data(m) = next_of(&mut mb).await.unwrap() {
            got.push((m.mess_type, m.body));
        }
    }
    got.sort();
    assert_eq!(got[0], (3, bytes::Bytes::from_static(b"after restart")));
    assert_eq!(got[1], (4, bytes::Bytes::from_static(b"from rc")));
    mb.disconnect().await.unwrap();
}

#[tokio::test]
async fn reconnecting_mailbox_serves_sends_while_the_caller_is_not_reading() {
    // More own messages than the session queues for the caller (1024): every multicast still
    // completes, and every message is then delivered in order.
    let d = TestDaemon::start();
    let mut mb = Mailbox::builder(&d.tcp())
        .name("burst")
        .group_membership(false)
        .connect_reconnecting()
        .await
        .unwrap();
    mb.join("burst").await.unwrap();
    const N: u32 = 1500;
    for i in 0..N {
        let sent = tokio::time::timeout(
            RECV_TIMEOUT,
            mb.multicast(ServiceType::FIFO, "burst", 0, i.to_be_bytes().to_vec()),
        )
        .await;
        assert!(matches!(sent, Ok(Ok(4))), "multicast {i}: {sent:?}");
    }
    for i in 0..N {
        match next_of(&mut mb).await.unwrap() {
            Message::Data(m) => assert_eq!(&m.body[..], &i.to_be_bytes()[..]),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn reconnecting_mailbox_gives_up_after_max_attempts_with_the_error() {
    let mut d = TestDaemon::start();
    let (tx, mut rx) = Mailbox::builder(&d.tcp())
        .name("quitter")
        .reconnect_policy(fast_policy(Some(3)))
        .connect_reconnecting()
        .await
        .unwrap()
        .split();
    tx.join("g").await.unwrap();
    assert!(matches!(
        recv_next(&mut rx).await,
        Ok(Message::Membership(_))
    ));
    d.kill();
    let e = recv_next(&mut rx).await.unwrap_err();
    assert!(matches!(e, Error::CouldNotConnect(_)), "{e:?}");
    // Then the stream ends and the sending side reports a dead session.
    assert!(tokio::time::timeout(RECV_TIMEOUT, rx.next())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        tx.multicast(ServiceType::FIFO, "g", 0, "x").await,
        Err(Error::IllegalSession)
    ));
}

async fn recv_next(rx: &mut mbus::client::ReconnectingReceiver) -> Result<Message, Error> {
    tokio::time::timeout(RECV_TIMEOUT, rx.receive())
        .await
        .expect("nothing in time")
}

#[tokio::test]
async fn receiver_stream_yields_messages_then_the_error_then_ends() {
    let mut d = TestDaemon::start();
    let mut mb = Mailbox::connect(&d.tcp(), "streamer", false).await.unwrap();
    mb.join("s").await.unwrap();
    for i in 0..3u8 {
        mb.multicast(ServiceType::FIFO, "s", i16::from(i), &[i])
            .await
            .unwrap();
    }
    let (_tx, rx) = mb.split();
    let mut stream = rx.into_stream();
    let mut types = Vec::new();
    while types.len() < 3 {
        let m = tokio::time::timeout(RECV_TIMEOUT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        types.push(m.as_data().map(|d| d.mess_type));
    }
    assert_eq!(types, [Some(0), Some(1), Some(2)]);
    d.kill();
    let end = tokio::time::timeout(RECV_TIMEOUT, stream.next())
        .await
        .unwrap();
    assert!(
        matches!(end, Some(Err(Error::ConnectionClosed(_)))),
        "{end:?}"
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn builder_applies_name_membership_and_auth_method() {
    let d = TestDaemon::start();
    // Without membership messages the first thing received is the data itself.
    let mut quiet = Mailbox::builder(&d.tcp())
        .name("quiet")
        .group_membership(false)
        .priority(true)
        .auth(AuthMethod::Null)
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    assert_eq!(quiet.private_group(), "#quiet#localhost");
    quiet.join("b").await.unwrap();
    quiet
        .multicast(ServiceType::AGREED, "b", 9, b"only data")
        .await
        .unwrap();
    assert!(matches!(recv(&mut quiet).await, Message::Data(m) if m.mess_type == 9));

    let mut loud = Mailbox::builder(&d.tcp())
        .name("loud")
        .connect()
        .await
        .unwrap();
    loud.join("b").await.unwrap();
    // `quiet` is a member too, it just is not told about memberships.
    let mut members = recv_membership(&mut loud, "b").await.members;
    members.sort();
    assert_eq!(members, ["#loud#localhost", "#quiet#localhost"]);

    // The default daemon enables only NULL: another method is refused before the accept.
    // (Distinct names: a refused session's name is free again only once the daemon has seen
    // its connection close, as with 5.0.1.)
    for (name, m) in [
        ("auth1", AuthMethod::Ip),
        ("auth2", AuthMethod::Named("PASSWORD".into())),
    ] {
        let r = Mailbox::builder(&d.tcp())
            .name(name)
            .auth(m)
            .connect()
            .await;
        assert!(matches!(r, Err(Error::RejectAuth)), "{r:?}");
    }
    // A malformed address is refused when connecting.
    assert!(matches!(
        Mailbox::builder("nonsense").connect().await,
        Err(Error::IllegalSpread(_))
    ));
}
