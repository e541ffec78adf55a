//! Join, leave, disconnect and killed clients, driven through `mbus::client` against the
//! `spread` binary.

use std::time::Duration;

use mbus::client::{Cause, Mailbox, Message};

use crate::harness::{
    connect, connect_and_join, expect_silence, recv, recv_membership, TestDaemon,
};

#[tokio::test]
async fn join_leave_membership_and_self_leave() {
    let d = TestDaemon::start();
    let mut alice = connect_and_join(&d, "alice", "grp1").await;
    assert_eq!(alice.private_group(), "#alice#localhost");

    let mut bob = connect(&d, "bob").await;
    bob.join("grp1").await.unwrap();
    let mb = recv_membership(&mut bob, "grp1").await;
    let ma = recv_membership(&mut alice, "grp1").await;
    for m in [&ma, &mb] {
        assert_eq!(m.cause, Cause::Join);
        assert_eq!(m.members, ["#alice#localhost", "#bob#localhost"]);
        assert_eq!(m.changed_member.as_deref(), Some("#bob#localhost"));
        assert_eq!(m.vs_sets, [vec!["#bob#localhost".to_owned()]]);
        assert_eq!(m.my_vs_set, 0);
    }
    assert_eq!(ma.my_index, Some(0));
    assert_eq!(mb.my_index, Some(1));
    // Same view at both members; the index counts changes of the group.
    assert_eq!(ma.group_id, mb.group_id);
    assert_eq!(ma.group_id.index, 2);

    // Joining again is ignored: nothing is sent to anybody.
    bob.join("grp1").await.unwrap();
    expect_silence(&mut bob, Duration::from_millis(300)).await;

    bob.leave("grp1").await.unwrap();
    match recv(&mut bob).await {
        Message::SelfLeave { group } => assert_eq!(group, "grp1"),
        other => panic!("expected self-leave, got {other:?}"),
    }
    let m = recv_membership(&mut alice, "grp1").await;
    assert_eq!(m.cause, Cause::Leave);
    assert_eq!(m.members, ["#alice#localhost"]);
    assert_eq!(m.changed_member.as_deref(), Some("#bob#localhost"));
    assert_eq!(m.group_id.index, 3);
    assert_eq!(
        (m.group_id.proc_id, m.group_id.time),
        (ma.group_id.proc_id, ma.group_id.time)
    );

    // Leaving a group one is not in is ignored.
    bob.leave("grp1").await.unwrap();
    bob.leave("nosuchgroup").await.unwrap();
    expect_silence(&mut bob, Duration::from_millis(300)).await;
    expect_silence(&mut alice, Duration::from_millis(100)).await;
    bob.disconnect().await.unwrap();
    alice.disconnect().await.unwrap();
}

#[tokio::test]
async fn disconnect_and_dropped_socket_are_caused_by_disconnect() {
    let d = TestDaemon::start();
    let mut alice = connect_and_join(&d, "alice", "g").await;
    let bob = connect_and_join(&d, "bob", "g").await;
    let carol = connect_and_join(&d, "carol", "g").await;
    assert_eq!(recv_membership(&mut alice, "g").await.members.len(), 2);
    assert_eq!(recv_membership(&mut alice, "g").await.members.len(), 3);

    // An orderly disconnect (KILL_MESS).
    bob.disconnect().await.unwrap();
    let m = recv_membership(&mut alice, "g").await;
    assert_eq!(m.cause, Cause::Disconnect);
    assert_eq!(m.changed_member.as_deref(), Some("#bob#localhost"));
    assert_eq!(m.members, ["#alice#localhost", "#carol#localhost"]);

    // Just closing the socket looks the same to the others.
    drop(carol);
    let m = recv_membership(&mut alice, "g").await;
    assert_eq!(m.cause, Cause::Disconnect);
    assert_eq!(m.changed_member.as_deref(), Some("#carol#localhost"));
    assert_eq!(m.members, ["#alice#localhost"]);

    // The names are free again.
    let _bob2 = connect(&d, "bob").await;
}

/// Environment variable telling [`child_client_process`] which daemon to use.
const CHILD_ENV: &str = "MBUS_IT_CHILD_DAEMON";

/// Not a test of its own: the body of the client process that
/// [`killed_client_process_is_caused_by_disconnect`] starts and then SIGKILLs. It joins `g`
/// as `victim`, says so on stdout and waits to be killed.
#[tokio::test]
#[ignore = "helper process for killed_client_process_is_caused_by_disconnect"]
async fn child_client_process() {
    let Ok(addr) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut mb = Mailbox::connect(&addr, "victim", true).await.unwrap();
    mb.join("g").await.unwrap();
    let m = recv_membership(&mut mb, "g").await;
    assert_eq!(m.changed_member.as_deref(), Some(mb.private_group()));
    println!("CHILD-JOINED");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test]
async fn killed_client_process_is_caused_by_disconnect() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let d = TestDaemon::start();
    let mut alice = connect_and_join(&d, "alice", "g").await;
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "client_membership::child_client_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, d.tcp())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let joined = tokio::task::spawn_blocking(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("CHILD-JOINED"))
    });
    let m = recv_membership(&mut alice, "g").await;
    assert_eq!(m.cause, Cause::Join);
    assert_eq!(m.changed_member.as_deref(), Some("#victim#localhost"));
    assert!(tokio::time::timeout(Duration::from_secs(20), joined)
        .await
        .unwrap()
        .unwrap());

    child.kill().unwrap();
    child.wait().unwrap();
    let m = recv_membership(&mut alice, "g").await;
    assert_eq!(m.cause, Cause::Disconnect);
    assert_eq!(m.changed_member.as_deref(), Some("#victim#localhost"));
    assert_eq!(m.members, ["#alice#localhost"]);
}

#[tokio::test]
async fn session_without_membership_gets_data_only() {
    let d = TestDaemon::start();
    let mut loud = connect_and_join(&d, "loud", "g").await;
    let mut quiet = Mailbox::connect(&d.tcp(), "quiet", false).await.unwrap();
    quiet.join("g").await.unwrap();
    let m = recv_membership(&mut loud, "g").await;
    // The quiet member is listed although it never sees membership messages.
    assert_eq!(m.members, ["#loud#localhost", "#quiet#localhost"]);
    loud.multicast(mbus::client::ServiceType::AGREED, "g", 5, b"x")
        .await
        .unwrap();
    match recv(&mut quiet).await {
        Message::Data(dm) => {
            assert_eq!(dm.sender, "#loud#localhost");
            assert_eq!(dm.mess_type, 5);
        }
        other => panic!("quiet session got {other:?}"),
    }
    quiet.leave("g").await.unwrap();
    expect_silence(&mut quiet, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn names_are_checked() {
    let d = TestDaemon::start();
    let _a = connect(&d, "dup").await;
    let e = Mailbox::connect(&d.tcp(), "dup", true).await.unwrap_err();
    assert!(matches!(e, mbus::client::Error::RejectNotUnique), "{e:?}");
    assert_eq!(e.code(), -6);
    // An empty name gets a generated one.
    let g = Mailbox::connect(&d.tcp(), "", true).await.unwrap();
    let pg = g.private_group().to_owned();
    assert!(pg.starts_with("#r") && pg.ends_with("#localhost"), "{pg}");
    // Illegal names and groups are refused by the library before anything is sent.
    let e = Mailbox::connect(&d.tcp(), "has space", true)
        .await
        .unwrap_err();
    assert!(matches!(e, mbus::client::Error::RejectIllegalName));
    let mut a = connect(&d, "ok").await;
    let e = a.join("").await.unwrap_err();
    assert_eq!(e.code(), -14);
    let e = a.join(&"x".repeat(32)).await.unwrap_err();
    assert_eq!(e.code(), -14);
}
