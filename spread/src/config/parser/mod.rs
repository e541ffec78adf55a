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

mod hosts;
mod options;

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
}
