//! Network-namespace lab for multi-daemon tests: daemons on their own 10.x addresses that
//! exist only inside namespaces this test creates (and deletes on drop), one Linux bridge per
//! segment in a hub/router namespace, and a private /tmp per node.
//!
//! ```text
//! hub namespace ── bridge s0 (10.<net>.0.254/24) ── veth ── node ns "…s0n0" 10.<net>.0.1/24
//!               │                                  └─ veth ── node ns "…s0n1" 10.<net>.0.2/24
//!               └─ bridge s1 (10.<net>.1.254/24) ── …        (ip_forward=1 when >1 segment)
//! ```
//!
//! Every process of a node runs through [`NetLab::command`]: `ip netns exec <ns> unshare -m`
//! with the node's own directory bind-mounted on /tmp (shared by all processes of that node,
//! invisible to the others), so Unix sockets in /tmp never collide. Everything is skipped with
//! a message when not root, when `ip`/`unshare` are missing, or when namespaces cannot be made.
#![allow(dead_code)] // helpers for the multi-daemon tests

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Second octet of every lab address (namespaces isolate them, so labs can share it).
pub(crate) const LAB_NET: u8 = 98;
/// Longest a lab command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One daemon host.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Namespace name.
    pub(crate) ns: String,
    /// Segment index.
    pub(crate) segment: usize,
    /// Address inside the namespace.
    pub(crate) addr: Ipv4Addr,
    /// Hub-side veth name (link down = node cut off).
    pub(crate) hub_if: String,
    /// Directory mounted on the node's /tmp.
    pub(crate) tmp: PathBuf,
}

/// A set of namespaces wired into segments; removed on drop.
#[derive(Debug)]
pub(crate) struct NetLab {
    /// Hub / router namespace.
    pub(crate) hub: String,
    /// Nodes, segment by segment.
    pub(crate) nodes: Vec<Node>,
    /// Segment count.
    pub(crate) segments: usize,
    root: PathBuf,
    children: Vec<Child>,
    /// Real 5.0.1 daemons started here: (node, name, pid), checked by
    /// [`NetLab::check_real_daemons`].
    reals: Vec<(usize, String, u32)>,
}

/// Env var naming a real Spread 5.0.1 daemon binary (tests with it skip without it).
pub(crate) const REAL_SPREAD_ENV: &str = "MBUS_REAL_SPREAD";

/// The real Spread 5.0.1 daemon binary, if `MBUS_REAL_SPREAD` names one.
pub(crate) fn real_spread() -> Option<String> {
    std::env::var(REAL_SPREAD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
}

/// Lines of a 5.0.1 log that mean it hit a fatal path (`Alarmp(SPLOG_FATAL…)` ends in
/// "Exit caused by Alarm!").
fn fatal_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Alarm") || l.contains("FATAL"))
        .collect()
}

fn run(args: &[&str]) -> Result<(), String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    let deadline = Instant::now() + IP_TIMEOUT;
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            if st.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("{} failed: {st} {err}", args.join(" ")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} timed out", args.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `program` as an absolute path (searched in PATH when it has no slash).
fn resolve(program: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .map_or_else(|| program.to_string(), |p| p.to_string_lossy().into_owned())
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub(crate) fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl NetLab {
    /// Builds a lab with `sizes[s]` nodes in segment `s`. `None` (after printing why) when
    /// the machine cannot run it; the caller then returns early.
    pub(crate) fn new(sizes: &[usize]) -> Option<Self> {
        if !is_root() {
            eprintln!("netns lab skipped: not root");
            return None;
        }
        if !have("ip") || !have("unshare") {
            eprintln!("netns lab skipped: `ip` or `unshare` missing");
            return None;
        }
        let id = format!(
            "mb{}x{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(format!("mbus-netns-{id}"));
        let mut lab = Self {
            hub: format!("{id}h"),
            nodes: Vec::new(),
            segments: sizes.len(),
            root,
            children: Vec::new(),
            reals: Vec::new(),
        };
        match lab.build(&id, sizes) {
            Ok(()) => Some(lab),
            Err(e) => {
                eprintln!("netns lab skipped: {e}");
                None // drop cleans up what was made
            }
        }
    }

    fn build(&mut self, id: &str, sizes: &[usize]) -> Result<(), String> {
        std::fs::create_dir_all(&self.root).map_err(|e| e.to_string())?;
        let hub = self.hub.clone();
        run(&["ip", "netns", "add", &hub])?;
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        if sizes.len() > 1 {
            run(&[
                "ip",
                "netns",
                "exec",
                &hub,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])?;
        }
        for (s, &n) in sizes.iter().enumerate() {
            let br = format!("br{s}");
            run(&["ip", "-n", &hub, "link", "add", &br, "type", "bridge"])?;
            let router = format!("10.{LAB_NET}.{s}.254/24");
            run(&["ip", "-n", &hub, "addr", "add", &router, "dev", &br])?;
            run(&["ip", "-n", &hub, "link", "set", &br, "up"])?;
            for i in 0..n {
                let ns = format!("{id}s{s}n{i}");
                let hub_if = format!("v{s}n{i}");
                let addr = Ipv4Addr::new(10, LAB_NET, s as u8, (i + 1) as u8);
                let tmp = self.root.join(format!("s{s}n{i}"));
                std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
                run(&["ip", "netns", "add", &ns])?;
                self.nodes.push(Node {
                    ns: ns.clone(),
                    segment: s,
                    addr,
                    hub_if: hub_if.clone(),
                    tmp,
                });
                run(&[
                    "ip", "-n", &hub, "link", "add", &hub_if, "type", "veth", "peer", "name",
                    "eth0", "netns", &ns,
                ])?;
                run(&[
                    "ip", "-n", &hub, "link", "set", &hub_if, "master", &br, "up",
                ])?;
                run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
                let cidr = format!("{addr}/24");
                run(&[
                    "ip", "-n", &ns, "addr", "add", &cidr, "brd", "+", "dev", "eth0",
                ])?;
                run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
                let gw = format!("10.{LAB_NET}.{s}.254");
                run(&["ip", "-n", &ns, "route", "add", "default", "via", &gw])?;
            }
        }
        Ok(())
    }

    /// Broadcast address of segment `s`.
    pub(crate) fn bcast(&self, s: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, LAB_NET, s as u8, 255)
    }

    /// A command that runs `program args…` inside node `i`'s namespace with its private /tmp.
    /// A program that itself lives under /tmp (hidden by the mount) is opened before the
    /// mount and executed through `/proc/self/fd/9`.
    pub(crate) fn command(&self, i: usize, program: &str) -> Command {
        let node = &self.nodes[i];
        let prog = resolve(program);
        let script = if prog.starts_with("/tmp/") {
            r#"exec 9<"$1" && mount --bind "$0" /tmp && shift && exec /proc/self/fd/9 "$@""#
        } else {
            r#"mount --bind "$0" /tmp && exec "$@""#
        };
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &node.ns,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(script)
        .arg(&node.tmp)
        .arg(prog);
        c
    }

    /// Spawns `cmd` (from [`NetLab::command`]) and kills it when the lab is dropped.
    /// `ip netns exec`, `unshare` and `sh -c exec` all exec, so the pid is the program's.
    pub(crate) fn spawn(&mut self, mut cmd: Command) -> std::io::Result<u32> {
        let child = cmd.spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Kills one process started by [`NetLab::spawn`] (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self, pid: u32) {
        if let Some(pos) = self.children.iter().position(|c| c.id() == pid) {
            let mut c = self.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A spread.conf for this lab: one `Spread_Segment <bcast>:<port>` per segment listing
    /// `names[i]` at node `i`'s address, then `extra` (e.g. `"RuntimeDir = /tmp/rt\n"`).
    pub(crate) fn spread_conf(&self, names: &[&str], port: u16, extra: &str) -> String {
        let mut text = String::new();
        for s in 0..self.segments {
            text += &format!("Spread_Segment {}:{port} {{\n", self.bcast(s));
            for (i, n) in self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.segment == s)
            {
                text += &format!("  {} {}\n", names[i], n.addr);
            }
            text += "}\n";
        }
        text + extra
    }

    /// Starts a daemon binary on node `i` as `<bin> -n <name> -c /tmp/spread.conf` after
    /// writing `conf` to the node's /tmp (and a world-writable /tmp/rt for `RuntimeDir`);
    /// stdout and stderr go to the node's `/tmp/<name>.log` ([`NetLab::log`]).
    /// Killed when the lab is dropped.
    pub(crate) fn start_daemon(
        &mut self,
        i: usize,
        bin: &str,
        name: &str,
        conf: &str,
    ) -> std::io::Result<u32> {
        self.start_daemon_args(i, bin, name, conf, &[])
    }

    /// [`NetLab::start_daemon`] with `args` after `-c /tmp/spread.conf` (e.g. our
    /// `--link-key /tmp/ring.key`).
    pub(crate) fn start_daemon_args(
        &mut self,
        i: usize,
        bin: &str,
        name: &str,
        conf: &str,
        args: &[&str],
    ) -> std::io::Result<u32> {
        self.start_daemon_env(i, bin, name, conf, args, &[])
    }

    /// [`NetLab::start_daemon_args`] with environment variables `env` for the daemon.
    pub(crate) fn start_daemon_env(
        &mut self,
        i: usize,
        bin: &str,
        name: &str,
        conf: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> std::io::Result<u32> {
        let dir = self.nodes[i].tmp.clone();
        std::fs::write(dir.join("spread.conf"), conf)?;
        let rt = dir.join("rt");
        std::fs::create_dir_all(&rt)?;
        std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        // Appended: a daemon replaced on the same node keeps its predecessor's log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))?;
        let real = real_spread().is_some_and(|r| r == bin);
        let mut cmd = if real {
            // 5.0.1 buffers stdout: line-buffered, its last words before dying are kept.
            let mut c = self.command(i, "stdbuf");
            c.args(["-oL", bin]);
            c
        } else {
            self.command(i, bin)
        };
        cmd.args(["-n", name, "-c", "/tmp/spread.conf"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let pid = self.spawn(cmd)?;
        if real {
            self.reals.push((i, name.to_owned(), pid));
        }
        Ok(pid)
    }

    /// Is the process `pid` started by [`NetLab::spawn`] still running?
    pub(crate) fn alive(&mut self, pid: u32) -> bool {
        self.children
            .iter_mut()
            .find(|c| c.id() == pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Every real 5.0.1 daemon started here (and not killed by the test) still runs and its
    /// log shows no fatal alarm; else the reason, with the tail of its log.
    pub(crate) fn check_real_daemons(&mut self) -> Result<(), String> {
        for (i, name, pid) in self.reals.clone() {
            let killed = !self.children.iter().any(|c| c.id() == pid);
            let log = self.log(i, &name);
            let fatal = fatal_lines(&log);
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if !fatal.is_empty() {
                return Err(format!(
                    "real daemon {name}: fatal alarm {fatal:?}; log tail:\n{}",
                    tail.join("\n")
                ));
            }
            if !killed && !self.alive(pid) {
                return Err(format!(
                    "real daemon {name} is gone; log tail:\n{}",
                    tail.join("\n")
                ));
            }
        }
        Ok(())
    }

    /// What daemon `name` started with [`NetLab::start_daemon`] on node `i` logged so far.
    pub(crate) fn log(&self, i: usize, name: &str) -> String {
        std::fs::read_to_string(self.nodes[i].tmp.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Cuts node `i` off (`up = false`) or reconnects it, on the hub side of its link.
    pub(crate) fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        run(&[
            "ip",
            "-n",
            &self.hub,
            "link",
            "set",
            &self.nodes[i].hub_if,
            state,
        ])
    }

    /// Turns routing between segments on or off (a router cut, as in the `n_*` captures).
    pub(crate) fn set_forwarding(&self, on: bool) -> Result<(), String> {
        let v = format!("net.ipv4.ip_forward={}", u8::from(on));
        run(&["ip", "netns", "exec", &self.hub, "sysctl", "-qw", &v])
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.nodes {
            let _ = run(&["ip", "netns", "del", &n.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Env var that turns [`udp_helper`] into a tiny UDP tool for lab checks.
const HELPER_ENV: &str = "MBUS_NETNS_UDP_HELPER";

/// Prints every datagram arriving on `s` until `secs` have passed, as `DGRAM <src> <hex>`.
fn print_datagrams(s: &std::net::UdpSocket, secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut buf = vec![0u8; 65_535];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
            let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
            println!("DGRAM {} {hex} {port}", from.ip());
        }
    }
}

/// Not a test on its own: a tiny UDP tool run inside lab namespaces, selected by
/// `MBUS_NETNS_UDP_HELPER`:
/// * `recv:<ip>:<port>` waits (≤ 5 s) for one datagram and prints `GOT-FROM <src ip>`;
/// * `send:<ip>:<port>` sends one datagram (broadcast allowed);
/// * `listen:<secs>:<ip>:<port>` prints every datagram for `secs` (see [`print_datagrams`]);
/// * `sendrecv:<secs>:<bind ip:port>:<dst ip:port>:<hex>` sends `hex` from the bound socket,
///   then prints what arrives on it for `secs`;
/// * `periodic:<secs>:<every ms>:<port>:<dst ip:port>:<hex>` binds 0.0.0.0:<port> and
///   0.0.0.0:<port+1>, sends `hex` from the first every `every ms`, and prints what arrives on
///   both for `secs` (impersonating a daemon).
#[test]
#[ignore = "helper process for netns tests"]
fn udp_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (mode, rest) = spec.split_once(':').unwrap();
    match mode {
        "recv" => {
            let s = std::net::UdpSocket::bind(rest).unwrap();
            println!("READY");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let (_, from) = s.recv_from(&mut buf).unwrap();
            println!("GOT-FROM {}", from.ip());
        }
        "send" => {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_broadcast(true).unwrap();
            s.send_to(b"lab", rest).unwrap();
        }
        "listen" => {
            let (secs, addr) = rest.split_once(':').unwrap();
            let s = std::net::UdpSocket::bind(addr).unwrap();
            println!("READY");
            print_datagrams(&s, secs.parse().unwrap());
        }
        "sendrecv" => {
            let parts: Vec<&str> = rest.splitn(6, ':').collect();
            let [secs, bip, bport, dip, dport, hex] = parts[..] else {
                panic!("bad spec")
            };
            let s = std::net::UdpSocket::bind(format!("{bip}:{bport}")).unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            s.send_to(&bytes, format!("{dip}:{dport}")).unwrap();
            print_datagrams(&s, secs.parse().unwrap());
        }
        "periodic" => {
            let parts: Vec<&str> = rest.splitn(6, ':').collect();
            let [secs, every, port, dip, dport, hex] = parts[..] else {
                panic!("bad spec")
            };
            let secs: f64 = secs.parse().unwrap();
            let port: u16 = port.parse().unwrap();
            let data = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
            data.set_broadcast(true).unwrap();
            let token = std::net::UdpSocket::bind(("0.0.0.0", port + 1)).unwrap();
            println!("READY");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let sender = data.try_clone().unwrap();
            let dst = format!("{dip}:{dport}");
            let every = Duration::from_millis(every.parse().unwrap());
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let t = std::thread::spawn(move || print_datagrams(&token, secs));
            let d = std::thread::spawn(move || print_datagrams(&data, secs));
            while Instant::now() < end {
                let _ = sender.send_to(&bytes, &dst);
                std::thread::sleep(every);
            }
            t.join().unwrap();
            d.join().unwrap();
        }
        _ => panic!("bad helper mode"),
    }
}

/// A [`udp_helper`] process for node `node` (stdout piped: parse it with [`datagrams`]).
pub(crate) fn udp_tool(lab: &NetLab, node: usize, spec: &str) -> Command {
    let mut c = lab.command(node, std::env::current_exe().unwrap().to_str().unwrap());
    c.args(["--exact", "netns::udp_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// A running [`udp_tool`] that has bound its sockets (it printed `READY`).
pub(crate) struct Tool {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

/// Longest a tool may take to start (a loaded machine) or to finish.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

impl Tool {
    /// Spawns `cmd` (from [`udp_tool`]) and waits until it has bound its sockets.
    pub(crate) fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut tool = Self { child, lines };
        let deadline = Instant::now() + TOOL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tool.lines.recv_timeout(left) {
                Ok(l) if l == "READY" => return tool,
                Ok(_) => {}
                Err(_) => {
                    let _ = tool.child.kill();
                    panic!("udp tool did not get ready in {TOOL_TIMEOUT:?}");
                }
            }
        }
    }

    /// Waits for the tool to exit (killing it after [`TOOL_TIMEOUT`]) and returns what it
    /// printed after `READY`, for [`datagrams`].
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let deadline = Instant::now() + TOOL_TIMEOUT;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut text = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
            text += &l;
            text.push('\n');
        }
        text.into_bytes()
    }
}

/// `(source ip, bytes)` of every `DGRAM` line a [`udp_tool`] printed.
pub(crate) fn datagrams(stdout: &[u8]) -> Vec<(Ipv4Addr, Vec<u8>)> {
    datagrams_with_port(stdout)
        .into_iter()
        .map(|(ip, b, _)| (ip, b))
        .collect()
}

/// `(source ip, bytes, local port it arrived on)` of every `DGRAM` line.
pub(crate) fn datagrams_with_port(stdout: &[u8]) -> Vec<(Ipv4Addr, Vec<u8>, u16)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("DGRAM ")?.split(' ');
            let ip = it.next()?.parse().ok()?;
            let hex = it.next()?;
            let port = it.next()?.parse().ok()?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((ip, bytes, port))
        })
        .collect()
}

fn helper(lab: &NetLab, node: usize, spec: &str) -> Command {
    udp_tool(lab, node, spec)
}

/// Starts a receiver in `to`, sends from `from` to `dst`, returns the source IP seen.
fn exchange(lab: &NetLab, from: usize, to: usize, bind: &str, dst: &str) -> Option<String> {
    let rx = Tool::start(helper(lab, to, &format!("recv:{bind}")));
    let st = helper(lab, from, &format!("send:{dst}")).status().unwrap();
    assert!(st.success());
    let out = rx.finish();
    let text = String::from_utf8_lossy(&out);
    text.lines()
        .find_map(|l| l.strip_prefix("GOT-FROM ").map(str::to_string))
}

#[test]
fn lab_segments_broadcast_routing_cut_and_cleanup() {
    let Some(lab) = NetLab::new(&[2, 1]) else {
        return;
    };
    let names: Vec<String> = lab.nodes.iter().map(|n| n.ns.clone()).collect();
    assert_eq!(lab.nodes[1].addr, Ipv4Addr::new(10, LAB_NET, 0, 2));
    assert_eq!(lab.nodes[2].addr, Ipv4Addr::new(10, LAB_NET, 1, 1));
    // Broadcast inside segment 0 reaches node 1 with node 0's source address.
    let got = exchange(
        &lab,
        0,
        1,
        "0.0.0.0:4803",
        &format!("{}:4803", lab.bcast(0)),
    );
    assert_eq!(got.as_deref(), Some("10.98.0.1"));
    // Unicast across the router, source address preserved (no NAT).
    let got = exchange(&lab, 2, 0, "10.98.0.1:4804", "10.98.0.1:4804");
    assert_eq!(got.as_deref(), Some("10.98.1.1"));
    // A cut link loses the datagram.
    lab.set_link(1, false).unwrap();
    assert_eq!(
        exchange(&lab, 0, 1, "10.98.0.2:4803", "10.98.0.2:4803"),
        None
    );
    lab.set_link(1, true).unwrap();
    // Private /tmp per node: a file made in node 0's /tmp is in its dir, not in node 1's.
    let st = lab
        .command(0, "sh")
        .args(["-c", "echo x > /tmp/mark"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(lab.nodes[0].tmp.join("mark").exists());
    assert!(!lab.nodes[1].tmp.join("mark").exists());
    let root = lab.root.clone();
    drop(lab);
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.contains(&n), "namespace {n} left behind");
    }
    assert!(!root.exists());
}

/// Reads a child's stdout lines until it closes or `deadline` passes, then kills and reaps the
/// child. Lines read before the deadline are returned (none if the child hung silently).
pub(crate) fn child_lines_until(child: &mut Child, deadline: Instant) -> Vec<String> {
    use std::io::BufRead as _;
    let Some(out) = child.stdout.take() else {
        return Vec::new();
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect();
        let _ = tx.send(lines);
    });
    let left = deadline.saturating_duration_since(Instant::now());
    let lines = rx.recv_timeout(left).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    lines
}
