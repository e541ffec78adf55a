//! The client library against the golden capture of two real libspread 5.0.1 `spuser`
//! programs (`tests/data/client/spuser_real_library.hex`): a scripted fake daemon replays the
//! real daemon's bytes, and everything our client writes must equal what libspread wrote
//! (group-name bytes after the NUL excepted: libspread leaves stack garbage there).

use std::collections::BTreeMap;

use bytes::BytesMut;
use mbus::client::{Cause, ConnectOptions, Mailbox, Message, ServiceType};
use spread::wire::client::{decode_frame, Direction, GROUP_NAME_LEN, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// One line of a capture.
#[derive(Debug, Clone)]
enum Event {
    /// Bytes the client wrote.
    Client(Vec<u8>),
    /// Bytes the daemon sent.
    Daemon(Vec<u8>),
    /// The client closed.
    ClientClosed,
}

fn parse_hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if let Some(rep) = tok.strip_prefix("{rep:").and_then(|t| t.strip_suffix('}')) {
            let (b, n) = rep.split_once('*').unwrap();
            let b = u8::from_str_radix(b, 16).unwrap();
            out.extend(std::iter::repeat_n(b, n.parse().unwrap()));
        } else {
            assert!(tok.len() % 2 == 0, "odd hex {tok}");
            for i in (0..tok.len()).step_by(2) {
                out.push(u8::from_str_radix(&tok[i..i + 2], 16).unwrap());
            }
        }
    }
    out
}

/// Events per connection, in file order.
fn load(name: &str) -> BTreeMap<String, Vec<Event>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/client")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut conns: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.splitn(3, ' ');
        let (kind, conn, rest) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
        );
        let ev = match kind {
            "C>" => Event::Client(parse_hex(rest)),
            "D>" => Event::Daemon(parse_hex(rest)),
            "CX" => Event::ClientClosed,
            "DX" => continue,
            other => panic!("unknown line kind {other}"),
        };
        conns.entry(conn.to_owned()).or_default().push(ev);
    }
    conns
}

/// Zeroes group-name bytes after the first NUL in every group field of a client→daemon
/// message stream (the handshake prefix of `skip` bytes is left alone).
fn normalize(stream: &[u8], skip: usize) -> Vec<u8> {
    let mut out = stream[..skip].to_vec();
    let mut buf = BytesMut::from(&stream[skip..]);
    while let Some(frame) = decode_frame(&mut buf, Direction::ToDaemon).unwrap() {
        let mut raw = frame.raw.to_vec();
        let n = frame.num_groups();
        for field in raw[HEADER_LEN..HEADER_LEN + n * GROUP_NAME_LEN].chunks_mut(GROUP_NAME_LEN) {
            if let Some(nul) = field.iter().position(|&b| b == 0) {
                field[nul..].fill(0);
            }
        }
        out.extend_from_slice(&raw);
    }
    assert!(buf.is_empty(), "trailing partial message");
    out
}

/// Plays the daemon side of one connection: sends the daemon's bytes when due and collects
/// everything the client writes until it closes.
async fn fake_daemon(mut io: DuplexStream, events: Vec<Event>) -> Vec<u8> {
    let mut got = Vec::new();
    for ev in events {
        match ev {
            Event::Client(bytes) => {
                let mut b = vec![0; bytes.len()];
                io.read_exact(&mut b).await.unwrap();
                got.extend_from_slice(&b);
            }
            Event::Daemon(bytes) => io.write_all(&bytes).await.unwrap(),
            Event::ClientClosed => {
                let mut rest = Vec::new();
                io.read_to_end(&mut rest).await.unwrap();
                got.extend_from_slice(&rest);
            }
        }
    }
    got
}

fn expected_client_bytes(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Client(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn client_writes_what_real_libspread_writes() {
    let conns = load("spuser_real_library.hex");
    let mut daemons = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for (name, events) in &conns {
        let (c, d) = tokio::io::duplex(1 << 20);
        daemons.insert(name.clone(), tokio::spawn(fake_daemon(d, events.clone())));
        clients.insert(name.clone(), c);
    }
    let mut ua = Mailbox::connect_stream(
        clients.remove("ua").unwrap(),
        &ConnectOptions::new("ua", true),
    )
    .await
    .unwrap();
    let mut ub = Mailbox::connect_stream(
        clients.remove("ub").unwrap(),
        &ConnectOptions::new("ub", true),
    )
    .await
    .unwrap();
    assert_eq!(ua.private_group(), "#ua#localhost");
    assert_eq!(ub.daemon_version(), (5, 0, 1));

    // The actions the two spuser programs performed, in order.
    ua.join("grp1").await.unwrap();
    ub.join("grp1").await.unwrap();
    ua.multigroup_multicast(ServiceType::SAFE, &["grp1", "grpX"], 1, b"hi from ua\n")
        .await
        .unwrap();
    ub.multicast(ServiceType::SAFE, "grp1", 1, b"line one\n")
        .await
        .unwrap();
    ua.leave("grp1").await.unwrap();

    // What ua receives, decoded.
    let m = ua.receive().await.unwrap();
    let Message::Membership(m) = m else {
        panic!("{m:?}")
    };
    assert_eq!((m.cause, m.members.len()), (Cause::Join, 1));
    assert_eq!(m.group_id.index, 1);
    let Message::Membership(m) = ua.receive().await.unwrap() else {
        panic!()
    };
    assert_eq!(m.members, ["#ua#localhost", "#ub#localhost"]);
    assert_eq!(m.my_index, Some(0));
    assert_eq!(m.changed_member.as_deref(), Some("#ub#localhost"));
    let Message::Data(d) = ua.receive().await.unwrap() else {
        panic!()
    };
    assert_eq!(d.groups, ["grp1", "grpX"]);
    assert_eq!((d.service, d.mess_type), (ServiceType::SAFE, 1));
    assert_eq!(&d.body[..], b"hi from ua\n");
    let Message::Data(d) = ua.receive().await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (d.sender.as_str(), &d.body[..]),
        ("#ub#localhost", &b"line one\n"[..])
    );
    assert_eq!(
        ua.receive().await.unwrap(),
        Message::SelfLeave {
            group: "grp1".into()
        }
    );
    ua.disconnect().await.unwrap();

    let Message::Membership(m) = ub.receive().await.unwrap() else {
        panic!()
    };
    assert_eq!(m.my_index, Some(1));
    assert_eq!(
        ub.receive().await.unwrap().as_data().unwrap().sender,
        "#ua#localhost"
    );
    assert_eq!(
        ub.receive().await.unwrap().as_data().unwrap().sender,
        "#ub#localhost"
    );
    let Message::Membership(m) = ub.receive().await.unwrap() else {
        panic!()
    };
    assert_eq!((m.cause, m.members.len()), (Cause::Leave, 1));
    ub.disconnect().await.unwrap();

    for (name, task) in daemons {
        let got = task.await.unwrap();
        let want = expected_client_bytes(&conns[&name]);
        // Handshake: hello (7 bytes) + auth choice (90 bytes), compared exactly.
        let skip = 7 + 90;
        assert_eq!(
            normalize(&got, skip),
            normalize(&want, skip),
            "client bytes of {name} differ from libspread's"
        );
    }
}

/// A fake daemon that answers the handshake from `events`, then sends every later daemon
/// chunk of the capture at once, ignoring what the client writes.
async fn replay_daemon_stream(io: DuplexStream, events: Vec<Event>) {
    let (mut r, mut w) = tokio::io::split(io);
    let drain = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink).await;
    });
    for ev in events {
        if let Event::Daemon(bytes) = ev {
            w.write_all(&bytes).await.unwrap();
        }
    }
    w.shutdown().await.unwrap();
    drain.await.unwrap();
}

#[tokio::test]
async fn client_decodes_network_memberships_of_real_daemons() {
    let conns = load("net_partition_merge.hex");
    let (c, d) = tokio::io::duplex(1 << 20);
    let daemon = tokio::spawn(replay_daemon_stream(d, conns["obs"].clone()));
    let mut obs = Mailbox::connect_stream(c, &ConnectOptions::new("obs", true))
        .await
        .unwrap();
    assert_eq!(obs.private_group(), "#obs#d1");
    let mut msgs = Vec::new();
    loop {
        match obs.receive().await {
            Ok(m) => msgs.push(m),
            Err(mbus::client::Error::ConnectionClosed(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(obs);
    daemon.await.unwrap();

    // The split: a transitional message with the ending view's id, then the network
    // membership with the survivors as one vs-set.
    let t = msgs
        .iter()
        .position(|m| matches!(m, Message::Transitional { .. }))
        .expect("a transitional membership");
    let Message::Transitional { group, group_id } = &msgs[t] else {
        unreachable!()
    };
    assert_eq!(group, "netgrp");
    assert_eq!((group_id.proc_id, group_id.index), (1_552_775_919, 3));
    let Message::Membership(split) = &msgs[t + 1] else {
        panic!("{:?}", msgs[t + 1])
    };
    assert_eq!(split.cause, Cause::Network);
    assert_eq!(split.members, ["#obs#d1", "#m2#d2"]);
    assert_eq!(split.vs_sets, [vec!["#obs#d1", "#m2#d2"]]);
    assert_eq!(
        (split.group_id.index, split.changed_member.as_ref()),
        (1, None)
    );

    // The merge: two vs-sets, ours second (local offset 36).
    let merge = msgs
        .iter()
        .filter_map(Message::as_membership)
        .find(|m| m.cause == Cause::Network && m.members.len() == 3)
        .expect("the merge");
    assert_eq!(merge.vs_sets, [vec!["#m3#d3"], vec!["#obs#d1", "#m2#d2"]]);
    assert_eq!(merge.my_vs_set, 1);
    assert_eq!(merge.my_index, Some(0));
    assert_eq!(merge.group_id.index, 1);

    let d = msgs
        .iter()
        .find_map(Message::as_data)
        .expect("the data message");
    assert_eq!((d.mess_type, &d.body[..]), (7, &b"after-merge"[..]));
}
