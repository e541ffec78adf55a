//! Configuration transactions per console session (fact sheet §4.7): `config begin [from
//! scratch]`, `config replay`, `config commit`, `config rollback`, and `config reload` refused
//! while one is open.
//!
//! A transaction works on a private copy of the configuration (its `get`/`show`/`set`/`unset`
//! see that copy). `commit` is a three-way merge against the snapshot taken at `begin`: every
//! option the transaction changed must still have its snapshot value in the live
//! configuration (or already the transaction's value), otherwise another session committed
//! first and this commit fails with one line, leaving both the live configuration and the
//! transaction untouched. `begin from scratch` replaces the whole tree on commit and so
//! conflicts with any change made since it began.

use std::collections::{BTreeMap, BTreeSet};

use super::tree::{Config, OptEntry, Scope, Seg};

/// Most transactions open at once (all sessions together).
pub const MAX_OPEN: usize = 64;
/// Most `set`/`unset` commands one transaction records.
pub const MAX_CHANGES: usize = 10_000;

#[derive(Debug)]
struct Txn {
    base: Scope,
    mine: Config,
    from_scratch: bool,
    log: Vec<String>,
}

/// Open transactions by session key (a console session id, or `bus:<sender>` for commands
/// relayed by a manager).
#[derive(Debug, Default)]
pub struct Transactions {
    open: BTreeMap<String, Txn>,
}

/// Path key of an option: lower-cased scope names with their instances, then the option.
type Key = (Vec<(String, Option<String>)>, String);

fn flatten(scope: &Scope, path: &mut Vec<Seg>, out: &mut BTreeMap<Key, (Vec<Seg>, OptEntry)>) {
    for o in &scope.options {
        let key: Vec<(String, Option<String>)> = path
            .iter()
            .map(|(n, i)| (n.to_ascii_lowercase(), i.clone()))
            .collect();
        out.insert(
            (key, o.name.to_ascii_lowercase()),
            (path.clone(), o.clone()),
        );
    }
    for c in &scope.children {
        path.push((c.name.clone(), c.instance.clone()));
        flatten(c, path, out);
        path.pop();
    }
}

fn flat(scope: &Scope) -> BTreeMap<Key, (Vec<Seg>, OptEntry)> {
    let mut out = BTreeMap::new();
    flatten(scope, &mut Vec::new(), &mut out);
    out
}

fn scopes(scope: &Scope, path: &mut Vec<Seg>, out: &mut BTreeSet<Vec<Seg>>) {
    for c in &scope.children {
        path.push((c.name.to_ascii_lowercase(), c.instance.clone()));
        out.insert(path.clone());
        scopes(c, path, out);
        path.pop();
    }
}

fn value_at(m: &BTreeMap<Key, (Vec<Seg>, OptEntry)>, k: &Key) -> Option<super::Value> {
    m.get(k).map(|(_, o)| o.value.clone())
}

fn remove_scope(root: &mut Scope, path: &[Seg]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut s = root;
    for (n, i) in parent {
        match s
            .children
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(n) && c.instance == *i)
        {
            Some(c) => s = c,
            None => return,
        }
    }
    s.children
        .retain(|c| !(c.name.eq_ignore_ascii_case(&last.0) && c.instance == last.1));
}

fn set_option(root: &mut Scope, path: &[Seg], entry: Option<&OptEntry>, name: &str) {
    let mut s = root;
    for (n, i) in path {
        if entry.is_none() && s.child(n, i.as_deref()).is_none() {
            return;
        }
        s = s.child_mut_or_insert(n, i.as_deref());
    }
    match entry {
        Some(e) => s.set(&e.name, e.value.clone()),
        None => s.options.retain(|o| !o.name.eq_ignore_ascii_case(name)),
    }
}

impl Transactions {
    /// True if `session` has an open transaction.
    pub fn is_open(&self, session: &str) -> bool {
        self.open.contains_key(session)
    }

    /// Forgets `session`'s transaction (its connection closed): nothing is applied.
    pub fn close(&mut self, session: &str) {
        self.open.remove(session);
    }

    /// Runs `config SUB ARGS` for `session` if transactions concern it: the transaction
    /// commands themselves, `reload` inside a transaction (refused), and every other
    /// sub-command while a transaction is open (run on the private copy). `None`: the caller
    /// runs the command on the live configuration as usual.
    pub fn console(
        &mut self,
        live: &mut Config,
        session: &str,
        sub: &str,
        args: &str,
    ) -> Option<String> {
        let args_t = args.trim();
        match sub {
            "begin" => Some(self.begin(live, session, args_t)),
            "commit" => Some(self.commit(live, session)),
            "rollback" => Some(match self.open.remove(session) {
                Some(t) => format!(
                    "Transaction rolled back ({} change(s) discarded).",
                    t.log.len()
                ),
                None => NO_TXN.into(),
            }),
            "replay" => Some(match self.open.get(session) {
                Some(t) if t.log.is_empty() => "(no changes in this transaction)".into(),
                Some(t) => t.log.join("\n"),
                None => NO_TXN.into(),
            }),
            "reload" if self.is_open(session) => Some(
                "config reload is not permitted inside a transaction; use 'config commit' or 'config rollback' first."
                    .into(),
            ),
            _ => {
                let t = self.open.get_mut(session)?;
                let out = t.mine.console(sub, args);
                let ok = match sub {
                    "set" => !out.starts_with("usage:") && !out.starts_with("Invalid"),
                    "unset" => out.contains("has been unset"),
                    _ => false,
                };
                if ok {
                    if t.log.len() >= MAX_CHANGES {
                        return Some(format!(
                            "Transaction full ({MAX_CHANGES} changes); commit or roll back."
                        ));
                    }
                    t.log.push(format!("config {sub} {args_t}"));
                }
                Some(out)
            }
        }
    }

    fn begin(&mut self, live: &Config, session: &str, args: &str) -> String {
        let words: Vec<String> = args
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let from_scratch = match words.as_slice() {
            [] => false,
            [a, b] if a == "from" && b == "scratch" => true,
            _ => return "usage: config begin [from scratch]".into(),
        };
        if self.is_open(session) {
            return "A transaction is already open in this session; use 'config commit' or 'config rollback' first.".into();
        }
        if self.open.len() >= MAX_OPEN {
            return format!("Too many open transactions ({MAX_OPEN}); try again later.");
        }
        let mut mine = live.clone();
        if from_scratch {
            mine.root = Scope::default();
        }
        self.open.insert(
            session.to_string(),
            Txn {
                base: live.root.clone(),
                mine,
                from_scratch,
                log: Vec::new(),
            },
        );
        if from_scratch {
            "Transaction started from scratch.".into()
        } else {
            "Transaction started.".into()
        }
    }

    fn commit(&mut self, live: &mut Config, session: &str) -> String {
        let Some(t) = self.open.get(session) else {
            return NO_TXN.into();
        };
        if t.from_scratch {
            if live.root != t.base {
                return "Commit failed: the configuration was changed by another session after 'config begin from scratch'; the transaction is still open (config replay / config rollback).".into();
            }
            let n = t.log.len();
            live.root = t.mine.root.clone();
            self.open.remove(session);
            return format!("Transaction committed ({n} change(s)).");
        }
        let (b, m, l) = (flat(&t.base), flat(&t.mine.root), flat(&live.root));
        let keys: BTreeSet<&Key> = b.keys().chain(m.keys()).collect();
        let changed: Vec<&Key> = keys
            .into_iter()
            .filter(|k| value_at(&b, k) != value_at(&m, k))
            .collect();
        for k in &changed {
            let (lv, bv, mv) = (value_at(&l, k), value_at(&b, k), value_at(&m, k));
            if lv != bv && lv != mv {
                let (path, entry) = m
                    .get(*k)
                    .or_else(|| b.get(*k))
                    .or_else(|| l.get(*k))
                    .map_or_else(
                        || (Vec::new(), k.1.clone()),
                        |(p, o)| (p.clone(), o.name.clone()),
                    );
                return format!(
                    "Commit failed: {entry} in scope '{}' was changed by another session after 'config begin'; the transaction is still open (config replay / config rollback).",
                    Config::path_string(&path)
                );
            }
        }
        // Scopes the transaction removed: refuse if others put something new in them.
        let (mut bs, mut ms) = (BTreeSet::new(), BTreeSet::new());
        scopes(&t.base, &mut Vec::new(), &mut bs);
        scopes(&t.mine.root, &mut Vec::new(), &mut ms);
        let removed: Vec<&Vec<Seg>> = bs.difference(&ms).collect();
        for r in &removed {
            if let Some((k, (p, _))) = l
                .iter()
                .find(|(k, _)| k.0.starts_with(r) && !b.contains_key(*k))
            {
                return format!(
                    "Commit failed: {} in scope '{}' was added by another session after 'config begin'; the transaction is still open (config replay / config rollback).",
                    k.1,
                    Config::path_string(p)
                );
            }
        }
        let n = t.log.len();
        for r in removed {
            remove_scope(&mut live.root, r);
        }
        for k in changed {
            match m.get(k) {
                Some((path, e)) => set_option(&mut live.root, path, Some(e), &e.name),
                None => {
                    if let Some((path, e)) = b.get(k) {
                        set_option(&mut live.root, path, None, &e.name);
                    }
                }
            }
        }
        self.open.remove(session);
        format!("Transaction committed ({n} change(s)).")
    }
}

const NO_TXN: &str = "No transaction is open in this session.";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn live() -> Config {
        Config::from_str(
            "t.conf",
            "Message_Expiration = 86400\nLogs { Control_Cache_Max_Entries = 5 }\nKeep = 1\n",
            Path::new("."),
        )
        .unwrap()
    }

    fn run(t: &mut Transactions, c: &mut Config, s: &str, line: &str) -> String {
        let (sub, args) = line.split_once(' ').unwrap_or((line, ""));
        t.console(c, s, sub, args)
            .unwrap_or_else(|| c.console(sub, args))
    }

    #[test]
    fn changes_stay_private_until_commit() {
        let (mut t, mut c) = (Transactions::default(), live());
        assert_eq!(run(&mut t, &mut c, "a", "begin"), "Transaction started.");
        assert_eq!(
            run(&mut t, &mut c, "a", "set Message_Expiration 10"),
            "Message_Expiration = 10"
        );
        assert_eq!(
            run(&mut t, &mut c, "a", "get Message_Expiration"),
            "Message_Expiration = 10"
        );
        assert_eq!(
            run(&mut t, &mut c, "b", "get Message_Expiration"),
            "Message_Expiration = 86400"
        );
        run(&mut t, &mut c, "a", "unset Logs");
        assert_eq!(
            run(&mut t, &mut c, "a", "replay"),
            "config set Message_Expiration 10\nconfig unset Logs"
        );
        assert!(run(&mut t, &mut c, "a", "reload").starts_with("config reload is not permitted"));
        assert_eq!(t.console(&mut c, "b", "reload", ""), None);
        assert_eq!(
            run(&mut t, &mut c, "a", "commit"),
            "Transaction committed (2 change(s))."
        );
        assert_eq!(
            c.console("get", "Message_Expiration"),
            "Message_Expiration = 10"
        );
        assert!(c.root.child("Logs", None).is_none());
        assert_eq!(run(&mut t, &mut c, "a", "commit"), NO_TXN);
    }

    #[test]
    fn first_committer_wins_and_later_conflicting_commit_fails() {
        let (mut t, mut c) = (Transactions::default(), live());
        run(&mut t, &mut c, "a", "begin");
        run(&mut t, &mut c, "b", "begin");
        run(&mut t, &mut c, "a", "set Message_Expiration 10");
        run(&mut t, &mut c, "b", "set Message_Expiration 20");
        run(&mut t, &mut c, "b", "set Other 3");
        assert_eq!(
            run(&mut t, &mut c, "a", "commit"),
            "Transaction committed (1 change(s))."
        );
        let r = run(&mut t, &mut c, "b", "commit");
        assert_eq!(
            r,
            "Commit failed: Message_Expiration in scope '' was changed by another session after 'config begin'; the transaction is still open (config replay / config rollback)."
        );
        assert_eq!(
            c.console("get", "Other"),
            "Option 'Other' is not set in scope ''."
        );
        assert!(t.is_open("b"));
        assert_eq!(
            run(&mut t, &mut c, "b", "rollback"),
            "Transaction rolled back (2 change(s) discarded)."
        );
        assert_eq!(
            c.console("get", "Message_Expiration"),
            "Message_Expiration = 10"
        );
    }

    #[test]
    fn disjoint_transactions_both_commit() {
        let (mut t, mut c) = (Transactions::default(), live());
        run(&mut t, &mut c, "a", "begin");
        run(&mut t, &mut c, "b", "begin");
        run(&mut t, &mut c, "a", "set Logs Control_Cache_Max_Entries 7");
        run(&mut t, &mut c, "b", "set Message_Expiration 20");
        assert!(run(&mut t, &mut c, "a", "commit").starts_with("Transaction committed"));
        assert!(run(&mut t, &mut c, "b", "commit").starts_with("Transaction committed"));
        assert_eq!(
            c.console("get", "Logs Control_Cache_Max_Entries"),
            "\tControl_Cache_Max_Entries = 7"
        );
        assert_eq!(
            c.console("get", "Message_Expiration"),
            "Message_Expiration = 20"
        );
    }

    #[test]
    fn from_scratch_replaces_everything_unless_someone_changed_it() {
        let (mut t, mut c) = (Transactions::default(), live());
        assert_eq!(
            run(&mut t, &mut c, "a", "begin from scratch"),
            "Transaction started from scratch."
        );
        run(&mut t, &mut c, "a", "set Only 1");
        assert!(run(&mut t, &mut c, "a", "commit").starts_with("Transaction committed"));
        assert_eq!(c.console("showrecurse", ""), "Only = 1");
        run(&mut t, &mut c, "a", "begin from scratch");
        c.console("set", "Other 2");
        assert!(run(&mut t, &mut c, "a", "commit").starts_with("Commit failed"));
        assert_eq!(
            run(&mut t, &mut c, "a", "begin"),
            "A transaction is already open in this session; use 'config commit' or 'config rollback' first."
        );
        assert_eq!(
            run(&mut t, &mut c, "x", "begin now"),
            "usage: config begin [from scratch]"
        );
        t.close("a");
        assert!(!t.is_open("a"));
    }
}
