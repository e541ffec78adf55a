//! Subclusters from the `# Subcluster:` comments of `mbus.conf` (fact sheet §5.2).
//!
//! `# Subcluster: NAME => MANAGER` (or `= MANAGER`) assigns every `Spread_Segment` after it, up
//! to the next such comment, to NAME. Segments before any such comment belong to `default`.

use std::collections::BTreeMap;

/// One subcluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subcluster {
    /// Manager host (short name: cut at the first `.`), if declared.
    pub manager: Option<String>,
    /// Daemon (node) names listed in its segments, in file order.
    pub hosts: Vec<String>,
}

/// All subclusters by name (names compare case-sensitively).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subclusters {
    /// By name.
    pub by_name: BTreeMap<String, Subcluster>,
}

impl Subclusters {
    /// Reads the subcluster table of an `mbus.conf` with the full Spread configuration parser
    /// ([`spread::config`], errors as `file:line:col`); if the file does not parse (e.g. hosts
    /// given by name only), falls back to scanning its comments and segments, with a warning.
    pub fn load(text: &str, path: &str) -> Self {
        match spread::config::Config::parse(text, path) {
            Ok(cfg) => Self::from_spread(&cfg),
            Err(e) => {
                tracing::warn!("{e}; reading only the subcluster comments and segment host names");
                Self::from_mbus_conf(text)
            }
        }
    }

    /// The table of a parsed Spread configuration.
    pub fn from_spread(cfg: &spread::config::Config) -> Self {
        let mut out = Self::default();
        for sc in &cfg.subclusters {
            let hosts = sc
                .segments
                .iter()
                .filter_map(|i| cfg.segments.get(*i))
                .flat_map(|seg| seg.hosts.iter().map(|h| h.name.clone()))
                .collect();
            out.by_name.insert(
                sc.name.clone(),
                Subcluster {
                    manager: sc.manager.as_deref().map(|m| short(m).to_string()),
                    hosts,
                },
            );
        }
        out
    }

    /// Reads the subcluster table out of an `mbus.conf` text.
    pub fn from_mbus_conf(text: &str) -> Self {
        let mut out = Self::default();
        let mut current = "default".to_string();
        let mut in_segment = false;
        for raw in text.lines() {
            let t = raw.trim();
            if let Some(c) = t.strip_prefix('#') {
                if let Some(rest) = c.trim_start().strip_prefix("Subcluster:") {
                    let (name, manager) =
                        match rest.split_once("=>").or_else(|| rest.split_once('=')) {
                            Some((n, m)) => (n.trim(), Some(m.trim())),
                            None => (rest.trim(), None),
                        };
                    if !name.is_empty() {
                        current = name.to_string();
                        let sc = out.by_name.entry(current.clone()).or_default();
                        if let Some(m) = manager.filter(|m| !m.is_empty()) {
                            sc.manager = Some(short(m).to_string());
                        }
                    }
                }
                continue;
            }
            let line = t.split('#').next().unwrap_or("").trim();
            let mut rest = line;
            if !in_segment {
                if let Some(pos) = rest
                    .find('{')
                    .filter(|_| rest.to_ascii_lowercase().starts_with("spread_segment"))
                {
                    in_segment = true;
                    out.by_name.entry(current.clone()).or_default();
                    rest = &rest[pos + 1..];
                } else {
                    continue;
                }
            }
            let (body, closes) = match rest.find('}') {
                Some(p) => (&rest[..p], true),
                None => (rest, false),
            };
            if let Some(host) = body.split_whitespace().next() {
                let sc = out.by_name.entry(current.clone()).or_default();
                if !sc.hosts.iter().any(|h| h == host) {
                    sc.hosts.push(host.to_string());
                }
            }
            if closes {
                in_segment = false;
            }
        }
        out
    }

    /// The subcluster a node (daemon name) is listed in.
    pub fn of_host(&self, host: &str) -> Option<&str> {
        let h = short(host);
        self.by_name
            .iter()
            .find(|(_, s)| s.hosts.iter().any(|x| short(x) == h))
            .map(|(n, _)| n.as_str())
    }
}

/// Host name cut at the first `.`.
pub fn short(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_and_default() {
        let conf = "\
SocketPortReuse = on
Spread_Segment 10.0.9.255:4803 {
   lonely 10.0.9.1
}
# Subcluster: east = rh52mgr.vmnet24.example.com
Spread_Segment  10.0.0.255:4803 {         # bcast
       rh52bare          10.0.0.91     # node
       rh52mgr           10.0.0.191
}
#Subcluster: west => rh52mgr.vmnet24.example.com
Spread_Segment 10.0.1.255:4803 { rh52bar2 10.0.1.5 }
";
        let s = Subclusters::from_mbus_conf(conf);
        assert_eq!(s.by_name["default"].hosts, vec!["lonely"]);
        assert_eq!(s.by_name["east"].hosts, vec!["rh52bare", "rh52mgr"]);
        assert_eq!(s.by_name["east"].manager.as_deref(), Some("rh52mgr"));
        assert_eq!(s.by_name["west"].hosts, vec!["rh52bar2"]);
        assert_eq!(s.of_host("rh52bar2.vmnet24.example.com"), Some("west"));
        assert_eq!(s.of_host("nope"), None);
        // The full parser agrees on this file.
        assert_eq!(Subclusters::load(conf, "mbus.conf"), s);
    }
}
