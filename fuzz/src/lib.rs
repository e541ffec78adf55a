//! Structure-aware inputs (`arbitrary`) of the `*_structured` fuzz targets, shared by the
//! targets in `fuzz_targets/` and the stable replay test `tests/replay_structured.rs`. Each
//! input converts to a plain input of `spread::fuzzing` (or to text) and runs the same checks
//! as the byte-level targets.

use std::fmt::Write as _;

use arbitrary::{Arbitrary, Unstructured};

/// A client↔daemon message, field by field (→ `spread::fuzzing::MessageSpec`).
#[derive(Debug, Arbitrary)]
pub struct MessageIn {
    /// Index into [`SERVICES`], or raw bits when out of range.
    service: u8,
    raw_bits: u32,
    sender: Vec<u8>,
    groups: Vec<Vec<u8>>,
    mess_type: i16,
    body: Vec<u8>,
    big_endian: bool,
    reject_type: u32,
}

/// The `type` words worth most: each service, each request, memberships, REJECT.
const SERVICES: [u32; 14] = [
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x50, 0x1_0000, 0x2_0000, 0x4_0000, 0x1100, 0x2000, 0x1800,
    0x40_0010,
];

impl MessageIn {
    /// Runs `spread::fuzzing::client_message_structured`.
    pub fn run(self) {
        let service = SERVICES
            .get(usize::from(self.service))
            .copied()
            .unwrap_or(self.raw_bits);
        spread::fuzzing::client_message_structured(&spread::fuzzing::MessageSpec {
            service,
            sender: self.sender,
            groups: self.groups,
            mess_type: self.mess_type,
            body: self.body,
            big_endian: self.big_endian,
            reject_type: self.reject_type,
        });
    }
}

/// Messages a daemon packs into data packets (→ `spread::fuzzing::PackingSpec`). Each
/// message is a length (so big fragmented messages are cheap to express) and a fill byte,
/// or explicit bytes.
#[derive(Debug, Arbitrary)]
pub struct PackingIn {
    big_endian: bool,
    class: u8,
    messages: Vec<PackedMessage>,
}

#[derive(Debug, Arbitrary)]
enum PackedMessage {
    Fill { len: u16, byte: u8 },
    Bytes(Vec<u8>),
}

impl PackingIn {
    /// Runs `spread::fuzzing::packing_structured`.
    pub fn run(self) {
        let messages = self
            .messages
            .into_iter()
            .map(|m| match m {
                PackedMessage::Fill { len, byte } => vec![byte; usize::from(len % 8192)],
                PackedMessage::Bytes(b) => b,
            })
            .collect();
        spread::fuzzing::packing_structured(&spread::fuzzing::PackingSpec {
            big_endian: self.big_endian,
            class: self.class,
            messages,
        });
    }
}

/// A `spread.conf` built from valid-looking pieces (→ text → `spread::fuzzing::spread_conf`).
#[derive(Debug, Arbitrary)]
pub struct ConfIn {
    options: Vec<OptIn>,
    segments: Vec<SegIn>,
}

#[derive(Debug, Arbitrary)]
struct SegIn {
    subcluster: Option<(Word, Word, bool)>,
    addr: [u8; 4],
    port: Option<u16>,
    extra: Vec<[u8; 4]>,
    hosts: Vec<HostIn>,
}

#[derive(Debug, Arbitrary)]
struct HostIn {
    name: Word,
    ip: Option<[u8; 4]>,
    vid: Option<u32>,
    ifaces: Vec<(u8, [u8; 4])>,
    semicolon: bool,
}

#[derive(Debug, Arbitrary)]
enum OptIn {
    Number(u8, i64),
    Bool(u8, u8),
    DebugFlags(Vec<(bool, u8)>),
    Priority(u8),
    Path(u8, Word),
    Auth(bool, Vec<u8>),
    Raw(String),
}

/// A word of name characters (letters, digits, `-`, `_`, `.`), possibly empty or too long.
#[derive(Debug)]
struct Word(String);

impl<'a> Arbitrary<'a> for Word {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzDE0123456789-_.r";
        let len = u.int_in_range(0..=24)?;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            s.push(char::from(*u.choose(CHARS)?));
        }
        Ok(Self(s))
    }
}

const NUMBER_OPTS: [&str; 14] = [
    "Window",
    "PersonalWindow",
    "AcceleratedWindow",
    "MaxSessionMessages",
    "TokenTimeout",
    "HurryTimeout",
    "AliveTimeout",
    "JoinTimeout",
    "RepTimeout",
    "SegTimeout",
    "GatherTimeout",
    "FormTimeout",
    "LookupTimeout",
    "MaxSessions",
];
const BOOL_OPTS: [&str; 7] = [
    "AcceleratedRing",
    "DangerousMonitor",
    "WideAreaNetwork",
    "ExcludeSegAddrsFromHash",
    "IgnoreMulticastJoinErrors",
    "SocketPortReuse",
    "EventPreciseTimeStamp",
];
const BOOL_WORDS: [&str; 7] = ["true", "false", "yes", "no", "on", "off", "auto"];
const FLAGS: [&str; 8] = [
    "ALL",
    "EXIT",
    "PRINT",
    "MEMBERSHIP",
    "CONFIGURATION",
    "NETWORK",
    "NONE",
    "PROTOCOL",
];
const PRIORITIES: [&str; 6] = ["pDEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL"];
const PATH_OPTS: [&str; 5] = [
    "RuntimeDir",
    "DaemonUser",
    "DaemonGroup",
    "EventLogFile",
    "EventTimeStamp",
];

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

impl ConfIn {
    /// The configuration text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for o in self.options.iter().take(16) {
            let _ = match o {
                OptIn::Number(k, v) => writeln!(
                    s,
                    "{} = {v}",
                    NUMBER_OPTS[usize::from(*k) % NUMBER_OPTS.len()]
                ),
                OptIn::Bool(k, v) => writeln!(
                    s,
                    "{} = {}",
                    BOOL_OPTS[usize::from(*k) % BOOL_OPTS.len()],
                    BOOL_WORDS[usize::from(*v) % BOOL_WORDS.len()]
                ),
                OptIn::DebugFlags(fl) => {
                    let words: Vec<String> = fl
                        .iter()
                        .take(8)
                        .map(|(neg, f)| {
                            let w = FLAGS[usize::from(*f) % FLAGS.len()];
                            if *neg {
                                format!("!{w}")
                            } else {
                                w.to_string()
                            }
                        })
                        .collect();
                    writeln!(s, "DebugFlags = {{ {} }}", words.join(" "))
                }
                OptIn::Priority(p) => writeln!(
                    s,
                    "EventPriority = {}",
                    PRIORITIES[usize::from(*p) % PRIORITIES.len()]
                ),
                OptIn::Path(k, w) => writeln!(
                    s,
                    "{} = /var/{}",
                    PATH_OPTS[usize::from(*k) % PATH_OPTS.len()],
                    w.0
                ),
                OptIn::Auth(required, m) => {
                    let names: Vec<&str> = m
                        .iter()
                        .take(3)
                        .map(|i| ["NULL", "IP", "PWORD"][usize::from(*i) % 3])
                        .collect();
                    let kw = if *required {
                        "RequiredAuthMethods"
                    } else {
                        "AllowedAuthMethods"
                    };
                    writeln!(s, "{kw} = \"{}\"", names.join(" "))
                }
                OptIn::Raw(r) => writeln!(s, "{}", r.chars().take(80).collect::<String>()),
            };
        }
        for seg in self.segments.iter().take(6) {
            if let Some((name, manager, arrow)) = &seg.subcluster {
                let sep = if *arrow { "=>" } else { "=" };
                let _ = writeln!(s, "# Subcluster: {} {sep} {}", name.0, manager.0);
            }
            let _ = write!(s, "Spread_Segment {}", ip(seg.addr));
            if let Some(p) = seg.port {
                let _ = write!(s, ":{p}");
            }
            for a in seg.extra.iter().take(4) {
                let _ = write!(s, " {}", ip(*a));
            }
            s.push_str(" {\n");
            for h in seg.hosts.iter().take(8) {
                let _ = write!(s, "  {}", h.name.0);
                if let Some(a) = h.ip {
                    let _ = write!(s, " {}", ip(a));
                }
                if let Some(v) = h.vid {
                    let _ = write!(s, " VirtualID = {v}");
                }
                if !h.ifaces.is_empty() {
                    s.push_str(" {");
                    for (k, a) in h.ifaces.iter().take(4) {
                        let kind = ["D", "C", "M", ""][usize::from(*k) % 4];
                        let _ = write!(s, " {kind} {}", ip(*a));
                    }
                    s.push_str(" }");
                }
                if h.semicolon {
                    s.push(';');
                }
                s.push('\n');
            }
            s.push_str("}\n");
        }
        s
    }

    /// Runs `spread::fuzzing::spread_conf` on [`ConfIn::text`].
    pub fn run(self) {
        spread::fuzzing::spread_conf(self.text().as_bytes());
    }
}

/// The structured targets by name, for the replay test: decodes `data` exactly as
/// `libfuzzer_sys::fuzz_target!` does (`arbitrary_take_rest`) and runs it. Returns `false`
/// for an unknown target name.
pub fn replay(target: &str, data: &[u8]) -> bool {
    fn go<'a, T: Arbitrary<'a>>(data: &'a [u8], run: impl FnOnce(T)) {
        if let Ok(input) = T::arbitrary_take_rest(Unstructured::new(data)) {
            run(input);
        }
    }
    match target {
        "client_message_structured" => go(data, MessageIn::run),
        "packing_structured" => go(data, PackingIn::run),
        "spread_conf_structured" => go(data, ConfIn::run),
        _ => return false,
    }
    true
}
