//! The peer-mode lab: two network namespaces joined by a veth pair, created by the fuzzer and
//! removed when it ends. The target daemon runs in one (`10.97.0.1`), the fuzzer's own daemon
//! address is in the other (`10.97.0.2`), both in segment `10.97.0.255`: the fuzzer never
//! sends to any address outside namespaces it created.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use super::target::Launch;

/// The target's address inside the lab.
pub const TARGET_ADDR: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);
/// The fuzzer's daemon address inside the lab.
pub const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);
/// The lab segment's broadcast address.
pub const BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 255);

/// Two namespaces and a veth pair; deleted on drop.
#[derive(Debug)]
pub struct Lab {
    /// The target's namespace.
    pub target_ns: String,
    /// The fuzzer's namespace.
    pub peer_ns: String,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| args.join(" "))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Is this process root (namespaces need it)?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Can a lab be made here (root, `ip` and `unshare` present)? `Err(why)` if not.
pub fn available() -> Result<(), String> {
    if !is_root() {
        return Err("not root".into());
    }
    for p in ["ip", "unshare"] {
        let ok = Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return Err(format!("`{p}` missing"));
        }
    }
    Ok(())
}

/// Creates target namespace `t` and the veth pair into existing namespace `p`.
fn wire(t: &str, p: &str) -> Result<()> {
    run(&["ip", "netns", "add", t])?;
    run(&[
        "ip", "-n", t, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p,
    ])?;
    for (ns, addr) in [(t, TARGET_ADDR), (p, PEER_ADDR)] {
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        let cidr = format!("{addr}/24");
        run(&[
            "ip", "-n", ns, "addr", "add", &cidr, "brd", "+", "dev", "eth0",
        ])?;
        run(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// The fuzzer's namespace of the lab whose target namespace is `target_ns`.
fn peer_of(target_ns: &str) -> String {
    target_ns.replacen("fzt", "fzp", 1)
}

/// Replaces the target namespace (and the veth pair) of a lab by a fresh one: a restarted
/// target meets no TIME_WAIT socket of its predecessor on its client port.
pub fn reset_target(launch: &Launch) -> Result<()> {
    let t = launch.netns.as_deref().context("no namespace")?;
    let p = peer_of(t);
    // Deleting one end of the pair deletes both at once (a deleted namespace's devices go
    // away asynchronously).
    let _ = run(&["ip", "-n", &p, "link", "del", "eth0"]);
    run(&["ip", "netns", "del", t])?;
    let mut last = None;
    for _ in 0..50 {
        match wire(t, &p) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = run(&["ip", "netns", "del", t]);
                let _ = run(&["ip", "-n", &p, "link", "del", "eth0"]);
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("lab reset failed")))
}

impl Lab {
    /// Creates the two namespaces (names from `tag`, unique per process).
    pub fn new(tag: &str) -> Result<Self> {
        let lab = Self {
            target_ns: format!("fzt{tag}"),
            peer_ns: format!("fzp{tag}"),
        };
        run(&["ip", "netns", "add", &lab.peer_ns])?;
        wire(&lab.target_ns, &lab.peer_ns)?;
        Ok(lab)
    }

    /// Moves this thread (call it before any other thread exists: the tokio runtime and
    /// everything it spawns then live in the fuzzer's namespace) into the fuzzer's namespace.
    pub fn enter_peer(&self) -> Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.peer_ns))
            .with_context(|| format!("open namespace {}", self.peer_ns))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("enter namespace {}", self.peer_ns))?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.target_ns]);
        let _ = run(&["ip", "netns", "del", &self.peer_ns]);
    }
}
