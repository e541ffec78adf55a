//! Printing a [`Config`] back in the spread.conf grammar (parsing the output gives an equal
//! `Config`).

use std::fmt::{self, Write as _};

use super::lexer::{self, Tok, DEBUG_FLAGS, PRIORITIES};
use super::{Config, IfKinds, IpVersion, PortReuse, ScopedIp, TimeStamp, DEFAULT_PORT};

/// `s` as one STRING token: bare when it scans as exactly that word, quoted otherwise.
pub(crate) fn word(s: &str) -> String {
    let bare = lexer::scan(s, "")
        .ok()
        .filter(|sc| sc.comments.is_empty() && sc.tokens.len() == 1)
        .and_then(|sc| sc.tokens.into_iter().next())
        .is_some_and(|t| t.tok == Tok::Str(s.to_owned()) && t.text == s);
    if bare {
        s.to_owned()
    } else if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

fn addr(a: &ScopedIp) -> String {
    match &a.scope {
        Some(s) => format!("{}%{s}", a.ip),
        None => a.ip.to_string(),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Debug mask as 5.0.1 flag words: single bits, or `ALL` minus single bits.
fn flags(mask: u32) -> String {
    let named: Vec<(&str, u32)> = DEBUG_FLAGS
        .iter()
        .copied()
        .filter(|(_, m)| m.count_ones() == 1)
        .collect();
    let all_named = named.iter().fold(0, |a, (_, m)| a | m);
    let mut out = Vec::new();
    if mask & !all_named == !all_named {
        out.push("ALL".to_owned());
        out.extend(
            named
                .iter()
                .filter(|(_, m)| mask & m == 0)
                .map(|(n, _)| format!("! {n}")),
        );
    } else {
        out.extend(
            named
                .iter()
                .filter(|(_, m)| mask & m != 0)
                .map(|(n, _)| (*n).to_owned()),
        );
    }
    out.join(" ")
}

impl Config {
    fn fmt_options(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        if let Some(v) = o.active_ip_version {
            let s = if v == IpVersion::V4 { "IPv4" } else { "IPv6" };
            writeln!(f, "ActiveIPVersion = {s}")?;
        }
        if let Some(m) = o.debug_flags {
            writeln!(f, "DebugFlags = {{ {} }}", flags(m))?;
        }
        if let Some(p) = o.event_priority {
            let name = PRIORITIES.get(p as usize - 1).copied().unwrap_or("INFO");
            writeln!(f, "EventPriority = {name}")?;
        }
        if let Some(s) = &o.event_log_file {
            writeln!(f, "EventLogFile = {}", word(s))?;
        }
        match &o.event_timestamp {
            Some(TimeStamp::Default) => writeln!(f, "EventTimeStamp")?,
            Some(TimeStamp::Format(s)) => writeln!(f, "EventTimeStamp = {}", word(s))?,
            None => {}
        }
        if o.event_precise_timestamp {
            writeln!(f, "EventPreciseTimeStamp")?;
        }
        let bools = [
            ("DangerousMonitor", o.dangerous_monitor),
            ("AcceleratedRing", o.accelerated_ring),
            ("WideAreaNetwork", o.wide_area_network),
            ("ExcludeSegAddrsFromHash", o.exclude_seg_addrs_from_hash),
            ("IgnoreMulticastJoinErrors", o.ignore_multicast_join_errors),
        ];
        for (k, v) in bools {
            if let Some(v) = v {
                writeln!(f, "{k} = {}", yes(v))?;
            }
        }
        if let Some(r) = o.socket_port_reuse {
            let s = match r {
                PortReuse::Auto => "auto",
                PortReuse::On => "on",
                PortReuse::Off => "off",
            };
            writeln!(f, "SocketPortReuse = {s}")?;
        }
        let strings = [
            ("RuntimeDir", &o.runtime_dir),
            ("DaemonUser", &o.daemon_user),
            ("DaemonGroup", &o.daemon_group),
            ("AccessControlPolicy", &o.access_control_policy),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                writeln!(f, "{k} = {}", word(v))?;
            }
        }
        let lists = [
            ("RequiredAuthMethods", &o.required_auth_methods),
            ("AllowedAuthMethods", &o.allowed_auth_methods),
        ];
        for (k, v) in lists {
            if let Some(v) = v {
                writeln!(f, "{k} = {}", word(&v.join(" ")))?;
            }
        }
        let numbers = [
            ("MaxSessionMessages", o.max_session_messages),
            ("Window", o.window),
            ("PersonalWindow", o.personal_window),
            ("AcceleratedWindow", o.accelerated_window),
            ("MaxSessions", o.max_sessions),
        ];
        for (k, v) in numbers {
            if let Some(v) = v {
                writeln!(f, "{k} = {v}")?;
            }
        }
        if let Some(t) = o.timeouts {
            let all = [
                ("TokenTimeout", t.token_ms),
                ("HurryTimeout", t.hurry_ms),
                ("AliveTimeout", t.alive_ms),
                ("JoinTimeout", t.join_ms),
                ("RepTimeout", t.rep_ms),
                ("SegTimeout", t.seg_ms),
                ("GatherTimeout", t.gather_ms),
                ("FormTimeout", t.form_ms),
                ("LookupTimeout", t.lookup_ms),
            ];
            for (k, v) in all {
                writeln!(f, "{k} = {v}")?;
            }
        }
        Ok(())
    }

    /// Prints the comments of segment-less subclusters listed before table index `upto`
    /// (keeps the table order of first appearance).
    fn fmt_empty_subclusters(
        &self,
        f: &mut fmt::Formatter<'_>,
        done: &mut [bool],
        upto: usize,
    ) -> fmt::Result {
        for (sc, d) in self.subclusters.iter().zip(done.iter_mut()).take(upto) {
            if let (true, false, Some(m)) = (sc.segments.is_empty(), *d, &sc.manager) {
                writeln!(f, "\n# Subcluster: {} => {m}", sc.name)?;
            }
            *d = true;
        }
        Ok(())
    }

    fn fmt_segments(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut current: Option<&str> = None;
        let mut done = vec![false; self.subclusters.len()];
        for (i, seg) in self.segments.iter().enumerate() {
            let k = self
                .subclusters
                .iter()
                .position(|s| s.segments.contains(&i));
            if let Some(sc) = k.and_then(|k| self.subclusters.get(k)) {
                if let (Some(m), false) = (&sc.manager, current == Some(sc.name.as_str())) {
                    self.fmt_empty_subclusters(f, &mut done, k.unwrap_or(0))?;
                    writeln!(f, "\n# Subcluster: {} => {m}", sc.name)?;
                }
                current = Some(sc.name.as_str());
            }
            let first = seg.addrs.first().map(addr).unwrap_or_default();
            let port = if seg.port == 0 {
                DEFAULT_PORT
            } else {
                seg.port
            };
            let first = match seg.addrs.first().map(|a| a.ip) {
                Some(std::net::IpAddr::V6(_)) => format!("[{first}]:{port}"),
                _ => format!("{first}:{port}"),
            };
            let mut line = format!("Spread_Segment {first}");
            for a in seg.addrs.iter().skip(1) {
                let _ = write!(line, " {}", addr(a));
            }
            writeln!(f, "{line} {{")?;
            for h in &seg.hosts {
                let mut entry = format!("\t{} {}", word(&h.name), addr(&h.addr));
                if h.vid_explicit {
                    let _ = write!(entry, " VirtualID = {}", h.vid);
                }
                if !h.interfaces.is_empty() {
                    entry.push_str(" {");
                    for i in &h.interfaces {
                        entry.push(' ');
                        for (k, l) in [
                            (IfKinds::MONITOR, "M "),
                            (IfKinds::CLIENT, "C "),
                            (IfKinds::DAEMON, "D "),
                        ] {
                            if i.kinds.contains(k) {
                                entry.push_str(l);
                            }
                        }
                        entry.push_str(&addr(&i.addr));
                    }
                    entry.push_str(" }");
                }
                writeln!(f, "{entry}")?;
            }
            writeln!(f, "}}")?;
        }
        self.fmt_empty_subclusters(f, &mut done, self.subclusters.len())
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_options(f)?;
        if self.options != super::Options::default() {
            writeln!(f)?;
        }
        self.fmt_segments(f)
    }
}
