//! The node's replicated objects (`cluster shared …`) and log shipping (`cluster show logs`):
//! the glue between [`NodeCore`] and [`crate::cluster::shared`] / [`crate::cluster::logship`].

use std::path::PathBuf;

use super::NodeCore;
use crate::cluster::logship::LogShipper;
use crate::cluster::shared::{SharedTables, CONNECTIONS};

impl NodeCore {
    /// Lines read from this node's log `name` (`cluster { logs }`): buffered (bounded) and
    /// shipped in batches when a manager subscribed.
    pub fn log_lines(&mut self, name: &str, lines: Vec<String>) {
        let dropped = self.logs.push_lines(name, lines);
        if dropped > 0 {
            tracing::debug!("log {name}: buffer full, dropped {dropped} line(s)");
        }
        self.ship_logs();
    }

    /// Log shipping state (read-only).
    pub fn log_shipper(&self) -> &LogShipper {
        &self.logs
    }

    pub(super) fn ship_logs(&mut self) {
        for (to, m) in self.logs.poll_batches(&self.id.node) {
            self.multicast(&to, &m);
        }
    }

    /// Sets this node's value of `key` in replicated gauge table `object` (e.g. an MTA's
    /// connection counts); announced at once, merged by every node in the agreed order.
    pub fn set_gauge(&mut self, object: &str, key: &str, value: i64) -> bool {
        let ok = self.shared.set_local(object, key, value);
        self.announce_shared();
        ok
    }

    /// The replicated objects (read-only).
    pub fn shared(&self) -> &SharedTables {
        &self.shared
    }

    /// Reads `cluster arp show` from `path` instead of `/proc/net/arp` (tests).
    pub fn set_arp_path(&mut self, path: PathBuf) {
        self.arp_path = path;
    }

    pub(super) fn announce_shared(&mut self) {
        if !self.cluster_members.contains(&self.private) {
            return; // announced in full when (re)joining
        }
        let g = self.id.cluster_group.clone();
        for m in self.shared.take_changed(&self.id.node) {
            self.multicast(&g, &m);
        }
    }

    pub(super) fn session_seen(&mut self, session: &str) {
        if session.starts_with("console:") && self.sessions.insert(session.to_string()) {
            let n = i64::try_from(self.sessions.len()).unwrap_or(i64::MAX);
            self.set_gauge(CONNECTIONS, "console", n);
        }
    }
}
