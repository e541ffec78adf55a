//! Client mode: many concurrent structure-aware sessions against the target's client port.
//!
//! Each execution is a [`Case`]: one to three sessions, each a valid hello (any library
//! version the daemon may meet, either byte order, any flags; sometimes a bad or duplicate
//! name, an unknown authentication method, a hello cut in two), then requests built with
//! `spread::wire::client` — joins, leaves, multicasts with every service, multigroup
//! multicasts, kills — whose fields are mutated: length words that lie, group counts past the
//! limit, names without NUL or empty, service bits combined, bodies at and around every size
//! limit, frames cut in half, floods towards a session that stopped reading, abrupt closes.
//!
//! A case is a flat list of [`Step`]s, which is also its replay file: minimization removes
//! steps.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::BufMut as _;
use spread::wire::client::{
    encode_auth_choice, encode_header, encode_hello, ByteOrder, GroupName, Hello, Hint,
    MessageHeader, ServiceType, Version, GROUP_NAME_LEN, HEADER_LEN, MAX_DATA_PLUS_GROUPS,
    MAX_GROUPS_PER_MESSAGE, MAX_WIRE_MESSAGE,
};

use super::replay::{decode_hex, encode_hex};
use super::target::{connect, Writer};
use super::{Rng, Stats};
use crate::client::Address;

/// One step of a client case (one line of a replay file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `connect S`: open session S.
    Connect(u8),
    /// `send S HEX`: write these bytes on session S.
    Send(u8, Vec<u8>),
    /// `sleep MS`.
    Sleep(u32),
    /// `stopread S`: session S stops reading (a slow reader).
    StopRead(u8),
    /// `close S`: orderly close.
    Close(u8),
    /// `abort S`: abrupt close (TCP reset).
    Abort(u8),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(s) => write!(f, "connect {s}"),
            Self::Send(s, b) => write!(f, "send {s} {}", encode_hex(b)),
            Self::Sleep(ms) => write!(f, "sleep {ms}"),
            Self::StopRead(s) => write!(f, "stopread {s}"),
            Self::Close(s) => write!(f, "close {s}"),
            Self::Abort(s) => write!(f, "abort {s}"),
        }
    }
}

impl std::str::FromStr for Step {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> Result<Self> {
        let mut it = line.splitn(3, ' ');
        let verb = it.next().unwrap_or_default();
        let arg: u32 = it
            .next()
            .context("missing argument")?
            .parse()
            .context("bad number")?;
        let s = u8::try_from(arg).unwrap_or(u8::MAX);
        Ok(match verb {
            "connect" => Self::Connect(s),
            "send" => Self::Send(s, decode_hex(it.next().unwrap_or_default())?),
            "sleep" => Self::Sleep(arg.min(60_000)),
            "stopread" => Self::StopRead(s),
            "close" => Self::Close(s),
            "abort" => Self::Abort(s),
            other => bail!("unknown client step {other:?}"),
        })
    }
}

/// One execution: its number and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Execution number within the run.
    pub id: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// How many fields the generator mutated.
    pub mutated: u32,
}

/// Library versions a daemon meets (and a few it must refuse).
const VERSIONS: [(i8, i8, i8); 12] = [
    (5, 0, 1),
    (5, 0, 1),
    (5, 0, 0),
    (4, 4, 0),
    (4, 0, 0),
    (3, 17, 3),
    (3, 16, 0),
    (3, 15, 2),
    (3, 14, 0),
    (3, 1, 0),
    (3, 0, 9),
    (6, 1, 0),
];

const SERVICES: [ServiceType; 6] = [
    ServiceType::UNRELIABLE,
    ServiceType::RELIABLE,
    ServiceType::FIFO,
    ServiceType::CAUSAL,
    ServiceType::AGREED,
    ServiceType::SAFE,
];

/// Bits a combined service word is drawn from.
const BITS: [u32; 12] = [
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x1000, 0x1_0000, 0x2_0000, 0x4_0000, 0x40_0000,
];

fn base36(mut n: u64) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(D[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// How one session writes its frames.
struct Writer8 {
    order: ByteOrder,
    sender: GroupName,
    /// Mutation intensity: 0 = every field valid, higher = more mutated fields.
    heat: u32,
    /// Fields mutated so far.
    mutated: std::cell::Cell<u32>,
}

impl Writer8 {
    fn count(&self) {
        self.mutated.set(self.mutated.get() + 1);
    }
}

impl Writer8 {
    /// A frame with these fields; `lie` mutates the length words.
    fn frame(
        &self,
        rng: &mut Rng,
        service: u32,
        groups: &[[u8; GROUP_NAME_LEN]],
        body_len: usize,
    ) -> Vec<u8> {
        let mut header = MessageHeader {
            service: ServiceType(service),
            sender: self.sender,
            num_groups: groups.len() as i32,
            hint: Hint::new(rng.below(3) as i16, self.order),
            data_len: body_len as i32,
            order: self.order,
        };
        if rng.chance(2 * self.heat) {
            self.count();
            header.data_len = rng.pick(&[
                header.data_len + 1,
                header.data_len - 1,
                header.data_len + 1000,
                -1,
                i32::MAX,
                0,
                (MAX_DATA_PLUS_GROUPS + 1) as i32,
            ]);
        }
        if rng.chance(self.heat) {
            self.count();
            header.num_groups = rng.pick(&[
                header.num_groups + 1,
                header.num_groups - 1,
                (MAX_GROUPS_PER_MESSAGE + 1) as i32,
                10_000,
                -3,
            ]);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + groups.len() * GROUP_NAME_LEN + body_len);
        encode_header(&header, &mut out);
        for g in groups {
            out.put_slice(g);
        }
        let fill = rng.pick(&[0u8, 0x5a, 0xff, b'x']);
        out.extend(std::iter::repeat_n(fill, body_len));
        out
    }
}

/// A group-name field: a name of this case, a name shared by all cases, or a mutated field.
fn group_field(rng: &mut Rng, tag: &str, heat: u32) -> [u8; GROUP_NAME_LEN] {
    let roll = if rng.chance(3 * heat) {
        rng.below(8)
    } else {
        8 + rng.below(92)
    };
    if roll < 4 {
        [b'a' + rng.below(26) as u8; GROUP_NAME_LEN] // no NUL
    } else if roll < 6 {
        [0; GROUP_NAME_LEN] // empty
    } else if roll < 8 {
        GroupName::new(b"#x#y").0 // a private name
    } else if roll < 18 {
        GroupName::new(format!("fzs{}", rng.below(4)).as_bytes()).0
    } else {
        GroupName::new(format!("g{tag}{}", rng.below(3)).as_bytes()).0
    }
}

fn body_len(rng: &mut Rng, ngroups: usize) -> usize {
    let groups = ngroups * GROUP_NAME_LEN;
    let wire = MAX_WIRE_MESSAGE.saturating_sub(HEADER_LEN + groups);
    let head = MAX_DATA_PLUS_GROUPS.saturating_sub(groups);
    if rng.chance(85) {
        rng.pick(&[
            0, 1, 8, 100, 700, 1000, 1400, 1431, 1432, 1433, 3000, 20_000,
        ])
    } else {
        rng.pick(&[wire - 1, wire, wire + 1, head - 1, head, head + 1, 100_000])
    }
}

/// The steps of one session (its connect, hello and requests).
fn session_steps(
    rng: &mut Rng,
    s: u8,
    names: &[String],
    tag: &str,
    others: u8,
    daemon: &str,
    mutated: &mut u32,
) -> Vec<Step> {
    let mut steps = vec![Step::Connect(s)];
    let (major, minor, patch) = rng.pick(&VERSIONS);
    let version = Version {
        major,
        minor,
        patch,
    };
    let name: Vec<u8> = match rng.below(100) {
        0..=3 => Vec::new(),
        4..=6 => names[rng.below(names.len())].clone().into_bytes(),
        7..=8 => b"#bad".to_vec(),
        9 => b"a b".to_vec(),
        _ => names[usize::from(s)].clone().into_bytes(),
    };
    let hello = Hello {
        version,
        flags: rng.pick(&[1u8, 1, 1, 0, 0x11, 0x81, 0xff]),
        name,
    };
    let mut hs = Vec::new();
    encode_hello(&hello, &mut hs);
    if version.has_auth_exchange() {
        let methods: &[&[u8]] = match rng.below(20) {
            0 => &[b"BOGUS"],
            1 => &[b"NULL", b"IP"],
            2 => &[],
            _ => &[b"NULL"],
        };
        let mut choice = Vec::new();
        encode_auth_choice(methods, &mut choice);
        if rng.chance(95) {
            // As libspread: the choice after the daemon's list (5.0.1 refuses a name
            // whose read also returned the choice, -5).
            steps.push(Step::Send(s, std::mem::take(&mut hs)));
            steps.push(Step::Sleep(15 + rng.below(30) as u32));
        }
        hs.extend(choice);
    }
    if rng.chance(8) {
        let cut = 1 + rng.below(hs.len().max(2) - 1);
        let rest = hs.split_off(cut.min(hs.len()));
        steps.push(Step::Send(s, hs));
        steps.push(Step::Sleep(rng.below(40) as u32));
        if !rest.is_empty() && rng.chance(80) {
            steps.push(Step::Send(s, rest));
        }
    } else {
        steps.push(Step::Send(s, hs));
    }
    if rng.chance(95) {
        // As libspread: requests after the accept (5.0.1 drops what came with the choice).
        steps.push(Step::Sleep(15 + rng.below(30) as u32));
    }
    let w = Writer8 {
        order: if rng.chance(30) {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        },
        heat: rng.pick(&[0, 0, 1, 3]),
        sender: GroupName::new(b""),
        mutated: std::cell::Cell::new(0),
    };
    // The session's private group, as libspread sends it (5.0.1 kills a session whose
    // sender field is another name); sometimes another name.
    let sender = if rng.chance(3 * w.heat) {
        w.count();
        format!("#{}#x", names[rng.below(names.len())])
    } else {
        format!("#{}#{daemon}", names[usize::from(s)])
    };
    let w = Writer8 {
        sender: GroupName::new(sender.as_bytes()),
        ..w
    };
    let ops = rng.below(9);
    for _ in 0..ops {
        let roll = rng.below(100);
        let frame = if roll < 25 {
            {
                let g = group_field(rng, tag, w.heat);
                w.frame(rng, ServiceType::JOIN_MESS.0, &[g], 0)
            }
        } else if roll < 35 {
            {
                let g = group_field(rng, tag, w.heat);
                w.frame(rng, ServiceType::LEAVE_MESS.0, &[g], 0)
            }
        } else if roll < 65 {
            let service = if !rng.chance(5 * w.heat) {
                rng.pick(&SERVICES).0 | if rng.chance(10) { 0x40 } else { 0 }
            } else {
                w.count();
                (0..1 + rng.below(4)).fold(0, |acc, _| acc | rng.pick(&BITS))
            };
            let n = 1 + rng.below(2);
            let groups: Vec<_> = (0..n).map(|_| group_field(rng, tag, w.heat)).collect();
            let len = body_len(rng, n);
            w.frame(rng, service, &groups, len)
        } else if roll < 75 {
            let n = if rng.chance(10 * w.heat) {
                w.count();
                MAX_GROUPS_PER_MESSAGE + 1 + rng.below(20)
            } else {
                2 + rng.below(12)
            };
            let groups: Vec<_> = (0..n).map(|_| group_field(rng, tag, w.heat)).collect();
            let len = body_len(rng, n);
            let service = rng.pick(&SERVICES).0;
            w.frame(rng, service, &groups, len)
        } else if roll < 78 {
            w.frame(rng, ServiceType::KILL_MESS.0, &[], 0)
        } else if roll < 81 {
            if w.heat == 0 {
                continue;
            }
            w.count();
            (0..1 + rng.below(200)).map(|_| rng.u64() as u8).collect()
        } else if roll < 86 {
            // A slow reader: stop reading, then another session floods a shared group.
            steps.push(Step::StopRead(s));
            let g = GroupName::new(format!("fzs{}", rng.below(4)).as_bytes()).0;
            let mut flood = w.frame(rng, ServiceType::JOIN_MESS.0, &[g], 0);
            for _ in 0..50 + rng.below(400) {
                flood.extend(w.frame(rng, ServiceType::RELIABLE.0, &[g], 1000));
            }
            steps.push(Step::Send((s + 1) % others.max(1), flood));
            continue;
        } else {
            steps.push(Step::Sleep(rng.below(100) as u32));
            continue;
        };
        if rng.chance(2 * w.heat) {
            // Half-written frame.
            w.count();
            let cut = rng.below(frame.len().max(1));
            steps.push(Step::Send(s, frame[..cut].to_vec()));
            steps.push(Step::Sleep(rng.below(50) as u32));
        } else {
            steps.push(Step::Send(s, frame));
        }
    }
    steps.push(match rng.below(10) {
        0..=2 => Step::Abort(s),
        3..=8 => Step::Close(s),
        _ => Step::Sleep(rng.below(200) as u32),
    });
    *mutated += w.mutated.get();
    steps
}

/// Draws execution `id`'s case against a daemon named `daemon` (the second part of its
/// sessions' private group names).
pub fn generate(rng: &mut Rng, id: u64, daemon: &str) -> Case {
    let tag = base36(id % 2_000_000_000);
    let n = 1 + rng.below(3) as u8;
    let names: Vec<String> = (0..n).map(|s| format!("f{tag}{s}")).collect();
    let mut mutated = 0;
    let per: Vec<Vec<Step>> = (0..n)
        .map(|s| session_steps(rng, s, &names, &tag, n, daemon, &mut mutated))
        .collect();
    // Interleave the sessions, each in its own order.
    let mut idx = vec![0usize; per.len()];
    let mut steps = Vec::new();
    loop {
        let live: Vec<usize> = (0..per.len()).filter(|&i| idx[i] < per[i].len()).collect();
        if live.is_empty() {
            break;
        }
        let i = live[rng.below(live.len())];
        steps.push(per[i][idx[i]].clone());
        idx[i] += 1;
    }
    Case { id, steps, mutated }
}

struct Session {
    writer: Writer,
    reader: tokio::task::JoinHandle<()>,
    slow: Arc<AtomicBool>,
}

/// Plays `steps` against `addr`. I/O errors end the session they happen on, nothing more.
pub async fn execute(addr: &Address, steps: &[Step], stats: &Stats) {
    let mut sessions: HashMap<u8, Session> = HashMap::new();
    for step in steps {
        match step {
            Step::Connect(s) => {
                if let Ok(Ok((mut r, w))) =
                    tokio::time::timeout(Duration::from_secs(2), connect(addr)).await
                {
                    Stats::add(&stats.sessions, 1);
                    let slow = Arc::new(AtomicBool::new(false));
                    let slow2 = slow.clone();
                    let reader = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while !slow2.load(Ordering::Relaxed) {
                            match r.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                        // A slow reader keeps its socket open, unread, until the case ends.
                        std::future::pending::<()>().await;
                    });
                    if let Some(old) = sessions.insert(
                        *s,
                        Session {
                            writer: w,
                            reader,
                            slow,
                        },
                    ) {
                        old.reader.abort();
                        old.writer.abort();
                    }
                }
            }
            Step::Send(s, bytes) => {
                let Some(sess) = sessions.get_mut(s) else {
                    continue;
                };
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(3), sess.writer.write_all(bytes))
                        .await,
                    Ok(Ok(()))
                );
                Stats::add(&stats.packets, 1);
                Stats::add(&stats.bytes, bytes.len() as u64);
                if !ok {
                    if let Some(sess) = sessions.remove(s) {
                        sess.reader.abort();
                        sess.writer.abort();
                    }
                }
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(u64::from(*ms))).await,
            Step::StopRead(s) => {
                if let Some(sess) = sessions.get(s) {
                    sess.slow.store(true, Ordering::Relaxed);
                }
            }
            Step::Close(s) => {
                if let Some(sess) = sessions.remove(s) {
                    sess.writer.close().await;
                    sess.reader.abort();
                }
            }
            Step::Abort(s) => {
                if let Some(sess) = sessions.remove(s) {
                    sess.reader.abort();
                    sess.writer.abort();
                }
            }
        }
    }
    // Let the daemon read what was sent before the remaining sessions go.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (_, sess) in sessions {
        sess.reader.abort();
        sess.writer.close().await;
    }
}

/// The steps of a replay file's lines.
pub fn parse_steps(lines: &[String]) -> Result<Vec<Step>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| l.parse().with_context(|| format!("step {}", i + 1)))
        .collect()
}

/// Several cases as one step list (sessions renumbered so they stay apart).
pub fn concat(cases: &[Case]) -> Vec<Step> {
    let mut out = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        let base = (k * 3) as u8;
        for s in &c.steps {
            out.push(match s {
                Step::Connect(x) => Step::Connect(x + base),
                Step::Send(x, b) => Step::Send(x + base, b.clone()),
                Step::StopRead(x) => Step::StopRead(x + base),
                Step::Close(x) => Step::Close(x + base),
                Step::Abort(x) => Step::Abort(x + base),
                Step::Sleep(ms) => Step::Sleep(*ms),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_is_the_same_for_the_same_seed_and_round_trips_as_text() {
        let a = generate(&mut Rng::for_exec(7, 3), 3, "localhost");
        let b = generate(&mut Rng::for_exec(7, 3), 3, "localhost");
        assert_eq!(a, b);
        let lines: Vec<String> = a.steps.iter().map(ToString::to_string).collect();
        assert_eq!(parse_steps(&lines).unwrap(), a.steps);
        assert!(matches!(a.steps[0], Step::Connect(_)));
    }

    #[test]
    fn sizes_around_the_wire_limit_are_drawn() {
        let mut rng = Rng::new(1);
        let limit = MAX_WIRE_MESSAGE - HEADER_LEN - GROUP_NAME_LEN;
        let hit = (0..5000).any(|_| body_len(&mut rng, 1) == limit + 1);
        assert!(hit, "143 121 bytes with one group is never drawn");
        assert_eq!(limit + 1, 143_121);
    }
}
