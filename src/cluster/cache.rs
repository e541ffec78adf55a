//! The manager's control cache (fact sheet §1.4, §8 item 4): node responses by command text,
//! bounded in entries, bytes and age, optionally persisted to the `Control_Cache` file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::proto::MAX_CHUNKS;

/// Bounds of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most commands kept (oldest evicted first).
    pub max_entries: usize,
    /// Most response bytes kept in total (oldest commands evicted first).
    pub max_bytes: usize,
    /// Entries older than this many seconds are dropped.
    pub max_age_secs: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 1000,
            max_bytes: 16 * 1024 * 1024,
            max_age_secs: 24 * 3600,
        }
    }
}

/// What the manager knows about one node's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// Request id the answer must carry (later answers to older requests are ignored).
    pub req_id: u64,
    /// The complete answer, once all chunks arrived.
    pub response: Option<String>,
    parts: Vec<Option<String>>,
}

/// All answers to one command text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the command was (last) sent, seconds.
    pub created: u64,
    /// Per node name.
    pub targets: BTreeMap<String, Target>,
}

impl Entry {
    fn bytes(&self, command: &str) -> usize {
        command.len()
            + self
                .targets
                .iter()
                .map(|(n, t)| n.len() + t.response.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

/// The bounded response store.
#[derive(Debug, Clone, Default)]
pub struct ControlCache {
    limits: CacheLimits,
    entries: BTreeMap<String, Entry>,
    dirty: bool,
}

/// Header line of the persisted form.
const MAGIC: &str = "mbus-control-cache 1";

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

fn unesc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => o.push('\n'),
                Some('t') => o.push('\t'),
                Some('r') => o.push('\r'),
                Some(x) => o.push(x),
                None => {}
            }
        } else {
            o.push(c);
        }
    }
    o
}

impl ControlCache {
    /// An empty cache with these limits.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Changes the limits (applied at the next update).
    pub fn set_limits(&mut self, limits: CacheLimits) {
        self.limits = limits;
    }

    /// Records that `command` was sent to `nodes` (name, request id). With `replace`, earlier
    /// answers from every node are forgotten (a new broadcast of the same text); otherwise
    /// only those of the named nodes.
    pub fn expect(&mut self, now: u64, command: &str, nodes: &[(String, u64)], replace: bool) {
        let e = self
            .entries
            .entry(command.to_string())
            .or_insert_with(|| Entry {
                created: now,
                targets: BTreeMap::new(),
            });
        e.created = now;
        if replace {
            e.targets.clear();
        }
        for (n, id) in nodes {
            e.targets.insert(
                n.clone(),
                Target {
                    req_id: *id,
                    response: None,
                    parts: Vec::new(),
                },
            );
        }
        self.dirty = true;
        self.enforce(now);
    }

    /// Stores one response chunk; returns true when this completed a node's answer.
    #[allow(clippy::too_many_arguments)]
    pub fn on_chunk(
        &mut self,
        now: u64,
        req_id: u64,
        command: &str,
        node: &str,
        chunk: u16,
        chunks: u16,
        data: &str,
    ) -> bool {
        let Some(t) = self
            .entries
            .get_mut(command)
            .and_then(|e| e.targets.get_mut(node))
        else {
            return false;
        };
        if t.req_id != req_id
            || t.response.is_some()
            || chunks == 0
            || chunks > MAX_CHUNKS
            || chunk >= chunks
        {
            return false;
        }
        if t.parts.len() != usize::from(chunks) {
            t.parts = vec![None; usize::from(chunks)];
        }
        // Reassembly is bounded by the cache's byte limit.
        let pending: usize = t.parts.iter().flatten().map(String::len).sum();
        if pending + data.len() > self.limits.max_bytes {
            t.parts.clear();
            t.response = Some(format!(
                "[response larger than the control cache limit of {} bytes]",
                self.limits.max_bytes
            ));
            self.dirty = true;
            return true;
        }
        t.parts[usize::from(chunk)] = Some(data.to_string());
        if t.parts.iter().all(Option::is_some) {
            t.response = Some(t.parts.drain(..).flatten().collect());
            self.dirty = true;
            self.enforce(now);
            return true;
        }
        false
    }

    /// The entry for `command` (after dropping expired entries).
    pub fn get(&mut self, now: u64, command: &str) -> Option<&Entry> {
        self.enforce(now);
        self.entries.get(command)
    }

    /// Forgets everything.
    pub fn flush(&mut self) {
        self.entries.clear();
        self.dirty = true;
    }

    /// Number of commands stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes accounted.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(c, e)| e.bytes(c)).sum()
    }

    /// Returns true once after every change (the shell then persists).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn enforce(&mut self, now: u64) {
        let max_age = self.limits.max_age_secs;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_sub(e.created) <= max_age);
        let mut total = self.bytes();
        while self.entries.len() > self.limits.max_entries || total > self.limits.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(c, e)| (e.created, (*c).clone()))
                .map(|(c, _)| c.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                total -= e.bytes(&oldest);
            }
        }
        if self.entries.len() != before {
            self.dirty = true;
        }
    }

    /// The persisted form.
    pub fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\n");
        for (c, e) in &self.entries {
            let _ = writeln!(s, "E\t{}\t{}", e.created, esc(c));
            for (n, t) in &self.entries[c].targets {
                match &t.response {
                    Some(r) => {
                        let _ = writeln!(s, "T\t{}\t{}\t1\t{}", esc(n), t.req_id, esc(r));
                    }
                    None => {
                        let _ = writeln!(s, "T\t{}\t{}\t0\t", esc(n), t.req_id);
                    }
                }
            }
        }
        s
    }

    /// Loads a persisted form; malformed lines are skipped, limits applied at `now`.
    pub fn decode(&mut self, now: u64, text: &str) -> Result<(), String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not a control cache file".into());
        }
        let mut current: Option<String> = None;
        for line in lines {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["E", created, cmd] => {
                    let Ok(created) = created.parse() else {
                        continue;
                    };
                    let cmd = unesc(cmd);
                    self.entries.insert(
                        cmd.clone(),
                        Entry {
                            created,
                            targets: BTreeMap::new(),
                        },
                    );
                    current = Some(cmd);
                }
                ["T", node, id, answered, resp] => {
                    let (Some(c), Ok(req_id)) = (current.as_ref(), id.parse()) else {
                        continue;
                    };
                    let response = (*answered == "1").then(|| unesc(resp));
                    if let Some(e) = self.entries.get_mut(c) {
                        e.targets.insert(
                            unesc(node),
                            Target {
                                req_id,
                                response,
                                parts: Vec::new(),
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        self.enforce(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_chunks_and_stale_ids() {
        let mut c = ControlCache::new(CacheLimits::default());
        c.expect(10, "version", &[("n1".into(), 1), ("n2".into(), 1)], true);
        assert!(!c.on_chunk(10, 1, "version", "n1", 0, 2, "ab"));
        assert!(c.on_chunk(10, 1, "version", "n1", 1, 2, "cd"));
        assert!(!c.on_chunk(10, 9, "version", "n2", 0, 1, "stale"));
        assert!(!c.on_chunk(10, 1, "other", "n2", 0, 1, "x"));
        let e = c.get(11, "version").unwrap();
        assert_eq!(e.targets["n1"].response.as_deref(), Some("abcd"));
        assert_eq!(e.targets["n2"].response, None);
        // Unicast to n1 again forgets only n1's answer.
        c.expect(12, "version", &[("n1".into(), 2)], false);
        assert_eq!(c.get(12, "version").unwrap().targets.len(), 2);
        assert_eq!(c.get(12, "version").unwrap().targets["n1"].response, None);
    }

    #[test]
    fn bounded_by_entries_bytes_and_age() {
        let mut c = ControlCache::new(CacheLimits {
            max_entries: 2,
            max_bytes: 100,
            max_age_secs: 50,
        });
        for (i, cmd) in ["a", "b", "c"].iter().enumerate() {
            c.expect(i as u64, cmd, &[("n".into(), 1)], true);
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(3, "a").is_none());
        c.on_chunk(3, 1, "c", "n", 0, 1, &"x".repeat(97));
        assert!(c.bytes() <= 100);
        assert!(c.get(3, "b").is_none(), "b evicted for bytes");
        assert!(c.get(100, "c").is_none(), "expired");
        c.expect(200, "big", &[("n".into(), 1)], true);
        assert!(!c.on_chunk(200, 1, "big", "n", 0, 3, &"y".repeat(60)));
        assert!(c.on_chunk(200, 1, "big", "n", 1, 3, &"y".repeat(60)));
        let r = c.get(200, "big").unwrap().targets["n"]
            .response
            .clone()
            .unwrap();
        assert!(r.starts_with("[response larger than"), "{r}");
        c.flush();
        assert!(c.is_empty());
    }

    #[test]
    fn persistence_roundtrip() {
        let mut c = ControlCache::new(CacheLimits::default());
        c.expect(
            5,
            "config get \"a\tb\"",
            &[("n1".into(), 3), ("n2".into(), 3)],
            true,
        );
        c.on_chunk(
            5,
            3,
            "config get \"a\tb\"",
            "n1",
            0,
            1,
            "line1\nline2 \\ end",
        );
        let text = c.encode();
        let mut d = ControlCache::new(CacheLimits::default());
        d.decode(6, &text).unwrap();
        assert_eq!(d.encode(), text);
        assert!(d.decode(6, "garbage").is_err());
    }
}
