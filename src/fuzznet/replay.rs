//! Replay files: what `mbus-fuzz-net replay FILE` plays back.
//!
//! A text file, one step per line, `#` comments (the fault, the seed, how it was minimized):
//!
//! ```text
//! # mbus-fuzz-net replay
//! mode client
//! connect 0
//! send 0 0500010105616c696365
//! send 0 80000180{rep:00*28}…
//! sleep 50
//! close 0 abrupt
//! ```
//!
//! Byte strings are hex; a run of 8 or more equal bytes is written `{rep:HH*N}` as in the
//! capture files of `/work/shared/vectors`. The step grammar of each mode is in
//! [`super::client::Step`] and [`super::peer::Event`].

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

/// Hex with runs of 8 or more equal bytes as `{rep:HH*N}`.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&x| x == b).count();
        if run >= 8 {
            let _ = write!(out, "{{rep:{b:02x}*{run}}}");
            i += run;
        } else {
            let _ = write!(out, "{b:02x}");
            i += 1;
        }
    }
    out
}

/// The bytes of [`encode_hex`]'s text (whitespace ignored).
pub fn decode_hex(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest: &str = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix("{rep:") {
            let end = r.find('}').context("unterminated {rep:")?;
            let (b, n) = r[..end].split_once('*').context("{rep:HH*N} expected")?;
            let b = u8::from_str_radix(b, 16).context("bad {rep:} byte")?;
            let n: usize = n.parse().context("bad {rep:} count")?;
            if n > 16 << 20 {
                bail!("{{rep:}} count {n} too large");
            }
            out.extend(std::iter::repeat_n(b, n));
            rest = &r[end + 1..];
        } else {
            let pair = rest.get(..2).context("odd number of hex digits")?;
            out.push(u8::from_str_radix(pair, 16).with_context(|| format!("bad hex {pair:?}"))?);
            rest = &rest[2..];
        }
    }
    Ok(out)
}

/// A replay file: its mode, its comment lines and its step lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayFile {
    /// `client` or `peer`.
    pub mode: String,
    /// Comment lines (without `# `).
    pub comments: Vec<String>,
    /// Step lines, in order.
    pub steps: Vec<String>,
}

impl ReplayFile {
    /// Parses the text of a replay file.
    pub fn parse(text: &str) -> Result<Self> {
        let mut mode = None;
        let mut comments = Vec::new();
        let mut steps = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                let c = c.trim();
                if c != "mbus-fuzz-net replay" {
                    comments.push(c.to_owned());
                }
            } else if let Some(m) = line.strip_prefix("mode ") {
                mode = Some(m.trim().to_owned());
            } else if mode.is_none() {
                bail!(
                    "line {}: `mode client` or `mode peer` must come first",
                    n + 1
                );
            } else {
                steps.push(line.to_owned());
            }
        }
        let mode = mode.context("no `mode` line")?;
        if mode != "client" && mode != "peer" {
            bail!("unknown mode {mode:?}");
        }
        Ok(Self {
            mode,
            comments,
            steps,
        })
    }

    /// Reads and parses a replay file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# mbus-fuzz-net replay\n");
        for c in &self.comments {
            out += &format!("# {c}\n");
        }
        out += &format!("mode {}\n", self.mode);
        for s in &self.steps {
            out += s;
            out.push('\n');
        }
        out
    }

    /// Writes the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(path, self.to_text()).with_context(|| format!("write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_runs_round_trip() {
        let mut b = vec![1u8, 2, 3];
        b.extend(std::iter::repeat_n(0u8, 20));
        b.extend([0xff, 0xff]);
        let t = encode_hex(&b);
        assert_eq!(t, "010203{rep:00*20}ffff");
        assert_eq!(decode_hex(&t).unwrap(), b);
    }

    #[test]
    fn replay_file_round_trips_and_needs_a_mode() {
        let f = ReplayFile {
            mode: "client".into(),
            comments: vec!["found: death".into()],
            steps: vec!["connect 0".into(), "sleep 5".into()],
        };
        assert_eq!(ReplayFile::parse(&f.to_text()).unwrap(), f);
        assert!(ReplayFile::parse("connect 0\n").is_err());
    }
}
