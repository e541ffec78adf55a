//! The node agent's console commands (fact sheet §3): parsing is in
//! [`crate::console::command`]; this is what each command does to the [`NodeCore`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Exec, MappedRun, NodeCore, NodeOutput};
use crate::cluster::duravip::xml_escape;
use crate::cluster::members::{banner, leader, render_info, render_membership};
use crate::cluster::proto::Msg;
use crate::cluster::shared::CONNECTIONS;
use crate::console::command::{parse_node_line, NodeCommand};
use crate::ecconf::{Config, Scope};

impl NodeCore {
    /// Executes one console line of the local session `"local"`.
    pub fn execute(&mut self, now: u64, line: &str) -> Exec {
        self.execute_as(now, "local", line)
    }

    /// The live configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A console session ended: its open transaction (if any) is discarded.
    pub fn session_closed(&mut self, session: &str) {
        self.txns.close(session);
        if self.sessions.remove(session) {
            let n = i64::try_from(self.sessions.len()).unwrap_or(i64::MAX);
            self.set_gauge(CONNECTIONS, "console", n);
        }
    }

    /// Executes one console line for `session` (from the bus: `bus:<sender>`).
    pub fn execute_as(&mut self, now: u64, session: &str, line: &str) -> Exec {
        self.session_seen(session);
        let parsed = match parse_node_line(line) {
            Ok(p) => p,
            Err(e) => return Exec::Text(e.to_string()),
        };
        let xml = parsed.xml;
        let own_xml = matches!(
            parsed.command,
            NodeCommand::ClusterMembership | NodeCommand::DuravipShow { .. }
        );
        match self.run_command(now, session, xml, parsed.command) {
            Exec::Text(t) if xml && !own_xml => Exec::Text(xml_wrap(line, &t)),
            other => other,
        }
    }

    fn run_command(&mut self, now: u64, session: &str, xml: bool, cmd: NodeCommand) -> Exec {
        let text = match cmd {
            NodeCommand::Empty => String::new(),
            NodeCommand::Version => banner("ecelerity"),
            NodeCommand::Shutdown => {
                self.stop = true;
                "Shutting down.".into()
            }
            NodeCommand::Help(_) | NodeCommand::ClusterHelp => NODE_HELP.to_string(),
            NodeCommand::Config(c)
                if self.txns.is_open(session)
                    || matches!(c.sub.as_str(), "begin" | "commit" | "rollback" | "replay") =>
            {
                self.txns
                    .console(&mut self.config, session, &c.sub, &c.args)
                    .unwrap_or_default()
            }
            NodeCommand::Config(c) if c.sub == "reload" => {
                let path = if c.args.trim().is_empty() {
                    self.config_path.clone()
                } else {
                    Some(PathBuf::from(c.args.trim()))
                };
                match path {
                    None => "No configuration file to reload.".into(),
                    Some(p) => match Config::load(&p, &self.config.search_path) {
                        Ok(cfg) => {
                            self.reload(cfg);
                            "Configuration reloaded.".into()
                        }
                        Err(e) => format!("Reload failed: {e}"),
                    },
                }
            }
            NodeCommand::Config(c) => self.config.console(&c.sub, &c.args),
            NodeCommand::ClusterMembership if self.cluster_members.is_empty() => {
                "Not connected to the cluster group: no membership information.".into()
            }
            NodeCommand::ClusterMembership => render_membership(
                &self.cluster_members,
                &self.descs,
                &self.id.cluster_group,
                xml,
            ),
            NodeCommand::ClusterInfo => {
                let daemon = if self.cluster_members.is_empty() {
                    "(not connected)".to_string()
                } else {
                    format!("{} [m:{}]", self.daemon, self.private)
                };
                render_info(
                    &daemon,
                    &self.id.control_group,
                    &self.id.cluster_group,
                    leader(&self.cluster_members, &self.descs),
                )
            }
            NodeCommand::ClusterNodename => self.id.node.clone(),
            NodeCommand::ClusterNodeaddr => self.id.address.clone(),
            NodeCommand::DuravipShow { tables } => {
                let body = if tables || xml {
                    self.duravip.show_tables()
                } else {
                    self.duravip.show(now)
                };
                if self.synced {
                    body
                } else {
                    let waiting = self
                        .cluster_members
                        .iter()
                        .filter(|m| !self.heard.contains(*m))
                        .count();
                    format!("(settling: waiting for views from {waiting} member(s))\n{body}")
                }
            }
            NodeCommand::DuravipMove { vip, node } => self.request_move(&vip, &node),
            NodeCommand::DuravipAnnounceView => {
                self.released = false;
                self.announce();
                format!("View announced for {} DuraVIPs.", self.local_view().len())
            }
            NodeCommand::DuravipDebug(on) => {
                self.debug = on;
                format!(
                    "DuraVIP debugging {}.",
                    if on { "enabled" } else { "disabled" }
                )
            }
            NodeCommand::DuravipRelease => {
                let owned = self.plumbed.len();
                self.released = true;
                self.claims.clear();
                self.announce();
                format!("Releasing {owned} locally owned DuraVIP(s); 'cluster duravip announce view' takes part again.")
            }
            NodeCommand::ClusterAbort(id) => format!("No cluster job with id '{id}'."),
            NodeCommand::ArpShow => {
                let peers: BTreeMap<String, String> = self
                    .descs
                    .values()
                    .filter_map(|d| {
                        let ip = d
                            .address
                            .rsplit_once(':')
                            .map_or(d.address.as_str(), |(h, _)| h);
                        (!d.node.is_empty()).then(|| (ip.to_string(), d.node.clone()))
                    })
                    .collect();
                match std::fs::read_to_string(&self.arp_path) {
                    Ok(text) => crate::cluster::arp::render(&text, &peers),
                    Err(e) => format!("Cannot read {}: {e}", self.arp_path.display()),
                }
            }
            NodeCommand::ClusterReset => {
                self.released = false;
                self.reset();
                self.out.push_back(NodeOutput::Reconnect);
                "Resetting the bus connection; DuraVIPs will be renegotiated.".into()
            }
            NodeCommand::SharedList => self.shared.list(),
            NodeCommand::SharedShow { object, from } => self.shared.show(&object, from.as_deref()),
            NodeCommand::ShowLogs => self.logs.show(),
            NodeCommand::Other(line) => {
                if let Some(run) = mapped(&self.config.root, &line) {
                    return Exec::Run(run);
                }
                sieve_stub(&line).unwrap_or_else(|| {
                    crate::console::CommandError::Unknown(line.chars().take(80).collect())
                        .to_string()
                })
            }
        };
        Exec::Text(text)
    }

    /// A move is checked against the local table, then multicast AGREED on the cluster group;
    /// every participant (this node included) applies it when it is delivered.
    fn request_move(&mut self, vip: &str, node: &str) -> String {
        let Some(ip) = self.duravip.resolve(vip) else {
            return format!("Unknown DuraVIP '{vip}'");
        };
        let Some(state) = self.duravip.table().get(&ip) else {
            return format!("Unknown DuraVIP '{vip}'");
        };
        if !state.participants.iter().any(|(_, n)| n == node) {
            let names: Vec<&str> = state.participants.iter().map(|(_, n)| n.as_str()).collect();
            return format!(
                "Unknown node '{node}' for DuraVIP {ip} (participants: {})",
                names.join(", ")
            );
        }
        if state.owner.as_deref() == Some(node) {
            return format!("DuraVIP {ip} is already owned by {node}");
        }
        if let Some(f) = state
            .participants
            .iter()
            .find_map(|(p, _)| self.duravip.entry(p, &ip).and_then(|e| e.follow.clone()))
        {
            return format!("DuraVIP {ip} follows '{f}'; move that instead");
        }
        let g = self.id.cluster_group.clone();
        self.multicast(
            &g,
            &Msg::Move {
                vip: ip.clone(),
                node: node.to_string(),
            },
        );
        format!("DuraVIP {ip} moving to {node}")
    }
}

/// The `xml` form of a command without an XML rendering of its own: the command and its text
/// output as elements.
pub fn xml_wrap(line: &str, text: &str) -> String {
    let (_, cmd) = crate::console::command::split_words(line.trim(), 1);
    format!(
        "<command_output>\n  <command>{}</command>\n  <output>{}</output>\n</command_output>",
        xml_escape(cmd),
        xml_escape(text)
    )
}

const NODE_HELP: &str = "\
cluster abort <id>                   abort a cluster job
cluster arp show                     the kernel's neighbour table (cluster peers named)
cluster duravip announce view        announce this node's DuraVIP view
cluster duravip debug on|off         DuraVIP debug logging
cluster duravip move <vip> to <node> move a DuraVIP (use broadcast from eccmgr)
cluster duravip release all          give up every locally owned DuraVIP
cluster duravip show [tables]        DuraVIP state (tables: XML)
cluster help                         this list
cluster info                         bus daemon, groups and leader
cluster membership                   members of the cluster group
cluster nodeaddr | cluster nodename  this node's address / name
cluster reset                        reconnect to the bus (DuraVIPs renegotiated)
cluster shared list                  replicated objects
cluster shared show <obj> [from <n>] a replicated object, merged or one node's part
cluster show logs                    aggregated logs offered to the manager
xml <command>                        any command, answered as XML
config {get|set|eval|unset|show|showrecurse|locate|reload} …
help [command]                       this list
version                              version banner";

pub(super) fn sieve_stub(line: &str) -> Option<String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        [m, "flush", "cache"] if m.starts_with("sieve:") => {
            Some("flushed 0 entries from the script cache".into())
        }
        _ => None,
    }
}

/// Finds an operator-mapped command: `cluster { Command "prefix words" { Program = … } }`,
/// matched case-insensitively on whole words.
pub(super) fn mapped(root: &Scope, line: &str) -> Option<MappedRun> {
    let cluster = root.child("cluster", None)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    for c in cluster.children_named("Command") {
        let prefix: Vec<&str> = c
            .instance
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if prefix.is_empty() || prefix.len() > words.len() {
            continue;
        }
        if !prefix
            .iter()
            .zip(&words)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            continue;
        }
        let program = c.get_str("Program")?.to_string();
        let mut args: Vec<String> = match c.get("Args").map(|o| &o.value) {
            Some(crate::ecconf::Value::List(l)) => l
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(v) => v.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
            None => Vec::new(),
        };
        args.extend(words[prefix.len()..].iter().map(|s| (*s).to_string()));
        let timeout_ms = c
            .get_str("Timeout")
            .and_then(|t| t.parse::<f64>().ok())
            .map_or(10_000, |s| (s * 1000.0) as u64);
        let max_output = c
            .get_str("Max_Output")
            .and_then(|t| t.parse().ok())
            .unwrap_or(64 * 1024);
        return Some(MappedRun {
            program,
            args,
            timeout_ms,
            max_output,
        });
    }
    None
}
