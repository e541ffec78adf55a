//! `PWORD` client authentication (5.0.1's password method) between `mbus::client` and our
//! `spread`, with `AllowedAuthMethods` / `RequiredAuthMethods` as in 5.0.1 and users in
//! `spread.access_pword`; and the real libspread (`spuser`, with `MBUS_REAL_SPREAD_BIN_DIR`)
//! against the same daemon. The 5.0.1 `spuser` here has `-n`/`-p` in its usage text but
//! registers no `PWORD` method (observed: it chooses `NULL` with them), so libspread is
//! checked for what it can do: read a method list that includes `PWORD`, and be refused when
//! `PWORD` is required.

use std::process::{Command, Stdio};
use std::time::Duration;

use mbus::client::{AuthMethod, Error, Mailbox};

use crate::harness::{DaemonOptions, TestDaemon};

/// `openssl passwd -6 -salt saltsalt secret`.
const SECRET: &str =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

fn daemon(methods: &str) -> TestDaemon {
    TestDaemon::start_with(&DaemonOptions {
        extra_config: methods.to_owned(),
        files: vec![(
            "spread.access_pword".to_owned(),
            format!("# user:SHA-crypt\nalice:{SECRET}\n"),
        )],
        ..DaemonOptions::default()
    })
}

async fn connect(d: &TestDaemon, name: &str, auth: AuthMethod) -> Result<Mailbox, Error> {
    Mailbox::builder(&d.tcp())
        .name(name)
        .auth(auth)
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

fn pword(user: &str, password: &str) -> AuthMethod {
    AuthMethod::Pword {
        user: user.to_owned(),
        password: password.to_owned(),
    }
}

#[tokio::test]
async fn pword_logins_are_checked_against_the_access_file() {
    let d = daemon("AllowedAuthMethods = \"NULL PWORD\"\n");
    let mut mb = connect(&d, "a1", pword("alice", "secret"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(mb.private_group(), "#a1#localhost");
    mb.join("g").await.expect("join");
    assert!(matches!(
        connect(&d, "a2", pword("alice", "wrong")).await,
        Err(Error::RejectAuth)
    ));
    assert!(matches!(
        connect(&d, "a3", pword("mallory", "secret")).await,
        Err(Error::RejectAuth)
    ));
    // NULL is allowed too; the refused names are free again.
    connect(&d, "a2", AuthMethod::Null).await.expect("NULL");
}

#[tokio::test]
async fn required_pword_refuses_a_client_without_a_password() {
    let d = daemon("AllowedAuthMethods = \"NULL PWORD\"\nRequiredAuthMethods = \"PWORD\"\n");
    assert!(matches!(
        connect(&d, "n1", AuthMethod::Null).await,
        Err(Error::RejectAuth)
    ));
    connect(&d, "p1", pword("alice", "secret"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
}

#[tokio::test]
async fn a_client_does_not_offer_pword_to_a_daemon_without_it() {
    let d = daemon("");
    assert!(matches!(
        connect(&d, "x1", pword("alice", "secret")).await,
        Err(Error::RejectAuth)
    ));
}

/// Runs the real `spuser` against `d` for a moment; its standard output.
fn spuser(dir: &str, d: &TestDaemon, user: &str) -> String {
    let mut child = Command::new(std::path::Path::new(dir).join("spuser"))
        .args(["-s", &d.tcp(), "-u", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spuser");
    std::thread::sleep(Duration::from_secs(3));
    drop(child.stdin.take());
    let _ = child.kill();
    let out = child.wait_with_output().expect("spuser output");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn real_libspread_reads_a_list_with_pword_and_is_refused_when_it_is_required() {
    let Ok(dir) = std::env::var("MBUS_REAL_SPREAD_BIN_DIR") else {
        eprintln!("MBUS_REAL_SPREAD_BIN_DIR unset: skipped");
        return;
    };
    let d = daemon("AllowedAuthMethods = \"NULL PWORD\"\n");
    let out = spuser(&dir, &d, "u1");
    assert!(out.contains("connected to"), "{out}");
    let d = daemon("AllowedAuthMethods = \"NULL PWORD\"\nRequiredAuthMethods = \"PWORD\"\n");
    let out = spuser(&dir, &d, "u2");
    assert!(!out.contains("connected to"), "{out}");
    assert!(out.contains("SP_error"), "{out}");
}
