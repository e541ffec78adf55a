//! Embedding a whole daemon with `mbus::daemon::DaemonBuilder`: its sockets serve TCP clients
//! while in-process sessions of the same program share its groups; shutting it down closes
//! both kinds and removes its Unix socket.

use std::sync::Arc;
use std::time::Duration;

use mbus::client::{ConnectOptions, Mailbox, Message, ServiceType};
use mbus::daemon::DaemonBuilder;

async fn recv(mb: &mut Mailbox) -> Message {
    tokio::time::timeout(Duration::from_secs(10), mb.receive())
        .await
        .expect("a message within 10 s")
        .expect("the session is open")
}

fn free_port() -> u16 {
    // Both P (TCP) and P, P+1 (UDP) must be free: probe a few.
    for _ in 0..50 {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if p < 65_000
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_daemon_serves_tcp_and_in_process_sessions_in_one_order() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = format!("Spread_Segment 127.0.0.255:{port} {{\n localhost 127.0.0.1\n}}\n");
    let config = Arc::new(spread::config::Config::parse(&text, "spread.conf").unwrap());
    let daemon = DaemonBuilder::new(config)
        .name("localhost")
        .unix_socket_dir(dir.path())
        .start()
        .expect("the daemon starts");
    assert_eq!(daemon.port(), port);
    let sock = dir.path().join(port.to_string());
    assert!(sock.exists(), "the Unix socket {sock:?} is there");

    let pipe = daemon.connect_in_process().await.unwrap();
    let mut inner = Mailbox::connect_stream(pipe, &ConnectOptions::new("inner", true))
        .await
        .unwrap();
    let mut outer = Mailbox::connect(&format!("{port}@127.0.0.1"), "outer", true)
        .await
        .unwrap();
    inner.join("g").await.unwrap();
    let Message::Membership(m) = recv(&mut inner).await else {
        panic!("inner's own join first")
    };
    assert_eq!(m.members.len(), 1);
    outer.join("g").await.unwrap();
    for mb in [&mut inner, &mut outer] {
        let Message::Membership(m) = recv(mb).await else {
            panic!("outer's join")
        };
        assert_eq!(m.members.len(), 2);
    }
    for i in 0..20u8 {
        let (who, body) = if i % 2 == 0 {
            (&mut inner, [b'i', i])
        } else {
            (&mut outer, [b'o', i])
        };
        who.multicast(ServiceType::AGREED, "g", 0, &body)
            .await
            .unwrap();
    }
    let mut orders = Vec::new();
    for mb in [&mut inner, &mut outer] {
        let mut got = Vec::new();
        while got.len() < 20 {
            if let Message::Data(d) = recv(mb).await {
                got.push(d.body.to_vec());
            }
        }
        orders.push(got);
    }
    assert_eq!(orders[0], orders[1], "one order for both kinds of session");

    daemon.shutdown().await.unwrap();
    assert!(!sock.exists(), "the Unix socket is removed at shutdown");
    let end = tokio::time::timeout(Duration::from_secs(5), inner.receive())
        .await
        .expect("the in-process session ends");
    assert!(end.is_err(), "{end:?}");
}
