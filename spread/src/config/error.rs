//! Configuration errors and warnings: always one line, `path:line:col: what is wrong`.

use std::fmt;

/// A position in a configuration file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number, in characters.
    pub col: u32,
}

impl Pos {
    /// The start of a file.
    pub const START: Self = Self { line: 1, col: 1 };
}

/// A configuration file that could not be used.
///
/// Displays as exactly one line: `path:line:col: message`. Nothing is half-applied: a
/// configuration either parses completely or yields this error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name the text came from, as given by the caller.
    pub path: String,
    /// Where the problem is.
    pub pos: Pos,
    /// What the problem is.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = format!(
            "{}:{}:{}: {}",
            self.path, self.pos.line, self.pos.col, self.kind
        );
        f.write_str(&one_line(&line))
    }
}

/// Escapes control characters (a quoted value may hold a newline) so the text stays one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl std::error::Error for ConfigError {}

/// What is wrong with a configuration. Each variant displays as a short phrase without a
/// trailing newline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    #[error("cannot read configuration: {0}")]
    Io(String),
    /// The file is larger than [`super::MAX_CONFIG_BYTES`].
    #[error("configuration file larger than {0} bytes")]
    TooLarge(u64),
    /// The file is not valid UTF-8.
    #[error("configuration is not valid UTF-8")]
    NotUtf8,
    /// A character that no token can start with (for example a stray `[`).
    #[error("unexpected character '{0}'")]
    UnexpectedChar(char),
    /// A quoted string whose closing quote never comes.
    #[error("unterminated quoted string")]
    UnterminatedString,
    /// A word at the top level that is no option name and not `Spread_Segment`.
    #[error("unknown keyword '{0}'{hint}", hint = keyword_hint(.0))]
    UnknownKeyword(String),
    /// A token of the wrong kind.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the grammar wanted here.
        expected: &'static str,
        /// What was there instead (already quoted / described).
        found: String,
    },
    /// A `{` without its `}` before the end of the file.
    #[error("unterminated block: this '{{' is never closed")]
    UnterminatedBlock,
    /// Something that looks like an IP address but is not one.
    #[error("bad address '{0}'")]
    BadAddress(String),
    /// A port number outside 0..=65535.
    #[error("bad port in '{0}' (must be 0..65535)")]
    BadPort(String),
    /// An address that is not allowed where it is used.
    #[error("address {addr} not allowed here: {why}")]
    AddressNotAllowed {
        /// The address as written.
        addr: String,
        /// Why not.
        why: &'static str,
    },
    /// Two hosts with the same name.
    #[error("duplicate host '{name}' (already defined at line {first_line})")]
    DuplicateHost {
        /// The name given twice.
        name: String,
        /// Where it was first defined.
        first_line: u32,
    },
    /// Two hosts with the same address and port.
    #[error("duplicate host address {addr} ('{name}' and '{other}')")]
    DuplicateAddress {
        /// The shared address and port.
        addr: String,
        /// The later host.
        name: String,
        /// The earlier host.
        other: String,
    },
    /// Two hosts with the same virtual id.
    #[error("virtual id {vid} of '{name}' is already used by '{other}'")]
    DuplicateVid {
        /// The shared id.
        vid: u32,
        /// The later host.
        name: String,
        /// The earlier host.
        other: String,
    },
    /// A host name longer than [`super::MAX_HOST_NAME_LEN`].
    #[error("host name '{0}' is too long ({len} characters; at most {max})", len = .0.len(), max = super::MAX_HOST_NAME_LEN)]
    NameTooLong(String),
    /// An empty (quoted) host name.
    #[error("empty host name")]
    EmptyName,
    /// A host given by name only whose address could not be found.
    #[error("cannot resolve host name '{0}'; give its IP address after the name")]
    Unresolved(String),
    /// A limit of 5.0.1 exceeded.
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// An interface block `{ }` without any interface.
    #[error("interface block of '{0}' lists no interface")]
    EmptyInterfaces(String),
    /// An interface block that does not let the daemon talk to the ring.
    #[error("interface block of '{name}' has no D interface for its address {addr}")]
    NoDaemonInterface {
        /// The host.
        name: String,
        /// Its address.
        addr: String,
    },
    /// An option value outside what 5.0.1 accepts.
    #[error("bad value for {option}: {why}")]
    BadValue {
        /// The option name.
        option: &'static str,
        /// Why the value is refused.
        why: String,
    },
    /// A malformed `# Subcluster:` comment.
    #[error("bad subcluster comment: {0}")]
    BadSubcluster(String),
    /// A file without any `Spread_Segment`.
    #[error("no Spread_Segment in configuration")]
    NoSegments,
    /// A file whose segments list no host.
    #[error("no host in any Spread_Segment")]
    NoHosts,
}

fn keyword_hint(word: &str) -> &'static str {
    if word.contains('=') {
        " (put spaces around '=')"
    } else {
        ""
    }
}

/// Something 5.0.1 accepts but warns about; the daemon logs these at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where.
    pub pos: Pos,
    /// What, as one line.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = format!("{}:{}: {}", self.pos.line, self.pos.col, self.message);
        f.write_str(&one_line(&line))
    }
}
