//! Tokens of the spread.conf language, scanned the way 5.0.1's scanner does it: at each
//! position the longest candidate wins and a tie goes to the earlier rule, so a keyword,
//! number or address is only recognised when it is the whole run of word characters
//! (`Window=5` is one word, not three tokens).

use std::net::IpAddr;

use super::error::{ConfigError, ConfigErrorKind, Pos};

/// Keywords of 5.0.1 (plus the mbus extension `MaxSessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    Segment,
    EventLogFile,
    EventTimeStamp,
    EventPreciseTimeStamp,
    EventPriority,
    DebugFlags,
    DangerousMonitor,
    SocketPortReuse,
    RuntimeDir,
    DaemonUser,
    DaemonGroup,
    RequiredAuthMethods,
    AllowedAuthMethods,
    AccessControlPolicy,
    MaxSessionMessages,
    ActiveIpVersion,
    Window,
    PersonalWindow,
    AcceleratedRing,
    AcceleratedWindow,
    TokenTimeout,
    HurryTimeout,
    AliveTimeout,
    JoinTimeout,
    RepTimeout,
    SegTimeout,
    GatherTimeout,
    FormTimeout,
    LookupTimeout,
    VirtualId,
    WideAreaNetwork,
    ExcludeSegAddrsFromHash,
    IgnoreMulticastJoinErrors,
    MaxSessions,
}

/// Keyword spellings, in 5.0.1's rule order.
pub(crate) const KEYWORDS: &[(&str, Kw)] = &[
    ("Spread_Segment", Kw::Segment),
    ("EventLogFile", Kw::EventLogFile),
    ("EventTimeStamp", Kw::EventTimeStamp),
    ("EventPreciseTimeStamp", Kw::EventPreciseTimeStamp),
    ("EventPriority", Kw::EventPriority),
    ("DebugFlags", Kw::DebugFlags),
    ("DangerousMonitor", Kw::DangerousMonitor),
    ("SocketPortReuse", Kw::SocketPortReuse),
    ("RuntimeDir", Kw::RuntimeDir),
    ("DaemonUser", Kw::DaemonUser),
    ("DaemonGroup", Kw::DaemonGroup),
    ("RequiredAuthMethods", Kw::RequiredAuthMethods),
    ("AllowedAuthMethods", Kw::AllowedAuthMethods),
    ("AccessControlPolicy", Kw::AccessControlPolicy),
    ("MaxSessionMessages", Kw::MaxSessionMessages),
    ("ActiveIPVersion", Kw::ActiveIpVersion),
    ("Window", Kw::Window),
    ("PersonalWindow", Kw::PersonalWindow),
    ("AcceleratedRing", Kw::AcceleratedRing),
    ("AcceleratedWindow", Kw::AcceleratedWindow),
    ("TokenTimeout", Kw::TokenTimeout),
    ("HurryTimeout", Kw::HurryTimeout),
    ("AliveTimeout", Kw::AliveTimeout),
    ("JoinTimeout", Kw::JoinTimeout),
    ("RepTimeout", Kw::RepTimeout),
    ("SegTimeout", Kw::SegTimeout),
    ("GatherTimeout", Kw::GatherTimeout),
    ("FormTimeout", Kw::FormTimeout),
    ("LookupTimeout", Kw::LookupTimeout),
    ("VirtualID", Kw::VirtualId),
    ("WideAreaNetwork", Kw::WideAreaNetwork),
    ("ExcludeSegAddrsFromHash", Kw::ExcludeSegAddrsFromHash),
    ("IgnoreMulticastJoinErrors", Kw::IgnoreMulticastJoinErrors),
    ("MaxSessions", Kw::MaxSessions),
];

impl Kw {
    /// The spelling in the file.
    pub(crate) fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(s, _)| s)
    }
}

/// Debug-flag words (`DebugFlags = { ... }`) and their 5.0.1 mask bits.
pub(crate) const DEBUG_FLAGS: &[(&str, u32)] = &[
    ("ALL", 0xffff_ffff),
    ("EXIT", 0x0000_0001),
    ("DATA_LINK", 0x0000_0002),
    ("MEMORY", 0x0000_0004),
    ("EVENTS", 0x0000_0008),
    ("PRINT", 0x0000_0010),
    ("NETWORK", 0x0000_0020),
    ("PROTOCOL", 0x0000_0040),
    ("SESSION", 0x0000_0080),
    ("CONFIGURATION", 0x0000_0100),
    ("MEMBERSHIP", 0x0000_0200),
    ("FLOW_CONTROL", 0x0000_0400),
    ("STATUS", 0x0000_0800),
    ("DEBUG", 0x0000_1000),
    ("GROUPS", 0x0000_2000),
    ("SKIPLIST", 0x0020_0000),
    ("ACM", 0x0040_0000),
    ("SECURITY", 0x0080_0000),
    ("NONE", 0),
];

/// Priority words (`EventPriority = ...`), lowest first.
pub(crate) const PRIORITIES: &[&str] = &["pDEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL"];

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    OpenBrace,
    CloseBrace,
    Equals,
    Colon,
    Semicolon,
    Bang,
    Kw(Kw),
    /// `true/yes` or `false/no` (any case).
    Bool(bool),
    /// `on` 1, `off` 0, `auto` 2 (any case).
    Trival(u8),
    /// A debug-flag word: its mask.
    Flag(u32),
    /// An interface-type letter: `M` 1, `C` 2, `D` 4.
    IfType(u8),
    /// A priority word: 1 (pDEBUG) ..= 6 (FATAL).
    Priority(u8),
    /// An IP address without port (with an optional IPv6 `%interface`).
    Ip(IpTok),
    /// An IP address with `:port` (`[v6]:port` for IPv6).
    IpPort(IpTok, u16),
    /// 1 to 9 decimal digits.
    Number(u32),
    /// A bare word or a quoted string (quotes removed).
    Str(String),
}

/// An address as scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpTok {
    pub(crate) addr: IpAddr,
    /// The IPv6 interface after `%`, if any.
    pub(crate) scope: Option<String>,
    /// The address as written, without port and brackets (with `%interface`).
    pub(crate) text: String,
}

/// A token with its position and its text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: Pos,
    pub(crate) text: String,
}

/// A `#` comment: where it starts and its text after the `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comment {
    pub(crate) pos: Pos,
    pub(crate) text: String,
}

/// Result of scanning a whole file.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) tokens: Vec<Token>,
    pub(crate) comments: Vec<Comment>,
    /// Position just past the last character.
    pub(crate) end: Pos,
}

/// Characters that may appear in a bare word (5.0.1: anything but white space, `#{}[]`).
fn is_word_char(c: char) -> bool {
    !matches!(
        c,
        ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c' | '#' | '{' | '}' | '[' | ']'
    )
}

struct Cursor<'a> {
    chars: Vec<char>,
    i: usize,
    pos: Pos,
    path: &'a str,
}

impl Cursor<'_> {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }

    fn take(&mut self, n: usize) -> String {
        (0..n).filter_map(|_| self.bump()).collect()
    }

    fn err(&self, pos: Pos, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            pos,
            kind,
        }
    }
}

/// Scans `text` into tokens and comments.
pub(crate) fn scan(text: &str, path: &str) -> Result<Scanned, ConfigError> {
    let mut cur = Cursor {
        chars: text.chars().collect(),
        i: 0,
        pos: Pos::START,
        path,
    };
    let mut out = Scanned::default();
    while let Some(c) = cur.peek(0) {
        let pos = cur.pos;
        match c {
            ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c' => {
                cur.bump();
            }
            '#' => {
                cur.bump();
                let mut t = String::new();
                while let Some(c) = cur.peek(0).filter(|&c| c != '\n') {
                    t.push(c);
                    cur.bump();
                }
                out.comments.push(Comment { pos, text: t });
            }
            '{' | '}' => {
                let tok = if c == '{' {
                    Tok::OpenBrace
                } else {
                    Tok::CloseBrace
                };
                let text = cur.take(1);
                out.tokens.push(Token { tok, pos, text });
            }
            '[' => {
                let token = scan_ipv6_port(&mut cur)?;
                out.tokens.push(token);
            }
            '"' | '\'' => {
                let token = scan_quoted(&mut cur, c)?;
                out.tokens.push(token);
            }
            c if is_word_char(c) => {
                let token = scan_word(&mut cur)?;
                out.tokens.push(token);
            }
            other => return Err(cur.err(pos, ConfigErrorKind::UnexpectedChar(other))),
        }
    }
    out.end = cur.pos;
    Ok(out)
}

/// A quoted string, unless the bare word starting at the quote is longer (5.0.1's longest
/// match: `"a"b` is the word `"a"b`).
fn scan_quoted(cur: &mut Cursor<'_>, q: char) -> Result<Token, ConfigError> {
    let pos = cur.pos;
    let close = (1..)
        .map(|k| cur.peek(k))
        .take_while(Option::is_some)
        .position(|c| c == Some(q))
        .map(|k| k + 1);
    let word_len = word_len(cur);
    match close {
        Some(close) if close + 1 >= word_len => {
            let text = cur.take(close + 1);
            let inner: String = text.chars().skip(1).take(close - 1).collect();
            Ok(Token {
                tok: Tok::Str(inner),
                pos,
                text,
            })
        }
        Some(_) => scan_word(cur),
        None => Err(cur.err(pos, ConfigErrorKind::UnterminatedString)),
    }
}

fn word_len(cur: &Cursor<'_>) -> usize {
    (0..)
        .map(|k| cur.peek(k))
        .take_while(|c| c.is_some_and(is_word_char))
        .count()
}

fn scan_word(cur: &mut Cursor<'_>) -> Result<Token, ConfigError> {
    let pos = cur.pos;
    // `!` followed by anything on the same line is BANG (5.0.1's `!/.+` rule wins by length).
    if cur.peek(0) == Some('!') && cur.peek(1).is_some_and(|c| c != '\n') {
        let text = cur.take(1);
        return Ok(Token {
            tok: Tok::Bang,
            pos,
            text,
        });
    }
    let n = word_len(cur);
    let text = cur.take(n);
    let tok = classify(&text).map_err(|kind| cur.err(pos, kind))?;
    Ok(Token { tok, pos, text })
}

/// What a whole word is: punctuation, keyword, value word, address, number or string.
fn classify(w: &str) -> Result<Tok, ConfigErrorKind> {
    let single = match w {
        "=" => Some(Tok::Equals),
        ":" => Some(Tok::Colon),
        ";" => Some(Tok::Semicolon),
        _ => None,
    };
    if let Some(t) = single {
        return Ok(t);
    }
    if let Some((_, k)) = KEYWORDS.iter().find(|(s, _)| *s == w) {
        return Ok(Tok::Kw(*k));
    }
    let lower = w.to_ascii_lowercase();
    match lower.as_str() {
        "true" | "yes" => return Ok(Tok::Bool(true)),
        "false" | "no" => return Ok(Tok::Bool(false)),
        "on" => return Ok(Tok::Trival(1)),
        "off" => return Ok(Tok::Trival(0)),
        "auto" => return Ok(Tok::Trival(2)),
        _ => {}
    }
    if let Some((_, m)) = DEBUG_FLAGS.iter().find(|(s, _)| *s == w) {
        return Ok(Tok::Flag(*m));
    }
    match w {
        "M" => return Ok(Tok::IfType(1)),
        "C" => return Ok(Tok::IfType(2)),
        "D" => return Ok(Tok::IfType(4)),
        _ => {}
    }
    if let Some(p) = PRIORITIES.iter().position(|p| *p == w) {
        return Ok(Tok::Priority(u8::try_from(p + 1).unwrap_or(u8::MAX)));
    }
    if let Some(t) = classify_ipv4(w)? {
        return Ok(t);
    }
    if is_ipv6_shape(w) {
        return Ok(Tok::Ip(parse_ipv6(w)?));
    }
    if (1..=9).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Tok::Number(w.parse().unwrap_or(0)));
    }
    Ok(Tok::Str(w.to_owned()))
}

/// `d{1,3}.d{1,3}.d{1,3}.d{1,3}` with an optional `:d{1,5}`.
fn classify_ipv4(w: &str) -> Result<Option<Tok>, ConfigErrorKind> {
    let (addr, port) = match w.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (w, None),
    };
    let parts: Vec<&str> = addr.split('.').collect();
    let dotted = parts.len() == 4
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !dotted || !port_ok {
        return Ok(None);
    }
    let ip: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| ConfigErrorKind::BadAddress(w.to_owned()))?;
    let tok = IpTok {
        addr: IpAddr::V4(ip),
        scope: None,
        text: addr.to_owned(),
    };
    match port {
        None => Ok(Some(Tok::Ip(tok))),
        Some(p) => {
            let port: u16 = p
                .parse()
                .map_err(|_| ConfigErrorKind::BadPort(w.to_owned()))?;
            Ok(Some(Tok::IpPort(tok, port)))
        }
    }
}

fn is_quad(s: &str) -> bool {
    (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn quads(s: &str, max: usize) -> bool {
    s.is_empty() || {
        let v: Vec<&str> = s.split(':').collect();
        v.len() <= max && v.iter().all(|q| is_quad(q))
    }
}

/// 5.0.1's IPv6 pattern: eight quads, or a `::` form, then an optional `%interface`.
fn is_ipv6_shape(w: &str) -> bool {
    let addr = w
        .split_once('%')
        .map_or(w, |(a, s)| if s.is_empty() { "" } else { a });
    if let Some((l, r)) = addr.split_once("::") {
        quads(l, 7) && quads(r, 7)
    } else {
        let v: Vec<&str> = addr.split(':').collect();
        v.len() == 8 && v.iter().all(|q| is_quad(q))
    }
}

fn parse_ipv6(w: &str) -> Result<IpTok, ConfigErrorKind> {
    let (addr, scope) = match w.split_once('%') {
        Some((a, s)) => (a, Some(s.to_owned())),
        None => (w, None),
    };
    let ip: std::net::Ipv6Addr = addr
        .parse()
        .map_err(|_| ConfigErrorKind::BadAddress(w.to_owned()))?;
    Ok(IpTok {
        addr: IpAddr::V6(ip),
        scope,
        text: w.to_owned(),
    })
}

/// `[ipv6]:port`.
fn scan_ipv6_port(cur: &mut Cursor<'_>) -> Result<Token, ConfigError> {
    let pos = cur.pos;
    let rest: String = cur.chars[cur.i..].iter().take(200).collect();
    let close = rest.find(']');
    let bad = |cur: &Cursor<'_>| cur.err(pos, ConfigErrorKind::UnexpectedChar('['));
    let Some(close) = close else {
        return Err(bad(cur));
    };
    let inner = &rest[1..close];
    if !is_ipv6_shape(inner) || !rest[close + 1..].starts_with(':') {
        return Err(bad(cur));
    }
    let digits: String = rest[close + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .take(5)
        .collect();
    if digits.is_empty() {
        return Err(bad(cur));
    }
    let n = close + 2 + digits.len();
    let text = cur.take(rest[..n].chars().count());
    let ip = parse_ipv6(inner).map_err(|k| cur.err(pos, k))?;
    let port: u16 = digits
        .parse()
        .map_err(|_| cur.err(pos, ConfigErrorKind::BadPort(text.clone())))?;
    Ok(Token {
        tok: Tok::IpPort(ip, port),
        pos,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        scan(s, "t")
            .unwrap()
            .tokens
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn longest_match_makes_words() {
        assert_eq!(toks("Window=5"), vec![Tok::Str("Window=5".into())]);
        assert_eq!(
            toks("Window = 5"),
            vec![Tok::Kw(Kw::Window), Tok::Equals, Tok::Number(5)]
        );
        assert_eq!(toks("1234567890"), vec![Tok::Str("1234567890".into())]);
        assert_eq!(toks("a;"), vec![Tok::Str("a;".into())]);
        assert_eq!(toks("YeS oFf"), vec![Tok::Bool(true), Tok::Trival(0)]);
    }

    #[test]
    fn addresses() {
        let t = toks("10.0.0.255:4803 10.0.0.1 [ff02::1]:4803 fe80::1%eth0");
        assert!(matches!(&t[0], Tok::IpPort(ip, 4803) if ip.text == "10.0.0.255"));
        assert!(matches!(&t[1], Tok::Ip(ip) if ip.text == "10.0.0.1"));
        assert!(matches!(&t[2], Tok::IpPort(ip, 4803) if ip.text == "ff02::1"));
        assert!(matches!(&t[3], Tok::Ip(ip) if ip.scope.as_deref() == Some("eth0")));
        assert_eq!(toks("cafe"), vec![Tok::Str("cafe".into())]);
    }

    #[test]
    fn bang_quotes_and_comments() {
        assert_eq!(toks("! EXIT"), vec![Tok::Bang, Tok::Flag(1)]);
        assert_eq!(toks("!EXIT"), vec![Tok::Bang, Tok::Flag(1)]);
        assert_eq!(toks("\"a b\""), vec![Tok::Str("a b".into())]);
        assert_eq!(toks("\"a\"b"), vec![Tok::Str("\"a\"b".into())]);
        let s = scan("x # hello\ny", "t").unwrap();
        assert_eq!(s.comments[0].text, " hello");
        assert_eq!(s.tokens[1].pos, Pos { line: 2, col: 1 });
    }
}
