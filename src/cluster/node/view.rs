//! This node's DuraVIP configuration as announced in views, and where addresses are plumbed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::NodeOutput;
use crate::cluster::proto::{EntryKind, VipEntry};
use crate::ecconf::Scope;

/// DuraVIP entries of a configuration: `Binding "name" { Bind_Address = ip Enable_Duravip = true
/// [Duravip_Preference = node] }` and `Listen "ip:port" { Enable_Duravip = true | Duravip_Follow = b }`.
pub fn local_view(root: &Scope) -> Vec<VipEntry> {
    let mut by_ip: BTreeMap<String, VipEntry> = BTreeMap::new();
    let mut stack = vec![root];
    let mut listeners = Vec::new();
    while let Some(s) = stack.pop() {
        stack.extend(s.children.iter());
        let enabled = s
            .get("Enable_Duravip")
            .and_then(|o| o.value.as_bool())
            .unwrap_or(false);
        let pref = s.get_str("Duravip_Preference").map(str::to_string);
        if s.name.eq_ignore_ascii_case("Binding") && enabled {
            let (Some(name), Some(ip)) = (s.instance.clone(), s.get_str("Bind_Address")) else {
                continue;
            };
            let e = by_ip.entry(ip.to_string()).or_insert_with(|| VipEntry {
                ip: ip.to_string(),
                names: Vec::new(),
                kind: EntryKind::Binding,
                preference: None,
                follow: None,
            });
            e.names.push(name);
            e.names.sort();
            if pref.is_some() {
                e.preference = pref;
            }
        } else if s.name.eq_ignore_ascii_case("Listen") {
            let follow = s.get_str("Duravip_Follow").map(str::to_string);
            if !enabled && follow.is_none() {
                continue;
            }
            let Some(inst) = s.instance.clone() else {
                continue;
            };
            let ip = listen_ip(&inst);
            listeners.push(VipEntry {
                ip,
                names: vec![inst],
                kind: EntryKind::Listener,
                preference: pref,
                follow,
            });
        }
    }
    for l in listeners {
        match by_ip.get_mut(&l.ip) {
            Some(b) => {
                b.names.extend(l.names);
                b.names.sort();
            }
            None => {
                by_ip.insert(l.ip.clone(), l);
            }
        }
    }
    by_ip.into_values().collect()
}

fn listen_ip(inst: &str) -> String {
    if let Some(rest) = inst.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    inst.rsplit_once(':').map_or(inst, |(h, _)| h).to_string()
}

/// Interface and prefix for `ip` from `cluster { Topology "cidr" { interface = … cidrmask = … } }`.
pub(super) fn topology(root: &Scope, ip: &str) -> (u8, String) {
    let default = (32, "eth0".to_string());
    let Ok(addr) = ip.parse::<Ipv4Addr>() else {
        return default;
    };
    let Some(cluster) = root.child("cluster", None) else {
        return default;
    };
    for t in cluster.children_named("Topology") {
        let Some((net, bits)) = t.instance.as_deref().and_then(|c| c.split_once('/')) else {
            continue;
        };
        let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
            continue;
        };
        if bits > 32 {
            continue;
        }
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        if u32::from(addr) & mask == u32::from(net) & mask {
            let iface = t.get_str("interface").unwrap_or("eth0").to_string();
            let prefix = t
                .get_str("cidrmask")
                .and_then(|m| m.parse().ok())
                .filter(|m| *m <= 32)
                .unwrap_or(32);
            return (prefix, iface);
        }
    }
    default
}

/// Renders plumbing actions for logs: `+10.0.0.1/32@eth0`.
pub fn describe_plumb(out: &NodeOutput) -> Option<String> {
    match out {
        NodeOutput::Plumb {
            add,
            ip,
            prefix,
            iface,
        } => {
            let mut s = String::new();
            let _ = write!(s, "{}{ip}/{prefix}@{iface}", if *add { '+' } else { '-' });
            Some(s)
        }
        _ => None,
    }
}
