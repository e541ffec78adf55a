//! Tokenizer of the ecelerity configuration language (fact sheet §4.1).
//!
//! Punctuation `{ } [ ] ( ) =`; quoted strings `"…"` / `'…'` where a backslash makes the next
//! character literal; comments `#…` and `/* … */` recognised only at a token boundary; a bare
//! word is a maximal run of characters that are not white space and not one of
//! `" ' = { } [ ] ( ) #` (so `/tmp/2025`, `digest:///x`, `10.0.0.0/8` are single words).

use std::fmt;

/// A 1-based line/column position in a source text (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number (characters), starting at 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `=`
    Eq,
    /// A bare word.
    Word(String),
    /// A quoted string, escapes removed.
    Str(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LBrace => f.write_str("'{'"),
            Self::RBrace => f.write_str("'}'"),
            Self::LBracket => f.write_str("'['"),
            Self::RBracket => f.write_str("']'"),
            Self::LParen => f.write_str("'('"),
            Self::RParen => f.write_str("')'"),
            Self::Eq => f.write_str("'='"),
            Self::Word(w) => write!(f, "word '{w}'"),
            Self::Str(s) => write!(f, "string \"{s}\""),
        }
    }
}

/// A token with the position of its first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What was read.
    pub tok: Tok,
    /// Where it starts.
    pub pos: Pos,
}

/// A lexical error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {msg}")]
pub struct LexError {
    /// Position of the offending construct.
    pub pos: Pos,
    /// One-line description.
    pub msg: String,
}

/// Largest source text the lexer accepts (bytes); bounds memory on hostile input.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn is_special(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '=' | '{' | '}' | '[' | ']' | '(' | ')' | '#'
    )
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    rest: &'a str,
    pos: Pos,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }
    fn peek2(&self) -> Option<char> {
        let mut it = self.rest.chars();
        it.next();
        it.next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }
}

/// Splits `src` into tokens.
pub fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let start = Pos { line: 1, col: 1 };
    if src.len() > MAX_SOURCE_BYTES {
        return Err(LexError {
            pos: start,
            msg: format!("input larger than {MAX_SOURCE_BYTES} bytes"),
        });
    }
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        rest: src,
        pos: start,
    };
    let mut out = Vec::new();
    while let Some(c) = cur.peek() {
        let pos = cur.pos;
        if c.is_whitespace() {
            cur.bump();
            continue;
        }
        if c == '#' {
            while let Some(c) = cur.bump() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        if c == '/' && cur.peek2() == Some('*') {
            cur.bump();
            cur.bump();
            let mut closed = false;
            while let Some(c) = cur.bump() {
                if c == '*' && cur.peek() == Some('/') {
                    cur.bump();
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(LexError {
                    pos,
                    msg: "unterminated /* comment".into(),
                });
            }
            continue;
        }
        let punct = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '=' => Some(Tok::Eq),
            _ => None,
        };
        if let Some(tok) = punct {
            cur.bump();
            out.push(Token { tok, pos });
            continue;
        }
        if c == '"' || c == '\'' {
            cur.bump();
            let mut s = String::new();
            let mut closed = false;
            while let Some(d) = cur.bump() {
                if d == '\\' {
                    match cur.bump() {
                        Some(e) => s.push(e),
                        None => break,
                    }
                } else if d == c {
                    closed = true;
                    break;
                } else {
                    s.push(d);
                }
            }
            if !closed {
                return Err(LexError {
                    pos,
                    msg: "unterminated quoted string".into(),
                });
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos,
            });
            continue;
        }
        let mut w = String::new();
        while let Some(d) = cur.peek() {
            if d.is_whitespace() || is_special(d) {
                break;
            }
            w.push(d);
            cur.bump();
        }
        out.push(Token {
            tok: Tok::Word(w),
            pos,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn bare_words_keep_slashes_and_colons() {
        assert_eq!(
            toks("Listen /tmp/2025 {} uri = digest:///opt/x :587 10.0.0.0/8 60/3"),
            vec![
                w("Listen"),
                w("/tmp/2025"),
                Tok::LBrace,
                Tok::RBrace,
                w("uri"),
                Tok::Eq,
                w("digest:///opt/x"),
                w(":587"),
                w("10.0.0.0/8"),
                w("60/3")
            ]
        );
    }

    #[test]
    fn comments() {
        assert_eq!(
            toks("Auto_Log = true # default is \"false\"\n/* a\n b */ x=y#z"),
            vec![w("Auto_Log"), Tok::Eq, w("true"), w("x"), Tok::Eq, w("y")]
        );
        // `/*` inside a word is not a comment.
        assert_eq!(toks("a/*b"), vec![w("a/*b")]);
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(
            toks(
                r#""a \"b\" \\ c" 'x y' "multi
line""#
            ),
            vec![
                Tok::Str("a \"b\" \\ c".into()),
                Tok::Str("x y".into()),
                Tok::Str("multi\nline".into())
            ]
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = lex("a = 1\n  b = \"open").unwrap_err();
        assert_eq!(e.to_string(), "2:7: unterminated quoted string");
        let e = lex("x /* never closed").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 3 });
    }
}
