//! The `PWORD` exchange as 5.0.1 defines it: after the 90-byte choice, 32 bytes of user name
//! and 8 of password, answered with one byte (1 accepted, 0 refused), then the accept or
//! `REJECT_AUTH`.

use std::time::Duration;

use super::tests::Harness;
use super::*;
use crate::session::auth::{parse_access_pword, PWORD_PASSWORD_LEN, PWORD_USER_LEN};
use crate::session::{AuthMethod, IpRule};

/// `openssl passwd -6 -salt saltsalt secret`.
const SECRET: &str =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

fn harness(allowed: Vec<AuthMethod>, required: Vec<AuthMethod>) -> Harness {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.auth = AuthConfig {
        allowed,
        required,
        ip_rules: vec![IpRule::UNIX],
        pword_users: parse_access_pword(&format!("alice:{SECRET}\n")).unwrap(),
    };
    Harness::new(cfg)
}

fn choice(names: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        let mut slot = n.as_bytes().to_vec();
        slot.resize(30, 0);
        out.extend(slot);
    }
    out.resize(90, 0);
    out
}

fn creds(user: &str, password: &str) -> Vec<u8> {
    let mut u = user.as_bytes().to_vec();
    u.resize(PWORD_USER_LEN, 0);
    let mut p = password.as_bytes().to_vec();
    p.resize(PWORD_PASSWORD_LEN, 0);
    [u, p].concat()
}

fn connect(h: &mut Harness, id: u64, peer: Peer) {
    h.input(SessionInput::Connected {
        session: SessionId(id),
        peer,
    });
    h.bytes(id, &[5, 0, 1, 1, 1, b'a' + id as u8]);
    h.take(id);
}

#[test]
fn right_password_gets_one_then_the_accept() {
    let mut h = harness(vec![AuthMethod::Null, AuthMethod::Pword], vec![]);
    h.input(SessionInput::Connected {
        session: SessionId(1),
        peer: Peer::Unix,
    });
    h.bytes(1, &[5, 0, 1, 1, 1, b'a']);
    assert_eq!(&h.take(1)[0][..], b"\x0bNULL PWORD ");
    h.bytes(1, &choice(&["PWORD"]));
    assert!(h.take(1).is_empty(), "waits for the user name and password");
    // Split across reads.
    let c = creds("alice", "secret");
    h.bytes(1, &c[..20]);
    assert!(h.take(1).is_empty());
    h.bytes(1, &c[20..]);
    let got: Vec<u8> = h.take(1).concat();
    assert_eq!(got[0], 1, "PWORD answer");
    assert_eq!(got[1], 1, "ACCEPT_SESSION");
    assert!(!h.closed.contains(&SessionId(1)));
}

#[test]
fn wrong_password_or_user_gets_zero_then_reject_auth() {
    let mut h = harness(vec![AuthMethod::Pword], vec![]);
    for (id, user, pw) in [
        (1, "alice", "Secret"),
        (2, "mallory", "secret"),
        (3, "alice", ""),
    ] {
        connect(&mut h, id, Peer::Unix);
        let mut b = choice(&["PWORD"]);
        b.extend(creds(user, pw));
        h.bytes(id, &b);
        assert_eq!(h.take(id).concat(), vec![0, 0xf7], "{user}/{pw}");
        assert!(h.closed.contains(&SessionId(id)));
    }
}

#[test]
fn required_pword_runs_after_the_chosen_method_and_ip_after_pword() {
    // NULL chosen, PWORD required: the exchange still happens.
    let mut h = harness(
        vec![AuthMethod::Null, AuthMethod::Pword],
        vec![AuthMethod::Pword],
    );
    connect(&mut h, 1, Peer::Unix);
    h.bytes(1, &choice(&["NULL"]));
    assert!(h.take(1).is_empty());
    h.bytes(1, &creds("alice", "secret"));
    assert_eq!(h.take(1).concat()[..2], [1, 1]);
    // PWORD then IP: a right password from a refused address is still refused.
    let mut h = harness(vec![AuthMethod::Pword, AuthMethod::Ip], vec![]);
    connect(&mut h, 2, Peer::Tcp("10.0.0.9".parse().unwrap()));
    let mut b = choice(&["PWORD", "IP"]);
    b.extend(creds("alice", "secret"));
    h.bytes(2, &b);
    assert_eq!(h.take(2).concat(), vec![1, 0xf7]);
    // IP first and failing: refused before any exchange.
    connect(&mut h, 3, Peer::Tcp("10.0.0.9".parse().unwrap()));
    h.bytes(3, &choice(&["IP", "PWORD"]));
    assert_eq!(h.take(3).concat(), vec![0xf7]);
}

#[test]
fn a_client_that_never_sends_its_password_is_refused_in_time() {
    let mut h = harness(vec![AuthMethod::Pword], vec![]);
    connect(&mut h, 1, Peer::Unix);
    h.bytes(1, &choice(&["PWORD"]));
    h.bytes(1, b"alice");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.take(1).concat(), vec![0xf7]);
    assert!(h.closed.contains(&SessionId(1)));
}
