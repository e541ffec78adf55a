//! The node agent's core: answers console commands from the bus and locally, keeps the
//! cluster membership and runs the DuraVIP reducer. No I/O: inputs are bus events and
//! console lines (with the time in seconds), outputs are queued [`NodeOutput`]s.
//!
//! Control-group commands and cluster-group announcements arrive on **one** connection and
//! are processed in delivery order (fact sheet §6.5 corollary).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use super::bus::{BusAction, BusEvent};
use super::duravip::{NodeView, Reducer};
use super::logship::{configured_logs, LogShipper};
use super::members::VERSION;
use super::proto::{chunk_response, Describe, Msg, NodeType, VipEntry};
use super::shared::SharedTables;
use crate::ecconf::{Config, Scope, Transactions};

mod cmds;
mod replicated;
mod view;
pub use cmds::xml_wrap;
use view::topology;
pub use view::{describe_plumb, local_view};

/// Who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Node (Spread daemon) name.
    pub node: String,
    /// Subcluster name.
    pub subcluster: String,
    /// Cluster service address shown by `cluster nodeaddr`.
    pub address: String,
    /// Control group (`ec_console`).
    pub control_group: String,
    /// Cluster group (`ec_cluster`).
    pub cluster_group: String,
}

impl NodeIdentity {
    /// Defaults for node `node` in `subcluster`.
    pub fn new(node: &str, subcluster: &str) -> Self {
        Self {
            node: node.into(),
            subcluster: subcluster.into(),
            address: "0.0.0.0:4802".into(),
            control_group: "ec_console".into(),
            cluster_group: "ec_cluster".into(),
        }
    }

    /// Overrides from the configuration's `cluster` scope: `nodeaddr`, `cluster_group`,
    /// `control_group`.
    pub fn apply_config(&mut self, root: &Scope) {
        let Some(c) = root.child("cluster", None) else {
            return;
        };
        if let Some(a) = c.get_str("nodeaddr") {
            self.address = a.to_string();
        }
        if let Some(g) = c.get_str("cluster_group") {
            self.cluster_group = g.to_string();
        }
        if let Some(g) = c.get_str("control_group") {
            self.control_group = g.to_string();
        }
    }

    /// The subcluster group, `ec_sc_<subcluster>`.
    pub fn subcluster_group(&self) -> String {
        format!("ec_sc_{}", self.subcluster)
    }

    /// Groups this node joins, in the order shown by `Groups:`.
    pub fn groups(&self) -> Vec<String> {
        vec![
            self.control_group.clone(),
            self.subcluster_group(),
            self.cluster_group.clone(),
        ]
    }
}

/// An operator-mapped command to run (`cluster { Command "prefix" { Program … } }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedRun {
    /// Program path.
    pub program: String,
    /// Arguments: the configured ones, then the words after the matched prefix.
    pub args: Vec<String>,
    /// Kill after this many milliseconds.
    pub timeout_ms: u64,
    /// Keep at most this many bytes of output.
    pub max_output: usize,
}

/// Result of executing a console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    /// Immediate text answer.
    Text(String),
    /// Run a mapped program; its output is the answer.
    Run(MappedRun),
}

/// Where a bus command's answer must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// Private group of the asker.
    pub sender: String,
    /// Its request id.
    pub req_id: u64,
    /// The command text (cache key).
    pub command: String,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    /// A bus action.
    Bus(BusAction),
    /// Run a mapped program, then call [`NodeCore::mapped_done`].
    Run(ReplyTo, MappedRun),
    /// `cluster reset`: drop the bus connection and attach again (the core has already
    /// released its DuraVIPs; [`NodeCore::reconnected`] follows as for any reconnect).
    Reconnect,
    /// Bring a DuraVIP up (`add`) or down on an interface.
    Plumb {
        /// Add (true) or delete.
        add: bool,
        /// Address.
        ip: String,
        /// Prefix length.
        prefix: u8,
        /// Interface.
        iface: String,
    },
}

/// The node agent state machine.
#[derive(Debug)]
pub struct NodeCore {
    id: NodeIdentity,
    private: String,
    daemon: String,
    config: Config,
    config_path: Option<PathBuf>,
    cluster_members: Vec<String>,
    descs: BTreeMap<String, Describe>,
    duravip: Reducer,
    plumbed: BTreeSet<String>,
    out: VecDeque<NodeOutput>,
    debug: bool,
    /// VIPs this node holds by a manual move (claim numbers), announced in its views.
    claims: BTreeMap<String, u64>,
    /// Members heard from (describe or view) since this node joined the cluster group.
    heard: BTreeSet<String>,
    /// Heard from every member at least once since joining: the table can be trusted.
    synced: bool,
    /// When this node (last) joined the cluster group, seconds.
    joined_at: u64,
    /// `shutdown` was executed: the shell stops after sending the reply.
    stop: bool,
    /// Canary: apply a reloaded view locally at once, bypassing the total order (the seed's bug).
    canary_local_reload: bool,
    /// Open `config begin` transactions by session (`bus:<sender>` for relayed commands).
    txns: Transactions,
    /// Replicated objects (`cluster shared …`).
    shared: SharedTables,
    /// Open local console sessions (feeds the `connections` object).
    sessions: BTreeSet<String>,
    /// `cluster duravip release all`: announce no DuraVIPs until `announce view`, `reset`
    /// or a reload.
    released: bool,
    /// The neighbour table file read by `cluster arp show`.
    arp_path: PathBuf,
    /// Log shipping to a manager with `as_logger`.
    logs: LogShipper,
}

impl NodeCore {
    /// A node with private group `private` attached to `daemon`.
    pub fn new(
        id: NodeIdentity,
        private: &str,
        daemon: &str,
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Self {
        let names: Vec<String> = configured_logs(&config.root)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut core = Self {
            id,
            private: private.into(),
            daemon: daemon.into(),
            config,
            config_path,
            cluster_members: Vec::new(),
            descs: BTreeMap::new(),
            duravip: Reducer::new(),
            plumbed: BTreeSet::new(),
            out: VecDeque::new(),
            debug: false,
            claims: BTreeMap::new(),
            heard: BTreeSet::new(),
            synced: false,
            canary_local_reload: false,
            joined_at: 0,
            stop: false,
            txns: Transactions::default(),
            shared: SharedTables::new(),
            sessions: BTreeSet::new(),
            released: false,
            arp_path: PathBuf::from(super::arp::PROC_ARP),
            logs: LogShipper::default(),
        };
        core.logs = LogShipper::new(&names);
        core
    }

    /// Queues the joins of the control, subcluster and cluster groups.
    pub fn start(&mut self) {
        for g in self.id.groups() {
            self.out.push_back(NodeOutput::Bus(BusAction::Join(g)));
        }
    }

    /// After a bus reconnect: forget the old membership (DuraVIPs are released) and rejoin.
    pub fn reconnected(&mut self, private: &str, daemon: &str) {
        self.private = private.into();
        self.daemon = daemon.into();
        self.reset();
        self.start();
    }

    fn reset(&mut self) {
        self.shared.clear_seen();
        self.logs.unsubscribe_if_gone(&[]);
        self.cluster_members.clear();
        self.descs.clear();
        self.duravip = Reducer::new();
        self.claims.clear();
        self.heard.clear();
        self.synced = false;
        // Clean slate: release every DuraVIP (§6.2).
        let all: Vec<String> = self.plumbed.iter().cloned().collect();
        for ip in all {
            let (prefix, iface) = topology(&self.config.root, &ip);
            self.plumbed.remove(&ip);
            self.out.push_back(NodeOutput::Plumb {
                add: false,
                ip,
                prefix,
                iface,
            });
        }
    }

    /// Test canary: re-introduce the original's race by applying reloaded views locally.
    #[doc(hidden)]
    pub fn set_canary_local_reload(&mut self, on: bool) {
        self.canary_local_reload = on;
    }

    /// True once `shutdown` has been executed.
    pub fn stop_requested(&self) -> bool {
        self.stop
    }

    /// True once this node has heard every cluster-group member since it joined.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.id
    }

    /// The DuraVIP reducer (read-only).
    pub fn duravip(&self) -> &Reducer {
        &self.duravip
    }

    /// DuraVIPs this node has plumbed.
    pub fn plumbed(&self) -> &BTreeSet<String> {
        &self.plumbed
    }

    /// Next output.
    pub fn poll(&mut self) -> Option<NodeOutput> {
        self.out.pop_front()
    }

    fn multicast(&mut self, group: &str, msg: &Msg) {
        self.out.push_back(NodeOutput::Bus(BusAction::Multicast {
            groups: vec![group.to_string()],
            msg_type: msg.msg_type(),
            payload: msg.encode(),
        }));
    }

    fn describe(&self) -> Msg {
        Msg::Describe(Describe {
            node_type: NodeType::Node,
            node: self.id.node.clone(),
            subcluster: self.id.subcluster.clone(),
            version: VERSION.into(),
            address: self.id.address.clone(),
            groups: self.id.groups(),
        })
    }

    /// This node's DuraVIP configuration as announced in views (none after `cluster duravip
    /// release all`).
    pub fn local_view(&self) -> Vec<VipEntry> {
        if self.released {
            return Vec::new();
        }
        local_view(&self.config.root)
    }

    fn announce(&mut self) {
        let msg = Msg::View {
            node: self.id.node.clone(),
            entries: self.local_view(),
            claims: self.claims.iter().map(|(ip, c)| (ip.clone(), *c)).collect(),
        };
        let g = self.id.cluster_group.clone();
        self.multicast(&g, &msg);
    }

    /// Replaces the configuration (`config reload`): the new view is announced and applied
    /// only when it comes back in the total order.
    pub fn reload(&mut self, config: Config) {
        let old: BTreeMap<String, VipEntry> = self
            .local_view()
            .into_iter()
            .map(|e| (e.ip.clone(), e))
            .collect();
        self.config = config;
        let new: BTreeMap<String, VipEntry> = self
            .local_view()
            .into_iter()
            .map(|e| (e.ip.clone(), e))
            .collect();
        // A configuration change of a VIP ends a manual move of it.
        self.claims.retain(|ip, _| old.get(ip) == new.get(ip));
        if self.canary_local_reload {
            let v = NodeView {
                node: self.id.node.clone(),
                entries: new,
                claims: self.claims.clone(),
            };
            let p = self.private.clone();
            self.duravip.on_view(0, &p, v);
        }
        self.announce();
    }

    fn hear(&mut self, sender: &str) {
        if self.cluster_members.iter().any(|m| m == sender) {
            self.heard.insert(sender.to_string());
        }
        if !self.synced && self.cluster_members.contains(&self.private) {
            self.synced = self.cluster_members.iter().all(|m| self.heard.contains(m));
        }
    }

    /// Periodic call (about once a second). A node that joined but has not heard from some
    /// member within [`SETTLE_SECS`] (e.g. a bare Spread client in the cluster group that never
    /// announces) stops waiting: members without a view are not participants anyway.
    pub fn tick(&mut self, now: u64) {
        if !self.synced
            && self.cluster_members.contains(&self.private)
            && now >= self.joined_at + SETTLE_SECS
        {
            let silent: Vec<&String> = self
                .cluster_members
                .iter()
                .filter(|m| !self.heard.contains(*m))
                .collect();
            tracing::warn!(
                "no view from {silent:?} after {SETTLE_SECS} s; treating them as non-participants"
            );
            self.synced = true;
            self.reconcile();
        }
    }

    /// Handles one delivered bus event.
    pub fn on_bus(&mut self, now: u64, ev: BusEvent) {
        match ev {
            BusEvent::Membership { group, members } if group == self.id.cluster_group => {
                let me_in = members.contains(&self.private);
                let was_in = self.cluster_members.contains(&self.private);
                let joined: Vec<String> = members
                    .iter()
                    .filter(|m| !self.cluster_members.contains(m))
                    .cloned()
                    .collect();
                if me_in && !was_in {
                    self.heard.clear();
                    self.synced = false;
                    self.joined_at = now;
                }
                // The preferred node of a VIP rejoining ends a manual move of that VIP.
                let joined_nodes: BTreeSet<&str> =
                    joined.iter().filter_map(|p| p.rsplit('#').next()).collect();
                let duravip = &self.duravip;
                self.claims.retain(|ip, _| {
                    !duravip
                        .preference(ip)
                        .is_some_and(|p| joined_nodes.contains(p.as_str()))
                });
                self.cluster_members = members.clone();
                self.descs.retain(|p, _| members.contains(p));
                self.heard.retain(|p| members.contains(p));
                self.duravip.on_membership(now, &members);
                self.shared.on_membership(&members);
                self.logs.unsubscribe_if_gone(&members);
                if me_in {
                    // Tell (new) members who we are and what we manage.
                    let d = self.describe();
                    let g = self.id.cluster_group.clone();
                    self.multicast(&g, &d);
                    self.announce();
                    for m in self.shared.all_snapshots(&self.id.node) {
                        self.multicast(&g, &m);
                    }
                }
                self.hear("");
                self.reconcile();
            }
            BusEvent::Membership { .. } => {}
            BusEvent::Message {
                sender,
                msg_type,
                payload,
                ..
            } => {
                let msg = match Msg::decode(msg_type, &payload) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!("ignoring bad message from {sender}: {e}");
                        return;
                    }
                };
                match msg {
                    Msg::Command { req_id, text } => {
                        let reply = ReplyTo {
                            sender,
                            req_id,
                            command: text.clone(),
                        };
                        let session = format!("bus:{}", reply.sender);
                        match self.execute_as(now, &session, &text) {
                            Exec::Text(t) => self.respond(&reply, &t),
                            Exec::Run(run) => self.out.push_back(NodeOutput::Run(reply, run)),
                        }
                    }
                    Msg::Describe(d) => {
                        if self.cluster_members.contains(&sender) {
                            self.descs.insert(sender.clone(), d);
                        }
                        self.hear(&sender);
                        self.reconcile();
                    }
                    Msg::View {
                        node,
                        entries,
                        claims,
                    } => {
                        let view = NodeView {
                            node,
                            entries: entries.into_iter().map(|e| (e.ip.clone(), e)).collect(),
                            claims: claims.into_iter().collect(),
                        };
                        if self.debug {
                            tracing::info!(
                                target: "duravip",
                                "view from {sender}: {} entries, {} claims",
                                view.entries.len(),
                                view.claims.len()
                            );
                        }
                        self.duravip.on_view(now, &sender, view);
                        self.hear(&sender);
                        self.reconcile();
                    }
                    Msg::Move { vip, node } => self.on_move(&vip, &node),
                    Msg::Shared {
                        object,
                        node,
                        entries,
                    } => {
                        if self.cluster_members.contains(&sender) {
                            self.shared.on_shared(&sender, &node, &object, &entries);
                        }
                    }
                    Msg::LogSubscribe { subscriber } => {
                        if self.cluster_members.contains(&sender) {
                            self.logs.subscribe(&sender, &subscriber);
                            self.ship_logs();
                        }
                    }
                    Msg::LogAck { log, offset } => {
                        self.logs.ack(&sender, &log, offset);
                        self.ship_logs();
                    }
                    Msg::LogBatch { .. } => {}
                    Msg::Response { .. } => {}
                }
            }
            BusEvent::Disconnected => self.reset(),
        }
    }

    fn respond(&mut self, to: &ReplyTo, text: &str) {
        for m in chunk_response(to.req_id, &to.command, &self.id.node, text) {
            self.multicast(&to.sender.clone(), &m);
        }
    }

    /// The output of a mapped program for a bus command.
    pub fn mapped_done(&mut self, to: &ReplyTo, output: &str) {
        self.respond(to, output);
    }

    /// A move delivered in the total order: the target claims the VIP above every claim seen,
    /// a previous claimer drops its claim; both re-announce. The table changes when the
    /// announcements are delivered, at the same point for every node.
    fn on_move(&mut self, vip: &str, node: &str) {
        let Some(ip) = self.duravip.resolve(vip) else {
            return;
        };
        let mine = self.local_view().into_iter().find(|e| e.ip == ip);
        if node == self.id.node {
            if mine.as_ref().is_some_and(|e| e.follow.is_none()) {
                let c = self.duravip.max_claim(&ip) + 1;
                self.claims.insert(ip, c);
                self.announce();
            }
        } else if self.claims.remove(&ip).is_some() {
            self.announce();
        }
    }

    fn reconcile(&mut self) {
        if !self.synced {
            return; // not heard from every member yet: the table is incomplete
        }
        let want: BTreeSet<String> = self
            .duravip
            .owners()
            .into_iter()
            .filter(|(_, o)| *o == self.id.node)
            .map(|(ip, _)| ip)
            .collect();
        let down: Vec<String> = self.plumbed.difference(&want).cloned().collect();
        let up: Vec<String> = want.difference(&self.plumbed).cloned().collect();
        for (add, ip) in down
            .into_iter()
            .map(|i| (false, i))
            .chain(up.into_iter().map(|i| (true, i)))
        {
            let (prefix, iface) = topology(&self.config.root, &ip);
            if self.debug {
                tracing::info!(
                    target: "duravip",
                    "{} {ip}/{prefix} on {iface}",
                    if add { "taking" } else { "releasing" }
                );
            }
            if add {
                self.plumbed.insert(ip.clone());
            } else {
                self.plumbed.remove(&ip);
            }
            self.out.push_back(NodeOutput::Plumb {
                add,
                ip,
                prefix,
                iface,
            });
        }
    }
}

/// Seconds a joining node waits to hear every cluster-group member before it trusts its
/// DuraVIP table anyway (Momentum's `view_mature_time` default).
pub const SETTLE_SECS: u64 = 5;

#[cfg(test)]
mod tests;
