//! Grammar of the ecelerity configuration language (fact sheet §4.2) → syntax tree.
//!
//! ```text
//! file    = item* EOF
//! item    = include | scope | option
//! include = ("include" | "readonly_include") value
//! scope   = NAME [["="] instance] "{" item* "}"
//! option  = NAME ["="] value
//! value   = WORD | STRING | "(" value* ")" | "[" (NAME ["="] value)* "]"
//! ```

use super::lexer::{lex, Pos, Tok, Token};
use super::value::Value;

/// One statement of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `Name [=] value`.
    Opt {
        /// Option name as spelled.
        name: String,
        /// Its value.
        value: Value,
        /// Where the name starts.
        pos: Pos,
    },
    /// `Name [instance] { … }`.
    Scope {
        /// Scope name as spelled.
        name: String,
        /// Instance name for named scopes.
        instance: Option<String>,
        /// Statements inside the braces.
        body: Vec<Item>,
        /// Where the name starts.
        pos: Pos,
    },
    /// `include path` / `readonly_include path`.
    Include {
        /// The path or URI as written.
        path: String,
        /// `readonly_include`.
        readonly: bool,
        /// Where the keyword starts.
        pos: Pos,
    },
}

/// A syntax error: where and what (file name added by the loader).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {msg}")]
pub struct SyntaxError {
    /// Position of the offending token.
    pub pos: Pos,
    /// One-line description.
    pub msg: String,
}

/// Deepest nesting of scopes, lists and dictionaries accepted.
pub const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<Token>,
    i: usize,
    end: Pos,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }
    fn pos(&self) -> Pos {
        self.toks.get(self.i).map_or(self.end, |t| t.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            pos: self.pos(),
            msg: msg.into(),
        })
    }
    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "end of input".to_string(), ToString::to_string)
    }

    fn items(&mut self, depth: usize, in_scope: bool) -> Result<Vec<Item>, SyntaxError> {
        if depth > MAX_DEPTH {
            return self.err("scopes nested too deeply");
        }
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None if in_scope => return self.err("missing '}' before end of input"),
                None => return Ok(items),
                Some(Tok::RBrace) if in_scope => return Ok(items),
                Some(Tok::Word(_) | Tok::Str(_)) => items.push(self.item(depth)?),
                Some(_) => {
                    return self.err(format!(
                        "expected an option or scope name, found {}",
                        self.found()
                    ))
                }
            }
        }
    }

    fn item(&mut self, depth: usize) -> Result<Item, SyntaxError> {
        let Some(Token { tok, pos }) = self.next() else {
            return self.err("unexpected end of input");
        };
        let name = match tok {
            Tok::Word(w) | Tok::Str(w) => w,
            _ => return self.err("expected a name"),
        };
        let lname = name.to_ascii_lowercase();
        if lname == "include" || lname == "readonly_include" {
            if self.peek() == Some(&Tok::Eq) {
                self.next();
            }
            let path = match self.next().map(|t| t.tok) {
                Some(Tok::Word(p) | Tok::Str(p)) => p,
                _ => {
                    return Err(SyntaxError {
                        pos,
                        msg: format!("{name} needs a path"),
                    })
                }
            };
            return Ok(Item::Include {
                path,
                readonly: lname == "readonly_include",
                pos,
            });
        }
        if self.peek() == Some(&Tok::LBrace) {
            let body = self.scope_body(depth)?;
            return Ok(Item::Scope {
                name,
                instance: None,
                body,
                pos,
            });
        }
        if self.peek() == Some(&Tok::Eq) {
            self.next();
        }
        if self.peek().is_none() || self.peek() == Some(&Tok::RBrace) {
            return Err(SyntaxError {
                pos,
                msg: format!("option '{name}' has no value"),
            });
        }
        let value = self.value(depth + 1)?;
        if self.peek() == Some(&Tok::LBrace) {
            let instance = match value {
                Value::Word(s) | Value::Str(s) => s,
                _ => return self.err(format!("scope '{name}' instance must be a word or string")),
            };
            let body = self.scope_body(depth)?;
            return Ok(Item::Scope {
                name,
                instance: Some(instance),
                body,
                pos,
            });
        }
        Ok(Item::Opt { name, value, pos })
    }

    fn scope_body(&mut self, depth: usize) -> Result<Vec<Item>, SyntaxError> {
        self.next(); // '{'
        let body = self.items(depth + 1, true)?;
        self.next(); // '}'
        Ok(body)
    }

    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        if depth > MAX_DEPTH {
            return self.err("values nested too deeply");
        }
        match self.peek() {
            Some(Tok::Word(_) | Tok::Str(_)) => match self.next().map(|t| t.tok) {
                Some(Tok::Word(w)) => Ok(Value::Word(w)),
                Some(Tok::Str(s)) => Ok(Value::Str(s)),
                _ => self.err("expected a value"),
            },
            Some(Tok::LParen) => {
                let open = self.pos();
                self.next();
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(Tok::RParen) => {
                            self.next();
                            return Ok(Value::List(items));
                        }
                        None => {
                            return Err(SyntaxError {
                                pos: open,
                                msg: "unclosed '('".into(),
                            })
                        }
                        Some(_) => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(Tok::LBracket) => {
                let open = self.pos();
                self.next();
                let mut entries = Vec::new();
                loop {
                    match self.next().map(|t| t.tok) {
                        Some(Tok::RBracket) => return Ok(Value::Dict(entries)),
                        Some(Tok::Word(k) | Tok::Str(k)) => {
                            if self.peek() == Some(&Tok::Eq) {
                                self.next();
                            }
                            if matches!(self.peek(), None | Some(Tok::RBracket)) {
                                return self.err(format!("dictionary key '{k}' has no value"));
                            }
                            entries.push((k, self.value(depth + 1)?));
                        }
                        None => {
                            return Err(SyntaxError {
                                pos: open,
                                msg: "unclosed '['".into(),
                            })
                        }
                        Some(t) => {
                            self.i -= 1;
                            return self.err(format!("expected a dictionary key, found {t}"));
                        }
                    }
                }
            }
            _ => self.err(format!("expected a value, found {}", self.found())),
        }
    }
}

fn end_pos(src: &str) -> Pos {
    let line = u32::try_from(src.matches('\n').count() + 1).unwrap_or(u32::MAX);
    let last = src.rsplit('\n').next().unwrap_or("");
    let col = u32::try_from(last.chars().count() + 1).unwrap_or(u32::MAX);
    Pos { line, col }
}

/// Parses one source text (no include resolution) into its statements.
pub fn parse(src: &str) -> Result<Vec<Item>, SyntaxError> {
    let toks = lex(src).map_err(|e| SyntaxError {
        pos: e.pos,
        msg: e.msg,
    })?;
    let mut p = Parser {
        toks,
        i: 0,
        end: end_pos(src),
    };
    let items = p.items(0, false)?;
    if p.i < p.toks.len() {
        return p.err(format!("unexpected {}", p.found()));
    }
    Ok(items)
}

/// Parses a single value in file syntax (used by `config set`).
pub fn parse_value(src: &str) -> Result<Value, SyntaxError> {
    let toks = lex(src).map_err(|e| SyntaxError {
        pos: e.pos,
        msg: e.msg,
    })?;
    let mut p = Parser {
        toks,
        i: 0,
        end: end_pos(src),
    };
    let v = p.value(0)?;
    if p.i < p.toks.len() {
        return p.err(format!("unexpected {} after the value", p.found()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_options_lists_dicts() {
        let src = r#"
Security { User = "ecuser"  Group = "ecuser" }
Control_Listener {
  AuthDigestMD5Parameters = [ uri = "ecauth://" ]
  AuthDigestMD5Parameters [ uri "x" ]
  Listen "/tmp/2025"      { Enable_Authentication = "false" }
  Listen 127.0.0.1:2025 { }
}
ec_logger "ec_logger"
{
  heartbeat = "0"
}
Relay_Hosts = ( 127.0.0.0/8 10.0.0.0/24 )
Debug_Flags { ERROR = (TIME FD ALL) }
include "webui-common.conf"
readonly_include /opt/msys/etc/installer/eccmgr.d/ecdb.conf
"#;
        let items = parse(src).unwrap();
        assert_eq!(items.len(), 7);
        let Item::Scope { name, body, .. } = &items[1] else {
            panic!("scope expected")
        };
        assert_eq!(name, "Control_Listener");
        assert_eq!(body.len(), 4);
        let Item::Scope { instance, .. } = &body[3] else {
            panic!("scope expected")
        };
        assert_eq!(instance.as_deref(), Some("127.0.0.1:2025"));
        let Item::Scope { instance, .. } = &items[2] else {
            panic!("scope expected")
        };
        assert_eq!(instance.as_deref(), Some("ec_logger"));
        let Item::Opt { value, .. } = &items[3] else {
            panic!("option expected")
        };
        assert_eq!(
            value,
            &Value::List(vec![
                Value::Word("127.0.0.0/8".into()),
                Value::Word("10.0.0.0/24".into())
            ])
        );
        assert!(matches!(&items[6], Item::Include { readonly: true, .. }));
    }

    #[test]
    fn errors_are_one_line_with_position() {
        assert_eq!(
            parse("a {\n b = 1\n").unwrap_err().to_string(),
            "3:1: missing '}' before end of input"
        );
        assert_eq!(
            parse("x = }").unwrap_err().to_string(),
            "1:1: option 'x' has no value"
        );
        assert_eq!(
            parse("x = (1 2").unwrap_err().to_string(),
            "1:5: unclosed '('"
        );
        assert_eq!(
            parse("}").unwrap_err().to_string(),
            "1:1: expected an option or scope name, found '}'"
        );
        assert_eq!(
            parse("d = [ = ]").unwrap_err().to_string(),
            "1:7: expected a dictionary key, found '='"
        );
        let deep = "a = ".to_string() + &"(".repeat(200);
        assert!(parse(&deep).unwrap_err().msg.contains("too deeply"));
    }
}
