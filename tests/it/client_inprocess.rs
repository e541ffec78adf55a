//! In-process sessions: the client library talks to a daemon core embedded in the test
//! process through in-memory pipes, alongside a TCP client of the same core.

use std::time::Duration;

use mbus::client::{Cause, ConnectOptions, Mailbox, Message, ServiceType};

async fn recv(mb: &mut Mailbox) -> Message {
    tokio::time::timeout(Duration::from_secs(10), mb.receive())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_sessions_share_groups_with_each_other() {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (core, task) = mbus::daemon::spawn_core(
        spread::DaemonConfig::new("embedded", 7, 1_700_000_000),
        async move {
            let _ = stop_rx.await;
        },
    );
    let opts = |n: &str| ConnectOptions::new(n, true);
    let mut a = core.connect_mailbox(&opts("a")).await.unwrap();
    let mut b = core.connect_mailbox(&opts("b")).await.unwrap();
    assert_eq!(a.private_group(), "#a#embedded");
    a.join("g").await.unwrap();
    // Wait for a's own join before b joins: the two pipes are read independently, so without
    // this b's JOIN could be ordered first.
    let Message::Membership(m) = recv(&mut a).await else {
        panic!()
    };
    assert_eq!((m.cause, m.members.len()), (Cause::Join, 1));
    assert_eq!(m.group_id.proc_id, 7);
    b.join("g").await.unwrap();
    let Message::Membership(m) = recv(&mut a).await else {
        panic!()
    };
    assert_eq!(m.members, ["#a#embedded", "#b#embedded"]);

    for i in 0..1000u32 {
        b.multicast(ServiceType::AGREED, "g", 0, &i.to_le_bytes())
            .await
            .unwrap();
    }
    let Message::Membership(_) = recv(&mut b).await else {
        panic!()
    };
    for mb in [&mut a, &mut b] {
        for i in 0..1000u32 {
            let Message::Data(d) = recv(mb).await else {
                panic!()
            };
            assert_eq!(&d.body[..], &i.to_le_bytes());
        }
    }
    // A TCP session of the same core (the test accepts it and hands it over) shares the group.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = core.clone();
    tokio::spawn(async move {
        let (s, peer) = listener.accept().await.unwrap();
        acceptor
            .accept(s, spread::session::Peer::Tcp(peer.ip()))
            .await
            .unwrap();
    });
    let mut t = Mailbox::connect(&format!("{port}@127.0.0.1"), "tcp", true)
        .await
        .unwrap();
    t.join("g").await.unwrap();
    let Message::Membership(m) = recv(&mut t).await else {
        panic!()
    };
    assert_eq!(m.members.len(), 3);
    let Message::Membership(_) = recv(&mut a).await else {
        panic!()
    };
    let Message::Membership(_) = recv(&mut b).await else {
        panic!()
    };
    t.multicast(ServiceType::SAFE, "g", 0, b"over tcp")
        .await
        .unwrap();
    let Message::Data(d) = recv(&mut a).await else {
        panic!()
    };
    assert_eq!(
        (d.sender.as_str(), &d.body[..]),
        ("#tcp#embedded", &b"over tcp"[..])
    );

    // Same rules as over a socket: the name is taken.
    let e = core.connect_mailbox(&opts("a")).await.unwrap_err();
    assert_eq!(e.code(), -6);
    b.disconnect().await.unwrap();
    let Message::Membership(m) = recv(&mut a).await else {
        panic!()
    };
    assert_eq!(m.cause, Cause::Disconnect);

    // After the core stops, connecting fails cleanly.
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    let e = core.connect_mailbox(&opts("late")).await.unwrap_err();
    assert_eq!(e.code(), -2);
}
