//! Console authentication, authorization and per-session transactions against a running
//! manager (`run_manager` over the in-memory bus, real Unix and loopback TCP listeners).

use std::path::Path;
use std::time::{Duration, Instant};

use mbus::cluster::bus::MemHub;
use mbus::cluster::manager::{register_defaults, ManagerCore, ManagerSettings};
use mbus::cluster::shell::run_manager;
use mbus::console::access::{AUTH_FAILED, NOT_AUTHORIZED};
use mbus::console::auth::hash_password;
use mbus::console::client::{ConsoleClient, Endpoint};
use mbus::console::server::{Limits, Listener};
use mbus::ecconf::Config;

struct Manager {
    dir: tempfile::TempDir,
    tcp: String,
    unix: String,
    task: tokio::task::JoinHandle<()>,
}

impl Manager {
    fn acct(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("acctlog")).unwrap_or_default()
    }
}

/// Starts a manager whose TCP listener needs a login and whose commands are authorized by
/// role: alice is `admin` (everything), bob is `viewer` (retrieve and version only), and the
/// OS user running the test is `viewer` on the Unix socket.
async fn start() -> Manager {
    let dir = tempfile::tempdir().unwrap();
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let store = format!(
        "# user:roles:hash\nalice:admin:{}\nbob:viewer:{}\n{me}:viewer:*\n",
        hash_password("alice-pw").unwrap(),
        hash_password("bob-pw").unwrap()
    );
    std::fs::write(dir.path().join("passwd"), store).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap().to_string();
    let unix_path = dir.path().join("2025").display().to_string();
    let unix = tokio::net::UnixListener::bind(&unix_path).unwrap();
    let conf = format!(
        r#"Control_Listener {{
  Enable_Authentication = true
  Enable_Authorization = true
  Password_File = "{}"
  Acct_Log = "{}"
  Listen "{unix_path}" {{ }}
  Listen "{tcp_addr}" {{ }}
}}
Authorization {{
  Role "admin" {{ allow = ( ".*" ) }}
  Role "viewer" {{ allow = ( "^retrieve " "^version$" ) }}
}}
Message_Expiration = 86400
"#,
        dir.path().join("passwd").display(),
        dir.path().join("acctlog").display()
    );
    let mut config = Config::from_str("eccluster.conf", &conf, Path::new(".")).unwrap();
    register_defaults(&mut config);
    let hub = MemHub::new();
    let core = ManagerCore::new(ManagerSettings::default(), "mgr", config, None);
    let task = tokio::spawn(run_manager(
        core,
        move || std::future::ready(hub.connect("mgr", "mgr")),
        vec![Listener::Unix(unix), Listener::Tcp(tcp)],
        Limits::default(),
        None,
    ));
    Manager {
        dir,
        tcp: tcp_addr,
        unix: unix_path,
        task,
    }
}

async fn login_client(m: &Manager, user: &str, password: &'static str) -> ConsoleClient {
    let ep = Endpoint::parse(&format!("{user}@{}", m.tcp)).unwrap();
    let mut c = ConsoleClient::connect(&ep, Duration::from_secs(5))
        .await
        .unwrap();
    c.set_password_source(Box::new(move |_| Some(password.to_string())));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_console_asks_for_a_login_and_admits_the_right_password() {
    let m = start().await;
    // Without a login every command gets the one-line demand, and nothing runs.
    let mut raw = ConsoleClient::connect(&Endpoint::Tcp(m.tcp.clone()), Duration::from_secs(5))
        .await
        .unwrap();
    raw.set_password_source(Box::new(|_| None));
    let e = raw
        .command("config set Message_Expiration 1")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "Authorization required for console session");

    let mut alice = login_client(&m, "alice", "alice-pw").await;
    assert!(alice
        .command("version")
        .await
        .unwrap()
        .contains("eccmgr version"));
    assert_eq!(
        alice
            .command("config set Message_Expiration 10")
            .await
            .unwrap(),
        "Message_Expiration = 10"
    );
    let acct = m.acct();
    assert!(
        acct.contains("user=alice") && acct.contains("login ok"),
        "{acct}"
    );
    assert!(
        acct.contains(r#"command="config set Message_Expiration 10" allowed"#),
        "{acct}"
    );
    assert!(acct.contains("refused (not logged in)"), "{acct}");
    m.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_slowly_and_the_connection_closes_after_three() {
    let m = start().await;
    let mut c = login_client(&m, "alice", "wrong").await;
    let t0 = Instant::now();
    let e = c.command("version").await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert_eq!(e.to_string(), AUTH_FAILED);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "not slowed down"
    );
    assert!(c.login("alice", "wrong").await.is_err());
    assert!(c.login("nobody", "alice-pw").await.is_err());
    // Third failure: the server closes this connection.
    assert!(c.command("version").await.is_err());
    let acct = m.acct();
    assert_eq!(acct.matches("failed").count(), 3, "{acct}");
    // The right password still works on a new connection (no lock-out after three).
    let mut ok = login_client(&m, "alice", "alice-pw").await;
    assert!(ok.command("version").await.is_ok());
    m.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_only_retrieve() {
    let m = start().await;
    let mut bob = login_client(&m, "bob", "bob-pw").await;
    assert_eq!(
        bob.command("retrieve version").await.unwrap(),
        "No responses stored for 'version'"
    );
    for refused in [
        "broadcast version",
        "config set Message_Expiration 1",
        "shutdown",
        "version please",
    ] {
        assert_eq!(
            bob.command(refused).await.unwrap(),
            NOT_AUTHORIZED,
            "{refused}"
        );
    }
    let acct = m.acct();
    assert!(
        acct.contains(r#"user=bob"#)
            && acct.contains(r#"command="shutdown" refused (not authorized)"#),
        "{acct}"
    );
    m.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_users_are_identified_by_peer_credentials() {
    let m = start().await;
    let mut c = ConsoleClient::connect(&Endpoint::Unix(m.unix.clone()), Duration::from_secs(5))
        .await
        .unwrap();
    // No password asked; the OS user's roles (viewer) apply.
    assert_eq!(
        c.command("retrieve version").await.unwrap(),
        "No responses stored for 'version'"
    );
    assert_eq!(
        c.command("flush control cache").await.unwrap(),
        NOT_AUTHORIZED
    );
    let uid = nix::unistd::getuid();
    assert!(
        m.acct().contains(&format!("peer=uid {uid}")),
        "{}",
        m.acct()
    );
    m.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_conflicting_transaction_commits_first_wins() {
    let m = start().await;
    let mut a = login_client(&m, "alice", "alice-pw").await;
    let mut b = login_client(&m, "alice", "alice-pw").await;
    assert_eq!(
        a.command("config begin").await.unwrap(),
        "Transaction started."
    );
    assert_eq!(
        b.command("config begin").await.unwrap(),
        "Transaction started."
    );
    a.command("config set Message_Expiration 10").await.unwrap();
    b.command("config set Message_Expiration 20").await.unwrap();
    assert_eq!(
        b.command("config get Message_Expiration").await.unwrap(),
        "Message_Expiration = 20"
    );
    assert_eq!(
        a.command("config commit").await.unwrap(),
        "Transaction committed (1 change(s))."
    );
    let r = b.command("config commit").await.unwrap();
    assert!(
        r.starts_with("Commit failed: Message_Expiration in scope ''"),
        "{r}"
    );
    assert!(!r.contains('\n'));
    assert!(b
        .command("config reload")
        .await
        .unwrap()
        .starts_with("config reload is not permitted inside a transaction"));
    // A session that goes away loses its open transaction.
    drop(b);
    let mut c = login_client(&m, "alice", "alice-pw").await;
    assert_eq!(
        c.command("config get Message_Expiration").await.unwrap(),
        "Message_Expiration = 10"
    );
    assert_eq!(
        c.command("config replay").await.unwrap(),
        "No transaction is open in this session."
    );
    m.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_change_applies_to_open_sessions() {
    let m = start().await;
    let mut bob = login_client(&m, "bob", "bob-pw").await;
    assert_eq!(
        bob.command("broadcast version").await.unwrap(),
        NOT_AUTHORIZED
    );
    let mut alice = login_client(&m, "alice", "alice-pw").await;
    let r = alice
        .command(r#"config set Authorization Role viewer allow ( "^retrieve " "^broadcast " )"#)
        .await
        .unwrap();
    assert!(r.starts_with("\tallow = ("), "{r}");
    assert_eq!(
        bob.command("broadcast version").await.unwrap(),
        "Sent to 0 node(s) on ec_console."
    );
    assert_eq!(bob.command("version").await.unwrap(), NOT_AUTHORIZED);
    m.task.abort();
}
