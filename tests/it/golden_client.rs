//! Golden replay of the single-daemon client captures (`tests/data/client/*.hex`, not `net_*`)
//! against our daemon, comparing byte streams per connection and per client action.
//!
//! Each capture is cut into steps: one client action (`C>` bytes or `CX` close) followed by
//! what the daemon sent (`D>`) and closed (`DX`) until the next action. After each action the
//! daemon's output for every connection must equal the capture's bytes for that step, and every
//! `DX` must have happened (timers run: the replay advances a virtual clock as the capturing
//! script waited). The daemon may close a connection earlier than the capture shows only when
//! the capture's next event for it is the client's own close.
//!
//! Values that differ per run (README "Values that differ between daemon runs"): the group
//! id's first 8 bytes (the daemon id and the ring time) — the core replay configures the
//! daemon with the capture's values, so the bytes match exactly with no mask; and the random
//! name of `connect_no_name.hex`, which is checked for its shape and substituted into the
//! client's later bytes.
//!
//! Documented deviations (where 5.0.1 has a bug we do not copy), applied as overrides:
//! * `crash_over_buffer.hex`: 5.0.1 aborts; we kill only the offending session, so the other
//!   member stays connected and gets `CAUSED_BY_DISCONNECT` (exactly as in
//!   `over_limit_killed.hex`).
//! * `odd_group_names.hex`: a 32-byte group name without NUL is echoed unterminated by 5.0.1
//!   (a buffer overflow inside it); we kill the session instead (see `spread::wire::client`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use spread::daemon::{Input, Output, Settings};
use spread::ring::{DaemonId, RingConfig, State};
use spread::session::{Peer, SessionId};
use spread::time::Instant;
use spread::{Daemon, DaemonConfig, SessionInput, SessionOutput};

/// One line of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// Client wrote bytes.
    C(String, Vec<u8>),
    /// Client read bytes.
    D(String, Vec<u8>),
    /// Daemon closed.
    Dx(String),
    /// Client closed.
    Cx(String),
}

/// A parsed capture.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    /// File name.
    pub name: String,
    /// Events in order.
    pub lines: Vec<Line>,
    /// `(proc_id, time)` of the group ids, from the decode comments.
    pub ring: Option<(i32, i32)>,
}

fn decode_hex(tokens: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        if let Some(rep) = t.strip_prefix("{rep:").and_then(|r| r.strip_suffix('}')) {
            let (b, n) = rep.split_once('*').expect("rep token");
            let b = u8::from_str_radix(b, 16).expect("rep byte");
            out.extend(std::iter::repeat_n(b, n.parse().expect("rep count")));
        } else {
            assert!(t.len() % 2 == 0, "odd hex {t}");
            for i in (0..t.len()).step_by(2) {
                out.push(u8::from_str_radix(&t[i..i + 2], 16).expect("hex"));
            }
        }
    }
    out
}

/// Parses a capture file.
pub(crate) fn parse(path: &Path) -> Capture {
    let text = std::fs::read_to_string(path).expect("read capture");
    let mut lines = Vec::new();
    let mut ring = None;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix('#') {
            if ring.is_none() {
                if let Some(i) = rest.find("group_id=(") {
                    let nums: Vec<i64> = rest[i + 10..]
                        .split([',', ')'])
                        .take(2)
                        .map(|s| s.trim().parse().expect("group id"))
                        .collect();
                    ring = Some((nums[0] as i32, nums[1] as i32));
                }
            }
            continue;
        }
        let parts: Vec<&str> = l.split_whitespace().collect();
        match parts.as_slice() {
            [] => {}
            ["C>", conn, hex @ ..] => lines.push(Line::C(conn.to_string(), decode_hex(hex))),
            ["D>", conn, hex @ ..] => lines.push(Line::D(conn.to_string(), decode_hex(hex))),
            ["DX", conn] => lines.push(Line::Dx(conn.to_string())),
            ["CX", conn] => lines.push(Line::Cx(conn.to_string())),
            _ => panic!("{}: unparsable line {l:?}", path.display()),
        }
    }
    Capture {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        lines,
        ring,
    }
}

/// The single-daemon captures, sorted; asserts there are exactly 28 (the brief's "29 files
/// not named `net_*`" counts the README too: 34 `.hex` files, 6 of them `net_*`).
pub(crate) fn single_daemon_captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("capture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("net_"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        28,
        "expected 28 single-daemon captures: {files:?}"
    );
    files
}

/// One client action and what the daemon did until the next one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Step {
    /// `Some((conn, Some(bytes)))` = client wrote; `Some((conn, None))` = client closed.
    pub action: Option<(String, Option<Vec<u8>>)>,
    /// Bytes each connection read.
    pub expect: BTreeMap<String, Vec<u8>>,
    /// Connections the daemon closed.
    pub closes: BTreeSet<String>,
    /// Connections first mentioned in this step (opened before the action).
    pub opens: Vec<String>,
}

/// Cuts a capture into steps.
pub(crate) fn steps(cap: &Capture) -> Vec<Step> {
    let mut out: Vec<Step> = vec![Step::default()];
    let mut seen = BTreeSet::new();
    for l in &cap.lines {
        let conn = match l {
            Line::C(c, _) | Line::D(c, _) | Line::Dx(c) | Line::Cx(c) => c.clone(),
        };
        if matches!(l, Line::C(..) | Line::Cx(_)) {
            out.push(Step::default());
        }
        let step = out.last_mut().unwrap();
        if seen.insert(conn.clone()) {
            step.opens.push(conn.clone());
        }
        match l {
            Line::C(c, b) => step.action = Some((c.clone(), Some(b.clone()))),
            Line::Cx(c) => step.action = Some((c.clone(), None)),
            Line::D(c, b) => step.expect.entry(c.clone()).or_default().extend(b),
            Line::Dx(c) => {
                step.closes.insert(c.clone());
            }
        }
    }
    out
}

/// The disconnect membership `bob` sees when `alice` is killed from group `big` (index 3):
/// taken from `over_limit_killed.hex` (same names and group), ring words set to `ring`.
fn bob_sees_alice_killed(ring: (i32, i32)) -> Vec<u8> {
    let cap = parse(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client/over_limit_killed.hex"),
    );
    let mut b = cap
        .lines
        .iter()
        .find_map(|l| match l {
            Line::D(c, b) if c == "bob" && b.starts_with(&[0x80, 0x14, 0x00, 0x80]) => {
                Some(b.clone())
            }
            _ => None,
        })
        .expect("disconnect membership in over_limit_killed.hex");
    // header 48 + one member 32, then the group id.
    b[80..84].copy_from_slice(&ring.0.to_le_bytes());
    b[84..88].copy_from_slice(&ring.1.to_le_bytes());
    b
}

/// Applies the documented deviations to a capture's steps.
pub(crate) fn apply_overrides(cap: &Capture, steps: &mut Vec<Step>) {
    let ring = cap.ring.unwrap_or_default();
    match cap.name.as_str() {
        "crash_over_buffer.hex" => {
            let last = steps.last_mut().unwrap();
            assert!(last.closes.contains("bob"));
            last.closes.remove("bob");
            last.expect
                .insert("bob".into(), bob_sees_alice_killed(ring));
        }
        "odd_group_names.hex" => {
            let i = steps
                .iter()
                .position(|s| matches!(&s.action, Some((_, Some(b))) if b.ends_with(&[b'X'; 32])))
                .expect("32-byte JOIN step");
            steps[i].expect.clear();
            steps[i].closes.insert("alice".into());
            steps.truncate(i + 1);
        }
        _ => {}
    }
}

/// Runs the core, feeding it one capture.
struct CoreReplay {
    daemon: Daemon,
    now: Instant,
    ids: BTreeMap<String, SessionId>,
    conns: BTreeMap<SessionId, String>,
    closed: BTreeSet<String>,
    got: BTreeMap<String, Vec<u8>>,
    /// Captured generated name → ours (same length not required: both sit in 32-byte fields).
    renames: Vec<(Vec<u8>, Vec<u8>)>,
}

impl CoreReplay {
    fn new(cap: &Capture) -> Self {
        let (proc_id, time) = cap.ring.unwrap_or((482_711_334, 1_795_549_150));
        // A one-daemon ring, as 5.0.1 runs alone: it forms its singleton ring first (its id
        // is word 1-2 of every group id). A first run learns how many seconds that takes, so
        // the ring time comes out as the capture's.
        let start = Instant(1_000_000);
        let (first, _) = Self::formed(proc_id, time as u32, start);
        let formed = first.engine().ring_id().time as u32;
        let lag = formed.wrapping_sub(time as u32);
        let (daemon, at) = Self::formed(proc_id, (time as u32).wrapping_sub(lag), start);
        let id = daemon.engine().ring_id();
        assert_eq!((id.leader.0 as i32, id.time), (proc_id, time));
        Self {
            daemon,
            now: at,
            ids: BTreeMap::new(),
            conns: BTreeMap::new(),
            closed: BTreeSet::new(),
            got: BTreeMap::new(),
            renames: Vec::new(),
        }
    }

    /// A one-daemon ring started at `start` with the wall clock at `clock`, run until its
    /// ring is installed and its group state exchanged; its ring time.
    fn formed(proc_id: i32, clock: u32, start: Instant) -> (Daemon, Instant) {
        let me = DaemonId(proc_id as u32);
        let settings = Settings::from_parts(
            DaemonConfig::new("localhost", proc_id, 0),
            RingConfig::lan(me, vec![me]),
        );
        let mut d = Daemon::new(settings, start, clock);
        let mut now = start;
        for _ in 0..1000 {
            if d.engine().state() == State::Op && !d.exchanging() {
                return (d, now);
            }
            now = now + std::time::Duration::from_millis(10);
            d.handle_timeout(now);
            while d.poll_output().is_some() {}
        }
        panic!("the one-daemon ring did not form in 10 s");
    }

    fn open(&mut self, conn: &str) {
        let id = SessionId(self.ids.len() as u64 + 1);
        self.ids.insert(conn.to_owned(), id);
        self.conns.insert(id, conn.to_owned());
        let peer = Peer::Tcp("127.0.0.1".parse().unwrap());
        self.daemon.handle(
            self.now,
            Input::Client(SessionInput::Connected { session: id, peer }),
        );
    }

    fn drain(&mut self) {
        while let Some(o) = self.daemon.poll_output() {
            match o {
                Output::Client(SessionOutput::Send { session, data }) => {
                    let conn = self.conns[&session].clone();
                    self.got.entry(conn).or_default().extend_from_slice(&data);
                    self.daemon.handle(
                        self.now,
                        Input::Client(SessionInput::Drained {
                            session,
                            messages: 1,
                        }),
                    );
                }
                Output::Client(SessionOutput::Close { session }) => {
                    let conn = self.conns[&session].clone();
                    assert!(self.closed.insert(conn.clone()), "{conn} closed twice");
                }
                Output::Transmit(t) => panic!("a one-daemon ring sent a datagram: {t:?}"),
                Output::Monitor(_) => {}
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + std::time::Duration::from_millis(ms);
        self.daemon.handle_timeout(self.now);
        self.drain();
    }
}

/// Substitutes generated names (`renames`: captured → ours) in a client message's sender and
/// group fields.
pub(crate) fn rename(renames: &[(Vec<u8>, Vec<u8>)], mut b: Vec<u8>) -> Vec<u8> {
    for (from, to) in renames {
        let fields = std::iter::once(4).chain((48..b.len().saturating_sub(31)).step_by(32));
        for off in fields {
            if b[off..].starts_with(from) {
                let mut field = [0u8; 32];
                field[..to.len()].copy_from_slice(to);
                b[off..off + 32].copy_from_slice(&field);
            }
        }
    }
    b
}

/// Fills 997 sessions (for the quota capture).
fn fill_quota(r: &mut CoreReplay) {
    for i in 0..997 {
        let conn = format!("q{i}");
        r.open(&conn);
        let id = r.ids[&conn];
        let mut hello = vec![5, 0, 1, 1];
        hello.push(conn.len() as u8);
        hello.extend(conn.as_bytes());
        let mut auth = b"NULL".to_vec();
        auth.resize(90, 0);
        for b in [hello, auth] {
            r.daemon.handle(
                r.now,
                Input::Client(SessionInput::Bytes {
                    session: id,
                    data: b.into(),
                }),
            );
        }
    }
    r.drain();
    r.got.clear();
    assert_eq!(r.daemon.session_count(), 997);
}

/// In `connect_no_name.hex`: if `got` is an accept carrying a generated name of the right
/// shape (`r<digits>-<digits>`, at most 9 characters) where the capture has its own generated
/// name, returns the capture's bytes and records the renaming for the client's later bytes.
pub(crate) fn normalize_generated_name(
    renames: &mut Vec<(Vec<u8>, Vec<u8>)>,
    got: &[u8],
    want: Option<&Vec<u8>>,
) -> Vec<u8> {
    let Some(want) = want else {
        return got.to_vec();
    };
    let accept = |b: &[u8]| -> Option<Vec<u8>> {
        let (head, rest) = b.split_at_checked(5)?;
        if head[..4] != [1, 5, 0, 1] || rest.len() != usize::from(head[4]) {
            return None;
        }
        let name = rest.strip_prefix(b"#")?.strip_suffix(b"#localhost")?;
        Some(name.to_vec())
    };
    let (Some(gname), Some(wname)) = (accept(got), accept(want)) else {
        return got.to_vec();
    };
    let shape = |n: &[u8]| {
        n.len() <= 9
            && n.first() == Some(&b'r')
            && n[1..].split(|&c| c == b'-').count() == 2
            && n[1..].iter().all(|&c| c.is_ascii_digit() || c == b'-')
    };
    assert!(
        shape(&gname),
        "generated name {:?}",
        String::from_utf8_lossy(&gname)
    );
    assert!(shape(&wname));
    let field = |n: &[u8]| [b"#".as_slice(), n, b"#localhost"].concat();
    renames.push((field(&wname), field(&gname)));
    want.clone()
}

/// Replays one capture against the core; panics with a diff on mismatch.
pub(crate) fn replay_core(path: &Path) {
    let cap = parse(path);
    let mut steps = steps(&cap);
    apply_overrides(&cap, &mut steps);
    let mut r = CoreReplay::new(&cap);
    if cap.name == "connect_reject_quota.hex" {
        fill_quota(&mut r);
    }
    let mut exp_total: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for st in &steps {
        for (c, w) in &st.expect {
            exp_total.entry(c.clone()).or_default().extend(w);
        }
    }
    let mut exp_cum: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut got_cum: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (n, step) in steps.iter().enumerate() {
        for c in &step.opens {
            r.open(c);
        }
        r.drain();
        match &step.action {
            Some((c, Some(bytes))) => {
                let id = r.ids[c];
                assert!(
                    !r.closed.contains(c),
                    "{}: step {n}: {c} writes after close",
                    cap.name
                );
                let data = rename(&r.renames, bytes.clone());
                r.daemon.handle(
                    r.now,
                    Input::Client(SessionInput::Bytes {
                        session: id,
                        data: data.into(),
                    }),
                );
            }
            Some((c, None)) => {
                let id = r.ids[c];
                if !r.closed.contains(c) {
                    r.closed.insert(c.clone());
                    r.daemon
                        .handle(r.now, Input::Client(SessionInput::Closed { session: id }));
                }
            }
            None => {}
        }
        r.drain();
        r.advance(250);
        // Wait (virtually) for closes the capture shows, as its script did.
        for _ in 0..10 {
            if step.closes.iter().all(|c| r.closed.contains(c)) {
                break;
            }
            r.advance(100);
        }
        for c in &step.closes {
            assert!(
                r.closed.contains(c),
                "{}: step {n}: {c} not closed",
                cap.name
            );
        }
        let got = std::mem::take(&mut r.got);
        for (c, mut g) in got {
            if cap.name == "connect_no_name.hex" {
                g = normalize_generated_name(&mut r.renames, &g, step.expect.get(&c));
            }
            got_cum.entry(c).or_default().extend(g);
        }
        for (c, w) in &step.expect {
            exp_cum.entry(c.clone()).or_default().extend(w);
        }
        let conns: BTreeSet<String> = got_cum.keys().chain(exp_cum.keys()).cloned().collect();
        for c in &conns {
            let g = got_cum.get(c).map(Vec::as_slice).unwrap_or_default();
            let w = exp_cum.get(c).map(Vec::as_slice).unwrap_or_default();
            let total = exp_total.get(c).map(Vec::as_slice).unwrap_or_default();
            let at = format!(
                "{}: step {n} (after {:?})",
                cap.name,
                step.action.as_ref().map(|a| &a.0)
            );
            assert!(
                g.starts_with(w),
                "{at}: {c} is missing bytes
 got: {}
want: {}",
                hex(g),
                hex(w)
            );
            assert!(
                total.starts_with(g),
                "{at}: {c} got bytes the capture never shows
 got: {}
want: {}",
                hex(g),
                hex(total)
            );
            if r.closed.contains(c) {
                assert_eq!(hex(g), hex(total), "{at}: {c} closed before all its bytes");
            }
        }
    }
    for (c, total) in &exp_total {
        let g = got_cum.get(c).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(hex(g), hex(total), "{}: final stream to {c}", cap.name);
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_single_daemon_capture_replays_against_the_core() {
    let files = single_daemon_captures();
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if let Err(e) = std::panic::catch_unwind(|| replay_core(f)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn capture_parser_reads_rep_tokens() {
    assert_eq!(
        decode_hex(&["0a", "{rep:41*3}", "ff"]),
        vec![0x0a, 0x41, 0x41, 0x41, 0xff]
    );
    let cap =
        parse(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/client/large_100k.hex"));
    let big = cap
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::C(_, b) => Some(b.len()),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(big >= 100_000);
}
