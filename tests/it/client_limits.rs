//! Limits through `mbus::client` against the `spread` binary: the session quota, a slow reader
//! killed by MaxSessionMessages while the others keep going, message size limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mbus::client::{Address, Cause, ConnectOptions, Error, Mailbox, Message, ServiceType};

use crate::harness::{
    connect, connect_and_join, recv_data, recv_membership, DaemonOptions, TestDaemon,
};

/// Spread 5.0.1's MAX_SESSIONS.
const MAX_SESSIONS: usize = 997;

#[tokio::test]
async fn session_quota_is_997_then_reject_quota() {
    let d = TestDaemon::start();
    let addr = Address::parse(&d.tcp()).unwrap();
    let mut sessions = Vec::with_capacity(MAX_SESSIONS);
    for i in 0..MAX_SESSIONS {
        // Alternate transports: the quota counts every session.
        let a = if i % 2 == 0 {
            addr.clone()
        } else {
            Address::Unix(d.unix_path())
        };
        let mb = Mailbox::connect_with(&a, &ConnectOptions::new(&format!("q{i}"), false))
            .await
            .unwrap_or_else(|e| panic!("session {i}: {e}"));
        sessions.push(mb);
    }
    let e = Mailbox::connect(&d.tcp(), "onetoomany", false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RejectQuota), "{e:?}");
    assert_eq!(e.code(), -3);

    // Freeing one slot lets exactly one more in.
    sessions.pop().unwrap().disconnect().await.unwrap();
    let again = loop {
        match Mailbox::connect(&d.tcp(), "latecomer", false).await {
            Ok(mb) => break mb,
            Err(Error::RejectQuota) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let e = Mailbox::connect(&d.tcp(), "onetoomany", false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RejectQuota), "{e:?}");
    // The sessions still work.
    let mut first = sessions.swap_remove(0);
    first.join("after-quota").await.unwrap();
    first
        .multicast(ServiceType::AGREED, "after-quota", 0, b"ok")
        .await
        .unwrap();
    assert_eq!(&recv_data(&mut first).await.body[..], b"ok");
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_killed_while_others_keep_going() {
    const LIMIT: u32 = 100;
    const MESSAGES: usize = 600;
    const SIZE: usize = 100_000;
    const AHEAD: usize = 20;
    let d = TestDaemon::start_with(&DaemonOptions {
        max_session_messages: Some(LIMIT),
        ..DaemonOptions::default()
    });
    let mut fast = connect_and_join(&d, "fast", "flood").await;
    // The slow reader uses the Unix socket (small kernel buffers) and never reads.
    let slow = Mailbox::connect_with(
        &Address::Unix(d.unix_path()),
        &ConnectOptions::new("slow", true),
    )
    .await
    .unwrap();
    let mut slow = slow;
    slow.join("flood").await.unwrap();
    assert_eq!(recv_membership(&mut fast, "flood").await.members.len(), 2);

    // The fast reader drains in its own task and reports its progress, so the sender never
    // gets more than a few messages ahead of it (it must not become a slow reader itself on
    // a loaded machine).
    let progress = Arc::new(AtomicUsize::new(0));
    let seen = progress.clone();
    let reader = tokio::spawn(async move {
        let mut data = 0usize;
        let mut saw_kill = false;
        while data < MESSAGES || !saw_kill {
            match tokio::time::timeout(Duration::from_secs(30), fast.receive()).await {
                Ok(Ok(Message::Data(m))) => {
                    assert_eq!(m.body.len(), SIZE);
                    assert_eq!(usize::from_le_bytes(m.body[..8].try_into().unwrap()), data);
                    data += 1;
                    seen.store(data, Ordering::Release);
                }
                Ok(Ok(Message::Membership(m))) => {
                    assert_eq!(m.cause, Cause::Disconnect);
                    assert_eq!(m.changed_member.as_deref(), Some("#slow#localhost"));
                    assert_eq!(m.members, ["#fast#localhost"]);
                    saw_kill = true;
                }
                Ok(Ok(other)) => panic!("fast reader got {other:?}"),
                Ok(Err(e)) => panic!("fast reader: {e}"),
                Err(_) => panic!("fast reader stalled after {data} messages"),
            }
        }
        data
    });

    // A sender outside the group floods (SELF_DISCARD is not needed: it is no member).
    let mut sender = connect(&d, "sender").await;
    let mut body = vec![0u8; SIZE];
    for i in 0..MESSAGES {
        while i >= progress.load(Ordering::Acquire) + AHEAD {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        body[..8].copy_from_slice(&i.to_le_bytes());
        sender
            .multicast(ServiceType::FIFO, "flood", 0, &body)
            .await
            .unwrap();
    }
    assert_eq!(reader.await.unwrap(), MESSAGES);

    // The slow session got at most what was queued before the kill, then the connection
    // ends.
    let mut got = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.receive()).await {
            Ok(Ok(Message::Data(_))) => got += 1,
            Ok(Ok(_)) => {}
            Ok(Err(Error::ConnectionClosed(_))) => break,
            Ok(Err(e)) => panic!("slow reader: unexpected {e}"),
            Err(_) => panic!("slow reader still connected after {got} messages"),
        }
    }
    assert!(got < MESSAGES, "slow reader got everything ({got})");
    // The daemon survived.
    let mut late = connect_and_join(&d, "late", "flood").await;
    late.multicast(ServiceType::SAFE, "flood", 0, b"still here")
        .await
        .unwrap();
    assert_eq!(&recv_data(&mut late).await.body[..], b"still here");
}

#[tokio::test]
async fn message_size_limits() {
    let d = TestDaemon::start();
    let mut a = connect_and_join(&d, "a", "g").await;
    // The largest message a 5.0.1 daemon can carry with one group: 48 + 32 + 143120 bytes.
    let big = vec![0xabu8; 143_120];
    a.multicast(ServiceType::AGREED, "g", 0, &big)
        .await
        .unwrap();
    let m = recv_data(&mut a).await;
    assert_eq!(m.body.len(), big.len());
    assert!(m.body.iter().all(|&b| b == 0xab));
    // One byte more would crash a 5.0.1 daemon: the library refuses it.
    let e = a
        .multicast(ServiceType::AGREED, "g", 0, &[0u8; 143_121])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MessageTooLong(_)), "{e:?}");
    // 101 groups.
    let names: Vec<String> = (0..101)
        .map(|i| if i == 0 { "g".into() } else { format!("g{i}") })
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let e = a
        .multigroup_multicast(ServiceType::AGREED, &refs, 0, b"")
        .await
        .unwrap_err();
    assert_eq!(e.code(), -17);
    // 100 groups are fine. (Spread 5.0.1 silently drops any message whose header and group
    // list do not fit one 1432-byte packet, i.e. more than 43 groups; mbus delivers them.)
    let n = if d.is_real_spread() { 43 } else { 100 };
    a.multigroup_multicast(ServiceType::AGREED, &refs[..n], 0, b"hundred")
        .await
        .unwrap();
    let m = recv_data(&mut a).await;
    assert_eq!(m.groups.len(), n);
    // No service, or two: refused locally.
    for bad in [ServiceType(0), ServiceType::AGREED | ServiceType::SAFE] {
        let e = a.multicast(bad, "g", 0, b"").await.unwrap_err();
        assert_eq!(e.code(), -12);
    }
    // The session is still fine after local refusals.
    a.multicast(ServiceType::RELIABLE, "g", 0, b"fine")
        .await
        .unwrap();
    assert_eq!(&recv_data(&mut a).await.body[..], b"fine");
}

/// Regression: a reader that keeps up with a writer flooding small messages in bursts must
/// get every one and not be killed as a slow reader (5.0.1 kills only when
/// MaxSessionMessages messages wait because the socket refused them; progress reports from
/// the writers must not lag behind the flood of input).
///
/// The writer sends bursts of [`BURST`] back to back at about 10 000 messages per second on
/// average, what a single 5.0.1 daemon's ring lets a flooding client send on this kind of
/// machine. The daemon itself does not slow a writer down to its readers (5.0.1 does not
/// either: only its ring's flow control paces senders), so a reader slower than an unpaced
/// writer is a slow reader and is killed, by 5.0.1 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_reader_survives_a_flooding_writer() {
    const MESSAGES: usize = 20_000;
    const SIZE: usize = 1000;
    const BURST: usize = 250;
    const BURST_EVERY: Duration = Duration::from_millis(25);
    let d = TestDaemon::start();
    let mut reader = connect_and_join(&d, "reader", "flood").await;
    let rd = tokio::spawn(async move {
        let mut data = 0usize;
        while data < MESSAGES {
            match tokio::time::timeout(Duration::from_secs(30), reader.receive()).await {
                Ok(Ok(Message::Data(m))) => {
                    assert_eq!(m.body.len(), SIZE);
                    assert_eq!(usize::from_le_bytes(m.body[..8].try_into().unwrap()), data);
                    data += 1;
                    // Reads as libspread does (a few syscalls per message), not faster.
                    tokio::task::yield_now().await;
                }
                Ok(Ok(other)) => panic!("reader got {other:?} after {data} messages"),
                Ok(Err(e)) => panic!("reader killed after {data} messages: {e}"),
                Err(_) => panic!("reader stalled after {data} messages"),
            }
        }
        reader
    });
    // The writer is no member and never waits for the reader.
    let mut writer = connect(&d, "writer").await;
    let mut body = vec![0u8; SIZE];
    let mut next_burst = tokio::time::Instant::now();
    for i in 0..MESSAGES {
        if i % BURST == 0 {
            tokio::time::sleep_until(next_burst).await;
            next_burst += BURST_EVERY;
        }
        body[..8].copy_from_slice(&i.to_le_bytes());
        writer
            .multicast(ServiceType::FIFO, "flood", 0, &body)
            .await
            .unwrap();
    }
    let mut reader = rd.await.unwrap();
    // Still connected: it gets the next message.
    writer
        .multicast(ServiceType::FIFO, "flood", 0, b"after")
        .await
        .unwrap();
    assert_eq!(&recv_data(&mut reader).await.body[..], b"after");
}
