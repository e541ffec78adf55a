//! `spread.conf` / `mbus.conf`: the Spread 5.0.1 configuration language, parsed into a typed
//! [`Config`].
//!
//! The grammar is the one 5.0.1 accepts: global options (`Window = 200`, `DebugFlags = { EXIT
//! CONFIGURATION }`, `EventTimeStamp`, …) and `Spread_Segment ADDR[:PORT] [ADDR…] { … }` blocks
//! listing hosts as `name ip`, `name` alone (address looked up by name) or `ip` alone, each
//! optionally followed by `VirtualID = n`, an interface block `{ D ip C ip M ip }` and `;`.
//! Words are scanned as 5.0.1 scans them (longest match, so `Window=5` is one unknown word).
//! 5.0.1's defaults and limits apply (see the `DEFAULT_*` and `MAX_*` constants).
//!
//! mbus additions, all invisible to 5.0.1 daemons reading the same file:
//! * `# Subcluster: NAME = host` / `# Subcluster: NAME => host` comments put the segments after
//!   them (up to the next such comment) into subcluster NAME managed by `host`; segments before
//!   any such comment belong to subcluster `default` without a manager ([`Config::subclusters`]).
//! * `MaxSessions = N` (mbus only — a real 5.0.1 daemon refuses the file) raises the number of
//!   client sessions per daemon from 5.0.1's fixed 997 ([`DEFAULT_MAX_SESSIONS`]).
//!
//! Differences from 5.0.1, all stricter: an explicit host name longer than 19 characters is an
//! error (5.0.1 silently truncates it, changing its id); a malformed IP address or a stray `[`
//! is an error where 5.0.1 warns and reads it as a word; an unterminated quote is an error.
//!
//! Errors are [`ConfigError`]s displaying as one line `path:line:col: what is wrong`.
//! [`Config`]'s `Display` prints a configuration back in the same grammar; printing and
//! parsing again gives an equal `Config`.

mod display;
mod error;
mod lexer;
mod parser;
mod subcluster;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub use error::{ConfigError, ConfigErrorKind, ConfigWarning, Pos};

/// Default segment port when `Spread_Segment` gives none (5.0.1 `DEFAULT_SPREAD_PORT`).
pub const DEFAULT_PORT: u16 = 4803;
/// Longest host name (5.0.1 `MAX_PROC_NAME` 20 including the NUL).
pub const MAX_HOST_NAME_LEN: usize = 19;
/// Most hosts in one configuration (5.0.1 `MAX_PROCS_RING`).
pub const MAX_HOSTS: usize = 128;
/// Most hosts in one segment (5.0.1 `MAX_PROCS_SEGMENT`).
pub const MAX_HOSTS_PER_SEGMENT: usize = 128;
/// Most segments (5.0.1 `MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 20;
/// Most addresses of one segment, the first included (5.0.1 `MAX_ADDRS_SEGMENT`).
pub const MAX_SEGMENT_ADDRS: usize = 5;
/// Most interfaces in one host's interface block (5.0.1 `MAX_INTERFACES_PROC`).
pub const MAX_INTERFACES: usize = 10;
/// Default `MaxSessionMessages`.
pub const DEFAULT_MAX_SESSION_MESSAGES: u32 = 1000;
/// Default `Window`.
pub const DEFAULT_WINDOW: u32 = 160;
/// Default `PersonalWindow`.
pub const DEFAULT_PERSONAL_WINDOW: u32 = 20;
/// Default `AcceleratedWindow`.
pub const DEFAULT_ACCELERATED_WINDOW: u32 = 15;
/// Client sessions per daemon in 5.0.1 (`MAX_SESSIONS` = (2000 − 5) / 2); the 998th
/// connection is refused with `REJECT_QUOTA`. mbus's `MaxSessions` may change it.
pub const DEFAULT_MAX_SESSIONS: u32 = 997;
/// Upper bound accepted for `MaxSessions`.
pub const MAX_MAX_SESSIONS: u32 = 65_536;
/// Default `RuntimeDir` (chroot directory of a daemon started as root).
pub const DEFAULT_RUNTIME_DIR: &str = "/var/run/spread";
/// Default `DaemonUser`.
pub const DEFAULT_USER: &str = "spread";
/// Default `DaemonGroup`.
pub const DEFAULT_GROUP: &str = "spread";
/// Directory of the client Unix socket `/tmp/PORT` (5.0.1 `SP_UNIX_SOCKET`; not `RuntimeDir`).
pub const UNIX_SOCKET_DIR: &str = "/tmp";
/// Longest `DaemonUser` / `DaemonGroup`.
pub const MAX_USER_NAME_LEN: usize = 32;
/// Longest `RuntimeDir` (`MAXPATHLEN`).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest `EventTimeStamp` format kept (5.0.1 truncates to 39 characters).
pub const MAX_TIMESTAMP_FORMAT_LEN: usize = 39;
/// Longest subcluster name: `ec_sc_<name>` must fit a Spread group name (31 characters).
pub const MAX_SUBCLUSTER_NAME_LEN: usize = 25;
/// Name of the subcluster of segments before any `# Subcluster:` comment.
pub const DEFAULT_SUBCLUSTER: &str = "default";
/// The only access-control policy 5.0.1 has built in.
pub const ACCESS_CONTROL_POLICIES: &[&str] = &["PERMIT"];
/// Authentication methods 5.0.1 knows (`PWORD` only when built with it).
pub const AUTH_METHODS: &[&str] = &["NULL", "IP", "PWORD"];

/// Largest configuration file [`Config::load`] reads.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The embedded default used when no file is found: one daemon `localhost` on 127.0.0.1,
/// port 4803.
pub const EMBEDDED_DEFAULT: &str = "Spread_Segment 127.0.0.255:4803 {\n\tlocalhost 127.0.0.1\n}\n";

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Segments, in file order (the order is part of the configuration hash).
    pub segments: Vec<Segment>,
    /// Global options as given in the file (`None` = not given).
    pub options: Options,
    /// Subclusters, in order of first appearance; every segment is in exactly one.
    pub subclusters: Vec<Subcluster>,
}

/// One `Spread_Segment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Port P: data on P, tokens on P + 1, clients on P (TCP and `/tmp/P`).
    pub port: u16,
    /// Segment (broadcast or multicast) addresses; the first is the one after
    /// `Spread_Segment`. Never empty.
    pub addrs: Vec<ScopedIp>,
    /// Hosts in file order (the order is part of the configuration hash).
    pub hosts: Vec<Host>,
}

/// An IP address with an optional IPv6 interface (`fe80::1%eth0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedIp {
    /// The address.
    pub ip: IpAddr,
    /// The interface name after `%`, IPv6 only.
    pub scope: Option<String>,
}

/// One daemon of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name (at most [`MAX_HOST_NAME_LEN`] characters; unique).
    pub name: String,
    /// Its address (unique together with the segment port).
    pub addr: ScopedIp,
    /// Its virtual id (5.0.1 "proc id"): `VirtualID` if given, else [`vid_from_name`].
    pub vid: u32,
    /// Whether `VirtualID` was given.
    pub vid_explicit: bool,
    /// Its interface block; empty = none given (one interface of every kind on `addr`,
    /// bound to the wildcard address).
    pub interfaces: Vec<Interface>,
}

/// One entry of an interface block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// What it is used for.
    pub kinds: IfKinds,
    /// The local address.
    pub addr: ScopedIp,
}

/// Interface kinds: a set of `M` (monitor), `C` (client), `D` (daemon). No letter = all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfKinds(pub u8);

impl IfKinds {
    /// `M`: monitor traffic.
    pub const MONITOR: Self = Self(1);
    /// `C`: client connections.
    pub const CLIENT: Self = Self(2);
    /// `D`: the daemon ring.
    pub const DAEMON: Self = Self(4);
    /// All three.
    pub const ALL: Self = Self(7);

    /// Whether every kind of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// `SocketPortReuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortReuse {
    /// `auto` (default): SO_REUSEADDR where 5.0.1 deems it safe.
    #[default]
    Auto,
    /// `on`: always.
    On,
    /// `off`: never.
    Off,
}

/// `ActiveIPVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl IpVersion {
    /// The version of an address.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

/// `EventPriority`: the lowest priority logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Priority {
    /// `pDEBUG`.
    Debug = 1,
    /// `INFO` (default).
    #[default]
    Info = 2,
    /// `WARNING`.
    Warning = 3,
    /// `ERROR`.
    Error = 4,
    /// `CRITICAL`.
    Critical = 5,
    /// `FATAL`.
    Fatal = 6,
}

/// `EventTimeStamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeStamp {
    /// `EventTimeStamp` alone: the default format.
    Default,
    /// `EventTimeStamp = "format"` (strftime format, at most 39 characters kept).
    Format(String),
}

/// The nine membership timeouts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `TokenTimeout`.
    pub token_ms: u32,
    /// `HurryTimeout`.
    pub hurry_ms: u32,
    /// `AliveTimeout`.
    pub alive_ms: u32,
    /// `JoinTimeout`.
    pub join_ms: u32,
    /// `RepTimeout`.
    pub rep_ms: u32,
    /// `SegTimeout`.
    pub seg_ms: u32,
    /// `GatherTimeout`.
    pub gather_ms: u32,
    /// `FormTimeout`.
    pub form_ms: u32,
    /// `LookupTimeout`.
    pub lookup_ms: u32,
}

impl Timeouts {
    /// 5.0.1's table for a local network (one segment, or `WideAreaNetwork = no`).
    pub const LAN: Self = Self {
        token_ms: 1250,
        hurry_ms: 500,
        alive_ms: 250,
        join_ms: 250,
        rep_ms: 625,
        seg_ms: 500,
        gather_ms: 1250,
        form_ms: 1250,
        lookup_ms: 30_000,
    };
    /// 5.0.1's table for a wide-area network (several segments by default).
    pub const WAN: Self = Self {
        token_ms: 5000,
        hurry_ms: 1500,
        alive_ms: 250,
        join_ms: 250,
        rep_ms: 1250,
        seg_ms: 500,
        gather_ms: 2500,
        form_ms: 2500,
        lookup_ms: 45_000,
    };
}

/// Global options exactly as given (`None` = not in the file; accessors on [`Config`] apply
/// the defaults). If an option is given twice the last one counts (a warning is reported).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// `DebugFlags = { … }`: 5.0.1 alarm mask.
    pub debug_flags: Option<u32>,
    /// `EventPriority`.
    pub event_priority: Option<Priority>,
    /// `EventLogFile` (`%h` is replaced by the host name when opened).
    pub event_log_file: Option<String>,
    /// `EventTimeStamp`.
    pub event_timestamp: Option<TimeStamp>,
    /// `EventPreciseTimeStamp` given.
    pub event_precise_timestamp: bool,
    /// `DangerousMonitor`.
    pub dangerous_monitor: Option<bool>,
    /// `SocketPortReuse`.
    pub socket_port_reuse: Option<PortReuse>,
    /// `RuntimeDir`.
    pub runtime_dir: Option<String>,
    /// `DaemonUser`.
    pub daemon_user: Option<String>,
    /// `DaemonGroup`.
    pub daemon_group: Option<String>,
    /// `RequiredAuthMethods` (space-separated list in the file).
    pub required_auth_methods: Option<Vec<String>>,
    /// `AllowedAuthMethods` (space-separated list in the file).
    pub allowed_auth_methods: Option<Vec<String>>,
    /// `AccessControlPolicy`.
    pub access_control_policy: Option<String>,
    /// `MaxSessionMessages`.
    pub max_session_messages: Option<u32>,
    /// `ActiveIPVersion`.
    pub active_ip_version: Option<IpVersion>,
    /// `Window`.
    pub window: Option<u32>,
    /// `PersonalWindow`.
    pub personal_window: Option<u32>,
    /// `AcceleratedRing` (whether it is given matters: see [`Config::accelerated_ring`]).
    pub accelerated_ring: Option<bool>,
    /// `AcceleratedWindow`.
    pub accelerated_window: Option<u32>,
    /// The nine `*Timeout` options: all or none.
    pub timeouts: Option<Timeouts>,
    /// `WideAreaNetwork`.
    pub wide_area_network: Option<bool>,
    /// `ExcludeSegAddrsFromHash`.
    pub exclude_seg_addrs_from_hash: Option<bool>,
    /// `IgnoreMulticastJoinErrors`.
    pub ignore_multicast_join_errors: Option<bool>,
    /// `MaxSessions` (mbus extension).
    pub max_sessions: Option<u32>,
}

/// A subcluster (`# Subcluster:` comments, Momentum convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subcluster {
    /// Its name (letters, digits, `_`, `-`; at most [`MAX_SUBCLUSTER_NAME_LEN`]).
    pub name: String,
    /// Its manager host as written (may be a fully qualified name); `None` for the implicit
    /// `default` subcluster.
    pub manager: Option<String>,
    /// Indexes into [`Config::segments`], ascending.
    pub segments: Vec<usize>,
}

/// Where a host is: indexes into [`Config::segments`] and [`Segment::hosts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId {
    /// Segment index.
    pub segment: usize,
    /// Index inside the segment.
    pub index: usize,
}

/// Looks up the addresses of a host given by name only; the first address of the active IP
/// version is used. The core does no I/O: callers that want DNS pass a resolver.
pub type Resolver<'a> = &'a mut dyn FnMut(&str) -> Vec<IpAddr>;

/// A parsed configuration with the warnings 5.0.1 would print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The configuration.
    pub config: Config,
    /// Accepted but suspicious things, in file order.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Parses configuration text; `path` is only used in error messages. Hosts given by name
    /// only are refused ([`ConfigErrorKind::Unresolved`]); use [`Config::parse_full`] with a
    /// resolver for those.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        Self::parse_full(text, path, &mut |_| Vec::new()).map(|p| p.config)
    }

    /// Parses configuration text, looking up name-only hosts with `resolver`, and returns the
    /// warnings too.
    pub fn parse_full(
        text: &str,
        path: &str,
        resolver: Resolver<'_>,
    ) -> Result<Parsed, ConfigError> {
        parser::parse(text, path, resolver)
    }

    /// Reads and parses a file (name-only hosts refused, see [`Config::parse`]).
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::load_full(path, &mut |_| Vec::new()).map(|p| p.config)
    }

    /// Reads and parses a file with a resolver for name-only hosts.
    pub fn load_full(
        path: &std::path::Path,
        resolver: Resolver<'_>,
    ) -> Result<Parsed, ConfigError> {
        let shown = path.display().to_string();
        let io_err = |e: std::io::Error| ConfigError {
            path: shown.clone(),
            pos: Pos::START,
            kind: ConfigErrorKind::Io(e.to_string()),
        };
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).map_err(io_err)?;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut bytes,
        )
        .map_err(io_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                path: shown,
                pos: Pos::START,
                kind: ConfigErrorKind::TooLarge(MAX_CONFIG_BYTES),
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let good = String::from_utf8_lossy(good);
                let line = good.matches('\n').count() + 1;
                let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                return Err(ConfigError {
                    path: shown,
                    pos: Pos {
                        line: u32::try_from(line).unwrap_or(u32::MAX),
                        col: u32::try_from(col).unwrap_or(u32::MAX),
                    },
                    kind: ConfigErrorKind::NotUtf8,
                });
            }
        };
        Self::parse_full(&text, &shown, resolver)
    }

    /// The embedded default: one daemon `localhost` on 127.0.0.1, port 4803
    /// ([`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Self {
        match Self::parse(EMBEDDED_DEFAULT, "<embedded default>") {
            Ok(c) => c,
            // The text is a constant checked by a unit test.
            Err(e) => unreachable!("embedded default configuration is invalid: {e}"),
        }
    }

    /// The host called `name`.
    pub fn find_host(&self, name: &str) -> Option<(HostId, &Host)> {
        self.hosts().find(|(_, h)| h.name == name)
    }

    /// The host with virtual id `vid`.
    pub fn find_vid(&self, vid: u32) -> Option<(HostId, &Host)> {
        self.hosts().find(|(_, h)| h.vid == vid)
    }

    /// The host at `id`.
    pub fn host(&self, id: HostId) -> Option<&Host> {
        self.segments.get(id.segment)?.hosts.get(id.index)
    }

    /// All hosts in configuration order (segment by segment, file order inside).
    pub fn hosts(&self) -> impl Iterator<Item = (HostId, &Host)> + '_ {
        self.segments.iter().enumerate().flat_map(|(s, seg)| {
            seg.hosts.iter().enumerate().map(move |(i, h)| {
                (
                    HostId {
                        segment: s,
                        index: i,
                    },
                    h,
                )
            })
        })
    }

    /// Number of hosts.
    pub fn host_count(&self) -> usize {
        self.segments.iter().map(|s| s.hosts.len()).sum()
    }

    /// The subcluster a segment belongs to.
    pub fn subcluster_of_segment(&self, segment: usize) -> Option<&Subcluster> {
        self.subclusters
            .iter()
            .find(|s| s.segments.contains(&segment))
    }

    /// The subcluster a host (by name) belongs to.
    pub fn subcluster_of(&self, host: &str) -> Option<&Subcluster> {
        let (id, _) = self.find_host(host)?;
        self.subcluster_of_segment(id.segment)
    }

    /// The subclusters whose manager is host `name` (compared on the short name).
    pub fn subclusters_managed_by<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Subcluster> + 'a {
        let short = name.split('.').next().unwrap_or(name);
        self.subclusters
            .iter()
            .filter(move |s| s.manager_short() == Some(short))
    }

    /// The subcluster called `name`.
    pub fn find_subcluster(&self, name: &str) -> Option<&Subcluster> {
        self.subclusters.iter().find(|s| s.name == name)
    }

    /// Whether the ring runs as a wide-area network: `WideAreaNetwork` if given, else
    /// "more than one segment" (5.0.1 `Memb_init`).
    pub fn wide_area(&self) -> bool {
        self.options
            .wide_area_network
            .unwrap_or(self.segments.len() > 1)
    }

    /// Whether the accelerated ring protocol runs. In 5.0.1 only an explicit
    /// `AcceleratedRing = true` selects it (the hash string and flow control read the flag
    /// before any default is chosen), so no line means the original ring.
    pub fn accelerated_ring(&self) -> bool {
        self.options.accelerated_ring.unwrap_or(false)
    }

    /// The membership timeouts in force: the nine `*Timeout` options if given, else 5.0.1's
    /// WAN or LAN table.
    pub fn timeouts(&self) -> Timeouts {
        match self.options.timeouts {
            Some(t) => t,
            None if self.wide_area() => Timeouts::WAN,
            None => Timeouts::LAN,
        }
    }

    /// `Window`.
    pub fn window(&self) -> u32 {
        self.options.window.unwrap_or(DEFAULT_WINDOW)
    }

    /// `PersonalWindow`.
    pub fn personal_window(&self) -> u32 {
        self.options
            .personal_window
            .unwrap_or(DEFAULT_PERSONAL_WINDOW)
    }

    /// `AcceleratedWindow`.
    pub fn accelerated_window(&self) -> u32 {
        self.options
            .accelerated_window
            .unwrap_or(DEFAULT_ACCELERATED_WINDOW)
    }

    /// `MaxSessionMessages`.
    pub fn max_session_messages(&self) -> u32 {
        self.options
            .max_session_messages
            .unwrap_or(DEFAULT_MAX_SESSION_MESSAGES)
    }

    /// Client sessions allowed per daemon (5.0.1: 997; mbus `MaxSessions` may change it).
    pub fn max_sessions(&self) -> u32 {
        self.options.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS)
    }

    /// `SocketPortReuse`.
    pub fn socket_port_reuse(&self) -> PortReuse {
        self.options.socket_port_reuse.unwrap_or_default()
    }

    /// `DangerousMonitor`.
    pub fn dangerous_monitor(&self) -> bool {
        self.options.dangerous_monitor.unwrap_or(false)
    }

    /// `ExcludeSegAddrsFromHash`.
    pub fn exclude_seg_addrs_from_hash(&self) -> bool {
        self.options.exclude_seg_addrs_from_hash.unwrap_or(false)
    }

    /// `RuntimeDir`.
    pub fn runtime_dir(&self) -> &str {
        self.options
            .runtime_dir
            .as_deref()
            .unwrap_or(DEFAULT_RUNTIME_DIR)
    }

    /// `DaemonUser`.
    pub fn daemon_user(&self) -> &str {
        self.options.daemon_user.as_deref().unwrap_or(DEFAULT_USER)
    }

    /// `DaemonGroup`.
    pub fn daemon_group(&self) -> &str {
        self.options
            .daemon_group
            .as_deref()
            .unwrap_or(DEFAULT_GROUP)
    }

    /// `EventPriority`.
    pub fn event_priority(&self) -> Priority {
        self.options.event_priority.unwrap_or_default()
    }

    /// `ActiveIPVersion`, or the version of the first host's address.
    pub fn active_ip_version(&self) -> IpVersion {
        self.options.active_ip_version.unwrap_or_else(|| {
            self.hosts()
                .next()
                .map_or(IpVersion::V4, |(_, h)| IpVersion::of(&h.addr.ip))
        })
    }
}

impl Subcluster {
    /// The manager's short host name (up to the first `.`): daemon names are short names, a
    /// manager may be written fully qualified (`rh52mgr.vmnet24.example.com` is `rh52mgr`).
    pub fn manager_short(&self) -> Option<&str> {
        self.manager
            .as_deref()
            .map(|m| m.split('.').next().unwrap_or(m))
    }
}

impl Host {
    /// The interfaces in force: the block if given, else one of every kind on the host's
    /// address (5.0.1 binds that one to the wildcard address).
    pub fn effective_interfaces(&self) -> Vec<Interface> {
        if self.interfaces.is_empty() {
            vec![Interface {
                kinds: IfKinds::ALL,
                addr: self.addr.clone(),
            }]
        } else {
            self.interfaces.clone()
        }
    }
}

/// Fuzz entry (feature `fuzzing`; for a `config_text` target): arbitrary bytes as
/// configuration text. Panics if an error is not one line, or if a configuration that parses
/// does not print and parse back to itself.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.conf") {
        Err(e) => assert_eq!(e.to_string().lines().count(), 1, "{e}"),
        Ok(c) => {
            let printed = c.to_string();
            match Config::parse(&printed, "printed.conf") {
                Ok(back) => assert_eq!(back, c, "printed:\n{printed}"),
                Err(e) => panic!("printed configuration does not parse: {e}\n{printed}"),
            }
        }
    }
}

/// 5.0.1's automatic virtual id of a host: Bob Jenkins' one-at-a-time hash of the name
/// including its terminating NUL (initial value = that length, bytes added as signed chars);
/// 0 and `u32::MAX` are replaced by `length << 16`.
pub fn vid_from_name(name: &str) -> u32 {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let h = oaat(&bytes);
    if h == 0 || h == u32::MAX {
        let r = len << 16;
        if r == 0 {
            1 << 16
        } else {
            r
        }
    } else {
        h
    }
}

/// Jenkins one-at-a-time as in Spread's `stdhcode_oaat` (initial value = length, bytes added
/// as signed chars).
pub fn oaat(buf: &[u8]) -> u32 {
    let mut h = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    for &b in buf {
        // C `char` is signed on x86: bytes >= 0x80 are sign-extended.
        h = h.wrapping_add(i32::from(b as i8) as u32);
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}
