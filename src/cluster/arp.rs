//! `cluster arp show` (fact sheet §3.1): the kernel's neighbour table, read-only.
//!
//! Rendered from the text of `/proc/net/arp` (the caller reads it; this module is pure): one
//! line per complete entry, `IP    [MAC]  device`, followed by the cluster node that has
//! that address, if any. The kernel does not publish an entry's age there, so the age
//! column of the original is replaced by the device.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Where Linux publishes the IPv4 neighbour table.
pub const PROC_ARP: &str = "/proc/net/arp";
/// Most entries shown.
pub const MAX_ENTRIES: usize = 4096;

/// Renders `/proc/net/arp` text; `peers` maps an IP to the node that announced it.
pub fn render(proc_text: &str, peers: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for line in proc_text.lines().skip(1).take(MAX_ENTRIES) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [ip, _hw, flags, mac, _mask, dev, ..] = f.as_slice() else {
            continue;
        };
        if *flags == "0x0" || *mac == "00:00:00:00:00:00" {
            continue; // incomplete
        }
        let _ = write!(out, "{ip:<16} [{mac}]  {dev}");
        if let Some(n) = peers.get(*ip) {
            let _ = write!(out, "  {n}");
        }
        out.push('\n');
    }
    if out.is_empty() {
        return "No neighbour entries.".into();
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_entries_with_their_cluster_node() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device
10.0.0.2         0x1         0x2         00:e0:81:63:5c:e8     *        eth0
10.0.0.9         0x1         0x0         00:00:00:00:00:00     *        eth0
garbage
";
        let peers = BTreeMap::from([("10.0.0.2".to_string(), "n2".to_string())]);
        assert_eq!(
            render(text, &peers),
            "10.0.0.2         [00:e0:81:63:5c:e8]  eth0  n2"
        );
        assert_eq!(render("header only\n", &peers), "No neighbour entries.");
    }
}
