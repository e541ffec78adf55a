//! DuraVIP ownership (fact sheet §6): a deterministic reducer over the cluster group's total
//! order, and the plumbing trait.
//!
//! Every node feeds the same sequence of events — cluster-group membership changes, view
//! announcements and moves, all delivered AGREED — into [`Reducer`], in delivery order. The
//! owner table is a pure function of that sequence, so all nodes that delivered the same
//! prefix hold the same table. A node never applies its own reloaded view directly: it
//! announces it and applies it when the announcement comes back in the total order. That is
//! what makes the "concurrent `config reload`" race of the original impossible.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::proto::{EntryKind, VipEntry};

/// Safety of one DuraVIP across its participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Safety {
    /// All participants agree.
    Safe,
    /// Listener on some nodes, binding on others (informational).
    Unsafe,
    /// Different binding names on different nodes: not managed.
    Broken,
    /// Several different preferred nodes: ordinary election.
    Conflict,
}

impl Safety {
    /// Lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Safe => "safe",
            Self::Unsafe => "unsafe",
            Self::Broken => "broken",
            Self::Conflict => "conflict",
        }
    }
}

/// Computed state of one DuraVIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipState {
    /// The owner's node name.
    pub owner: Option<String>,
    /// Safety.
    pub safety: Safety,
    /// Participants (private name, node name) in membership order.
    pub participants: Vec<(String, String)>,
    /// When the set of participants or the owner last changed (seconds).
    pub view_changed: u64,
    /// When any participant's configuration of this VIP last changed (seconds).
    pub config_changed: u64,
}

/// The replicated DuraVIP state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reducer {
    /// Cluster-group members (private names) in agreed order.
    members: Vec<String>,
    /// Latest view per private name: node name and entries by IP.
    views: BTreeMap<String, (String, BTreeMap<String, VipEntry>)>,
    /// Manual moves: IP → node, sticky (§6.4).
    sticky: BTreeMap<String, String>,
    /// Computed table.
    table: BTreeMap<String, VipState>,
}

impl Reducer {
    /// A reducer with no members.
    pub fn new() -> Self {
        Self::default()
    }

    /// The computed table, by IP.
    pub fn table(&self) -> &BTreeMap<String, VipState> {
        &self.table
    }

    /// Owners by IP (only VIPs that have one).
    pub fn owners(&self) -> BTreeMap<String, String> {
        self.table
            .iter()
            .filter_map(|(ip, s)| s.owner.clone().map(|o| (ip.clone(), o)))
            .collect()
    }

    /// The latest entry `private` announced for `ip`.
    pub fn entry(&self, private: &str, ip: &str) -> Option<&VipEntry> {
        self.views.get(private).and_then(|(_, e)| e.get(ip))
    }

    /// A membership change of the cluster group.
    pub fn on_membership(&mut self, now: u64, members: &[String]) {
        let joined: BTreeSet<&String> = members
            .iter()
            .filter(|m| !self.members.contains(m))
            .collect();
        // A preferred node rejoining ends a manual move.
        let joined_nodes: BTreeSet<String> = joined
            .iter()
            .filter_map(|p| self.views.get(*p).map(|(n, _)| n.clone()))
            .collect();
        self.members = members.to_vec();
        self.views.retain(|p, _| members.contains(p));
        let prefs = self.preferences();
        self.sticky
            .retain(|ip, _| !prefs.get(ip).is_some_and(|p| joined_nodes.contains(p)));
        self.recompute(now);
    }

    /// A view announcement delivered from `private`.
    pub fn on_view(&mut self, now: u64, private: &str, node: &str, entries: &[VipEntry]) {
        if !self.members.iter().any(|m| m == private) {
            return; // not (or no longer) a member: stale
        }
        let new: BTreeMap<String, VipEntry> =
            entries.iter().map(|e| (e.ip.clone(), e.clone())).collect();
        let old = self
            .views
            .get(private)
            .map(|(_, e)| e.clone())
            .unwrap_or_default();
        let changed: BTreeSet<String> = old
            .keys()
            .chain(new.keys())
            .filter(|ip| old.get(*ip) != new.get(*ip))
            .cloned()
            .collect();
        // A configuration change of a VIP ends a manual move of it (a first announcement does not).
        if old.is_empty() {
            // first view from this member
        } else {
            self.sticky.retain(|ip, _| !changed.contains(ip));
        }
        self.views
            .insert(private.to_string(), (node.to_string(), new));
        for ip in &changed {
            if let Some(s) = self.table.get_mut(ip) {
                s.config_changed = now;
            }
        }
        self.recompute_with(now, &changed);
    }

    /// A move delivered in the total order. Returns false if it named an unknown VIP or a node
    /// that does not participate in it (then nothing changes).
    pub fn on_move(&mut self, now: u64, vip: &str, node: &str) -> bool {
        let Some(ip) = self.resolve(vip) else {
            return false;
        };
        let ok = self
            .table
            .get(&ip)
            .is_some_and(|s| s.participants.iter().any(|(_, n)| n == node));
        if ok {
            self.sticky.insert(ip, node.to_string());
            self.recompute(now);
        }
        ok
    }

    /// The IP of `vip` (an IP or a binding/listener name) if any participant knows it.
    pub fn resolve(&self, vip: &str) -> Option<String> {
        if self.table.contains_key(vip) {
            return Some(vip.to_string());
        }
        self.views
            .values()
            .flat_map(|(_, e)| e.values())
            .find(|e| e.names.iter().any(|n| n == vip))
            .map(|e| e.ip.clone())
    }

    fn preferences(&self) -> BTreeMap<String, String> {
        let mut prefs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, entries) in self.views.values() {
            for e in entries.values() {
                if let Some(p) = &e.preference {
                    prefs.entry(e.ip.clone()).or_default().insert(p.clone());
                }
            }
        }
        prefs
            .into_iter()
            .filter(|(_, s)| s.len() == 1)
            .filter_map(|(ip, s)| s.into_iter().next().map(|p| (ip, p)))
            .collect()
    }

    fn recompute(&mut self, now: u64) {
        self.recompute_with(now, &BTreeSet::new());
    }

    fn recompute_with(&mut self, now: u64, config_changed: &BTreeSet<String>) {
        let ips: BTreeSet<String> = self
            .views
            .values()
            .flat_map(|(_, e)| e.keys().cloned())
            .collect();
        let mut next: BTreeMap<String, VipState> = BTreeMap::new();
        let mut owned: BTreeMap<String, usize> = BTreeMap::new();
        let mut followers: Vec<(String, String)> = Vec::new();
        for ip in &ips {
            let participants: Vec<(String, String)> = self
                .members
                .iter()
                .filter_map(|p| {
                    self.views
                        .get(p)
                        .filter(|(_, e)| e.contains_key(ip))
                        .map(|(n, _)| (p.clone(), n.clone()))
                })
                .collect();
            let entries: Vec<&VipEntry> = participants
                .iter()
                .filter_map(|(p, _)| self.entry(p, ip))
                .collect();
            let names: BTreeSet<&Vec<String>> = entries.iter().map(|e| &e.names).collect();
            let kinds: BTreeSet<EntryKind> = entries.iter().map(|e| e.kind).collect();
            let prefs: BTreeSet<&String> = entries
                .iter()
                .filter_map(|e| e.preference.as_ref())
                .collect();
            let safety = if names.len() > 1 {
                Safety::Broken
            } else if prefs.len() > 1 {
                Safety::Conflict
            } else if kinds.len() > 1 {
                Safety::Unsafe
            } else {
                Safety::Safe
            };
            let is_part = |n: &str| participants.iter().any(|(_, x)| x == n);
            let prev = self.table.get(ip);
            let owner = if safety == Safety::Broken || participants.is_empty() {
                None
            } else if let Some(f) = entries.iter().find_map(|e| e.follow.clone()) {
                followers.push((ip.clone(), f));
                None
            } else if let Some(s) = self.sticky.get(ip).filter(|s| is_part(s)) {
                Some(s.clone())
            } else if let Some(p) = prefs
                .iter()
                .next()
                .filter(|p| safety != Safety::Conflict && is_part(p))
            {
                Some((*p).clone())
            } else if let Some(o) = prev.and_then(|s| s.owner.clone()).filter(|o| is_part(o)) {
                Some(o)
            } else {
                participants
                    .iter()
                    .map(|(_, n)| n)
                    .min_by_key(|n| (owned.get(*n).copied().unwrap_or(0), (*n).clone()))
                    .cloned()
            };
            if let Some(o) = &owner {
                *owned.entry(o.clone()).or_default() += 1;
            }
            let view_changed = match prev {
                Some(p) if p.participants == participants && p.owner == owner => p.view_changed,
                _ => now,
            };
            let config_changed = match prev {
                Some(p) if !config_changed.contains(ip) => p.config_changed,
                _ => now,
            };
            next.insert(
                ip.clone(),
                VipState {
                    owner,
                    safety,
                    participants,
                    view_changed,
                    config_changed,
                },
            );
        }
        self.balance(&mut next, now);
        // Followers take the owner of the binding (name or IP) they follow, if it participates.
        for (ip, follow) in followers {
            let target = if next.contains_key(&follow) {
                Some(follow.clone())
            } else {
                self.views
                    .values()
                    .flat_map(|(_, e)| e.values())
                    .find(|e| e.kind == EntryKind::Binding && e.names.contains(&follow))
                    .map(|e| e.ip.clone())
            };
            let owner = target.and_then(|t| next.get(&t).and_then(|s| s.owner.clone()));
            if let Some(s) = next.get_mut(&ip) {
                let owner = owner.filter(|o| s.participants.iter().any(|(_, n)| n == o));
                if s.owner != owner {
                    s.view_changed = now;
                }
                s.owner = owner;
            }
        }
        self.sticky.retain(|ip, n| {
            next.get(ip)
                .is_some_and(|s| s.participants.iter().any(|(_, x)| x == n))
        });
        self.table = next;
    }

    /// Balancing (§6.3): while some participant owns two or more unpinned VIPs more than
    /// another participant of one of them, hand one over. Pinned = moved, preferred or
    /// following. Bounded by the number of VIPs; deterministic (IP and name order).
    fn balance(&self, next: &mut BTreeMap<String, VipState>, now: u64) {
        let prefs = self.preferences();
        for _ in 0..next.len() {
            let mut load: BTreeMap<&str, usize> = BTreeMap::new();
            for s in next.values() {
                for (_, n) in &s.participants {
                    load.entry(n.as_str()).or_default();
                }
                if let Some(o) = &s.owner {
                    *load.entry(o.as_str()).or_default() += 1;
                }
            }
            let mut best: Option<(String, String)> = None;
            for (ip, s) in next.iter() {
                let pinned = self.sticky.contains_key(ip)
                    || prefs
                        .get(ip)
                        .is_some_and(|p| s.participants.iter().any(|(_, n)| n == p))
                    || s.safety == Safety::Broken
                    || s.participants
                        .iter()
                        .any(|(p, _)| self.entry(p, ip).is_some_and(|e| e.follow.is_some()));
                let Some(owner) = s.owner.as_deref().filter(|_| !pinned) else {
                    continue;
                };
                let have = load.get(owner).copied().unwrap_or(0);
                let target = s
                    .participants
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .min_by_key(|n| (load.get(n).copied().unwrap_or(0), *n));
                if let Some(t) = target.filter(|t| load.get(t).copied().unwrap_or(0) + 1 < have) {
                    best = Some((ip.clone(), t.to_string()));
                    break;
                }
            }
            let Some((ip, to)) = best else { return };
            if let Some(s) = next.get_mut(&ip) {
                s.owner = Some(to);
                s.view_changed = now;
            }
        }
    }

    /// `cluster duravip show` text, with `local` the asking node's name.
    pub fn show(&self, now: u64) -> String {
        let mut out = String::from("DuraVIP State:\n");
        for (ip, s) in &self.table {
            let any = s.participants.iter().find_map(|(p, _)| self.entry(p, ip));
            let names = any.map(|e| e.names.join("/")).unwrap_or_default();
            let kind = match any.map(|e| e.kind) {
                Some(EntryKind::Listener) => "listener",
                _ => "multivip",
            };
            let own = if s.owner.is_some() {
                "owned"
            } else {
                "unowned"
            };
            let _ = writeln!(out, "{ip}/{names}: ({own},{}) {kind}", s.safety.label());
            let _ = writeln!(
                out,
                "\t[view stable for {} seconds]",
                now.saturating_sub(s.view_changed)
            );
            let _ = writeln!(
                out,
                "\t[configuration stable for {} seconds]",
                now.saturating_sub(s.config_changed)
            );
            for (p, n) in &s.participants {
                let mark = if s.owner.as_deref() == Some(n.as_str()) {
                    " *  "
                } else {
                    "    "
                };
                let k = match self.entry(p, ip).map(|e| e.kind) {
                    Some(EntryKind::Listener) => "listener",
                    _ => "multivip",
                };
                let _ = writeln!(out, "{mark}\t{n} {k}");
            }
        }
        out.trim_end_matches('\n').to_string()
    }

    /// `cluster duravip show tables` XML (element names per §6.6).
    pub fn show_tables(&self) -> String {
        let mut out = String::from("<VIPStateTable><group_vips_by_name><VIPs>\n");
        for (ip, s) in &self.table {
            let any = s.participants.iter().find_map(|(p, _)| self.entry(p, ip));
            let name = any.map(|e| e.names.join("/")).unwrap_or_default();
            let own = if s.owner.is_some() {
                "owned"
            } else {
                "unowned"
            };
            let _ = write!(
                out,
                "<VIP><Name>{}</Name><IP>{}</IP><Last_View_Change>{}</Last_View_Change><State>{own},{}</State><Owner>{}</Owner><ViewsForParticipants>",
                xml_escape(&name),
                xml_escape(ip),
                s.view_changed,
                s.safety.label(),
                xml_escape(s.owner.as_deref().unwrap_or(""))
            );
            for (p, n) in &s.participants {
                let e = self.entry(p, ip);
                let state = if s.owner.as_deref() == Some(n.as_str()) {
                    "owner"
                } else {
                    "standby"
                };
                let _ = write!(
                    out,
                    "<ParticipantView><Private_Name>{}</Private_Name><IP>{}</IP><Name>{}</Name><State>{state}</State></ParticipantView>",
                    xml_escape(p),
                    xml_escape(e.map_or("", |e| e.ip.as_str())),
                    xml_escape(&e.map(|e| e.names.join("/")).unwrap_or_default())
                );
            }
            out.push_str("</ViewsForParticipants></VIP>\n");
        }
        out.push_str("</VIPs></group_vips_by_name></VIPStateTable>");
        out
    }
}

/// Escapes `& < > "` for XML text.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Adds and removes DuraVIP aliases on interfaces.
pub trait Plumber: Send {
    /// Bring `ip/prefix` up on `iface`.
    fn add(&mut self, ip: &str, prefix: u8, iface: &str);
    /// Take `ip` down.
    fn del(&mut self, ip: &str, prefix: u8, iface: &str);
}

/// Default plumbing: logs the intended `ip addr` and ARP actions, changes nothing.
#[derive(Debug, Default)]
pub struct LogPlumber {
    /// Every action taken, as the shell command it stands for.
    pub log: Vec<String>,
}

impl Plumber for LogPlumber {
    fn add(&mut self, ip: &str, prefix: u8, iface: &str) {
        let a = format!("ip addr add {ip}/{prefix} dev {iface} && arping -U -c 1 -I {iface} {ip}");
        tracing::info!("duravip: {a}");
        self.log.push(a);
    }
    fn del(&mut self, ip: &str, prefix: u8, iface: &str) {
        let a = format!("ip addr del {ip}/{prefix} dev {iface}");
        tracing::info!("duravip: {a}");
        self.log.push(a);
    }
}

/// Real plumbing through the `ip` command (opt-in; needs privileges).
#[derive(Debug, Default)]
pub struct IpCommandPlumber;

impl Plumber for IpCommandPlumber {
    fn add(&mut self, ip: &str, prefix: u8, iface: &str) {
        let r = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/{prefix}"), "dev", iface])
            .status();
        tracing::info!("duravip: ip addr add {ip}/{prefix} dev {iface}: {r:?}");
    }
    fn del(&mut self, ip: &str, prefix: u8, iface: &str) {
        let r = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{ip}/{prefix}"), "dev", iface])
            .status();
        tracing::info!("duravip: ip addr del {ip}/{prefix} dev {iface}: {r:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, name: &str, pref: Option<&str>) -> VipEntry {
        VipEntry {
            ip: ip.into(),
            names: vec![name.into()],
            kind: EntryKind::Binding,
            preference: pref.map(Into::into),
            follow: None,
        }
    }

    fn members(n: &[&str]) -> Vec<String> {
        n.iter().map(|x| format!("#ec0-00001#{x}")).collect()
    }

    fn setup() -> Reducer {
        let mut r = Reducer::new();
        r.on_membership(0, &members(&["n1", "n2", "n3"]));
        for n in ["n1", "n2", "n3"] {
            r.on_view(
                0,
                &format!("#ec0-00001#{n}"),
                n,
                &[
                    b("10.0.0.1", "b1", None),
                    b("10.0.0.2", "b2", None),
                    b("10.0.0.3", "b3", Some("n3")),
                ],
            );
        }
        r
    }

    #[test]
    fn election_balances_and_honours_preference() {
        let r = setup();
        let o = r.owners();
        assert_eq!(o["10.0.0.3"], "n3");
        assert_ne!(o["10.0.0.1"], o["10.0.0.2"]);
        assert_eq!(r.table()["10.0.0.1"].safety, Safety::Safe);
    }

    #[test]
    fn move_is_sticky_until_target_leaves() {
        let mut r = setup();
        assert!(r.on_move(1, "b1", "n3"));
        assert_eq!(r.owners()["10.0.0.1"], "n3");
        assert!(!r.on_move(1, "b1", "nobody"));
        assert!(!r.on_move(1, "10.9.9.9", "n1"));
        r.on_membership(2, &members(&["n1", "n2"]));
        assert_ne!(r.owners()["10.0.0.1"], "n3");
        assert_ne!(r.owners()["10.0.0.3"], "n3");
        // Preferred node rejoins and announces: it gets its VIP back.
        r.on_membership(3, &members(&["n1", "n2", "n3"]));
        r.on_view(3, "#ec0-00001#n3", "n3", &[b("10.0.0.3", "b3", Some("n3"))]);
        assert_eq!(r.owners()["10.0.0.3"], "n3");
    }

    #[test]
    fn broken_and_conflict() {
        let mut r = setup();
        r.on_view(
            1,
            "#ec0-00001#n2",
            "n2",
            &[
                b("10.0.0.1", "other", None),
                b("10.0.0.2", "b2", Some("n2")),
                b("10.0.0.3", "b3", Some("n3")),
            ],
        );
        assert_eq!(r.table()["10.0.0.1"].safety, Safety::Broken);
        assert_eq!(r.table()["10.0.0.1"].owner, None);
        r.on_view(1, "#ec0-00001#n1", "n1", &[b("10.0.0.2", "b2", Some("n1"))]);
        assert_eq!(r.table()["10.0.0.2"].safety, Safety::Conflict);
        assert!(r.table()["10.0.0.2"].owner.is_some());
    }

    #[test]
    fn listener_follows_binding() {
        let mut r = setup();
        let l = VipEntry {
            ip: "10.0.0.9".into(),
            names: vec!["smtp".into()],
            kind: EntryKind::Listener,
            preference: None,
            follow: Some("b3".into()),
        };
        for n in ["n1", "n2", "n3"] {
            r.on_view(
                1,
                &format!("#ec0-00001#{n}"),
                n,
                &[
                    b("10.0.0.1", "b1", None),
                    b("10.0.0.3", "b3", Some("n3")),
                    l.clone(),
                ],
            );
        }
        assert_eq!(r.owners()["10.0.0.9"], "n3");
        assert!(r.on_move(2, "b3", "n1"));
        assert_eq!(r.owners()["10.0.0.9"], "n1");
        let show = r.show(5);
        assert!(
            show.contains("10.0.0.9/smtp: (owned,safe) listener"),
            "{show}"
        );
        assert!(show.contains(" *  \tn1 listener"), "{show}");
        assert!(r
            .show_tables()
            .contains("<Private_Name>#ec0-00001#n1</Private_Name>"));
    }
}
