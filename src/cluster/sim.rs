//! A deterministic single-process cluster over [`MemHub`]: one manager core and any number of
//! node cores, stepped by hand. Used by the transcript tests, the DuraVIP race test and the
//! `eccmgr --demo` mode.

use std::collections::BTreeMap;
use std::path::Path;

use super::bus::{BusEvent, MemConn, MemHub};
use super::exec::run_blocking;
use super::manager::{manager_private_name, register_defaults, ManagerCore, ManagerSettings};
use super::node::{NodeCore, NodeIdentity, NodeOutput};
use crate::ecconf::{ConfError, Config};

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// The core.
    pub core: NodeCore,
    /// Its bus connection.
    pub conn: MemConn,
    /// Plumbing actions taken (`+ip/prefix@iface`, `-…`).
    pub plumb_log: Vec<String>,
    /// `cluster reset` asked for a new bus connection.
    pub reset_pending: bool,
}

/// The simulated cluster.
#[derive(Debug, Default)]
pub struct Sim {
    /// The bus.
    pub hub: MemHub,
    /// Simulated time, seconds.
    pub now: u64,
    /// The manager, if started.
    pub manager: Option<(ManagerCore, MemConn)>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, SimNode>,
    /// Aggregated log files the manager wrote (`as_logger`), by path.
    pub log_files: BTreeMap<String, String>,
    pids: u32,
}

/// Bound on deliveries in one [`Sim::run`] (guards against livelock).
pub const MAX_STEPS: usize = 100_000;

impl Sim {
    /// An empty cluster at time 1000.
    pub fn new() -> Self {
        Self {
            now: 1000,
            ..Self::default()
        }
    }

    /// Starts the manager on `host`.
    pub fn add_manager(&mut self, host: &str, settings: ManagerSettings, mut config: Config) {
        register_defaults(&mut config);
        let conn = self
            .hub
            .connect(&manager_private_name(host), host)
            .expect("unique manager name");
        let mut core = ManagerCore::new(settings, host, config, None);
        let (p, d) = (conn.private_name_owned(), format!("memory:{host}"));
        core.connected(&p, &d);
        self.manager = Some((core, conn));
        self.run();
    }

    /// Starts node `name` in `subcluster` with configuration text `conf`.
    pub fn add_node(&mut self, name: &str, subcluster: &str, conf: &str) -> Result<(), ConfError> {
        self.add_node_no_run(name, subcluster, conf)?;
        self.run();
        Ok(())
    }

    /// Starts node `name` and queues its joins without delivering anything.
    pub fn add_node_no_run(
        &mut self,
        name: &str,
        subcluster: &str,
        conf: &str,
    ) -> Result<(), ConfError> {
        let config = Config::from_str(&format!("{name}.conf"), conf, Path::new("."))?;
        self.pids += 1;
        let conn = self
            .hub
            .connect(&format!("ec0-{:05}", self.pids), name)
            .expect("unique node name");
        let mut id = NodeIdentity::new(name, subcluster);
        id.apply_config(&config.root);
        let mut core = NodeCore::new(
            id,
            &conn.private_name_owned(),
            &format!("memory:{name}"),
            config,
            None,
        );
        core.start();
        let mut node = SimNode {
            core,
            conn,
            plumb_log: Vec::new(),
            reset_pending: false,
        };
        Self::flush_node(&mut node);
        self.nodes.insert(name.to_string(), node);
        Ok(())
    }

    /// Kills node `name` (its connection drops without leaving cleanly).
    pub fn kill(&mut self, name: &str) {
        self.kill_no_run(name);
        self.run();
    }

    /// Kills node `name` without delivering anything afterwards.
    pub fn kill_no_run(&mut self, name: &str) {
        if let Some(n) = self.nodes.remove(name) {
            let p = n.conn.private_name_owned();
            drop(n);
            self.hub.kill(&p);
        }
    }

    /// Runs a line on the manager's console and returns the reply after the cluster is quiet.
    pub fn console(&mut self, line: &str) -> String {
        self.console_as("local", line)
    }

    /// Runs a line on the manager's console in console session `session` (transactions are
    /// per session) and returns the reply after the cluster is quiet.
    pub fn console_as(&mut self, session: &str, line: &str) -> String {
        let now = self.now;
        let Some((m, _)) = self.manager.as_mut() else {
            return "no manager".into();
        };
        let r = m.console_as(now, session, line);
        self.run();
        r.text
    }

    /// Runs a line on the manager's console without delivering anything yet.
    pub fn console_no_run(&mut self, line: &str) -> String {
        let now = self.now;
        let Some((m, c)) = self.manager.as_mut() else {
            return "no manager".into();
        };
        let r = m.console(now, line);
        while let Some(a) = m.poll() {
            let _ = c.act_now(a);
        }
        r.text
    }

    /// Runs a line on node `name`'s local console.
    pub fn node_console(&mut self, name: &str, line: &str) -> String {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(name) else {
            return format!("no node {name}");
        };
        let text = match n.core.execute(now, line) {
            super::node::Exec::Text(t) => t,
            super::node::Exec::Run(run) => run_blocking(&run),
        };
        self.run();
        text
    }

    /// Runs a line on node `name`'s local console, queueing its bus traffic without delivering.
    pub fn node_console_no_run(&mut self, name: &str, line: &str) -> String {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(name) else {
            return format!("no node {name}");
        };
        let text = match n.core.execute(now, line) {
            super::node::Exec::Text(t) => t,
            super::node::Exec::Run(run) => run_blocking(&run),
        };
        Self::flush_node(n);
        text
    }

    /// Delivers at most one pending event to the manager; true if it did anything.
    pub fn step_manager_once(&mut self) -> bool {
        self.step_manager()
    }

    /// Replaces node `name`'s configuration and announces it, without delivering anything.
    pub fn reload_no_run(&mut self, name: &str, conf: &str) -> Result<(), ConfError> {
        let config = Config::from_str(&format!("{name}.conf"), conf, Path::new("."))?;
        if let Some(n) = self.nodes.get_mut(name) {
            n.core.reload(config);
            Self::flush_node(n);
        }
        Ok(())
    }

    fn flush_node(n: &mut SimNode) {
        while let Some(o) = n.core.poll() {
            match o {
                NodeOutput::Bus(a) => {
                    let _ = n.conn.act_now(a);
                }
                NodeOutput::Run(to, run) => {
                    let out = run_blocking(&run);
                    n.core.mapped_done(&to, &out);
                }
                NodeOutput::Reconnect => n.reset_pending = true,
                p @ NodeOutput::Plumb { .. } => {
                    if let Some(s) = super::node::describe_plumb(&p) {
                        n.plumb_log.push(s);
                    }
                }
            }
        }
    }

    /// Runs `f` on node `name`'s core (e.g. feeding log lines or gauge values), sends what it
    /// queued, and delivers everything until the cluster is quiet.
    pub fn with_node(&mut self, name: &str, f: impl FnOnce(&mut NodeCore)) {
        if let Some(n) = self.nodes.get_mut(name) {
            f(&mut n.core);
            Self::flush_node(n);
        }
        self.run();
    }

    /// Gives node `name` a new bus connection (as its shell does after `cluster reset` or a
    /// lost daemon): the old one drops without leaving cleanly, the core starts afresh.
    pub fn reconnect_node(&mut self, name: &str) {
        self.pids += 1;
        let pid = self.pids;
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        n.reset_pending = false;
        let old = n.conn.private_name_owned();
        let Ok(conn) = self.hub.connect(&format!("ec0-{pid:05}"), name) else {
            return;
        };
        n.conn = conn;
        self.hub.kill(&old);
        let p = n.conn.private_name_owned();
        n.core.reconnected(&p, &format!("memory:{name}"));
        Self::flush_node(n);
    }

    /// Delivers at most one pending event to node `name`; true if there was one.
    pub fn step_node(&mut self, name: &str) -> bool {
        let now = self.now;
        if self.nodes.get(name).is_some_and(|n| n.reset_pending) {
            self.reconnect_node(name);
            return true;
        }
        let Some(n) = self.nodes.get_mut(name) else {
            return false;
        };
        Self::flush_node(n);
        let Some(ev) = n.conn.try_recv() else {
            return false;
        };
        n.core.on_bus(now, ev);
        Self::flush_node(n);
        true
    }

    fn step_manager(&mut self) -> bool {
        let now = self.now;
        let Some((m, c)) = self.manager.as_mut() else {
            return false;
        };
        let mut did = false;
        while let Some(w) = m.poll_log_write() {
            self.log_files
                .entry(w.path.display().to_string())
                .or_default()
                .push_str(&w.text);
            m.log_written(&w);
            did = true;
        }
        while let Some(a) = m.poll() {
            let _ = c.act_now(a);
            did = true;
        }
        if let Some(ev) = c.try_recv() {
            if ev == BusEvent::Disconnected {
                return did;
            }
            m.on_bus(now, ev);
            while let Some(a) = m.poll() {
                let _ = c.act_now(a);
            }
            return true;
        }
        did
    }

    /// Delivers everything until no process has pending work (bounded by [`MAX_STEPS`]).
    pub fn run(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for _ in 0..MAX_STEPS {
            let mut any = self.step_manager();
            for n in &names {
                any |= self.step_node(n);
            }
            if !any {
                return;
            }
        }
        panic!("simulation did not quiesce within {MAX_STEPS} rounds");
    }

    /// Advances simulated time.
    pub fn tick(&mut self, secs: u64) {
        self.now += secs;
    }
}

impl MemConn {
    /// The private group name as an owned string.
    pub fn private_name_owned(&self) -> String {
        super::bus::Bus::private_name(self).to_string()
    }
}
