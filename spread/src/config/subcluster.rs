//! `# Subcluster: NAME = host` / `# Subcluster: NAME => host` comments (Momentum convention):
//! every `Spread_Segment` after such a comment, up to the next one, belongs to subcluster NAME
//! managed by `host`. Segments before any such comment belong to `default` without a manager.

use super::error::{ConfigErrorKind as K, ConfigWarning, Pos};
use super::lexer::Comment;
use super::{Subcluster, DEFAULT_SUBCLUSTER, MAX_SUBCLUSTER_NAME_LEN};

/// Builds the subcluster table while segments are parsed.
pub(crate) struct Tracker {
    comments: Vec<Comment>,
    next: usize,
    /// Index into `table` of the subcluster in force.
    current: Option<usize>,
    table: Vec<Subcluster>,
}

type Fail = (Pos, K);

impl Tracker {
    pub(crate) fn new(comments: Vec<Comment>) -> Self {
        Self {
            comments,
            next: 0,
            current: None,
            table: Vec::new(),
        }
    }

    /// Applies the comments before `pos`, then puts segment `index` into the subcluster in
    /// force.
    pub(crate) fn before_segment(&mut self, pos: Pos, index: usize) -> Result<(), Fail> {
        self.consume_until(Some(pos))?;
        let slot = match self.current {
            Some(i) => i,
            None => self.slot(DEFAULT_SUBCLUSTER, None),
        };
        if let Some(sc) = self.table.get_mut(slot) {
            sc.segments.push(index);
        }
        self.current = Some(slot);
        Ok(())
    }

    /// Checks the remaining comments and returns the table.
    pub(crate) fn finish(
        mut self,
        _segments: usize,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<Vec<Subcluster>, Fail> {
        self.consume_until(None)?;
        for sc in self.table.iter().filter(|s| s.segments.is_empty()) {
            warnings.push(ConfigWarning {
                pos: Pos::START,
                message: format!("subcluster '{}' has no Spread_Segment", sc.name),
            });
        }
        Ok(self.table)
    }

    fn consume_until(&mut self, limit: Option<Pos>) -> Result<(), Fail> {
        while let Some(c) = self.comments.get(self.next) {
            if limit.is_some_and(|l| c.pos >= l) {
                break;
            }
            self.next += 1;
            if let Some((name, manager)) = parse_comment(&c.text).map_err(|k| (c.pos, k))? {
                let pos = c.pos;
                let slot = self.slot(&name, None);
                let sc = self.table.get_mut(slot);
                if let Some(sc) = sc {
                    match &sc.manager {
                        Some(m) if *m != manager => {
                            return Err((
                                pos,
                                K::BadSubcluster(format!(
                                    "subcluster '{name}' declared again with another manager ('{manager}', was '{m}')"
                                )),
                            ))
                        }
                        _ => sc.manager = Some(manager),
                    }
                }
                self.current = Some(slot);
            }
        }
        Ok(())
    }

    /// Index of subcluster `name`, created if new.
    fn slot(&mut self, name: &str, manager: Option<String>) -> usize {
        if let Some(i) = self.table.iter().position(|s| s.name == name) {
            return i;
        }
        self.table.push(Subcluster {
            name: name.to_owned(),
            manager,
            segments: Vec::new(),
        });
        self.table.len() - 1
    }
}

/// Parses the text after `#`. `Ok(None)`: not a subcluster comment (does not start with
/// `Subcluster:`). `Ok(Some((name, manager)))` or an error for a malformed one.
pub(crate) fn parse_comment(text: &str) -> Result<Option<(String, String)>, K> {
    let t = text.trim_start();
    let Some(head) = t.get(..10) else {
        return Ok(None);
    };
    if !head.eq_ignore_ascii_case("subcluster") {
        return Ok(None);
    }
    let Some(rest) = t[10..].trim_start().strip_prefix(':') else {
        return Ok(None);
    };
    let bad = |s: String| K::BadSubcluster(s);
    let Some((name, manager)) = rest.split_once('=') else {
        return Err(bad(
            "expected 'Subcluster: NAME = manager' or 'Subcluster: NAME => manager'".to_owned(),
        ));
    };
    let name = name.trim();
    let manager = manager.strip_prefix('>').unwrap_or(manager).trim();
    if name.is_empty() {
        return Err(bad("missing subcluster name".to_owned()));
    }
    let name_ok = name.len() <= MAX_SUBCLUSTER_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(bad(format!(
            "bad subcluster name '{name}' (letters, digits, '_' and '-', at most {MAX_SUBCLUSTER_NAME_LEN} characters)"
        )));
    }
    if manager.is_empty() {
        return Err(bad(format!("missing manager host for subcluster '{name}'")));
    }
    let manager_ok = manager
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !manager_ok {
        return Err(bad(format!("bad manager host name '{manager}'")));
    }
    Ok(Some((name.to_owned(), manager.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings() {
        assert_eq!(
            parse_comment(" Subcluster: east = rh52mgr.vmnet24.example.com").unwrap(),
            Some(("east".into(), "rh52mgr.vmnet24.example.com".into()))
        );
        assert_eq!(
            parse_comment(" Subcluster: default => manager-0-1").unwrap(),
            Some(("default".into(), "manager-0-1".into()))
        );
        assert_eq!(parse_comment(" Subclusters are below").unwrap(), None);
        assert_eq!(parse_comment(" a comment").unwrap(), None);
        assert!(parse_comment(" Subcluster: two words = m").is_err());
        assert!(parse_comment(" Subcluster: east").is_err());
        assert!(parse_comment(" Subcluster: east =>").is_err());
        assert!(parse_comment(" Subcluster: east => a b").is_err());
    }
}
