//! DuraVIP ownership (fact sheet §6): a deterministic function of the cluster group's
//! agreed state, and the plumbing trait.
//!
//! Every node keeps the latest view announced by each cluster-group member (delivered AGREED,
//! so every node sees the same announcements in the same order) and computes the owner table
//! as a **pure function** of (membership list, latest views). Nothing else feeds the election:
//! no local timers, no "current owner" carried over from history. Consequences:
//!
//! * nodes that have delivered the same prefix of the total order hold the same table;
//! * a node that joins later computes the same table as soon as it has heard every member;
//! * a node never applies its own reloaded configuration directly: it announces it and uses it
//!   when the announcement comes back in the total order. This makes the race of the original
//!   (`config reload` on several nodes at once leaving them disagreeing) impossible.
//!
//! Manual moves are part of the views too: the target of a move *claims* the VIP in its next
//! announcement with a claim number one above every claim on that VIP it has seen; the highest
//! claim among current participants wins. The claimer drops its claim when its configuration
//! of the VIP changes or when the VIP's preferred node rejoins; a claim dies with its node.

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
    /// When the participants or the owner last changed, as seen here (seconds; display only).
    pub view_changed: u64,
    /// When a participant's configuration of it last changed, as seen here (display only).
    pub config_changed: u64,
}

/// The latest announcement of one member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// Node name.
    pub node: String,
    /// Configured DuraVIPs by IP.
    pub entries: BTreeMap<String, VipEntry>,
    /// Claims from manual moves: IP → claim number.
    pub claims: BTreeMap<String, u64>,
}

/// The replicated DuraVIP state: membership and latest views; the table is derived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reducer {
    members: Vec<String>,
    views: BTreeMap<String, NodeView>,
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

    /// Current cluster-group members.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The latest entry `private` announced for `ip`.
    pub fn entry(&self, private: &str, ip: &str) -> Option<&VipEntry> {
        self.views.get(private).and_then(|v| v.entries.get(ip))
    }

    /// Highest claim number any current member announced for `ip` (0 if none).
    pub fn max_claim(&self, ip: &str) -> u64 {
        self.views
            .values()
            .filter_map(|v| v.claims.get(ip))
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// A membership change of the cluster group.
    pub fn on_membership(&mut self, now: u64, members: &[String]) {
        self.members = members.to_vec();
        self.views.retain(|p, _| members.contains(p));
        self.recompute(now, &BTreeSet::new());
    }

    /// A view announcement delivered from `private`.
    pub fn on_view(&mut self, now: u64, private: &str, view: NodeView) {
        if !self.members.iter().any(|m| m == private) {
            return; // not (or no longer) a member: stale
        }
        let old = self
            .views
            .get(private)
            .map(|v| v.entries.clone())
            .unwrap_or_default();
        let changed: BTreeSet<String> = old
            .keys()
            .chain(view.entries.keys())
            .filter(|ip| old.get(*ip) != view.entries.get(*ip))
            .cloned()
            .collect();
        self.views.insert(private.to_string(), view);
        self.recompute(now, &changed);
    }

    /// The IP of `vip` (an IP or a binding/listener name) if any participant knows it.
    pub fn resolve(&self, vip: &str) -> Option<String> {
        if self.table.contains_key(vip) {
            return Some(vip.to_string());
        }
        self.views
            .values()
            .flat_map(|v| v.entries.values())
            .find(|e| e.names.iter().any(|n| n == vip))
            .map(|e| e.ip.clone())
    }

    /// The unanimous preferred node of `ip`, if exactly one is named.
    pub fn preference(&self, ip: &str) -> Option<String> {
        let prefs: BTreeSet<&String> = self
            .views
            .values()
            .filter_map(|v| v.entries.get(ip))
            .filter_map(|e| e.preference.as_ref())
            .collect();
        if prefs.len() == 1 {
            prefs.into_iter().next().cloned()
        } else {
            None
        }
    }

    fn recompute(&mut self, now: u64, config_changed: &BTreeSet<String>) {
        let next = compute(&self.members, &self.views);
        let mut table = BTreeMap::new();
        for (ip, (owner, safety, participants)) in next {
            let prev = self.table.get(&ip);
            let view_changed = match prev {
                Some(p) if p.participants == participants && p.owner == owner => p.view_changed,
                _ => now,
            };
            let config_changed = match prev {
                Some(p) if !config_changed.contains(&ip) => p.config_changed,
                _ => now,
            };
            table.insert(
                ip,
                VipState {
                    owner,
                    safety,
                    participants,
                    view_changed,
                    config_changed,
                },
            );
        }
        self.table = table;
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

type Computed = BTreeMap<String, (Option<String>, Safety, Vec<(String, String)>)>;

/// The election (§6.3–§6.4) as a pure function of the membership list and the latest views.
///
/// Per VIP: participants = members (in membership order) whose view has it. Different names →
/// broken, no owner. A listener with `Duravip_Follow` takes the owner of what it follows.
/// Otherwise the highest claim of a participant wins; else the unanimous preferred node if it
/// participates (several preferred nodes = conflict); else balancing: in IP order, the
/// participant owning the fewest VIPs so far, ties by node name.
pub fn compute(members: &[String], views: &BTreeMap<String, NodeView>) -> Computed {
    let ips: BTreeSet<&String> = members
        .iter()
        .filter_map(|m| views.get(m))
        .flat_map(|v| v.entries.keys())
        .collect();
    let mut out: Computed = BTreeMap::new();
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    let mut open: Vec<String> = Vec::new();
    let mut followers: Vec<(String, String)> = Vec::new();
    for ip in ips {
        let parts: Vec<(&String, &NodeView)> = members
            .iter()
            .filter_map(|m| {
                views
                    .get(m)
                    .filter(|v| v.entries.contains_key(ip))
                    .map(|v| (m, v))
            })
            .collect();
        let participants: Vec<(String, String)> = parts
            .iter()
            .map(|(p, v)| ((*p).clone(), v.node.clone()))
            .collect();
        for (_, n) in &participants {
            load.entry(n.clone()).or_default();
        }
        let entries: Vec<&VipEntry> = parts
            .iter()
            .filter_map(|(_, v)| v.entries.get(ip))
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
        let claim = parts
            .iter()
            .filter_map(|(_, v)| v.claims.get(ip).map(|c| (*c, v.node.clone())))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
            .map(|(_, n)| n);
        let preferred = prefs
            .iter()
            .next()
            .filter(|p| safety != Safety::Conflict && participants.iter().any(|(_, n)| n == **p));
        let owner = if safety == Safety::Broken {
            None
        } else if let Some(f) = entries.iter().find_map(|e| e.follow.clone()) {
            followers.push((ip.clone(), f));
            None
        } else if let Some(c) = claim {
            Some(c)
        } else if let Some(p) = preferred {
            Some((*p).clone())
        } else {
            open.push(ip.clone());
            None
        };
        if let Some(o) = &owner {
            *load.entry(o.clone()).or_default() += 1;
        }
        out.insert(ip.clone(), (owner, safety, participants));
    }
    for ip in open {
        let Some((owner, _, participants)) = out.get_mut(&ip) else {
            continue;
        };
        let pick = participants
            .iter()
            .map(|(_, n)| n)
            .min_by_key(|n| (load.get(*n).copied().unwrap_or(0), (*n).clone()))
            .cloned();
        if let Some(p) = &pick {
            *load.entry(p.clone()).or_default() += 1;
        }
        *owner = pick;
    }
    for (ip, follow) in followers {
        let target = if out.contains_key(&follow) {
            Some(follow.clone())
        } else {
            views
                .values()
                .flat_map(|v| v.entries.values())
                .find(|e| e.kind == EntryKind::Binding && e.names.contains(&follow))
                .map(|e| e.ip.clone())
        };
        let owner = target.and_then(|t| out.get(&t).and_then(|s| s.0.clone()));
        if let Some(s) = out.get_mut(&ip) {
            s.0 = owner.filter(|o| s.2.iter().any(|(_, n)| n == o));
        }
    }
    out
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

    fn p(n: &str) -> String {
        format!("#ec0-00001#{n}")
    }

    fn view(node: &str, entries: &[VipEntry], claims: &[(&str, u64)]) -> NodeView {
        NodeView {
            node: node.into(),
            entries: entries.iter().map(|e| (e.ip.clone(), e.clone())).collect(),
            claims: claims
                .iter()
                .map(|(ip, c)| ((*ip).to_string(), *c))
                .collect(),
        }
    }

    fn std_entries() -> Vec<VipEntry> {
        vec![
            b("10.0.0.1", "b1", None),
            b("10.0.0.2", "b2", None),
            b("10.0.0.3", "b3", Some("n3")),
        ]
    }

    fn setup() -> Reducer {
        let mut r = Reducer::new();
        r.on_membership(0, &["n1", "n2", "n3"].map(p));
        for n in ["n1", "n2", "n3"] {
            r.on_view(0, &p(n), view(n, &std_entries(), &[]));
        }
        r
    }

    #[test]
    fn election_balances_and_honours_preference() {
        let r = setup();
        let o = r.owners();
        assert_eq!(o["10.0.0.3"], "n3");
        assert_eq!(o["10.0.0.1"], "n1");
        assert_eq!(o["10.0.0.2"], "n2");
        assert_eq!(r.table()["10.0.0.1"].safety, Safety::Safe);
    }

    #[test]
    fn table_is_independent_of_history() {
        // A node that saw everything and one that joined late agree once both heard all views.
        let mut late = Reducer::new();
        late.on_membership(5, &["n1", "n2", "n3"].map(p));
        for n in ["n3", "n1", "n2"] {
            late.on_view(5, &p(n), view(n, &std_entries(), &[]));
        }
        assert_eq!(late.owners(), setup().owners());
    }

    #[test]
    fn highest_claim_wins_and_dies_with_its_node() {
        let mut r = setup();
        r.on_view(1, &p("n3"), view("n3", &std_entries(), &[("10.0.0.1", 1)]));
        assert_eq!(r.owners()["10.0.0.1"], "n3");
        assert_eq!(r.max_claim("10.0.0.1"), 1);
        r.on_view(1, &p("n2"), view("n2", &std_entries(), &[("10.0.0.1", 2)]));
        assert_eq!(r.owners()["10.0.0.1"], "n2");
        r.on_membership(2, &["n1", "n3"].map(p));
        assert_eq!(r.owners()["10.0.0.1"], "n3");
        r.on_membership(2, &["n1"].map(p));
        assert_eq!(
            r.owners()["10.0.0.3"],
            "n1",
            "preferred node gone: next best"
        );
    }

    #[test]
    fn broken_and_conflict() {
        let mut r = setup();
        r.on_view(
            1,
            &p("n2"),
            view(
                "n2",
                &[
                    b("10.0.0.1", "other", None),
                    b("10.0.0.2", "b2", Some("n2")),
                    b("10.0.0.3", "b3", Some("n3")),
                ],
                &[],
            ),
        );
        assert_eq!(r.table()["10.0.0.1"].safety, Safety::Broken);
        assert_eq!(r.table()["10.0.0.1"].owner, None);
        r.on_view(
            1,
            &p("n1"),
            view("n1", &[b("10.0.0.2", "b2", Some("n1"))], &[]),
        );
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
        let mut e = std_entries();
        e.push(l);
        for n in ["n1", "n2", "n3"] {
            r.on_view(1, &p(n), view(n, &e, &[]));
        }
        assert_eq!(r.owners()["10.0.0.9"], "n3");
        r.on_view(2, &p("n1"), view("n1", &e, &[("10.0.0.3", 1)]));
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
