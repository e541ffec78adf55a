//! The six services, SELF_DISCARD, multigroup and private-group sends, both byte orders,
//! through `mbus::client` against the `spread` binary.

use std::time::Duration;

use mbus::client::{Address, ByteOrder, ConnectOptions, Mailbox, ServiceType};

use crate::harness::{
    connect, connect_and_join, expect_silence, recv_data, recv_membership, TestDaemon,
};

const SERVICES: [ServiceType; 6] = [
    ServiceType::UNRELIABLE,
    ServiceType::RELIABLE,
    ServiceType::FIFO,
    ServiceType::CAUSAL,
    ServiceType::AGREED,
    ServiceType::SAFE,
];

/// Three members of `g`; returns them with all join memberships consumed.
async fn trio(d: &TestDaemon) -> [Mailbox; 3] {
    let mut a = connect_and_join(d, "a", "g").await;
    let mut b = connect_and_join(d, "b", "g").await;
    let c = connect_and_join(d, "c", "g").await;
    recv_membership(&mut a, "g").await;
    recv_membership(&mut a, "g").await;
    recv_membership(&mut b, "g").await;
    [a, b, c]
}

#[tokio::test]
async fn each_service_reaches_every_member_in_sender_order() {
    let d = TestDaemon::start();
    let [mut a, mut b, mut c] = trio(&d).await;
    const PER_SERVICE: usize = 50;
    for (k, &svc) in SERVICES.iter().enumerate() {
        for i in 0..PER_SERVICE {
            let body = format!("{k}:{i}");
            let n = a
                .multicast(svc, "g", (k * 100 + i) as i16, body.as_bytes())
                .await
                .unwrap();
            assert_eq!(n, body.len());
        }
    }
    // Every member, the sender included, gets every message once, with the service and
    // mess_type it was sent with, and (FIFO or stronger on one connection) in order.
    for mb in [&mut a, &mut b, &mut c] {
        for (k, &svc) in SERVICES.iter().enumerate() {
            for i in 0..PER_SERVICE {
                let m = recv_data(mb).await;
                assert_eq!(m.sender, "#a#localhost");
                assert_eq!(m.groups, ["g"]);
                assert_eq!(m.service, svc);
                assert_eq!(m.mess_type, (k * 100 + i) as i16);
                assert!(!m.endian_mismatch);
                assert_eq!(&m.body[..], format!("{k}:{i}").as_bytes());
            }
        }
        expect_silence(mb, Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn agreed_and_safe_are_totally_ordered_across_senders() {
    let d = TestDaemon::start();
    let [a, b, mut c] = trio(&d).await;
    const N: usize = 200;
    let send = |mut mb: Mailbox, tag: u8| async move {
        for i in 0..N {
            let svc = if i % 2 == 0 {
                ServiceType::AGREED
            } else {
                ServiceType::SAFE
            };
            mb.multicast(svc, "g", 0, &[tag, (i % 256) as u8, (i / 256) as u8])
                .await
                .unwrap();
        }
        mb
    };
    let (ta, tb) = tokio::join!(tokio::spawn(send(a, b'a')), tokio::spawn(send(b, b'b')));
    let (mut a, mut b) = (ta.unwrap(), tb.unwrap());
    let mut orders = Vec::new();
    for mb in [&mut a, &mut b, &mut c] {
        let mut seen = Vec::new();
        for _ in 0..2 * N {
            seen.push(recv_data(mb).await.body.to_vec());
        }
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    // Per-sender order is kept inside the total order.
    for tag in [b'a', b'b'] {
        let mine: Vec<usize> = orders[0]
            .iter()
            .filter(|m| m[0] == tag)
            .map(|m| usize::from(m[1]) + 256 * usize::from(m[2]))
            .collect();
        assert_eq!(mine, (0..N).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn self_discard_skips_only_the_sender() {
    let d = TestDaemon::start();
    let [mut a, mut b, mut c] = trio(&d).await;
    for svc in SERVICES {
        a.multicast(svc | ServiceType::SELF_DISCARD, "g", 1, b"sd")
            .await
            .unwrap();
    }
    for mb in [&mut b, &mut c] {
        for svc in SERVICES {
            let m = recv_data(mb).await;
            assert_eq!(m.service, svc | ServiceType::SELF_DISCARD);
        }
    }
    expect_silence(&mut a, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn multigroup_private_groups_and_open_groups() {
    let d = TestDaemon::start();
    let mut x = connect_and_join(&d, "x", "g1").await;
    x.join("g2").await.unwrap();
    recv_membership(&mut x, "g2").await;
    let mut y = connect_and_join(&d, "y", "g2").await;
    recv_membership(&mut x, "g2").await;
    // The sender is in no group: groups are open.
    let mut s = connect(&d, "s").await;

    // x is in g1 and g2 and is also named privately: it still gets the message once.
    s.multigroup_multicast(
        ServiceType::AGREED,
        &["g1", "g2", "#x#localhost", "nobody-here"],
        9,
        b"multi",
    )
    .await
    .unwrap();
    for mb in [&mut x, &mut y] {
        let m = recv_data(mb).await;
        assert_eq!(m.sender, "#s#localhost");
        assert_eq!(m.groups, ["g1", "g2", "#x#localhost", "nobody-here"]);
        assert_eq!(&m.body[..], b"multi");
        expect_silence(mb, Duration::from_millis(200)).await;
    }
    expect_silence(&mut s, Duration::from_millis(100)).await;

    // A private message reaches only its owner (and the sender, when it names itself).
    s.multicast(ServiceType::FIFO, "#y#localhost", 0, b"p")
        .await
        .unwrap();
    assert_eq!(&recv_data(&mut y).await.body[..], b"p");
    expect_silence(&mut x, Duration::from_millis(200)).await;
    s.multicast(
        ServiceType::RELIABLE,
        s.private_group().to_owned().as_str(),
        0,
        b"me",
    )
    .await
    .unwrap();
    assert_eq!(&recv_data(&mut s).await.body[..], b"me");
    // An unknown private group is dropped silently.
    s.multicast(ServiceType::RELIABLE, "#ghost#localhost", 0, b"?")
        .await
        .unwrap();
    expect_silence(&mut s, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn big_endian_sender_is_understood() {
    let d = TestDaemon::start();
    let mut le = connect_and_join(&d, "le", "g").await;
    let mut opts = ConnectOptions::new("be", true);
    opts.byte_order = ByteOrder::Big;
    let addr = Address::parse(&d.tcp()).unwrap();
    let mut be = Mailbox::connect_with(&addr, &opts).await.unwrap();
    be.join("g").await.unwrap();
    let m = recv_membership(&mut be, "g").await;
    assert_eq!(m.members, ["#be#localhost", "#le#localhost"]);
    recv_membership(&mut le, "g").await;
    be.multicast(ServiceType::SAFE, "g", 0x1234, b"from a big-endian writer")
        .await
        .unwrap();
    let m = recv_data(&mut le).await;
    assert_eq!(m.service, ServiceType::SAFE);
    assert_eq!(m.mess_type, 0x1234);
    assert!(m.endian_mismatch);
    assert_eq!(&m.body[..], b"from a big-endian writer");
    // The daemon re-marks `type` in its own order but never swaps the hint.
    let m = recv_data(&mut be).await;
    assert_eq!(m.mess_type, 0x1234);
    assert!(m.endian_mismatch);
}

#[tokio::test]
async fn unix_socket_transport() {
    let d = TestDaemon::start();
    let path = d.unix_path();
    let addr = Address::Unix(path.clone());
    let mut u = Mailbox::connect_with(&addr, &ConnectOptions::new("unix", true))
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    let mut t = connect_and_join(&d, "tcp", "g").await;
    u.join("g").await.unwrap();
    assert_eq!(recv_membership(&mut u, "g").await.members.len(), 2);
    recv_membership(&mut t, "g").await;
    u.multicast(ServiceType::AGREED, "g", 3, &[7u8; 10_000])
        .await
        .unwrap();
    let m = recv_data(&mut t).await;
    assert_eq!(m.sender, "#unix#localhost");
    assert_eq!(m.body.len(), 10_000);
}
