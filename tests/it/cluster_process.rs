//! Multi-process tests of `eccmgr` and `ec_console`: the manager runs a self-contained demo
//! cluster (three in-process node agents in two subclusters on the in-memory bus, `-s
//! memory:…`), consoles are separate processes or raw control-socket connections.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = "memory:east=n1,n2;west=n3";

struct Manager {
    child: Child,
    socket: PathBuf,
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_manager(dir: &Path, extra_config: &str) -> Manager {
    let socket = dir.join("ctl");
    let conf = dir.join("eccluster.conf");
    std::fs::write(
        &conf,
        format!("Control_Listener {{ Listen \"{}\" {{ }} }}\nLogs {{ Control_Cache = \"{}\" }}\n{extra_config}", socket.display(), dir.join("cache").display()),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_eccmgr"))
        .args(["-c", conf.to_str().unwrap(), "-s", DEMO])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn eccmgr");
    let m = Manager { child, socket };
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&m.socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "eccmgr did not open its control socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

fn console(m: &Manager, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ec_console"));
    c.arg(&m.socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    let mut child = c.spawn().expect("spawn ec_console");
    if let Some(s) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Retries `retrieve` until no node is pending (bounded).
fn retrieve_all(m: &Manager, cmd: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = text(&console(m, &["retrieve", cmd], None));
        if !out.contains("(no response yet)") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_members(m: &Manager, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(&console(m, &["show", "cluster", "membership"], None))
        .matches("Node Type: Momentum")
        .count()
        < n
    {
        assert!(Instant::now() < deadline, "nodes did not join");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cluster_process_console_batch_subclusters_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_manager(dir.path(), "");
    wait_members(&m, 3);
    let v = console(&m, &["version"], None);
    assert!(v.status.success());
    assert!(text(&v).contains("# eccmgr version: "));

    let b = console(&m, &["broadcast", "cluster", "nodename"], None);
    assert_eq!(text(&b), "Sent to 3 node(s) on ec_console.\n");
    assert_eq!(
        retrieve_all(&m, "cluster nodename"),
        "n1:\nn1\n\nn2:\nn2\n\nn3:\nn3\n"
    );

    // Batch on stdin: subcluster broadcast reaches exactly the west node.
    let o = console(&m, &[], Some("subcluster broadcast west cluster info\n"));
    assert!(o.status.success());
    let west = retrieve_all(&m, "cluster info");
    assert!(
        west.starts_with("n3:\nDaemon: memory:n3 [m:#ec0-"),
        "{west}"
    );
    assert!(!west.contains("n1:") && !west.contains("n2:"), "{west}");
    let unknown = console(&m, &["subcluster", "broadcast", "north", "version"], None);
    assert_eq!(
        text(&unknown),
        "Unknown subcluster 'north' (known: east, west)\n"
    );

    // Errors: exit status 2 for a refused command, 1 for no connection.
    let bad = console(&m, &[], Some("frobnicate\nversion\n"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("# eccmgr version"),
        "the session continues after an error"
    );
    let none = Command::new(env!("CARGO_BIN_EXE_ec_console"))
        .args([dir.path().join("nope").to_str().unwrap(), "version"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));

    // Node-side unknown command: one line from each node.
    console(&m, &["unicast", "n2", "frob", "nicate"], None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut r;
    loop {
        r = text(&console(
            &m,
            &["retrieve_node", "n2", "frob", "nicate"],
            None,
        ));
        if !r.contains("no response yet") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        r,
        "Unknown command 'frob nicate'. Type 'help' for a list of commands.\n"
    );
}

fn frame(cmd: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(&u16::try_from(cmd.len()).unwrap().to_be_bytes());
    v.extend_from_slice(cmd);
    v
}

fn read_reply(s: &mut UnixStream) -> (u16, String) {
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    let ty = u16::from_be_bytes(t);
    let len = if ty == 1 {
        let mut l = [0u8; 2];
        s.read_exact(&mut l).unwrap();
        usize::from(u16::from_be_bytes(l))
    } else {
        let mut l = [0u8; 4];
        s.read_exact(&mut l).unwrap();
        u32::from_be_bytes(l) as usize
    };
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (ty, String::from_utf8(body).unwrap())
}

#[test]
fn cluster_process_framing_bad_input_and_large_replies() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_manager(dir.path(), "");
    let mut a = UnixStream::connect(&m.socket).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Over-long line: one-line error, connection stays.
    a.write_all(&frame(&vec![b'x'; 9000])).unwrap();
    let (ty, r) = read_reply(&mut a);
    assert_eq!(
        (ty, r.as_str()),
        (1, "Command line too long (9000 bytes, limit 8192)")
    );
    a.write_all(&frame(b"info")).unwrap();
    assert!(read_reply(&mut a).1.starts_with("Daemon: "));

    // Malformed frame on another connection: only that one closes.
    let mut b = UnixStream::connect(&m.socket).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    b.write_all(&[0, 7, 0, 4, b'i', b'n', b'f', b'o']).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        b.read(&mut buf).unwrap_or(0),
        0,
        "malformed connection closed"
    );
    a.write_all(&frame(b"version")).unwrap();
    assert!(read_reply(&mut a).1.contains("eccmgr version"));

    // A reply above 65535 bytes uses the 32-bit frame.
    for i in 0..20 {
        let cmd = format!("config set Big opt{i} \"{}\"", "v".repeat(4000));
        a.write_all(&frame(cmd.as_bytes())).unwrap();
        read_reply(&mut a);
    }
    a.write_all(&frame(b"config showrecurse Big")).unwrap();
    let (ty, big) = read_reply(&mut a);
    assert_eq!(ty, 2);
    assert!(
        big.len() > 80_000 && big.starts_with("Big {"),
        "{}",
        big.len()
    );
}

#[test]
fn cluster_process_control_cache_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let m = start_manager(dir.path(), "");
        wait_members(&m, 3);
        console(&m, &["broadcast", "cluster", "nodeaddr"], None);
        assert_eq!(
            retrieve_all(&m, "cluster nodeaddr")
                .matches("0.0.0.0:4802")
                .count(),
            3
        );
        let o = console(&m, &["shutdown"], None);
        assert_eq!(text(&o), "Shutting down the cluster manager.\n");
    }
    assert!(std::fs::read_to_string(dir.path().join("cache"))
        .unwrap()
        .contains("cluster nodeaddr"));
    let m = start_manager(dir.path(), "");
    let r = text(&console(&m, &["retrieve", "cluster", "nodeaddr"], None));
    assert_eq!(r.matches("0.0.0.0:4802").count(), 3, "{r}");
    console(&m, &["flush", "control", "cache"], None);
    assert_eq!(
        text(&console(&m, &["retrieve", "cluster", "nodeaddr"], None)),
        "No responses stored for 'cluster nodeaddr'\n"
    );
}

/// `Embedded_Ring = true`: the ring runs inside `eccmgr`; a node agent attaches to it.
#[test]
fn cluster_process_embedded_ring() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let mbus = dir.path().join("mbus.conf");
    std::fs::write(
        &mbus,
        format!("# Subcluster: east => localhost\nSpread_Segment 127.0.0.255:{port} {{\n  localhost 127.0.0.1\n}}\nRuntimeDir = {}\n", dir.path().display()),
    )
    .unwrap();
    let m = start_manager(
        dir.path(),
        &format!(
            "Embedded_Ring = true\nMbus_Conf = \"{}\"\nEmbedded_Name = localhost\n",
            mbus.display()
        ),
    );
    let mut node = Command::new(env!("CARGO_BIN_EXE_mbus-node"))
        .args([
            "-s",
            &format!("{port}@127.0.0.1"),
            "-n",
            "n1",
            "-S",
            "east",
            "-m",
            mbus.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = false;
    while Instant::now() < deadline {
        if text(&console(&m, &["show", "cluster", "membership"], None))
            .contains("Node Name: n1\nSubcluster: east")
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = node.kill();
    let _ = node.wait();
    assert!(ok, "node did not join the embedded ring");
    // A clean shutdown also stops the embedded daemon and removes its Unix socket.
    assert_eq!(
        text(&console(&m, &["shutdown"], None)),
        "Shutting down the cluster manager.\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/tmp/{port}")).exists() {
        assert!(
            Instant::now() < deadline,
            "embedded daemon left /tmp/{port} behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_user(passwd: &Path, user: &str, roles: &str, password: &str) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mbus-passwd"))
        .args(["-f", passwd.to_str().unwrap(), "-r", roles, "--stdin", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mbus-passwd");
    writeln!(c.stdin.as_mut().unwrap(), "{password}").unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `mbus-passwd` fills the store; `ec_console user@host:port` logs in (password from
/// `$EC_CONSOLE_PASSWORD` in batch use) and is authorized by role; a wrong password and an
/// `ssh://` endpoint fail with one line and exit status 1.
#[test]
fn cluster_process_console_login_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("console.passwd");
    add_user(&passwd, "alice", "admin", "alice-pw");
    add_user(&passwd, "bob", "viewer", "bob-pw");
    let store = std::fs::read_to_string(&passwd).unwrap();
    assert!(store.contains("alice:admin:$argon2id$") && !store.contains("alice-pw"));
    let port = crate::harness::free_port();
    let _m = start_manager(
        dir.path(),
        &format!(
            "Control_Listener {{\n  Enable_Authorization = true\n  Password_File = \"{}\"\n  Listen \"127.0.0.1:{port}\" {{ Enable_Authentication = true }}\n}}\nAuthorization {{\n  Role \"admin\" {{ allow = ( \".*\" ) }}\n  Role \"viewer\" {{ allow = ( \"^retrieve \" ) }}\n}}\n",
            passwd.display()
        ),
    );
    let run = |user: &str, pw: &str, args: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new(env!("CARGO_BIN_EXE_ec_console"))
                .arg(format!("{user}@127.0.0.1:{port}"))
                .args(args)
                .env("EC_CONSOLE_PASSWORD", pw)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            if !err.contains("cannot connect") || Instant::now() > deadline {
                return o;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while text(&run(
        "alice",
        "alice-pw",
        &["show", "cluster", "membership"],
    ))
    .matches("Node Type: Momentum")
    .count()
        < 3
    {
        assert!(Instant::now() < deadline, "nodes did not join");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run("alice", "alice-pw", &["broadcast", "version"]);
    assert_eq!(text(&o), "Sent to 3 node(s) on ec_console.\n");
    let o = run("bob", "bob-pw", &["broadcast", "version"]);
    assert_eq!(text(&o), "Not Authorized for this command\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = text(&run("bob", "bob-pw", &["retrieve", "version"]));
        if t.starts_with("n1:\n#") {
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run("bob", "wrong", &["retrieve", "version"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).ends_with("ec_console: Authentication failed.\n"));
    let o = Command::new(env!("CARGO_BIN_EXE_ec_console"))
        .args(["ssh://u@h/ecuser@h:2025", "version"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "ec_console: ssh://u@h/ecuser@h:2025: SSH-tunnelled endpoints are not supported\n"
    );
}
