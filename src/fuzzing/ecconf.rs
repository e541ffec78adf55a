//! Target for the ecelerity configuration language (`crate::ecconf`).

use crate::ecconf::parser::{parse, Item};
use crate::ecconf::tree::Config;
use crate::ecconf::value::{name_token, quote};
use std::fmt::Write as _;

/// Longest configuration text rendered back and re-parsed (keeps each run fast).
const MAX_CONF_TEXT: usize = 64 * 1024;

/// `eccluster.conf` / ecelerity configuration text (input: the file's bytes, UTF-8).
///
/// Parses it; if that succeeds, renders the syntax tree back to file syntax, parses the rendering
/// and asserts the same tree comes out (positions aside). Files without `include` are also
/// merged into a [`Config`], and the `config showrecurse` rendering of the whole tree must parse
/// again. Bounded memory: the number of statements never exceeds the input length.
pub fn eccluster_conf(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if src.len() > MAX_CONF_TEXT {
        return;
    }
    let Ok(items) = parse(src) else {
        return;
    };
    assert!(
        count_items(&items) <= src.len(),
        "more statements than input bytes"
    );
    let mut text = String::new();
    render_items(&items, 0, &mut text);
    let again =
        parse(&text).unwrap_or_else(|e| panic!("rendering does not parse again ({e}):\n{text}"));
    assert_eq!(
        strip(items.clone()),
        strip(again),
        "rendering changed the tree:\n{text}"
    );

    if !has_include(&items) {
        let mut cfg = Config::from_str("fuzz.conf", src, std::path::Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("parsed text failed to merge: {e}"));
        let shown = cfg.console("showrecurse", "");
        if let Err(e) = parse(&shown) {
            panic!("`config showrecurse` output does not parse ({e}):\n{shown}");
        }
    }
}

fn count_items(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| match i {
            Item::Scope { body, .. } => 1 + count_items(body),
            _ => 1,
        })
        .sum()
}

fn has_include(items: &[Item]) -> bool {
    items.iter().any(|i| match i {
        Item::Include { .. } => true,
        Item::Scope { body, .. } => has_include(body),
        Item::Opt { .. } => false,
    })
}

/// The tree with every position zeroed, for comparisons.
fn strip(items: Vec<Item>) -> Vec<Item> {
    items
        .into_iter()
        .map(|i| match i {
            Item::Opt { name, value, .. } => Item::Opt {
                name,
                value,
                pos: Default::default(),
            },
            Item::Scope {
                name,
                instance,
                body,
                ..
            } => Item::Scope {
                name,
                instance,
                body: strip(body),
                pos: Default::default(),
            },
            Item::Include { path, readonly, .. } => Item::Include {
                path,
                readonly,
                pos: Default::default(),
            },
        })
        .collect()
}

/// Writes statements in file syntax: options as `Name = value`, scopes with a quoted instance.
fn render_items(items: &[Item], depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    for item in items {
        match item {
            Item::Opt { name, value, .. } => {
                let _ = writeln!(out, "{indent}{} = {}", name_token(name), value.inline());
            }
            Item::Scope {
                name,
                instance,
                body,
                ..
            } => {
                match instance {
                    Some(i) => {
                        let _ = writeln!(out, "{indent}{} {} {{", name_token(name), quote(i));
                    }
                    None => {
                        let _ = writeln!(out, "{indent}{} {{", name_token(name));
                    }
                }
                render_items(body, depth + 1, out);
                let _ = writeln!(out, "{indent}}}");
            }
            Item::Include { path, readonly, .. } => {
                let kw = if *readonly {
                    "readonly_include"
                } else {
                    "include"
                };
                let _ = writeln!(out, "{indent}{kw} {}", quote(path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_round_trips_a_sample() {
        let src =
            "Logs { logfile = \"/a b\" l = ( x \"y z\" ) d = [ k = v ] }\ninclude \"x.conf\"\n";
        eccluster_conf(src.as_bytes());
        let mut text = String::new();
        render_items(&parse(src).unwrap(), 0, &mut text);
        assert_eq!(
            text,
            "Logs {\n  logfile = \"/a b\"\n  l = ( x \"y z\" )\n  d = [ k = v ]\n}\ninclude \"x.conf\"\n"
        );
    }
}
