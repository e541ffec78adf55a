//! Log aggregation, node side (fact sheet §4.5 `as_logger`, §4.6 `logs`, §3.1 `cluster show
//! logs`): the node's logs (`cluster { logs = [ mainlog = "/path" … ] }`) are tailed by the
//! shell ([`LogTail`]); the lines go to a bounded per-log buffer in the core ([`LogShipper`],
//! sans-IO) and are shipped in batches to the manager that subscribed
//! ([`Msg::LogSubscribe`]), which acknowledges what it has written ([`Msg::LogAck`]).
//!
//! Never blocking the node: at most [`MAX_IN_FLIGHT`] unacknowledged bytes per log are on the
//! bus; the rest waits in the buffer, and when the buffer holds [`MAX_BUFFER_BYTES`] new lines
//! are dropped and counted (`cluster show logs` says how many).
//!
//! Offsets count the shipped stream of a log: every line adds its length plus one (the
//! newline). A node that reattaches, or a new subscriber, resumes at the first unacknowledged
//! line.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

use super::proto::{Msg, MAX_BATCH_LINES};
use crate::ecconf::{Scope, Value};

/// Bytes a log may hold waiting to be shipped; beyond it new lines are dropped (counted).
pub const MAX_BUFFER_BYTES: usize = 1 << 20;
/// Unacknowledged bytes per log on the bus at most.
pub const MAX_IN_FLIGHT: u64 = 256 * 1024;
/// Text bytes per batch at most (a batch stays far below a Spread message's capacity).
pub const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Longest line kept; longer ones are cut (and marked).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most logs a node offers.
pub const MAX_LOGS: usize = 32;

/// One log's shipping state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    /// Lines not yet acknowledged; the first starts at stream offset `base`, the first
    /// `sent_lines` of them are on the bus.
    buffer: VecDeque<String>,
    /// Bytes in `buffer`.
    buffered_bytes: usize,
    /// Stream offset of `buffer[0]`.
    base: u64,
    /// Number of buffered lines already shipped (not yet acknowledged).
    sent_lines: usize,
    /// Stream offset up to which lines were shipped.
    pub sent: u64,
    /// Stream offset the subscriber acknowledged (its position).
    pub acked: u64,
    /// Lines and bytes read from the log so far.
    pub read_lines: u64,
    /// Bytes read (the log's size as far as the node has seen it).
    pub read_bytes: u64,
    /// Lines dropped because the buffer was full.
    pub dropped_lines: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

fn cost(line: &str) -> u64 {
    line.len() as u64 + 1
}

/// Node-side log shipping (sans-IO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogShipper {
    logs: BTreeMap<String, LogState>,
    /// The subscribing manager's private group and name.
    subscriber: Option<(String, String)>,
}

impl LogShipper {
    /// Registers the offered logs (names from `cluster { logs }`).
    pub fn new(names: &[String]) -> Self {
        Self {
            logs: names
                .iter()
                .take(MAX_LOGS)
                .map(|n| (n.clone(), LogState::default()))
                .collect(),
            subscriber: None,
        }
    }

    /// The state of every log.
    pub fn logs(&self) -> &BTreeMap<String, LogState> {
        &self.logs
    }

    /// Lines read from log `name` (without newlines). Returns how many were dropped.
    pub fn push_lines(&mut self, name: &str, lines: Vec<String>) -> usize {
        let Some(st) = self.logs.get_mut(name) else {
            return 0;
        };
        let mut dropped = 0;
        for mut line in lines {
            if line.len() > MAX_LINE_BYTES {
                let mut cut = MAX_LINE_BYTES;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push_str(" [cut]");
            }
            st.read_lines += 1;
            st.read_bytes += cost(&line);
            if st.buffered_bytes + line.len() + 1 > MAX_BUFFER_BYTES {
                st.dropped_lines += 1;
                st.dropped_bytes += cost(&line);
                dropped += 1;
                continue;
            }
            st.buffered_bytes += line.len() + 1;
            st.buffer.push_back(line);
        }
        dropped
    }

    /// A manager subscribed (`sender` is its private group): shipping starts (again) at the
    /// first unacknowledged line.
    pub fn subscribe(&mut self, sender: &str, name: &str) {
        if self.subscriber.as_ref().is_some_and(|(p, _)| p == sender) {
            return; // the same manager again (a membership change): nothing to redo
        }
        self.subscriber = Some((sender.to_string(), name.to_string()));
        self.rewind();
    }

    /// The subscriber left the cluster group (or the bus went away): keep buffering; what was
    /// shipped but not acknowledged is shipped again later.
    pub fn unsubscribe_if_gone(&mut self, members: &[String]) {
        if self
            .subscriber
            .as_ref()
            .is_some_and(|(p, _)| !members.contains(p))
        {
            self.subscriber = None;
            self.rewind();
        }
    }

    fn rewind(&mut self) {
        for st in self.logs.values_mut() {
            st.sent_lines = 0;
            st.sent = st.base;
        }
    }

    /// The subscriber wrote `log` up to `offset`: drop those lines from the buffer.
    pub fn ack(&mut self, sender: &str, log: &str, offset: u64) {
        if self.subscriber.as_ref().map(|(p, _)| p.as_str()) != Some(sender) {
            return;
        }
        let Some(st) = self.logs.get_mut(log) else {
            return;
        };
        if offset <= st.acked || offset > st.sent {
            return; // stale or bogus
        }
        while st.base < offset && st.sent_lines > 0 {
            let Some(l) = st.buffer.pop_front() else {
                break;
            };
            st.base += cost(&l);
            st.buffered_bytes -= l.len() + 1;
            st.sent_lines -= 1;
        }
        st.acked = st.base;
    }

    /// Batches to ship now: `(private group of the subscriber, message)`.
    pub fn poll_batches(&mut self, node: &str) -> Vec<(String, Msg)> {
        let Some((to, _)) = self.subscriber.clone() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, st) in &mut self.logs {
            while st.sent_lines < st.buffer.len() && st.sent - st.acked < MAX_IN_FLIGHT {
                let offset = st.sent;
                let mut lines = Vec::new();
                let mut bytes = 0;
                while let Some(l) = st.buffer.get(st.sent_lines) {
                    if lines.len() >= MAX_BATCH_LINES
                        || (bytes > 0 && bytes + l.len() > MAX_BATCH_BYTES)
                    {
                        break;
                    }
                    bytes += l.len();
                    st.sent += cost(l);
                    st.sent_lines += 1;
                    lines.push(l.clone());
                }
                out.push((
                    to.clone(),
                    Msg::LogBatch {
                        node: node.to_string(),
                        log: name.clone(),
                        offset,
                        lines,
                    },
                ));
            }
        }
        out
    }

    /// `cluster show logs` (§3.1 shape, plus what is buffered and dropped).
    pub fn show(&self) -> String {
        if self.logs.is_empty() {
            return "No cluster logs are offered by this node (cluster { logs = [ … ] }).".into();
        }
        let mut out = String::new();
        for (name, st) in &self.logs {
            let _ = writeln!(out, "{name}\n\t[on disk: {} bytes]", st.read_bytes);
            match &self.subscriber {
                Some((_, sub)) => {
                    let _ = writeln!(
                        out,
                        "\t[subscriber: '{sub}' @ {:08x}:{:08x}]",
                        st.acked >> 32,
                        st.acked & 0xffff_ffff
                    );
                }
                None => out.push_str("\t[no subscriber: the manager is not reachable]\n"),
            }
            let _ = writeln!(
                out,
                "\t[buffered: {} lines, {} bytes; dropped: {} lines, {} bytes]",
                st.buffer.len() - st.sent_lines.min(st.buffer.len()),
                st.buffered_bytes,
                st.dropped_lines,
                st.dropped_bytes
            );
        }
        out.trim_end().to_string()
    }
}

/// The logs a node offers: `cluster { logs = [ name = "path" … ] }`.
pub fn configured_logs(root: &Scope) -> Vec<(String, PathBuf)> {
    let Some(c) = root.child("cluster", None) else {
        return Vec::new();
    };
    match c.get("logs").map(|o| &o.value) {
        Some(Value::Dict(items)) => items
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|p| (k.clone(), PathBuf::from(p))))
            .take(MAX_LOGS)
            .collect(),
        _ => Vec::new(),
    }
}

/// Bytes read from one file per [`LogTail::poll`] at most.
pub const MAX_READ_PER_POLL: u64 = 256 * 1024;

/// Follows a growing file from its end at start-up (the shell's side: I/O).
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    pos: Option<u64>,
    partial: Vec<u8>,
}

impl LogTail {
    /// A tail of `path`; the first poll starts at its current end.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            pos: None,
            partial: Vec::new(),
        }
    }

    /// New complete lines since the last poll (bounded by [`MAX_READ_PER_POLL`]). A file
    /// that shrank (rotated or truncated) is followed from its start.
    pub fn poll(&mut self) -> std::io::Result<Vec<String>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let pos = *self.pos.get_or_insert(len);
        let pos = if len < pos {
            self.partial.clear();
            0
        } else {
            pos
        };
        f.seek(SeekFrom::Start(pos))?;
        let mut buf = Vec::new();
        f.take(MAX_READ_PER_POLL).read_to_end(&mut buf)?;
        self.pos = Some(pos + buf.len() as u64);
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(
                String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_string(),
            );
        }
        if self.partial.len() > MAX_LINE_BYTES {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, w: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0w$}")).collect()
    }

    #[test]
    fn ships_in_order_within_the_in_flight_bound_and_resumes_after_ack() {
        let mut s = LogShipper::new(&["mainlog".into()]);
        s.push_lines("mainlog", lines(10, 3));
        assert!(s.poll_batches("n1").is_empty(), "no subscriber yet");
        s.subscribe("#mgr#mgr", "mgr");
        let b = s.poll_batches("n1");
        assert_eq!(b.len(), 1);
        let Msg::LogBatch {
            offset, lines: l, ..
        } = &b[0].1
        else {
            panic!()
        };
        assert_eq!((*offset, l.len()), (0, 10));
        assert!(s.poll_batches("n1").is_empty(), "nothing new");
        s.ack("#mgr#mgr", "mainlog", 40);
        assert_eq!(s.logs()["mainlog"].acked, 40);
        s.ack("#other", "mainlog", 40);
        s.push_lines("mainlog", vec!["x".into()]);
        let Msg::LogBatch { offset, .. } = &s.poll_batches("n1")[0].1 else {
            panic!()
        };
        assert_eq!(*offset, 40);
        // Subscriber gone before acking: the unacknowledged line is shipped again.
        s.unsubscribe_if_gone(&[]);
        assert!(s.show().contains("[no subscriber"));
        s.subscribe("#mgr2#mgr", "mgr");
        let Msg::LogBatch {
            offset, lines: l, ..
        } = &s.poll_batches("n1")[0].1
        else {
            panic!()
        };
        assert_eq!((*offset, l.as_slice()), (40, &["x".to_string()][..]));
    }

    #[test]
    fn a_full_buffer_drops_and_counts_new_lines() {
        let mut s = LogShipper::new(&["mainlog".into()]);
        let big = "y".repeat(1023); // 1 KiB with the newline
        let dropped = s.push_lines("mainlog", vec![big; 1100]);
        assert_eq!(dropped, 1100 - 1024);
        let st = &s.logs()["mainlog"];
        assert_eq!((st.dropped_lines, st.dropped_bytes), (76, 76 * 1024));
        assert!(
            s.show().contains("dropped: 76 lines, 77824 bytes"),
            "{}",
            s.show()
        );
        // In-flight bound: only 256 KiB go out before an ack.
        s.subscribe("#m#m", "m");
        let sent: usize = s
            .poll_batches("n1")
            .iter()
            .map(|(_, m)| match m {
                Msg::LogBatch { lines, .. } => lines.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(sent, 256);
    }

    #[test]
    fn tail_follows_appends_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "old\n").unwrap();
        let mut t = LogTail::new(p.clone());
        assert!(t.poll().unwrap().is_empty(), "starts at the end");
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"a\nb").unwrap();
        assert_eq!(t.poll().unwrap(), vec!["a"]);
        f.write_all(b"c\n").unwrap();
        assert_eq!(t.poll().unwrap(), vec!["bc"]);
        std::fs::write(&p, "new\n").unwrap();
        assert_eq!(t.poll().unwrap(), vec!["new"]);
    }
}
