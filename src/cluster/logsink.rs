//! Log aggregation, manager side (fact sheet §4.5 `as_logger`): with
//! `as_logger { base_dir = "/var/log/eccluster" }` in `eccluster.conf` the manager subscribes
//! to the nodes' logs ([`super::logship`]) and appends each node's lines to
//! `<base_dir>/<node>/<log>`. Sans-IO: the core queues [`LogWrite`]s; the shell appends them
//! and reports back with [`LogSink::written`], which yields the acknowledgement for the node.
//!
//! A stream is keyed by the sending connection (private group) and log: a restarted node
//! starts a new stream at offset 0, a re-shipped batch (after a re-subscription) is cut to
//! the part not yet written, and a batch beyond a gap is refused (the node re-ships it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::ecconf::Scope;

/// Default `as_logger { base_dir }`.
pub const DEFAULT_BASE_DIR: &str = "/var/log/eccluster";
/// Most streams tracked (node connections × logs).
pub const MAX_STREAMS: usize = 4096;

/// Text to append to a file, then acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite {
    /// Target file.
    pub path: PathBuf,
    /// Lines, each ending in a newline.
    pub text: String,
    /// Sending node connection (private group) — where the acknowledgement goes.
    pub sender: String,
    /// Log name.
    pub log: String,
    /// Stream offset after this text.
    pub end: u64,
}

/// One node log as the manager sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// Node name.
    pub node: String,
    /// Next expected stream offset (everything before it is queued or written).
    pub queued: u64,
    /// Written (and acknowledged) up to here.
    pub written: u64,
    /// Lines written.
    pub lines: u64,
    /// Batches refused because of a gap.
    pub gaps: u64,
}

/// Manager-side log aggregation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSink {
    base_dir: PathBuf,
    streams: BTreeMap<(String, String), Stream>,
    /// Bytes written per (node, log) file since start.
    file_bytes: BTreeMap<(String, String), u64>,
}

fn safe_component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if c.is_empty() || c.starts_with('.') {
        format!("_{c}")
    } else {
        c
    }
}

impl LogSink {
    /// From `as_logger { base_dir }`; `None` when `as_logger` is not configured.
    pub fn from_config(root: &Scope) -> Option<Self> {
        let a = root.child("as_logger", None)?;
        Some(Self::new(PathBuf::from(
            a.get_str("base_dir").unwrap_or(DEFAULT_BASE_DIR),
        )))
    }

    /// Aggregates under `base_dir`.
    pub fn new(base_dir: PathBuf) -> Self {
        Self {
            base_dir,
            streams: BTreeMap::new(),
            file_bytes: BTreeMap::new(),
        }
    }

    /// A delivered batch; returns the write to queue, if any part of it is new.
    pub fn on_batch(
        &mut self,
        sender: &str,
        node: &str,
        log: &str,
        offset: u64,
        lines: &[String],
    ) -> Option<LogWrite> {
        let key = (sender.to_string(), log.to_string());
        if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAMS {
            return None;
        }
        let st = self.streams.entry(key).or_insert_with(|| Stream {
            node: node.to_string(),
            ..Stream::default()
        });
        if offset > st.queued {
            st.gaps += 1;
            return None;
        }
        let mut pos = offset;
        let mut text = String::new();
        for l in lines {
            let next = pos + l.len() as u64 + 1;
            if pos >= st.queued {
                text.push_str(l);
                text.push('\n');
            }
            pos = next;
        }
        if text.is_empty() {
            return None;
        }
        st.queued = pos;
        Some(LogWrite {
            path: self
                .base_dir
                .join(safe_component(node))
                .join(safe_component(log)),
            text,
            sender: sender.to_string(),
            log: log.to_string(),
            end: pos,
        })
    }

    /// The shell appended `w`: returns the acknowledgement `(sender, log, offset)`.
    pub fn written(&mut self, w: &LogWrite) -> (String, String, u64) {
        if let Some(st) = self.streams.get_mut(&(w.sender.clone(), w.log.clone())) {
            st.written = st.written.max(w.end);
            st.lines += w.text.matches('\n').count() as u64;
            *self
                .file_bytes
                .entry((st.node.clone(), w.log.clone()))
                .or_default() += w.text.len() as u64;
        }
        (w.sender.clone(), w.log.clone(), w.end)
    }

    /// A node connection left: its streams end (their files stay).
    pub fn on_membership(&mut self, members: &[String]) {
        self.streams.retain(|(s, _), _| members.contains(s));
    }

    /// Streams by (sender, log).
    pub fn streams(&self) -> &BTreeMap<(String, String), Stream> {
        &self.streams
    }

    /// The manager's `show logs` (§3.1 shape): per node and log, the bytes written by this
    /// manager and the subscriber position of the live stream.
    pub fn show(&self, subscriber: &str) -> String {
        if self.file_bytes.is_empty() && self.streams.is_empty() {
            return format!(
                "No logs aggregated yet (base_dir {}).",
                self.base_dir.display()
            );
        }
        let mut out = String::new();
        let mut keys: Vec<(String, String)> = self.file_bytes.keys().cloned().collect();
        keys.extend(
            self.streams
                .iter()
                .map(|((_, l), s)| (s.node.clone(), l.clone())),
        );
        keys.sort();
        keys.dedup();
        for (node, log) in keys {
            let bytes = self.file_bytes.get(&(node.clone(), log.clone())).copied();
            let _ = writeln!(
                out,
                "{node} {log}\n\t[on disk: {} bytes]",
                bytes.unwrap_or(0)
            );
            for ((sender, _), st) in self
                .streams
                .iter()
                .filter(|((_, l), s)| *l == log && s.node == node)
            {
                let _ = writeln!(
                    out,
                    "\t[subscriber: '{subscriber}' @ {:08x}:{:08x}] {sender}, {} lines",
                    st.written >> 32,
                    st.written & 0xffff_ffff,
                    st.lines
                );
            }
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_written_once_in_order_and_gaps_refused() {
        let mut s = LogSink::new(PathBuf::from("/logs"));
        let l = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        let w = s
            .on_batch("#p#n1", "n1", "mainlog", 0, &l(&["a", "bb"]))
            .unwrap();
        assert_eq!(
            (w.path.display().to_string(), w.text.as_str(), w.end),
            ("/logs/n1/mainlog".to_string(), "a\nbb\n", 5)
        );
        // Re-shipped overlap: only the new part.
        let w2 = s
            .on_batch("#p#n1", "n1", "mainlog", 2, &l(&["bb", "c"]))
            .unwrap();
        assert_eq!((w2.text.as_str(), w2.end), ("c\n", 7));
        assert_eq!(s.on_batch("#p#n1", "n1", "mainlog", 0, &l(&["a"])), None);
        assert_eq!(s.on_batch("#p#n1", "n1", "mainlog", 99, &l(&["z"])), None);
        assert_eq!(s.written(&w), ("#p#n1".into(), "mainlog".into(), 5));
        s.written(&w2);
        let show = s.show("mgr");
        assert!(
            show.starts_with(
                "n1 mainlog\n\t[on disk: 7 bytes]\n\t[subscriber: 'mgr' @ 00000000:00000007]"
            ),
            "{show}"
        );
        // Hostile names cannot leave base_dir.
        let w3 = s
            .on_batch("#q#x", "../..", "/etc/passwd", 0, &l(&["x"]))
            .unwrap();
        assert_eq!(w3.path, PathBuf::from("/logs/_.._../_etc_passwd"));
        s.on_membership(&[]);
        assert!(s.streams().is_empty());
    }
}
