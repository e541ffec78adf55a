//! Host entries inside a `Spread_Segment` block: name, address, virtual id, interfaces.

use super::*;

impl Parser<'_, '_> {
    /// One host entry: `name [ip] | ip`, `[VirtualID = n]`, `[{ interfaces }]`, `[;]`.
    pub(super) fn host(&mut self, port: u16, in_segment: usize) -> Result<Host, ConfigError> {
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
                self.i = self.i.saturating_sub(1);
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
                    self.i = self.i.saturating_sub(1);
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
