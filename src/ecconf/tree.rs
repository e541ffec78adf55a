//! The merged configuration tree and the console `config` family (fact sheet §4.2–§4.4, §4.7).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::lexer::{lex, Pos, Tok};
use super::parser::{parse, parse_value, Item};
use super::value::{name_token, quote, Value};

/// One option assignment inside a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptEntry {
    /// Canonical spelling (the first one seen, or the registered default's).
    pub name: String,
    /// Current value.
    pub value: Value,
}

/// A scope instance: anonymous (`Security { }`) or named (`Listen "/tmp/2025" { }`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// Canonical spelling of the scope name (empty for the global scope).
    pub name: String,
    /// Instance name of a named scope.
    pub instance: Option<String>,
    /// Options in first-definition order.
    pub options: Vec<OptEntry>,
    /// Child scopes in first-definition order.
    pub children: Vec<Scope>,
}

/// One step of a scope path: scope name and optional instance.
pub type Seg = (String, Option<String>);

impl Scope {
    /// The option called `name` (case-insensitive) in this scope only.
    pub fn get(&self, name: &str) -> Option<&OptEntry> {
        self.options
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// Scalar text of option `name` in this scope only.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|o| o.value.as_str())
    }

    /// The child scope `name`/`instance` (name case-insensitive, instance exact).
    pub fn child(&self, name: &str, instance: Option<&str>) -> Option<&Self> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name) && c.instance.as_deref() == instance)
    }

    /// All child scopes called `name` (any instance).
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Self> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    pub(super) fn child_mut_or_insert(&mut self, name: &str, instance: Option<&str>) -> &mut Self {
        let idx =
            match self.children.iter().position(|c| {
                c.name.eq_ignore_ascii_case(name) && c.instance.as_deref() == instance
            }) {
                Some(i) => i,
                None => {
                    self.children.push(Self {
                        name: name.to_string(),
                        instance: instance.map(str::to_string),
                        ..Self::default()
                    });
                    self.children.len() - 1
                }
            };
        &mut self.children[idx]
    }

    /// Sets (or shadows) option `name`, keeping the first spelling as canonical.
    pub fn set(&mut self, name: &str, value: Value) {
        match self
            .options
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(name))
        {
            Some(o) => o.value = value,
            None => self.options.push(OptEntry {
                name: name.to_string(),
                value,
            }),
        }
    }

    fn header(&self) -> String {
        match &self.instance {
            Some(i) => format!("{} {}", name_token(&self.name), quote(i)),
            None => name_token(&self.name).into_owned(),
        }
    }

    fn write_recursive(&self, out: &mut String, indent: usize) {
        let pad = "  ".repeat(indent);
        for o in &self.options {
            let _ = writeln!(out, "{}", o.value.assignment(&pad, &o.name));
        }
        for c in &self.children {
            let _ = writeln!(out, "{pad}{} {{", c.header());
            c.write_recursive(out, indent + 1);
            let _ = writeln!(out, "{pad}}}");
        }
    }
}

/// A configuration load error, printed `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {msg}")]
pub struct ConfError {
    /// File in which the error was found.
    pub file: String,
    /// Position inside that file.
    pub pos: Pos,
    /// One-line description.
    pub msg: String,
}

/// Deepest include nesting (also stops include cycles).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Scope names that are anonymous even when followed by more path words on the console.
const KNOWN_ANONYMOUS: &[&str] = &[
    "security",
    "logs",
    "control_listener",
    "esmtp_listener",
    "eccluster_listener",
    "cluster",
    "debug_flags",
    "as_logger",
    "threadpool",
    "authorization",
];

/// A loaded configuration: the merged tree plus registered defaults (used by `eval`).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The global scope.
    pub root: Scope,
    /// Built-in defaults: canonical option name and value, consulted after every scope.
    pub defaults: Vec<OptEntry>,
    /// Every file read, in order, with its read-only flag.
    pub files: Vec<(PathBuf, bool)>,
    /// Directories searched for relative includes after the including file's directory.
    pub search_path: Vec<PathBuf>,
}

impl Config {
    /// Parses `src` (named `file` in errors) with includes resolved relative to `base_dir`.
    pub fn from_str(file: &str, src: &str, base_dir: &Path) -> Result<Self, ConfError> {
        let mut cfg = Self::default();
        let items = parse(src).map_err(|e| ConfError {
            file: file.into(),
            pos: e.pos,
            msg: e.msg,
        })?;
        let mut root = Scope::default();
        cfg.apply(&mut root, items, file, base_dir, false, 0)?;
        cfg.root = root;
        Ok(cfg)
    }

    /// Reads and parses `path` and everything it includes.
    pub fn load(path: &Path, search_path: &[PathBuf]) -> Result<Self, ConfError> {
        let mut cfg = Self {
            search_path: search_path.to_vec(),
            ..Self::default()
        };
        let mut root = Scope::default();
        cfg.include_file(
            &mut root,
            path,
            false,
            0,
            (&path.display().to_string(), Pos { line: 1, col: 1 }),
        )?;
        cfg.root = root;
        Ok(cfg)
    }

    fn include_file(
        &mut self,
        scope: &mut Scope,
        path: &Path,
        readonly: bool,
        depth: usize,
        at: (&str, Pos),
    ) -> Result<(), ConfError> {
        let err = |msg: String| ConfError {
            file: at.0.to_string(),
            pos: at.1,
            msg,
        };
        if depth > MAX_INCLUDE_DEPTH {
            return Err(err(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH} (cycle?)"
            )));
        }
        if path.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| err(format!("cannot read directory {}: {e}", path.display())))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            names.sort();
            for p in names {
                self.include_file(scope, &p, readonly, depth + 1, at)?;
            }
            return Ok(());
        }
        let src = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let name = path.display().to_string();
        let again = self.files.iter().any(|(p, _)| p == path);
        self.files.push((path.to_path_buf(), readonly || again));
        let items = parse(&src).map_err(|e| ConfError {
            file: name.clone(),
            pos: e.pos,
            msg: e.msg,
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        self.apply(scope, items, &name, &dir, readonly, depth)
    }

    fn resolve_include(&self, raw: &str, dir: &Path) -> Result<PathBuf, String> {
        let raw = if let Some(rest) = raw.strip_prefix("file://") {
            rest
        } else if raw.contains("://") {
            return Err(format!("unsupported include URI '{raw}'"));
        } else {
            raw
        };
        let p = Path::new(raw);
        if p.is_absolute() {
            return Ok(p.to_path_buf());
        }
        std::iter::once(dir.to_path_buf())
            .chain(self.search_path.iter().cloned())
            .map(|d| d.join(p))
            .find(|c| c.exists())
            .ok_or_else(|| {
                format!(
                    "include '{raw}' not found in {} or the search path",
                    dir.display()
                )
            })
    }

    fn apply(
        &mut self,
        scope: &mut Scope,
        items: Vec<Item>,
        file: &str,
        dir: &Path,
        readonly: bool,
        depth: usize,
    ) -> Result<(), ConfError> {
        for item in items {
            match item {
                Item::Opt { name, value, .. } => scope.set(&name, value),
                Item::Scope {
                    name,
                    instance,
                    body,
                    ..
                } => {
                    let child = scope.child_mut_or_insert(&name, instance.as_deref());
                    self.apply(child, body, file, dir, readonly, depth)?;
                }
                Item::Include {
                    path,
                    readonly: ro,
                    pos,
                } => {
                    let resolved = self.resolve_include(&path, dir).map_err(|msg| ConfError {
                        file: file.into(),
                        pos,
                        msg,
                    })?;
                    self.include_file(scope, &resolved, readonly || ro, depth + 1, (file, pos))?;
                }
            }
        }
        Ok(())
    }

    /// Registers a built-in default used by `config eval` after every scope.
    pub fn add_default(&mut self, name: &str, value: Value) {
        self.defaults.retain(|d| !d.name.eq_ignore_ascii_case(name));
        self.defaults.push(OptEntry {
            name: name.into(),
            value,
        });
    }

    /// Looks up a scope by path.
    pub fn scope(&self, path: &[Seg]) -> Option<&Scope> {
        let mut s = &self.root;
        for (n, i) in path {
            s = s.child(n, i.as_deref())?;
        }
        Some(s)
    }

    /// Turns console path words into scope segments using the current tree.
    pub fn resolve_path(&self, words: &[String]) -> Vec<Seg> {
        let mut segs = Vec::new();
        let mut cur = Some(&self.root);
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            let next = words.get(i + 1);
            let named = next.and_then(|n| cur.and_then(|c| c.child(w, Some(n))));
            let anon = cur.and_then(|c| c.child(w, None));
            if let (Some(s), Some(n)) = (named, next) {
                segs.push((s.name.clone(), Some(n.clone())));
                cur = Some(s);
                i += 2;
            } else if let Some(s) = anon {
                segs.push((s.name.clone(), None));
                cur = Some(s);
                i += 1;
            } else if next.is_none() || KNOWN_ANONYMOUS.contains(&w.to_ascii_lowercase().as_str()) {
                segs.push((w.clone(), None));
                cur = None;
                i += 1;
            } else {
                segs.push((w.clone(), next.cloned()));
                cur = None;
                i += 2;
            }
        }
        segs
    }

    /// The scope path as printed in messages and by `locate`: `Name:instance:` per level.
    pub fn path_string(path: &[Seg]) -> String {
        path.iter()
            .map(|(n, i)| format!("{n}:{}:", i.as_deref().unwrap_or("").replace(':', "\\:")))
            .collect()
    }

    fn canonical(&self, name: &str) -> String {
        self.defaults
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map_or_else(|| name.to_string(), |d| d.name.clone())
    }

    /// Effective value: the innermost existing scope outward, then the defaults.
    pub fn eval(&self, path: &[Seg], name: &str) -> Option<&OptEntry> {
        let mut chain = vec![&self.root];
        let mut s = &self.root;
        for (n, i) in path {
            match s.child(n, i.as_deref()) {
                Some(c) => {
                    chain.push(c);
                    s = c;
                }
                None => break,
            }
        }
        chain.iter().rev().find_map(|s| s.get(name)).or_else(|| {
            self.defaults
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(name))
        })
    }

    /// Runs one `config` sub-command (everything after `config`) and returns its text output.
    /// `reload` is handled by the caller (it needs the file system and the original path).
    pub fn console(&mut self, sub: &str, args: &str) -> String {
        if sub == "set" {
            return self.console_set(args);
        }
        let words = match console_words(args) {
            Ok(w) => w,
            Err(e) => return e,
        };
        match sub {
            "get" | "eval" => {
                let Some((opt, path)) = words.split_last() else {
                    return format!("usage: config {sub} [scope …] option");
                };
                let segs = self.resolve_path(path);
                let indent = if segs.is_empty() { "" } else { "\t" };
                let found = if sub == "get" {
                    self.scope(&segs).and_then(|s| s.get(opt))
                } else {
                    self.eval(&segs, opt)
                };
                match found {
                    Some(o) => o.value.assignment(indent, &o.name),
                    None if sub == "get" => {
                        format!(
                            "Option '{}' is not set in scope '{}'.",
                            self.canonical(opt),
                            Self::path_string(&segs)
                        )
                    }
                    None => format!(
                        "Option '{}' is not set in scope '{}' and has no default.",
                        self.canonical(opt),
                        Self::path_string(&segs)
                    ),
                }
            }
            "unset" => {
                if words.is_empty() {
                    return "Refusing to unset the global scope.".into();
                }
                // Whole scope?
                let segs_all = self.resolve_path(&words);
                if self.scope(&segs_all).is_some() {
                    let (last, parent) = segs_all.split_last().expect("non-empty");
                    if let Some(p) = self.scope_mut(parent) {
                        p.children.retain(|c| {
                            !(c.name.eq_ignore_ascii_case(&last.0) && c.instance == last.1)
                        });
                    }
                    return format!("Scope '{}' has been unset.", Self::path_string(&segs_all));
                }
                let (opt, path) = words.split_last().expect("non-empty");
                let segs = self.resolve_path(path);
                let Some(scope) = self.scope_mut(&segs) else {
                    return format!(
                        "Option '{opt}' is not set in scope '{}'.",
                        Self::path_string(&segs)
                    );
                };
                let Some(idx) = scope
                    .options
                    .iter()
                    .position(|o| o.name.eq_ignore_ascii_case(opt))
                else {
                    return format!(
                        "Option '{}' is not set in scope '{}'.",
                        self.canonical(opt),
                        Self::path_string(&segs)
                    );
                };
                let removed = scope.options.remove(idx);
                let eff = match self.eval(&segs, opt) {
                    Some(o) => o.value.assignment("\t", &o.name),
                    None => format!("\t{} is not set", removed.name),
                };
                format!(
                    "\"{}\" has been unset. Effective value is now:\n{eff}",
                    removed.name
                )
            }
            "show" => {
                let segs = self.resolve_path(&words);
                if let Some(s) = self.scope(&segs) {
                    let mut out = String::new();
                    for o in &s.options {
                        let _ = writeln!(out, "{}", o.value.assignment("", &o.name));
                    }
                    for c in &s.children {
                        let _ = writeln!(out, "{} {{ ... }}", c.header());
                    }
                    return out.trim_end_matches('\n').to_string();
                }
                // Last word may be an option name.
                let Some((opt, path)) = words.split_last() else {
                    return String::new();
                };
                let segs = self.resolve_path(path);
                match self.scope(&segs).and_then(|s| s.get(opt)) {
                    Some(o) => o.value.assignment("", &o.name),
                    None => format!(
                        "Scope '{}' does not exist.",
                        Self::path_string(&self.resolve_path(&words))
                    ),
                }
            }
            "showrecurse" => {
                let segs = self.resolve_path(&words);
                let Some(s) = self.scope(&segs) else {
                    return format!("Scope '{}' does not exist.", Self::path_string(&segs));
                };
                let mut out = String::new();
                if segs.is_empty() {
                    s.write_recursive(&mut out, 0);
                } else {
                    let _ = writeln!(out, "{} {{", s.header());
                    s.write_recursive(&mut out, 1);
                    out.push_str("}\n");
                }
                out.trim_end_matches('\n').to_string()
            }
            "locate" => {
                let Some(scope_name) = words.first() else {
                    return "usage: config locate scope [regex]".into();
                };
                let re = match words.get(1).map(|r| regex::Regex::new(r)) {
                    Some(Ok(r)) => Some(r),
                    Some(Err(e)) => {
                        return format!(
                            "Invalid regex: {}",
                            e.to_string().lines().last().unwrap_or("")
                        )
                    }
                    None => None,
                };
                let mut out = String::new();
                locate(
                    &self.root,
                    &mut Vec::new(),
                    scope_name,
                    re.as_ref(),
                    &mut out,
                );
                out.trim_end_matches('\n').to_string()
            }
            other => format!("Unknown config sub-command '{other}'"),
        }
    }

    fn scope_mut(&mut self, path: &[Seg]) -> Option<&mut Scope> {
        let mut s = &mut self.root;
        for (n, i) in path {
            s = s
                .children
                .iter_mut()
                .find(|c| c.name.eq_ignore_ascii_case(n) && c.instance == *i)?;
        }
        Some(s)
    }

    fn console_set(&mut self, args: &str) -> String {
        const USAGE: &str = "usage: config set [scope …] option [=] value";
        let toks = match lex(args) {
            Ok(t) => t,
            Err(e) => return format!("Invalid value: {}", e.msg),
        };
        // Find where the value starts: a trailing list/dict, or the last token.
        let n = toks.len();
        if n < 2 {
            return USAGE.into();
        }
        let value_start = match toks[n - 1].tok {
            Tok::RParen | Tok::RBracket => {
                let (open, close) = if toks[n - 1].tok == Tok::RParen {
                    (Tok::LParen, Tok::RParen)
                } else {
                    (Tok::LBracket, Tok::RBracket)
                };
                let mut depth = 0usize;
                let mut start = None;
                for i in (0..n).rev() {
                    if toks[i].tok == close {
                        depth += 1;
                    } else if toks[i].tok == open {
                        depth -= 1;
                        if depth == 0 {
                            start = Some(i);
                            break;
                        }
                    }
                }
                match start {
                    Some(s) => s,
                    None => return "Invalid value: unbalanced brackets".into(),
                }
            }
            _ => n - 1,
        };
        let value_src = byte_offset(args, toks[value_start].pos).map_or("", |o| &args[o..]);
        let value = match parse_value(value_src) {
            Ok(v) => v,
            Err(e) => return format!("Invalid value: {}", e.msg),
        };
        let mut head: Vec<String> = Vec::new();
        for (i, t) in toks[..value_start].iter().enumerate() {
            match &t.tok {
                Tok::Word(w) | Tok::Str(w) => head.push(w.clone()),
                Tok::Eq if i + 1 == value_start => {}
                other => return format!("Invalid scope path: unexpected {other}"),
            }
        }
        let Some((opt, path)) = head.split_last() else {
            return USAGE.into();
        };
        let segs = self.resolve_path(path);
        let canonical = {
            let existing = self
                .scope(&segs)
                .and_then(|s| s.get(opt))
                .map(|o| o.name.clone());
            existing.unwrap_or_else(|| self.canonical(opt))
        };
        let mut s = &mut self.root;
        for (n, i) in &segs {
            s = s.child_mut_or_insert(n, i.as_deref());
        }
        s.set(&canonical, value.clone());
        let indent = if segs.is_empty() { "" } else { "\t" };
        value.assignment(indent, &canonical)
    }
}

fn byte_offset(src: &str, pos: Pos) -> Option<usize> {
    let mut line = 1u32;
    let mut col = 1u32;
    for (i, c) in src.char_indices() {
        if line == pos.line && col == pos.col {
            return Some(i);
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    None
}

/// Splits console `config` arguments into words (quotes removed); punctuation is an error.
fn console_words(args: &str) -> Result<Vec<String>, String> {
    let toks = lex(args).map_err(|e| format!("Invalid arguments: {}", e.msg))?;
    toks.into_iter()
        .map(|t| match t.tok {
            Tok::Word(w) | Tok::Str(w) => Ok(w),
            other => Err(format!("Invalid arguments: unexpected {other}")),
        })
        .collect()
}

fn locate(s: &Scope, path: &mut Vec<Seg>, name: &str, re: Option<&regex::Regex>, out: &mut String) {
    for c in &s.children {
        path.push((c.name.clone(), c.instance.clone()));
        let inst = c.instance.as_deref().unwrap_or("");
        if c.name.eq_ignore_ascii_case(name) && re.is_none_or(|r| r.is_match(inst)) {
            let _ = writeln!(out, "{}\n  is at {}", c.header(), Config::path_string(path));
        }
        locate(c, path, name, re, out);
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECCLUSTER: &str = r#"
Security { User = "ecuser"  Group = "ecuser" }
Logs {
  logfile   = "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}"
  file_mode = "0640"
  dir_mode  = "0755"
}
Control_Listener {
  Enable_Authentication = "true"
  Listen "/tmp/2025"      { Enable_Authentication = "false" }
  Listen "127.0.0.1:2025" { }
}
Message_Expiration = 86400
Relay_Hosts = ( 127.0.0.0/8 )
"#;

    fn cfg() -> Config {
        let mut c = Config::from_str("eccluster.conf", ECCLUSTER, Path::new(".")).unwrap();
        c.add_default("Blackhole", Value::Word("0".into()));
        c
    }

    #[test]
    fn get_is_case_insensitive_and_canonical() {
        let mut c = cfg();
        assert_eq!(
            c.console("get", "message_expiration"),
            "Message_Expiration = 86400"
        );
        assert_eq!(c.console("get", "logs FILE_MODE"), "\tfile_mode = \"0640\"");
        assert_eq!(
            c.console("get", "blackhole"),
            "Option 'Blackhole' is not set in scope ''."
        );
        assert_eq!(c.console("eval", "blackhole"), "Blackhole = 0");
        // get does not fall back; eval does.
        assert_eq!(
            c.console("get", "Control_Listener Listen /tmp/2025 Message_Expiration"),
            "Option 'Message_Expiration' is not set in scope 'Control_Listener::Listen:/tmp/2025:'."
        );
        assert_eq!(
            c.console(
                "eval",
                "Control_Listener Listen /tmp/2025 Message_Expiration"
            ),
            "\tMessage_Expiration = 86400"
        );
        assert_eq!(
            c.console(
                "eval",
                "Control_Listener Listen \"/tmp/2025\" enable_authentication"
            ),
            "\tEnable_Authentication = \"false\""
        );
        assert_eq!(
            c.console(
                "eval",
                "Control_Listener Listen 127.0.0.1:2025 enable_authentication"
            ),
            "\tEnable_Authentication = \"true\""
        );
    }

    #[test]
    fn set_unset_show() {
        let mut c = cfg();
        assert_eq!(
            c.console("set", "Suspend_Delivery enabled"),
            "Suspend_Delivery = enabled"
        );
        assert_eq!(
            c.console("set", "message_expiration = 10"),
            "Message_Expiration = 10"
        );
        assert_eq!(
            c.console("set", "Relay_Hosts ( 10.0.0.0/8 \"x y\" )"),
            "Relay_Hosts = (\n  10.0.0.0/8\n  \"x y\"\n  )"
        );
        assert_eq!(
            c.console("set", "Binding b1 Bind_Address 10.0.0.5"),
            "\tBind_Address = 10.0.0.5"
        );
        assert_eq!(
            c.console("get", "binding b1 bind_address"),
            "\tBind_Address = 10.0.0.5"
        );
        assert_eq!(
            c.console("unset", "Control_Listener Listen /tmp/2025 Enable_Authentication"),
            "\"Enable_Authentication\" has been unset. Effective value is now:\n\tEnable_Authentication = \"true\""
        );
        assert_eq!(c.console("show", "Logs"), "logfile = \"/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}\"\nfile_mode = \"0640\"\ndir_mode = \"0755\"");
        assert_eq!(c.console("show", "Control_Listener"), "Enable_Authentication = \"true\"\nListen \"/tmp/2025\" { ... }\nListen \"127.0.0.1:2025\" { ... }");
        assert_eq!(
            c.console("unset", ""),
            "Refusing to unset the global scope."
        );
        assert_eq!(
            c.console("unset", "Binding b1"),
            "Scope 'Binding:b1:' has been unset."
        );
        assert!(c.scope(&[("Binding".into(), Some("b1".into()))]).is_none());
        assert_eq!(
            c.console("set", "x"),
            "usage: config set [scope …] option [=] value"
        );
    }

    #[test]
    fn showrecurse_and_locate() {
        let mut c = cfg();
        let out = c.console("showrecurse", "Control_Listener");
        assert_eq!(
            out,
            "Control_Listener {\n  Enable_Authentication = \"true\"\n  Listen \"/tmp/2025\" {\n    Enable_Authentication = \"false\"\n  }\n  Listen \"127.0.0.1:2025\" {\n  }\n}"
        );
        assert_eq!(
            c.console("locate", "listen 127"),
            "Listen \"127.0.0.1:2025\"\n  is at Control_Listener::Listen:127.0.0.1\\:2025:"
        );
        assert_eq!(c.console("locate", "Listen").lines().count(), 4);
        // The whole tree round-trips through the parser.
        let all = c.console("showrecurse", "");
        let again = Config::from_str("x", &all, Path::new(".")).unwrap();
        assert_eq!(again.root, c.root);
    }

    #[test]
    fn includes_and_readonly_override() {
        let dir = std::env::temp_dir().join(format!("ecconf-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(
            dir.join("webui-common.conf"),
            "Datasource \"ecdb\" { uri = \"stub\" dsn = a }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("ecdb.conf"),
            "Datasource \"ecdb\" { URI = \"real\" }\n",
        )
        .unwrap();
        std::fs::write(dir.join("d/b.conf"), "b = 2\n").unwrap();
        std::fs::write(dir.join("d/a.conf"), "a = 1\nb = 1\n").unwrap();
        std::fs::write(dir.join("d/.hidden"), "bad bad bad {").unwrap();
        let main = dir.join("eccluster.conf");
        std::fs::write(
            &main,
            "include \"webui-common.conf\"\ninclude d\nreadonly_include ecdb.conf\n",
        )
        .unwrap();
        let c = Config::load(&main, &[]).unwrap();
        let ds = c.root.child("datasource", Some("ecdb")).unwrap();
        assert_eq!(ds.get_str("uri"), Some("real"));
        assert_eq!(ds.get_str("dsn"), Some("a"));
        assert_eq!(c.root.get_str("b"), Some("2"));
        assert!(c
            .files
            .iter()
            .any(|(p, ro)| p.ends_with("ecdb.conf") && *ro));
        std::fs::write(&main, "x = 1\ninclude \"missing.conf\"\n").unwrap();
        let e = Config::load(&main, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:2:1: include 'missing.conf' not found",
                main.display()
            )),
            "{e}"
        );
        std::fs::write(&main, "include eccluster.conf\n").unwrap();
        assert!(Config::load(&main, &[]).unwrap_err().msg.contains("cycle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    mod roundtrip {
        use super::super::*;
        use proptest::prelude::*;

        fn word() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9:./_-]{1,10}"
        }

        fn name() -> impl Strategy<Value = String> {
            "[A-Za-z_][A-Za-z0-9_]{0,8}".prop_filter("keyword", |n| {
                let l = n.to_ascii_lowercase();
                l != "include" && l != "readonly_include"
            })
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                word().prop_map(Value::Word),
                "[ -~\n]{0,12}".prop_map(Value::Str)
            ];
            leaf.prop_recursive(2, 12, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                    proptest::collection::vec((word(), inner), 0..3).prop_map(Value::Dict),
                ]
            })
        }

        fn scope(depth: u32) -> BoxedStrategy<Scope> {
            let opts = proptest::collection::vec((name(), value()), 0..4);
            let inst = proptest::option::of("[ -~]{0,10}");
            if depth == 0 {
                (name(), inst, opts)
                    .prop_map(|(n, i, o)| build(n, i, o, Vec::new()))
                    .boxed()
            } else {
                (
                    name(),
                    inst,
                    opts,
                    proptest::collection::vec(scope(depth - 1), 0..3),
                )
                    .prop_map(|(n, i, o, c)| build(n, i, o, c))
                    .boxed()
            }
        }

        fn build(n: String, i: Option<String>, o: Vec<(String, Value)>, c: Vec<Scope>) -> Scope {
            let mut s = Scope {
                name: n,
                instance: i,
                ..Scope::default()
            };
            for (k, v) in o {
                s.set(&k, v);
            }
            for child in c {
                if s.child(&child.name, child.instance.as_deref()).is_none() {
                    s.children.push(child);
                }
            }
            s
        }

        proptest! {
            /// Any tree printed by `config showrecurse` parses back to the same tree.
            #[test]
            fn showrecurse_parses_back(root in scope(2)) {
                let mut c = Config { root: Scope { name: String::new(), instance: None, ..root }, ..Config::default() };
                let text = c.console("showrecurse", "");
                let again = Config::from_str("x", &text, Path::new(".")).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                prop_assert_eq!(again.root, c.root, "{}", text);
            }
        }
    }
}
