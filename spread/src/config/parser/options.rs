//! Global options: `Keyword = value` lines and their cross-checks.

use super::*;

/// Keywords of the nine timeouts, in `Timeouts` field order.
pub(super) const TIMEOUT_KWS: [Kw; 9] = [
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

impl Parser<'_, '_> {
    pub(super) fn option(&mut self, kw: Kw, pos: Pos) -> Result<(), ConfigError> {
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

    pub(super) fn check_windows(&self) -> Result<(), ConfigError> {
        let opts = &self.opts;
        let window = opts.window.unwrap_or(crate::config::DEFAULT_WINDOW);
        let personal = opts
            .personal_window
            .unwrap_or(crate::config::DEFAULT_PERSONAL_WINDOW);
        let accel = opts
            .accelerated_window
            .unwrap_or(crate::config::DEFAULT_ACCELERATED_WINDOW);
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
    pub(super) fn check_timeouts(&self) -> Result<Option<Timeouts>, ConfigError> {
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
