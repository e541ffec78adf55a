//! Running `spread` as a service: the systemd unit (checked by `systemd-analyze verify` when it
//! is installed), the Debian package metadata (every asset exists or is built, the unit starts
//! a packaged binary with the packaged configuration), the shipped `/etc/spread.conf`, the
//! ready notification (`NOTIFY_SOCKET`), and `SIGUSR1` reopening `EventLogFile`.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `[Section]` → key → values (a key may repeat).
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        assert!(!section.is_empty(), "{line} outside a section");
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

/// The `assets` of `[package.metadata.deb]`: (source, destination, mode).
fn deb_assets() -> Vec<(String, String, String)> {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let deb = toml
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("[package.metadata.deb] in Cargo.toml");
    let assets = deb
        .split("assets = [")
        .nth(1)
        .expect("assets")
        .split("\n]")
        .next()
        .expect("end of assets");
    assets
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .map(|l| {
            let f: Vec<String> = l.split('"').skip(1).step_by(2).map(str::to_owned).collect();
            assert_eq!(f.len(), 3, "asset {l}");
            (f[0].clone(), f[1].clone(), f[2].clone())
        })
        .collect()
}

#[test]
fn systemd_unit_is_notify_restarts_on_failure_and_runs_the_packaged_daemon() {
    let text = std::fs::read_to_string(root().join("packaging/spread.service")).expect("unit");
    let u = unit_file(&text);
    let svc = &u["Service"];
    let one = |k: &str| svc.get(k).map(|v| v.join(" ")).unwrap_or_default();
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("ExecStart"), "/usr/sbin/spread -c /etc/spread.conf");
    // DaemonUser in spread.conf is the user it runs as: it must start as root to chroot.
    assert!(
        !svc.contains_key("User"),
        "User= would stop the chroot/DaemonUser drop"
    );
    assert_eq!(u["Install"]["WantedBy"], ["multi-user.target"]);
    // What the unit names, the package installs.
    let assets = deb_assets();
    let installs = |dest: &str| {
        assets.iter().any(|(src, d, _)| {
            let name = Path::new(src).file_name().and_then(|n| n.to_str());
            d.trim_start_matches('/') == dest.trim_start_matches('/')
                || (d.ends_with('/')
                    && format!("{d}{}", name.unwrap_or("")) == dest.trim_start_matches('/'))
        })
    };
    assert!(installs("/usr/sbin/spread"), "{assets:?}");
    assert!(installs("/etc/spread.conf"), "{assets:?}");
    // systemd's own check, when systemd-analyze is there (on a copy naming the built binary).
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: verify skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("spread.service");
    let conf = root().join("packaging/spread.conf");
    std::fs::write(
        &unit,
        text.replace(
            "ExecStart=/usr/sbin/spread -c /etc/spread.conf",
            &format!(
                "ExecStart={} -c {}",
                env!("CARGO_BIN_EXE_spread"),
                conf.display()
            ),
        ),
    )
    .expect("write unit");
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&o.stderr);
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("spread.service"))
        .collect();
    assert!(o.status.success() && complaints.is_empty(), "{err}");
}

#[test]
fn deb_assets_exist_or_are_built_and_every_binary_has_a_man_page() {
    let assets = deb_assets();
    let bins: Vec<String> = std::fs::read_dir(root().join("src/bin"))
        .expect("src/bin")
        .filter_map(|e| {
            let p = e.ok()?.path();
            Some(p.file_stem()?.to_str()?.to_owned())
        })
        .collect();
    let man: Vec<String> = mbus::cli::commands()
        .iter()
        .map(|c| c.get_name().to_owned())
        .collect();
    let mut shipped = Vec::new();
    for (src, dest, mode) in &assets {
        assert!(
            ["644", "755"].contains(&mode.as_str()),
            "{src}: mode {mode}"
        );
        if let Some(bin) = src.strip_prefix("target/release/") {
            assert!(
                bins.contains(&bin.to_owned()),
                "{bin} is not a binary of this crate"
            );
            assert_eq!(mode, "755", "{src}");
            assert!(
                man.contains(&bin.to_owned()),
                "{bin} has no man page definition"
            );
            shipped.push(bin.to_owned());
        } else if src.starts_with("target/gen-docs/") {
            // Written by mbus-gen-docs before packaging (packaging/build-deb.sh).
            assert!(dest.starts_with("usr/share/"), "{src} → {dest}");
        } else {
            assert!(root().join(src).is_file(), "asset {src} missing");
        }
    }
    for b in [
        "spread",
        "mbus-status",
        "eccmgr",
        "ec_console",
        "mbus-node",
        "mbus-passwd",
    ] {
        assert!(shipped.iter().any(|s| s == b), "{b} not packaged");
    }
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        toml.contains("unit-name = \"spread\""),
        "systemd-units entry"
    );
    let postinst = root().join("packaging/debian/postinst");
    let text = std::fs::read_to_string(&postinst).expect("postinst");
    assert!(
        text.contains("#DEBHELPER#") && text.contains("adduser --system"),
        "{text}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&postinst).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o111, 0o111, "postinst must be executable");
    let script = root().join("packaging/build-deb.sh");
    let s = std::fs::read_to_string(&script).expect("build-deb.sh");
    assert!(
        s.contains("cargo deb") && s.contains("mbus-gen-docs"),
        "{s}"
    );
}

#[test]
fn shipped_spread_conf_is_a_5_0_1_configuration_that_drops_to_the_spread_account() {
    let path = root().join("packaging/spread.conf");
    let text = std::fs::read_to_string(&path).expect("spread.conf");
    let c = spread::config::Config::parse(&text, "packaging/spread.conf").expect("parses");
    assert_eq!(c.host_count(), 1);
    let (_, h) = c.hosts().next().expect("a host");
    assert_eq!(h.addr.ip.to_string(), "127.0.0.1");
    assert_eq!(c.segments[0].port, 4803);
    let o = &c.options;
    assert_eq!(o.daemon_user.as_deref(), Some("spread"), "{o:?}");
    assert_eq!(o.runtime_dir.as_deref(), Some("/var/lib/spread"), "{o:?}");
    // mbus options stay off the file (a real 5.0.1 daemon must read it).
    assert!(!text.contains("metrics"), "{text}");
}

/// A daemon on a one-host loopback configuration with `extra` options, its log file, and a
/// systemd notify socket it was started with.
struct Service {
    child: std::process::Child,
    dir: tempfile::TempDir,
    notify: UnixDatagram,
}

impl Service {
    fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("spread.log");
        std::fs::write(
            dir.path().join("spread.conf"),
            format!(
                "Spread_Segment 127.0.0.255:{port} {{\n  localhost 127.0.0.1\n}}\nEventLogFile = {}\n{extra}",
                log.display()
            ),
        )
        .expect("config");
        let sock = dir.path().join("notify");
        let notify = UnixDatagram::bind(&sock).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let child = Command::new(env!("CARGO_BIN_EXE_spread"))
            .args(["-n", "localhost", "-c"])
            .arg(dir.path().join("spread.conf"))
            .current_dir(dir.path())
            .env("NOTIFY_SOCKET", &sock)
            .env("MBUS_UNIX_SOCKET_DIR", dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spread");
        Self { child, dir, notify }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("spread.log")
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    fn until_log(&self, path: &Path, what: &str) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(what) {
                return text;
            }
            assert!(
                Instant::now() < end,
                "{what:?} never logged in {}:\n{text}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ready_is_notified_once_listening_and_sigusr1_reopens_the_log_file() {
    let mut s = Service::start("");
    let mut buf = [0u8; 256];
    let n = s.notify.recv(&mut buf).expect("READY=1 on NOTIFY_SOCKET");
    assert_eq!(&buf[..n], b"READY=1\n");
    // Ready means listening: the client port takes a connection at once.
    let port = std::fs::read_to_string(s.dir.path().join("spread.conf"))
        .expect("conf")
        .split(':')
        .nth(1)
        .and_then(|p| p.split_whitespace().next().map(str::to_owned))
        .expect("port");
    std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port")))
        .expect("listening when READY was sent");
    let log = s.log_path();
    s.until_log(&log, "daemon ready");
    // logrotate: rename, then SIGUSR1; the daemon writes to the new file and keeps running.
    let rotated = s.dir.path().join("spread.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    s.signal("-USR1");
    let new = s.until_log(&log, "SIGUSR1: reopened the log file");
    assert!(!new.contains("daemon ready"), "{new}");
    assert!(std::fs::read_to_string(&rotated)
        .expect("old")
        .contains("daemon ready"));
    assert!(
        s.child.try_wait().expect("wait").is_none(),
        "SIGUSR1 ended the daemon"
    );
    s.signal("-TERM");
    s.until_log(&log, "SIGTERM received");
    let end = Instant::now() + Duration::from_secs(10);
    while s.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < end, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
