//! Option values and their rendering in file syntax.

use std::fmt::Write as _;

/// An option value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Bare word (printed bare).
    Word(String),
    /// Quoted string (printed quoted, `"` and `\` re-escaped).
    Str(String),
    /// `( a b c )`.
    List(Vec<Value>),
    /// `[ k = v … ]`.
    Dict(Vec<(String, Value)>),
}

impl Value {
    /// The text of a scalar (word or string); `None` for lists and dictionaries.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Word(s) | Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Interprets a scalar as a boolean (`on/off`, `true/false`, `enabled/disabled`, `yes/no`, `1/0`).
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_str()?.to_ascii_lowercase().as_str() {
            "on" | "true" | "enabled" | "yes" | "1" => Some(true),
            "off" | "false" | "disabled" | "no" | "0" => Some(false),
            _ => None,
        }
    }

    /// Renders on one line (lists as `( a b )`).
    pub fn inline(&self) -> String {
        let mut s = String::new();
        self.write_inline(&mut s);
        s
    }

    fn write_inline(&self, out: &mut String) {
        match self {
            Self::Word(w) => out.push_str(w),
            Self::Str(s) => quote_into(s, out),
            Self::List(items) => {
                out.push('(');
                for v in items {
                    out.push(' ');
                    v.write_inline(out);
                }
                out.push_str(" )");
            }
            Self::Dict(entries) => {
                out.push('[');
                for (k, v) in entries {
                    let _ = write!(out, " {} = ", name_token(k));
                    v.write_inline(out);
                }
                out.push_str(" ]");
            }
        }
    }

    /// Renders `Name = value` with `indent` prefix; a list opens with `(`, puts each item on
    /// its own line indented two more spaces, and closes with `  )`.
    pub fn assignment(&self, indent: &str, name: &str) -> String {
        match self {
            Self::List(items) => {
                let mut s = format!("{indent}{} = (\n", name_token(name));
                for v in items {
                    let _ = writeln!(s, "{indent}  {}", v.inline());
                }
                let _ = write!(s, "{indent}  )");
                s
            }
            _ => format!("{indent}{} = {}", name_token(name), self.inline()),
        }
    }
}

/// A name (option, scope or dictionary key) as one token: bare when it lexes back as exactly
/// that word, quoted otherwise (the parser accepts quoted names, so a name may hold spaces or
/// punctuation; printing it bare would not parse back — found by the `eccluster_conf` fuzz
/// target).
pub fn name_token(s: &str) -> std::borrow::Cow<'_, str> {
    let bare = !s.is_empty()
        && !s.starts_with("/*")
        && !s
            .chars()
            .any(|c| c.is_whitespace() || super::lexer::is_special(c));
    if bare {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(quote(s))
    }
}

/// Appends `s` in double quotes, escaping `"` and `\`.
pub fn quote_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `s` in double quotes with `"` and `\` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::new();
    quote_into(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        assert_eq!(Value::Str("a\"b".into()).inline(), r#""a\"b""#);
        let l = Value::List(vec![
            Value::Word("127.0.0.0/8".into()),
            Value::Str("x y".into()),
        ]);
        assert_eq!(
            l.assignment("", "Relay_Hosts"),
            "Relay_Hosts = (\n  127.0.0.0/8\n  \"x y\"\n  )"
        );
        let d = Value::Dict(vec![("uri".into(), Value::Str("ecauth://".into()))]);
        assert_eq!(d.inline(), "[ uri = \"ecauth://\" ]");
        assert_eq!(Value::Word("Enabled".into()).as_bool(), Some(true));
    }
}
