//! Rendering shared by the manager and the nodes: membership records, `info`, version banner.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::duravip::xml_escape;
use super::proto::{Describe, NodeType};

/// Version of this implementation, shown in banners and self-descriptions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The 46-`#` banner printed by `version` (`product` is `eccmgr` or `ecelerity`).
pub fn banner(product: &str) -> String {
    let border = "#".repeat(46);
    format!(
        "{border}\n# {product} version: mbus {VERSION}\n# Copyright (c) 2026 the mbus authors\n# Licensed under MIT OR Apache-2.0.\n{border}"
    )
}

fn or_null(s: &str) -> &str {
    if s.is_empty() {
        "(Null)"
    } else {
        s
    }
}

/// The node name of the first node (not manager) in `members` — the cluster-group leader.
pub fn leader<'a>(members: &[String], descs: &'a BTreeMap<String, Describe>) -> Option<&'a str> {
    members
        .iter()
        .filter_map(|m| descs.get(m))
        .find(|d| d.node_type == NodeType::Node)
        .map(|d| d.node.as_str())
}

/// `cluster membership` / `show cluster membership`: one record per member, blank line
/// between records; members that never described themselves are `Other`.
pub fn render_membership(
    members: &[String],
    descs: &BTreeMap<String, Describe>,
    cluster_group: &str,
    xml: bool,
) -> String {
    let mut out = String::new();
    if xml {
        out.push_str("<ClusterMembership>\n");
    }
    for (i, m) in members.iter().enumerate() {
        let (name, sc, ty, ver, addr, groups) = match descs.get(m) {
            Some(d) => (
                d.node.as_str(),
                d.subcluster.as_str(),
                match d.node_type {
                    NodeType::Node => "Momentum",
                    NodeType::Manager => "Manager",
                },
                d.version.as_str(),
                if d.address.is_empty() {
                    "0.0.0.0:0"
                } else {
                    d.address.as_str()
                },
                d.groups.join(", "),
            ),
            None => ("", "", "Other", "", "0.0.0.0:0", cluster_group.to_string()),
        };
        if xml {
            let _ = writeln!(
                out,
                "<Member><Private_Name>{}</Private_Name><Node_Name>{}</Node_Name><Subcluster>{}</Subcluster><Node_Type>{ty}</Node_Type><Version>{}</Version><Address>{}</Address><Groups>{}</Groups></Member>",
                xml_escape(m),
                xml_escape(or_null(name)),
                xml_escape(or_null(sc)),
                xml_escape(or_null(ver)),
                xml_escape(addr),
                xml_escape(&groups)
            );
        } else {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "Private Name: {m}\nNode Name: {}\nSubcluster: {}\nNode Type: {ty}\nVersion: {}\nAddress: {addr}\nGroups: {groups}",
                or_null(name),
                or_null(sc),
                or_null(ver)
            );
        }
    }
    if xml {
        out.push_str("</ClusterMembership>");
    }
    out.trim_end_matches('\n').to_string()
}

/// The four `info` / `cluster info` lines.
pub fn render_info(
    daemon_line: &str,
    control: &str,
    cluster: &str,
    leader: Option<&str>,
) -> String {
    let lead = leader.map_or_else(|| "no leader".to_string(), |l| format!("{l} is leader"));
    format!("Daemon: {daemon_line}\nControl Group: {control}\nCluster Group: {cluster} ({lead})\nLogger Group: none")
}
