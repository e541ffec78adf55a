//! The cluster manager's core (`eccmgr`): the twelve console commands of fact sheet §2 plus
//! the `config` family, relaying node commands over the bus and keeping the answers in the
//! control cache. No I/O: the shell feeds console lines and bus events with the time (seconds)
//! and carries out queued [`BusAction`]s.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;

use super::bus::{BusAction, BusEvent};
use super::cache::{CacheLimits, ControlCache};
use super::logsink::{LogSink, LogWrite};
use super::members::{banner, leader, render_info, render_membership, VERSION};
use super::proto::{Describe, Msg, NodeType};
use super::subcluster::Subclusters;
use crate::console::command::{parse_manager_line, ManagerCommand, MANAGER_HELP};
use crate::console::server::Reply;
use crate::ecconf::{Config, Transactions, Value};

/// Manager settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerSettings {
    /// Control group (`ec_console`).
    pub control_group: String,
    /// Cluster group (`ec_cluster`, `-g`).
    pub cluster_group: String,
    /// Subclusters from `mbus.conf`.
    pub subclusters: Subclusters,
    /// Cache bounds.
    pub cache: CacheLimits,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        Self {
            control_group: "ec_console".into(),
            cluster_group: "ec_cluster".into(),
            subclusters: Subclusters::default(),
            cache: CacheLimits::default(),
        }
    }
}

/// Cache limits from `Logs { Control_Cache_Max_Entries, Control_Cache_Max_Bytes,
/// Control_Cache_Max_Age }` (defaults otherwise).
pub fn cache_limits(cfg: &Config) -> CacheLimits {
    let d = CacheLimits::default();
    let logs = cfg.root.child("Logs", None);
    let num = |name: &str| {
        logs.and_then(|l| l.get_str(name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    CacheLimits {
        max_entries: num("Control_Cache_Max_Entries").map_or(d.max_entries, |v| v as usize),
        max_bytes: num("Control_Cache_Max_Bytes").map_or(d.max_bytes, |v| v as usize),
        max_age_secs: num("Control_Cache_Max_Age").unwrap_or(d.max_age_secs),
    }
}

/// Registers the manager's known option defaults (used by `config eval`).
pub fn register_defaults(cfg: &mut Config) {
    for (n, v) in [
        ("Control_Cache_Max_Entries", "1000"),
        ("Control_Cache_Max_Bytes", "16777216"),
        ("Control_Cache_Max_Age", "86400"),
        ("File_Mode", "0660"),
        ("Listen_Backlog", "500"),
        ("Timeout", "60"),
        ("Enable", "true"),
    ] {
        cfg.add_default(n, Value::Word(v.into()));
    }
}

/// The manager state machine.
#[derive(Debug)]
pub struct ManagerCore {
    settings: ManagerSettings,
    host: String,
    private: String,
    daemon: String,
    connected: bool,
    config: Config,
    config_path: Option<PathBuf>,
    members: Vec<String>,
    descs: BTreeMap<String, Describe>,
    cache: ControlCache,
    next_req: u64,
    out: VecDeque<BusAction>,
    /// Open `config begin` transactions by console session.
    txns: Transactions,
    /// Log aggregation (`as_logger` configured).
    logs: Option<LogSink>,
    log_writes: VecDeque<LogWrite>,
}

impl ManagerCore {
    /// A manager on host `host` whose bus connection is `private` on `daemon`.
    pub fn new(
        settings: ManagerSettings,
        host: &str,
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Self {
        let cache = ControlCache::new(settings.cache);
        let logs = LogSink::from_config(&config.root);
        Self {
            settings,
            host: host.into(),
            private: String::new(),
            daemon: String::new(),
            connected: false,
            config,
            config_path,
            members: Vec::new(),
            descs: BTreeMap::new(),
            cache,
            next_req: 1,
            out: VecDeque::new(),
            txns: Transactions::default(),
            logs,
            log_writes: VecDeque::new(),
        }
    }

    /// Next log text to append (`as_logger`); report it with [`Self::log_written`].
    pub fn poll_log_write(&mut self) -> Option<LogWrite> {
        self.log_writes.pop_front()
    }

    /// `w` was appended: acknowledge it to the node (its subscriber position).
    pub fn log_written(&mut self, w: &LogWrite) {
        let Some(sink) = self.logs.as_mut() else {
            return;
        };
        let (sender, log, offset) = sink.written(w);
        self.send(&sender, &Msg::LogAck { log, offset });
    }

    /// The bus connection is up: join the cluster group (the manager never joins the control
    /// group; it sends to it as a non-member).
    pub fn connected(&mut self, private: &str, daemon: &str) {
        self.private = private.into();
        self.daemon = daemon.into();
        self.connected = true;
        self.members.clear();
        self.descs.clear();
        self.out
            .push_back(BusAction::Join(self.settings.cluster_group.clone()));
    }

    /// True while attached to the bus.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The control cache (for persistence by the shell).
    pub fn cache_mut(&mut self) -> &mut ControlCache {
        &mut self.cache
    }

    /// The live configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Next bus action.
    pub fn poll(&mut self) -> Option<BusAction> {
        self.out.pop_front()
    }

    fn send(&mut self, group: &str, msg: &Msg) {
        self.out.push_back(BusAction::Multicast {
            groups: vec![group.to_string()],
            msg_type: msg.msg_type(),
            payload: msg.encode(),
        });
    }

    fn describe(&self) -> Msg {
        Msg::Describe(self.describe_self())
    }

    fn describe_self(&self) -> Describe {
        Describe {
            node_type: NodeType::Manager,
            node: String::new(),
            subcluster: String::new(),
            version: VERSION.into(),
            address: String::new(),
            groups: vec![self.settings.cluster_group.clone()],
        }
    }

    /// Handles one delivered bus event.
    pub fn on_bus(&mut self, now: u64, ev: BusEvent) {
        match ev {
            BusEvent::Membership { group, members } if group == self.settings.cluster_group => {
                self.members = members;
                let members = &self.members;
                self.descs.retain(|p, _| members.contains(p));
                let me = self.describe();
                let g = self.settings.cluster_group.clone();
                self.send(&g, &me);
                if let Some(sink) = self.logs.as_mut() {
                    sink.on_membership(&self.members);
                    let subscriber = self.host.clone();
                    self.send(&g, &Msg::LogSubscribe { subscriber });
                }
            }
            BusEvent::Membership { .. } => {}
            BusEvent::Message {
                sender,
                msg_type,
                payload,
                ..
            } => match Msg::decode(msg_type, &payload) {
                Ok(Msg::Describe(d)) if self.members.contains(&sender) => {
                    self.descs.insert(sender, d);
                }
                Ok(Msg::Response {
                    req_id,
                    command,
                    node,
                    chunk,
                    chunks,
                    data,
                }) => {
                    self.cache
                        .on_chunk(now, req_id, &command, &node, chunk, chunks, &data);
                }
                Ok(Msg::LogBatch {
                    node,
                    log,
                    offset,
                    lines,
                }) if self.members.contains(&sender) => {
                    if let Some(w) = self
                        .logs
                        .as_mut()
                        .and_then(|s| s.on_batch(&sender, &node, &log, offset, &lines))
                    {
                        self.log_writes.push_back(w);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("ignoring bad message from {sender}: {e}"),
            },
            BusEvent::Disconnected => {
                self.connected = false;
                self.members.clear();
                self.descs.clear();
            }
        }
    }

    /// Nodes (name, private group, subcluster) currently in the cluster group, by name.
    fn nodes(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = self
            .members
            .iter()
            .filter_map(|m| {
                self.descs
                    .get(m)
                    .filter(|d| d.node_type == NodeType::Node)
                    .map(|d| (d.node.clone(), m.clone(), d.subcluster.clone()))
            })
            .collect();
        v.sort();
        v
    }

    fn known_subcluster(&self, s: &str) -> bool {
        self.settings.subclusters.by_name.contains_key(s)
            || self.nodes().iter().any(|(_, _, sc)| sc == s)
    }

    fn subcluster_names(&self) -> String {
        let mut names: Vec<String> = self.settings.subclusters.by_name.keys().cloned().collect();
        names.extend(self.nodes().into_iter().map(|(_, _, s)| s));
        names.sort();
        names.dedup();
        names.join(", ")
    }

    fn node_subcluster(&self, node: &str) -> Option<String> {
        self.nodes()
            .into_iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, _, s)| s)
            .or_else(|| self.settings.subclusters.of_host(node).map(str::to_string))
    }

    fn not_connected(&self) -> String {
        format!(
            "Not connected to the bus{}; reconnecting.",
            if self.daemon.is_empty() {
                String::new()
            } else {
                format!(" (daemon {})", self.daemon)
            }
        )
    }

    /// Sends `command` to `group` and records the expected answers.
    fn relay(
        &mut self,
        now: u64,
        group: &str,
        command: &str,
        targets: &[(String, String, String)],
        replace: bool,
    ) {
        let req_id = self.next_req;
        self.next_req += 1;
        let expect: Vec<(String, u64)> = targets
            .iter()
            .map(|(n, _, _)| (n.clone(), req_id))
            .collect();
        self.cache.expect(now, command, &expect, replace);
        self.send(
            group,
            &Msg::Command {
                req_id,
                text: command.to_string(),
            },
        );
    }

    /// Runs one console line of the local session `"local"`; `shutdown` in the reply asks
    /// the shell to stop.
    pub fn console(&mut self, now: u64, line: &str) -> ManagerReply {
        self.console_as(now, "local", line)
    }

    /// A console session ended: its open transaction (if any) is discarded.
    pub fn session_closed(&mut self, session: &str) {
        self.txns.close(session);
    }

    /// Runs one console line for console session `session` (transactions are per session).
    pub fn console_as(&mut self, now: u64, session: &str, line: &str) -> ManagerReply {
        let parsed = match parse_manager_line(line) {
            Ok(p) => p,
            Err(e) => return ManagerReply::text(e.to_string()),
        };
        use ManagerCommand as M;
        let text = match parsed.command {
            M::Empty => String::new(),
            M::Version => banner("eccmgr"),
            M::Help(None) => MANAGER_HELP
                .iter()
                .map(|(_, h)| *h)
                .collect::<Vec<_>>()
                .join("\n"),
            M::Help(Some(c)) => {
                let first = c
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                MANAGER_HELP
                    .iter()
                    .find(|(n, _)| *n == first)
                    .map_or_else(|| format!("No help for '{c}'"), |(_, h)| (*h).to_string())
            }
            M::Info => {
                let daemon = if self.connected {
                    format!("{} [{}]", self.daemon, self.private)
                } else {
                    "(not connected)".into()
                };
                let members = self.members.clone();
                render_info(
                    &daemon,
                    &self.settings.control_group,
                    &self.settings.cluster_group,
                    leader(&members, &self.descs),
                )
            }
            M::ShowClusterMembership => {
                if !self.connected {
                    self.not_connected()
                } else {
                    let mut descs = self.descs.clone();
                    descs.insert(self.private.clone(), self.describe_self());
                    render_membership(
                        &self.members,
                        &descs,
                        &self.settings.cluster_group,
                        parsed.xml,
                    )
                }
            }
            M::ShowLogs => match &self.logs {
                Some(s) => s.show(&self.host),
                None => {
                    "Log aggregation is off: add as_logger { base_dir = \"…\" } to eccluster.conf."
                        .into()
                }
            },
            M::Shutdown => {
                return ManagerReply {
                    text: "Shutting down the cluster manager.".into(),
                    shutdown: true,
                }
            }
            M::FlushControlCache => {
                self.cache.flush();
                String::new()
            }
            M::Broadcast(cmd) => {
                if !self.connected {
                    self.not_connected()
                } else {
                    let targets = self.nodes();
                    let g = self.settings.control_group.clone();
                    self.relay(now, &g, &cmd, &targets, true);
                    format!("Sent to {} node(s) on {g}.", targets.len())
                }
            }
            M::SubclusterBroadcast {
                subcluster,
                command,
            } => {
                if !self.known_subcluster(&subcluster) {
                    format!(
                        "Unknown subcluster '{subcluster}' (known: {})",
                        self.subcluster_names()
                    )
                } else if !self.connected {
                    self.not_connected()
                } else {
                    let targets: Vec<_> = self
                        .nodes()
                        .into_iter()
                        .filter(|(_, _, s)| *s == subcluster)
                        .collect();
                    let g = format!("ec_sc_{subcluster}");
                    self.relay(now, &g, &command, &targets, false);
                    format!("Sent to {} node(s) on {g}.", targets.len())
                }
            }
            M::Unicast { node, command } => {
                let nodes = self.nodes();
                match nodes.iter().find(|(n, _, _)| *n == node) {
                    None if !self.connected => self.not_connected(),
                    None => {
                        let names: Vec<&str> = nodes.iter().map(|(n, _, _)| n.as_str()).collect();
                        format!("Unknown node '{node}' (known nodes: {})", names.join(", "))
                    }
                    Some(t) => {
                        let t = t.clone();
                        let private = t.1.clone();
                        self.relay(now, &private, &command, &[t], false);
                        String::new()
                    }
                }
            }
            M::Retrieve(cmd) => self.retrieve(now, &cmd, None),
            M::SubclusterRetrieve {
                subcluster,
                command,
            } => {
                if self.known_subcluster(&subcluster) {
                    self.retrieve(now, &command, Some(&subcluster))
                } else {
                    format!(
                        "Unknown subcluster '{subcluster}' (known: {})",
                        self.subcluster_names()
                    )
                }
            }
            M::RetrieveNode { node, command } => match self
                .cache
                .get(now, &command)
                .and_then(|e| e.targets.get(&node))
            {
                Some(t) => match &t.response {
                    Some(r) => r.clone(),
                    None => format!("{node}: (no response yet)"),
                },
                None => format!("No response stored from '{node}' for '{command}'"),
            },
            M::Config(c)
                if self.txns.is_open(session)
                    || matches!(c.sub.as_str(), "begin" | "commit" | "rollback" | "replay") =>
            {
                let out = self
                    .txns
                    .console(&mut self.config, session, &c.sub, &c.args)
                    .unwrap_or_default();
                if c.sub == "commit" {
                    self.cache.set_limits(cache_limits(&self.config));
                }
                out
            }
            M::Config(c) if c.sub == "reload" => {
                let path = if c.args.trim().is_empty() {
                    self.config_path.clone()
                } else {
                    Some(PathBuf::from(c.args.trim()))
                };
                match path {
                    None => "No configuration file to reload.".into(),
                    Some(p) => match Config::load(&p, &self.config.search_path) {
                        Ok(mut cfg) => {
                            register_defaults(&mut cfg);
                            self.cache.set_limits(cache_limits(&cfg));
                            self.config = cfg;
                            "Configuration reloaded.".into()
                        }
                        Err(e) => format!("Reload failed: {e}"),
                    },
                }
            }
            M::Config(c) => {
                let out = self.config.console(&c.sub, &c.args);
                if c.sub == "set" || c.sub == "unset" {
                    self.cache.set_limits(cache_limits(&self.config));
                }
                out
            }
        };
        ManagerReply::text(text)
    }

    fn retrieve(&mut self, now: u64, command: &str, subcluster: Option<&str>) -> String {
        let members: Vec<String> = self.nodes().into_iter().map(|(n, _, _)| n).collect();
        let keys: Vec<String> = self
            .cache
            .get(now, command)
            .map(|e| e.targets.keys().cloned().collect())
            .unwrap_or_default();
        let sc_of: BTreeMap<String, Option<String>> = keys
            .into_iter()
            .map(|n| {
                let s = self.node_subcluster(&n);
                (n, s)
            })
            .collect();
        let Some(entry) = self.cache.get(now, command) else {
            return format!("No responses stored for '{command}'");
        };
        let mut out = String::new();
        let mut shown = 0;
        for (node, t) in &entry.targets {
            if let Some(s) = subcluster {
                if sc_of.get(node).and_then(Option::as_deref) != Some(s) {
                    continue;
                }
            }
            shown += 1;
            match &t.response {
                Some(r) => {
                    let _ = write!(out, "{node}:\n{}\n\n", r.trim_end_matches('\n'));
                }
                None if members.contains(node) => {
                    let _ = write!(out, "{node}: (no response yet)\n\n");
                }
                None => {
                    let _ = write!(out, "{node}: (not answered; node left the cluster)\n\n");
                }
            }
        }
        if shown == 0 {
            return format!("No responses stored for '{command}'");
        }
        out.trim_end_matches('\n').to_string()
    }

    /// The manager's host name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Reply to a manager console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerReply {
    /// Text output.
    pub text: String,
    /// Stop the manager after replying.
    pub shutdown: bool,
}

impl ManagerReply {
    fn text(text: String) -> Self {
        Self {
            text,
            shutdown: false,
        }
    }
}

impl From<ManagerReply> for Reply {
    fn from(r: ManagerReply) -> Self {
        Self {
            text: r.text,
            close: r.shutdown,
        }
    }
}

/// The manager's private name: the short host name cut to 10 characters (§8 item 7).
pub fn manager_private_name(host: &str) -> String {
    super::subcluster::short(host).chars().take(10).collect()
}

#[cfg(test)]
mod tests;
