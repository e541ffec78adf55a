//! Replicated objects kept by the node agent (`cluster shared list|show`, fact sheet §3.1):
//! gauge tables (key → count) to which every node contributes its own values.
//!
//! Each node multicasts its **whole** contribution to an object ([`Msg::Shared`], AGREED on
//! the cluster group) whenever it changes, and again when the membership changes (so a
//! newcomer learns everything). A delivered snapshot replaces the sender's previous one; a
//! member that leaves takes its contribution with it. Since every node applies the same
//! messages and memberships in the same agreed order, every node shows the same table.
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::proto::{Msg, MAX_SHARED_KEYS};

/// The built-in object: open console sessions (key `console`) per node.
pub const CONNECTIONS: &str = "connections";
/// Most replicated objects.
pub const MAX_OBJECTS: usize = 64;

/// One node's contribution: node name and its values.
type Contribution = (String, BTreeMap<String, i64>);

/// Replicated gauge tables as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedTables {
    /// object → sender private group → contribution.
    seen: BTreeMap<String, BTreeMap<String, Contribution>>,
    /// This node's own values (what it announces).
    local: BTreeMap<String, BTreeMap<String, i64>>,
    /// Objects whose local values changed since the last announcement.
    dirty: BTreeSet<String>,
}

impl SharedTables {
    /// Tables with the built-in objects registered.
    pub fn new() -> Self {
        let mut t = Self::default();
        t.local.insert(CONNECTIONS.into(), BTreeMap::new());
        t.seen.insert(CONNECTIONS.into(), BTreeMap::new());
        t
    }

    /// Sets this node's value of `key` in `object` (0 removes the key). Returns false (and
    /// changes nothing) past [`MAX_OBJECTS`] / [`MAX_SHARED_KEYS`].
    pub fn set_local(&mut self, object: &str, key: &str, value: i64) -> bool {
        if !self.local.contains_key(object) && self.local.len() >= MAX_OBJECTS {
            return false;
        }
        let t = self.local.entry(object.to_string()).or_default();
        if value == 0 {
            if t.remove(key).is_some() {
                self.dirty.insert(object.to_string());
            }
            return true;
        }
        if !t.contains_key(key) && t.len() >= MAX_SHARED_KEYS {
            return false;
        }
        if t.insert(key.to_string(), value) != Some(value) {
            self.dirty.insert(object.to_string());
        }
        self.seen.entry(object.to_string()).or_default();
        true
    }

    /// Snapshots of the objects changed since the last call (to multicast).
    pub fn take_changed(&mut self, node: &str) -> Vec<Msg> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty.iter().map(|o| self.snapshot(node, o)).collect()
    }

    /// Snapshots of every local object (after a membership change).
    pub fn all_snapshots(&mut self, node: &str) -> Vec<Msg> {
        self.dirty.clear();
        let objects: Vec<String> = self.local.keys().cloned().collect();
        objects.iter().map(|o| self.snapshot(node, o)).collect()
    }

    fn snapshot(&self, node: &str, object: &str) -> Msg {
        Msg::Shared {
            object: object.to_string(),
            node: node.to_string(),
            entries: self
                .local
                .get(object)
                .map(|t| t.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
        }
    }

    /// A snapshot delivered in the agreed order from member `sender` (node `node`).
    pub fn on_shared(&mut self, sender: &str, node: &str, object: &str, entries: &[(String, i64)]) {
        if !self.seen.contains_key(object) && self.seen.len() >= MAX_OBJECTS {
            return;
        }
        let values: BTreeMap<String, i64> = entries
            .iter()
            .take(MAX_SHARED_KEYS)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        self.seen
            .entry(object.to_string())
            .or_default()
            .insert(sender.to_string(), (node.to_string(), values));
    }

    /// The cluster-group membership changed: departed members' contributions go.
    pub fn on_membership(&mut self, members: &[String]) {
        for t in self.seen.values_mut() {
            t.retain(|sender, _| members.contains(sender));
        }
    }

    /// Forgets everything seen (bus connection lost); local values are kept and re-announced.
    pub fn clear_seen(&mut self) {
        for t in self.seen.values_mut() {
            t.clear();
        }
    }

    /// `cluster shared list`.
    pub fn list(&self) -> String {
        let mut out = String::from("Currently managed objects:");
        for name in self.seen.keys() {
            let _ = write!(out, "\n{name:>30} [lazy, gauge table w/ snapshots]");
        }
        out
    }

    /// The merged table of `object` (sum over members), or one member's contribution.
    pub fn values(&self, object: &str, from: Option<&str>) -> Option<BTreeMap<String, i64>> {
        let t = self.seen.get(object)?;
        let mut sum: BTreeMap<String, i64> = BTreeMap::new();
        for (node, vals) in t.values() {
            if from.is_some_and(|f| f != node) {
                continue;
            }
            for (k, v) in vals {
                let e = sum.entry(k.clone()).or_default();
                *e = e.saturating_add(*v);
            }
        }
        Some(sum)
    }

    /// `cluster shared show <object> [from <node>]`.
    pub fn show(&self, object: &str, from: Option<&str>) -> String {
        let Some(t) = self.seen.get(object) else {
            return format!("No replicated object '{object}' (see 'cluster shared list').");
        };
        let view = match from {
            None => "global".to_string(),
            Some(n) => match t.iter().find(|(_, (node, _))| node == n) {
                Some((sender, _)) => sender.clone(),
                None => return format!("No contribution from node '{n}' to '{object}'."),
            },
        };
        let mut out = format!("lazy, snapped gauge table '{object}', view '{view}'");
        for (k, v) in self.values(object, from).unwrap_or_default() {
            let _ = write!(out, "\n{:>30} {v:>7}", format!("{k}:"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(t: &mut SharedTables, m: &Msg, sender: &str) {
        if let Msg::Shared {
            object,
            node,
            entries,
        } = m
        {
            t.on_shared(sender, node, object, entries);
        }
    }

    #[test]
    fn contributions_sum_and_leave_with_their_member() {
        let (mut a, mut b) = (SharedTables::new(), SharedTables::new());
        a.set_local(CONNECTIONS, "console", 2);
        b.set_local(CONNECTIONS, "console", 3);
        b.set_local(CONNECTIONS, "smtp", 7);
        let ma = a.take_changed("n1");
        let mb = b.take_changed("n2");
        assert!(a.take_changed("n1").is_empty(), "announced once");
        for t in [&mut a, &mut b] {
            for m in &ma {
                deliver(t, m, "#p1#n1");
            }
            for m in &mb {
                deliver(t, m, "#p2#n2");
            }
        }
        assert_eq!(a, {
            let mut x = b.clone();
            x.local.clone_from(&a.local);
            x
        });
        assert_eq!(
            a.show(CONNECTIONS, None),
            format!(
                "lazy, snapped gauge table 'connections', view 'global'\n{:>30} {:>7}\n{:>30} {:>7}",
                "console:", 5, "smtp:", 7
            )
        );
        assert!(a
            .show(CONNECTIONS, Some("n2"))
            .starts_with("lazy, snapped gauge table 'connections', view '#p2#n2'"));
        a.on_membership(&["#p1#n1".to_string()]);
        assert_eq!(a.values(CONNECTIONS, None).unwrap()["console"], 2);
        assert_eq!(
            a.show("nope", None),
            "No replicated object 'nope' (see 'cluster shared list')."
        );
        assert_eq!(
            a.list(),
            format!(
                "Currently managed objects:\n{:>30} [lazy, gauge table w/ snapshots]",
                "connections"
            )
        );
    }
}
