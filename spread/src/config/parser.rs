//! The spread.conf grammar (5.0.1): options and `Spread_Segment` blocks, checked against
//! 5.0.1's limits while parsing so each error points at the token responsible.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::error::{ConfigError, ConfigErrorKind as K, ConfigWarning, Pos};
use super::lexer::{self, IpTok, Kw, Tok, Token};
use super::subcluster::Tracker;
use super::{
    vid_from_name, Config, Host, IfKinds, Interface, IpVersion, Options, Parsed, PortReuse,
    Priority, Resolver, ScopedIp, Segment, TimeStamp, Timeouts, ACCESS_CONTROL_POLICIES,
    AUTH_METHODS, DEFAULT_PORT, MAX_HOSTS, MAX_HOSTS_PER_SEGMENT, MAX_HOST_NAME_LEN,
    MAX_INTERFACES, MAX_MAX_SESSIONS, MAX_PATH_LEN, MAX_SEGMENTS, MAX_SEGMENT_ADDRS,
    MAX_TIMESTAMP_FORMAT_LEN, MAX_USER_NAME_LEN,
};

/// Keywords of the nine timeouts, in `Timeouts` field order.
const TIMEOUT_KWS: [Kw; 9] = [
    Kw::TokenTimeout,
    Kw::HurryTimeout,
    Kw::AliveTimeout,
    Kw::JoinTimeout,
    Kw::RepTimeout,
    Kw::SegTimeout,
    Kw::GatherTimeout,
    Kw::FormTimeout,
    Kw::LookupTimeout,
];

pub(crate) fn parse(text: &str, path: &str, resolver: Resolver<'_>) -> Result<Parsed, ConfigError> {
    let scanned = lexer::scan(text, path)?;
    let mut p = Parser {
        toks: scanned.tokens,
        i: 0,
        path,
        end: scanned.end,
        resolver,
        warnings: Vec::new(),
        opts: Options::default(),
        opt_pos: BTreeMap::new(),
        timeouts: [None; 9],
        segments: Vec::new(),
        names: BTreeMap::new(),
        addrs: BTreeMap::new(),
        vids: BTreeMap::new(),
        active: None,
        subs: Tracker::new(scanned.comments),
    };
    p.config()?;
    let timeouts = p.check_timeouts()?;
    p.opts.timeouts = timeouts;
    let subs = std::mem::replace(&mut p.subs, Tracker::new(Vec::new()));
    let subclusters = subs
        .finish(p.segments.len(), &mut p.warnings)
        .map_err(|(pos, kind)| p.err(pos, kind))?;
    Ok(Parsed {
        config: Config {
            segments: p.segments,
            options: p.opts,
            subclusters,
        },
        warnings: p.warnings,
    })
}

struct Parser<'a, 'r> {
    toks: Vec<Token>,
    i: usize,
    path: &'a str,
    end: Pos,
    resolver: Resolver<'r>,
    warnings: Vec<ConfigWarning>,
    opts: Options,
    /// Where each option was last given.
    opt_pos: BTreeMap<&'static str, Pos>,
    timeouts: [Option<(u32, Pos)>; 9],
    segments: Vec<Segment>,
    /// Host name → line of definition.
    names: BTreeMap<String, u32>,
    /// (address, port) → host name.
    addrs: BTreeMap<(IpAddr, u16), String>,
    /// Virtual id → host name.
    vids: BTreeMap<u32, String>,
    /// `ActiveIPVersion`, given or taken from the first host.
    active: Option<IpVersion>,
    subs: Tracker,
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "end of file".to_owned(),
        Some(t) => format!("'{}'", t.text),
    }
}

impl Parser<'_, '_> {
    fn err(&self, pos: Pos, kind: K) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            pos,
            kind,
        }
    }

    fn warn(&mut self, pos: Pos, message: String) {
        self.warnings.push(ConfigWarning { pos, message });
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn here(&self) -> Pos {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    fn expected(&self, expected: &'static str) -> ConfigError {
        self.err(
            self.here(),
            K::Expected {
                expected,
                found: describe(self.peek()),
            },
        )
    }

    fn expect_equals(&mut self) -> Result<(), ConfigError> {
        if self.peek_tok() == Some(&Tok::Equals) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.expected("'='"))
        }
    }

    fn config(&mut self) -> Result<(), ConfigError> {
        while let Some(t) = self.peek().cloned() {
            match t.tok {
                Tok::Kw(Kw::Segment) => self.segment()?,
                Tok::Kw(Kw::VirtualId) => return Err(self.expected("an option or Spread_Segment")),
                Tok::Kw(k) => {
                    self.i += 1;
                    self.option(k, t.pos)?;
                }
                Tok::Str(w) => return Err(self.err(t.pos, K::UnknownKeyword(w))),
                _ => return Err(self.expected("an option or Spread_Segment")),
            }
        }
        if self.segments.is_empty() {
            return Err(self.err(self.end, K::NoSegments));
        }
        if self.segments.iter().all(|s| s.hosts.is_empty()) {
            return Err(self.err(self.end, K::NoHosts));
        }
        self.check_windows()
    }

    /// Records an option value, warning when it changes an earlier one.
    fn set<T: PartialEq>(
        warnings: &mut Vec<ConfigWarning>,
        slot: &mut Option<T>,
        v: T,
        kw: Kw,
        pos: Pos,
    ) {
        if slot.as_ref().is_some_and(|old| *old != v) {
            warnings.push(ConfigWarning {
                pos,
                message: format!(
                    "{} given again with another value; the last one counts",
                    kw.name()
                ),
            });
        }
        *slot = Some(v);
    }

    fn option(&mut self, kw: Kw, pos: Pos) -> Result<(), ConfigError> {
        self.opt_pos.insert(kw.name(), pos);
        match kw {
            Kw::EventTimeStamp => {
                let v = if self.peek_tok() == Some(&Tok::Equals) {
                    self.i += 1;
                    let f = self.string()?;
                    TimeStamp::Format(f.chars().take(MAX_TIMESTAMP_FORMAT_LEN).collect())
                } else {
                    TimeStamp::Default
                };
                Self::set(
                    &mut self.warnings,
                    &mut self.opts.event_timestamp,
                    v,
                    kw,
                    pos,
                );
            }
            Kw::EventPreciseTimeStamp => self.opts.event_precise_timestamp = true,
            Kw::DebugFlags => {
                let m = self.debug_flags()?;
                Self::set(&mut self.warnings, &mut self.opts.debug_flags, m, kw, pos);
            }
            Kw::EventPriority => {
                self.expect_equals()?;
                let p = match self.peek_tok() {
                    Some(Tok::Priority(n)) => priority(*n),
                    _ => {
                        return Err(
                            self.expected("a priority (pDEBUG INFO WARNING ERROR CRITICAL FATAL)")
                        )
                    }
                };
                self.i += 1;
                Self::set(
                    &mut self.warnings,
                    &mut self.opts.event_priority,
                    p,
                    kw,
                    pos,
                );
            }
            Kw::DangerousMonitor
            | Kw::AcceleratedRing
            | Kw::WideAreaNetwork
            | Kw::ExcludeSegAddrsFromHash
            | Kw::IgnoreMulticastJoinErrors => {
                self.expect_equals()?;
                let Some(Tok::Bool(b)) = self.peek_tok().cloned() else {
                    return Err(self.expected("true/yes or false/no"));
                };
                self.i += 1;
                let slot = match kw {
                    Kw::DangerousMonitor => &mut self.opts.dangerous_monitor,
                    Kw::AcceleratedRing => &mut self.opts.accelerated_ring,
                    Kw::WideAreaNetwork => &mut self.opts.wide_area_network,
                    Kw::ExcludeSegAddrsFromHash => &mut self.opts.exclude_seg_addrs_from_hash,
                    _ => &mut self.opts.ignore_multicast_join_errors,
                };
                Self::set(&mut self.warnings, slot, b, kw, pos);
            }
            Kw::SocketPortReuse => {
                self.expect_equals()?;
                let Some(Tok::Trival(n)) = self.peek_tok().cloned() else {
                    return Err(self.expected("on, off or auto"));
                };
                self.i += 1;
                let v = match n {
                    1 => PortReuse::On,
                    0 => PortReuse::Off,
                    _ => PortReuse::Auto,
                };
                Self::set(
                    &mut self.warnings,
                    &mut self.opts.socket_port_reuse,
                    v,
                    kw,
                    pos,
                );
            }
            Kw::EventLogFile
            | Kw::RuntimeDir
            | Kw::DaemonUser
            | Kw::DaemonGroup
            | Kw::AccessControlPolicy
            | Kw::ActiveIpVersion
            | Kw::RequiredAuthMethods
            | Kw::AllowedAuthMethods => {
                self.expect_equals()?;
                let vpos = self.here();
                let s = self.string()?;
                self.string_option(kw, pos, vpos, s)?;
            }
            _ => {
                self.expect_equals()?;
                let vpos = self.here();
                let Some(Tok::Number(n)) = self.peek_tok().cloned() else {
                    return Err(self.expected("a number"));
                };
                self.i += 1;
                self.number_option(kw, pos, vpos, n)?;
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, ConfigError> {
        match self.peek_tok().cloned() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.expected("a string")),
        }
    }

    fn string_option(&mut self, kw: Kw, pos: Pos, vpos: Pos, s: String) -> Result<(), ConfigError> {
        let bad = |why: String| K::BadValue {
            option: kw.name(),
            why,
        };
        let max = match kw {
            Kw::RuntimeDir => MAX_PATH_LEN,
            Kw::DaemonUser | Kw::DaemonGroup => MAX_USER_NAME_LEN,
            _ => usize::MAX,
        };
        if s.len() > max {
            return Err(self.err(vpos, bad(format!("longer than {max} characters"))));
        }
        if s.is_empty() && matches!(kw, Kw::RuntimeDir | Kw::DaemonUser | Kw::DaemonGroup) {
            self.warn(vpos, format!("empty {} ignored", kw.name()));
            return Ok(());
        }
        let w = &mut self.warnings;
        match kw {
            Kw::EventLogFile => Self::set(w, &mut self.opts.event_log_file, s, kw, pos),
            Kw::RuntimeDir => Self::set(w, &mut self.opts.runtime_dir, s, kw, pos),
            Kw::DaemonUser => Self::set(w, &mut self.opts.daemon_user, s, kw, pos),
            Kw::DaemonGroup => Self::set(w, &mut self.opts.daemon_group, s, kw, pos),
            Kw::AccessControlPolicy => {
                if !ACCESS_CONTROL_POLICIES.contains(&s.as_str()) {
                    let why = format!("unknown policy '{s}' (known: PERMIT)");
                    return Err(self.err(vpos, bad(why)));
                }
                Self::set(w, &mut self.opts.access_control_policy, s, kw, pos);
            }
            Kw::ActiveIpVersion => {
                let v = match s.as_str() {
                    "IPv4" => IpVersion::V4,
                    "IPv6" => IpVersion::V6,
                    _ => return Err(self.err(vpos, bad(format!("'{s}' (must be IPv4 or IPv6)")))),
                };
                if self.active.is_some_and(|a| a != v) {
                    let why = format!("'{s}' conflicts with the addresses given before it");
                    return Err(self.err(vpos, bad(why)));
                }
                self.active = Some(v);
                Self::set(w, &mut self.opts.active_ip_version, v, kw, pos);
            }
            _ => {
                let list: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
                for m in list.iter().filter(|m| !AUTH_METHODS.contains(&m.as_str())) {
                    w.push(ConfigWarning {
                        pos: vpos,
                        message: format!("unknown authentication method '{m}' ignored"),
                    });
                }
                let slot = if kw == Kw::RequiredAuthMethods {
                    &mut self.opts.required_auth_methods
                } else {
                    &mut self.opts.allowed_auth_methods
                };
                Self::set(w, slot, list, kw, pos);
            }
        }
        Ok(())
    }

    fn number_option(&mut self, kw: Kw, pos: Pos, vpos: Pos, n: u32) -> Result<(), ConfigError> {
        let min = match kw {
            Kw::MaxSessionMessages | Kw::AcceleratedWindow => 0,
            _ => 1,
        };
        let max = if kw == Kw::MaxSessions {
            MAX_MAX_SESSIONS
        } else {
            u32::MAX
        };
        if n < min || n > max {
            let why = if n < min {
                format!("{n} (must be at least {min})")
            } else {
                format!("{n} (must be at most {max})")
            };
            return Err(self.err(
                vpos,
                K::BadValue {
                    option: kw.name(),
                    why,
                },
            ));
        }
        if let Some(k) = TIMEOUT_KWS.iter().position(|t| *t == kw) {
            if let Some(slot) = self.timeouts.get_mut(k) {
                *slot = Some((n, pos));
            }
            return Ok(());
        }
        let w = &mut self.warnings;
        let slot = match kw {
            Kw::MaxSessionMessages => &mut self.opts.max_session_messages,
            Kw::Window => &mut self.opts.window,
            Kw::PersonalWindow => &mut self.opts.personal_window,
            Kw::AcceleratedWindow => &mut self.opts.accelerated_window,
            _ => &mut self.opts.max_sessions,
        };
        Self::set(w, slot, n, kw, pos);
        Ok(())
    }

    /// `= { FLAG ... ! FLAG ... }`.
    fn debug_flags(&mut self) -> Result<u32, ConfigError> {
        self.expect_equals()?;
        let open = self.here();
        if self.peek_tok() != Some(&Tok::OpenBrace) {
            return Err(self.expected("'{'"));
        }
        self.i += 1;
        let mut mask = 0u32;
        loop {
            match self.peek_tok().cloned() {
                Some(Tok::Flag(m)) => {
                    self.i += 1;
                    mask |= m;
                }
                Some(Tok::Bang) => {
                    self.i += 1;
                    let Some(Tok::Flag(m)) = self.peek_tok().cloned() else {
                        return Err(self.expected("a debug flag name after '!'"));
                    };
                    self.i += 1;
                    mask &= !m;
                }
                Some(Tok::CloseBrace) => {
                    self.i += 1;
                    return Ok(mask);
                }
                None => return Err(self.err(open, K::UnterminatedBlock)),
                Some(_) => return Err(self.expected("a debug flag name or '}'")),
            }
        }
    }

    fn check_windows(&self) -> Result<(), ConfigError> {
        let opts = &self.opts;
        let window = opts.window.unwrap_or(super::DEFAULT_WINDOW);
        let personal = opts
            .personal_window
            .unwrap_or(super::DEFAULT_PERSONAL_WINDOW);
        let accel = opts
            .accelerated_window
            .unwrap_or(super::DEFAULT_ACCELERATED_WINDOW);
        let at = |a: &str, b: &str| {
            self.opt_pos
                .get(a)
                .or_else(|| self.opt_pos.get(b))
                .copied()
                .unwrap_or(self.end)
        };
        if personal > window {
            return Err(self.err(
                at("PersonalWindow", "Window"),
                K::BadValue {
                    option: "PersonalWindow",
                    why: format!("{personal} is larger than Window ({window})"),
                },
            ));
        }
        if opts.accelerated_ring == Some(true) && accel > personal {
            return Err(self.err(
                at("AcceleratedWindow", "PersonalWindow"),
                K::BadValue {
                    option: "AcceleratedWindow",
                    why: format!("{accel} is larger than PersonalWindow ({personal})"),
                },
            ));
        }
        Ok(())
    }

    /// The nine timeouts: all or none (5.0.1 refuses to start with only some).
    fn check_timeouts(&self) -> Result<Option<Timeouts>, ConfigError> {
        let given: Vec<(u32, Pos)> = self.timeouts.iter().flatten().copied().collect();
        let Some(&(_, first)) = given.iter().min_by_key(|(_, p)| *p) else {
            return Ok(None);
        };
        if given.len() < TIMEOUT_KWS.len() {
            let missing: Vec<&str> = TIMEOUT_KWS
                .iter()
                .zip(self.timeouts.iter())
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.name())
                .collect();
            return Err(self.err(
                first,
                K::BadValue {
                    option: "TokenTimeout..LookupTimeout",
                    why: format!(
                        "only some membership timeouts are given; give all nine or none (missing {})",
                        missing.join(" ")
                    ),
                },
            ));
        }
        let v = |k: usize| {
            self.timeouts
                .get(k)
                .copied()
                .flatten()
                .map_or(0, |(n, _)| n)
        };
        Ok(Some(Timeouts {
            token_ms: v(0),
            hurry_ms: v(1),
            alive_ms: v(2),
            join_ms: v(3),
            rep_ms: v(4),
            seg_ms: v(5),
            gather_ms: v(6),
            form_ms: v(7),
            lookup_ms: v(8),
        }))
    }

    /// Checks an address against `ActiveIPVersion` (taken from the first address if unset).
    fn check_family(&mut self, ip: &IpTok, pos: Pos) -> Result<(), ConfigError> {
        let v = IpVersion::of(&ip.addr);
        match self.active {
            None => self.active = Some(v),
            Some(a) if a != v => {
                let why = if a == IpVersion::V4 {
                    "an IPv6 address in an IPv4 configuration (see ActiveIPVersion)"
                } else {
                    "an IPv4 address in an IPv6 configuration (see ActiveIPVersion)"
                };
                return Err(self.err(
                    pos,
                    K::AddressNotAllowed {
                        addr: ip.text.clone(),
                        why,
                    },
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn segment(&mut self) -> Result<(), ConfigError> {
        let seg_pos = self.here();
        self.i += 1;
        self.subs
            .before_segment(seg_pos, self.segments.len())
            .map_err(|(pos, kind)| self.err(pos, kind))?;
        if self.segments.len() >= MAX_SEGMENTS {
            return Err(self.err(
                seg_pos,
                K::TooMany {
                    what: "segments",
                    max: MAX_SEGMENTS,
                },
            ));
        }
        let (first, port) = match self.next() {
            Some(Token {
                tok: Tok::Ip(ip), ..
            }) => (ip, 0),
            Some(Token {
                tok: Tok::IpPort(ip, port),
                ..
            }) => (ip, port),
            _ => {
                self.i = self.i.saturating_sub(1);
                return Err(self.expected("a segment address (IP or IP:port)"));
            }
        };
        let port = if port == 0 { DEFAULT_PORT } else { port };
        let mut addrs = vec![(first, self.toks.get(self.i - 1).map_or(seg_pos, |t| t.pos))];
        while let Some(Tok::Ip(ip)) = self.peek_tok().cloned() {
            let pos = self.here();
            if addrs.len() >= MAX_SEGMENT_ADDRS {
                return Err(self.err(
                    pos,
                    K::TooMany {
                        what: "segment addresses",
                        max: MAX_SEGMENT_ADDRS,
                    },
                ));
            }
            self.i += 1;
            addrs.push((ip, pos));
        }
        let open = self.here();
        if self.peek_tok() != Some(&Tok::OpenBrace) {
            return Err(self.expected("'{' after the segment address"));
        }
        self.i += 1;
        let mut hosts = Vec::new();
        loop {
            match self.peek_tok() {
                None => return Err(self.err(open, K::UnterminatedBlock)),
                Some(Tok::CloseBrace) => {
                    self.i += 1;
                    break;
                }
                Some(_) => {
                    let h = self.host(port, hosts.len())?;
                    hosts.push(h);
                }
            }
        }
        let mut seg_addrs = Vec::new();
        for (ip, pos) in addrs {
            self.check_segment_addr(&ip, pos)?;
            seg_addrs.push(ScopedIp {
                ip: ip.addr,
                scope: ip.scope,
            });
        }
        self.segments.push(Segment {
            port,
            addrs: seg_addrs,
            hosts,
        });
        Ok(())
    }

    fn check_segment_addr(&mut self, ip: &IpTok, pos: Pos) -> Result<(), ConfigError> {
        self.check_family(ip, pos)?;
        if ip.addr.is_unspecified() {
            return Err(self.err(
                pos,
                K::AddressNotAllowed {
                    addr: ip.text.clone(),
                    why: "a segment address must not be the unspecified address",
                },
            ));
        }
        if matches!(ip.addr, IpAddr::V6(_)) && !ip.addr.is_multicast() {
            self.warn(
                pos,
                format!("IPv6 segment address {} is not multicast", ip.text),
            );
        }
        if ip.addr.is_loopback() {
            self.warn(
                pos,
                format!("segment address {} is a loopback address", ip.text),
            );
        }
        Ok(())
    }

    /// One host entry: `name [ip] | ip`, `[VirtualID = n]`, `[{ interfaces }]`, `[;]`.
    fn host(&mut self, port: u16, in_segment: usize) -> Result<Host, ConfigError> {
        let pos = self.here();
        let (name, ip, explicit_name) = match self.next().map(|t| t.tok) {
            Some(Tok::Str(name)) => {
                if let Some(Tok::Ip(ip)) = self.peek_tok().cloned() {
                    self.i += 1;
                    (name, ip, true)
                } else if let Some(Tok::IpPort(ip, _)) = self.peek_tok().cloned() {
                    return Err(self.err(
                        self.here(),
                        K::AddressNotAllowed {
                            addr: ip.text,
                            why: "a host address must not specify a port",
                        },
                    ));
                } else {
                    let ip = self.resolve(&name, pos)?;
                    (name, ip, true)
                }
            }
            Some(Tok::Ip(ip)) => {
                let base = ip.text.split('%').next().unwrap_or_default();
                (base.chars().take(MAX_HOST_NAME_LEN).collect(), ip, false)
            }
            Some(Tok::IpPort(ip, _)) => {
                return Err(self.err(
                    pos,
                    K::AddressNotAllowed {
                        addr: ip.text,
                        why: "a host address must not specify a port",
                    },
                ))
            }
            _ => {
                self.i -= 1;
                return Err(self.expected("a host name or address, or '}'"));
            }
        };
        self.check_host_name(&name, explicit_name, pos)?;
        self.check_host_addr(&ip, pos)?;
        if self.names.len() >= MAX_HOSTS {
            let k = K::TooMany {
                what: "hosts",
                max: MAX_HOSTS,
            };
            return Err(self.err(pos, k));
        }
        if in_segment >= MAX_HOSTS_PER_SEGMENT {
            let k = K::TooMany {
                what: "hosts in one segment",
                max: MAX_HOSTS_PER_SEGMENT,
            };
            return Err(self.err(pos, k));
        }
        let (vid, vid_explicit) = self.virtual_id(&name)?;
        let interfaces = self.interfaces(&name, &ip)?;
        if self.peek_tok() == Some(&Tok::Semicolon) {
            self.i += 1;
        }
        if let Some(other) = self.addrs.get(&(ip.addr, port)) {
            return Err(self.err(
                pos,
                K::DuplicateAddress {
                    addr: format!("{}:{port}", ip.text),
                    name,
                    other: other.clone(),
                },
            ));
        }
        if let Some(other) = self.vids.get(&vid) {
            return Err(self.err(
                pos,
                K::DuplicateVid {
                    vid,
                    name,
                    other: other.clone(),
                },
            ));
        }
        self.names.insert(name.clone(), pos.line);
        self.addrs.insert((ip.addr, port), name.clone());
        self.vids.insert(vid, name.clone());
        Ok(Host {
            name,
            addr: ScopedIp {
                ip: ip.addr,
                scope: ip.scope,
            },
            vid,
            vid_explicit,
            interfaces,
        })
    }

    fn resolve(&mut self, name: &str, pos: Pos) -> Result<IpTok, ConfigError> {
        let found = (self.resolver)(name);
        let pick = found
            .iter()
            .find(|ip| self.active.is_none_or(|v| IpVersion::of(ip) == v))
            .copied();
        match pick {
            Some(addr) => Ok(IpTok {
                addr,
                scope: None,
                text: addr.to_string(),
            }),
            None => Err(self.err(pos, K::Unresolved(name.to_owned()))),
        }
    }

    fn check_host_name(&mut self, name: &str, explicit: bool, pos: Pos) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(self.err(pos, K::EmptyName));
        }
        if explicit && name.len() > MAX_HOST_NAME_LEN {
            return Err(self.err(pos, K::NameTooLong(name.to_owned())));
        }
        if name.ends_with(';') {
            self.warn(
                pos,
                format!(
                    "host name '{name}' ends with ';' (put white space before ';' to end an entry)"
                ),
            );
        }
        if let Some(&first_line) = self.names.get(name) {
            return Err(self.err(
                pos,
                K::DuplicateHost {
                    name: name.to_owned(),
                    first_line,
                },
            ));
        }
        Ok(())
    }

    fn check_host_addr(&mut self, ip: &IpTok, pos: Pos) -> Result<(), ConfigError> {
        let why = if ip.addr.is_unspecified() {
            Some("a host address must not be the unspecified address")
        } else if ip.addr.is_multicast() {
            Some("a host address must not be a multicast address")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(self.err(
                pos,
                K::AddressNotAllowed {
                    addr: ip.text.clone(),
                    why,
                },
            ));
        }
        self.check_family(ip, pos)
    }

    fn virtual_id(&mut self, name: &str) -> Result<(u32, bool), ConfigError> {
        if self.peek_tok() != Some(&Tok::Kw(Kw::VirtualId)) {
            return Ok((vid_from_name(name), false));
        }
        self.i += 1;
        self.expect_equals()?;
        let vpos = self.here();
        match self.peek_tok() {
            Some(Tok::Number(n)) if *n > 0 => {
                let n = *n;
                self.i += 1;
                Ok((n, true))
            }
            Some(Tok::Number(_)) => Err(self.err(
                vpos,
                K::BadValue {
                    option: "VirtualID",
                    why: "0 (must be at least 1)".to_owned(),
                },
            )),
            _ => Err(self.expected("a number")),
        }
    }

    /// `{ [M|C|D]* ip ... }` after a host, if present.
    fn interfaces(&mut self, name: &str, own: &IpTok) -> Result<Vec<Interface>, ConfigError> {
        if self.peek_tok() != Some(&Tok::OpenBrace) {
            return Ok(Vec::new());
        }
        let open = self.here();
        self.i += 1;
        let mut out: Vec<Interface> = Vec::new();
        let mut kinds = 0u8;
        loop {
            let pos = self.here();
            match self.next().map(|t| t.tok) {
                Some(Tok::IfType(k)) => kinds |= k,
                Some(Tok::Ip(ip)) => {
                    if out.len() >= MAX_INTERFACES {
                        let k = K::TooMany {
                            what: "interfaces",
                            max: MAX_INTERFACES,
                        };
                        return Err(self.err(pos, k));
                    }
                    let kinds_now = if kinds == 0 {
                        IfKinds::ALL
                    } else {
                        IfKinds(kinds)
                    };
                    kinds = 0;
                    out.push(Interface {
                        kinds: kinds_now,
                        addr: ScopedIp {
                            ip: ip.addr,
                            scope: ip.scope,
                        },
                    });
                }
                Some(Tok::CloseBrace) if kinds == 0 => break,
                None => return Err(self.err(open, K::UnterminatedBlock)),
                Some(_) => {
                    self.i -= 1;
                    return Err(self.expected("an interface (M, C, D, then an IP address) or '}'"));
                }
            }
        }
        if out.is_empty() {
            return Err(self.err(open, K::EmptyInterfaces(name.to_owned())));
        }
        let has_daemon = out.iter().any(|i| {
            (i.addr.ip == own.addr
                || (i.addr.ip.is_unspecified()
                    && IpVersion::of(&i.addr.ip) == IpVersion::of(&own.addr)))
                && i.kinds.contains(IfKinds::DAEMON)
        });
        if !has_daemon {
            return Err(self.err(
                open,
                K::NoDaemonInterface {
                    name: name.to_owned(),
                    addr: own.text.clone(),
                },
            ));
        }
        Ok(out)
    }
}

fn priority(n: u8) -> Priority {
    match n {
        1 => Priority::Debug,
        2 => Priority::Info,
        3 => Priority::Warning,
        4 => Priority::Error,
        5 => Priority::Critical,
        _ => Priority::Fatal,
    }
}
