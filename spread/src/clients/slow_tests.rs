//! 5.0.1's slow-reader rule as a property of the sans-IO [`Clients`]: readers of one group
//! whose shells report random progress (writes, refusals, vanishing peers) while a sender
//! multicasts, checked against a model of what each reader's socket has not taken.
//!
//! * A message is queued for a reader only if 5.0.1 would queue it: not while its socket is
//!   blocked with `MaxSessionMessages` messages unwritten, and never past the byte cap.
//! * A reader is killed exactly then, and the others see its disconnect.
//! * Everyone else gets every data message, in order, whatever the slow ones do.
//! * Nothing is sent to a killed or vanished session.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::tests::{request, Harness};
use super::*;
use crate::session::LARGEST_MESSAGE;
use crate::wire::client::{decode_frame, Direction};

/// Readers in the group.
const READERS: usize = 4;
/// Session id of the sender (not a member).
const SENDER: u64 = 100;
/// Longest membership message this setup produces (header, group id, a few names).
const MEMBERSHIP_MAX: usize = 1024;

#[derive(Debug, Clone)]
enum Step {
    /// The sender multicasts a body of this many bytes to the group.
    Send(usize),
    /// Reader `r`'s shell wrote this many of its messages (capped at what it has).
    Drain(usize, usize),
    /// Reader `r`'s socket refused bytes.
    Block(usize),
    /// Reader `r`'s peer went away.
    Vanish(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop_oneof![9 => 0usize..200, 1 => 30_000usize..140_000].prop_map(Step::Send),
        3 => (0..READERS, 0usize..8).prop_map(|(r, n)| Step::Drain(r, n)),
        2 => (0..READERS).prop_map(Step::Block),
        1 => (0..READERS).prop_map(Step::Vanish),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Live,
    Killed,
    Vanished,
}

/// What one reader's socket has not taken, as the shell reported it.
#[derive(Debug)]
struct Reader {
    name: String,
    life: Life,
    unwritten: VecDeque<usize>,
    blocked: bool,
    /// Data messages received.
    data: u64,
}

impl Reader {
    fn bytes(&self) -> usize {
        self.unwritten.iter().sum()
    }

    /// Would 5.0.1 (plus the byte cap) queue one more message of `len` bytes?
    fn admits(&self, len: usize, max: usize) -> bool {
        let cap = max * LARGEST_MESSAGE;
        !(self.blocked && self.unwritten.len() >= max)
            && (self.bytes() == 0 || self.bytes() + len <= cap)
    }

    fn id(r: usize) -> u64 {
        r as u64 + 1
    }
}

fn setup(max: usize) -> (Harness, Vec<Reader>) {
    let mut cfg = DaemonConfig::new("localhost", 1, 2);
    cfg.max_session_messages = max;
    let mut h = Harness::new(cfg);
    let mut readers = Vec::new();
    for r in 0..READERS {
        let name = format!("r{r}");
        h.connect(Reader::id(r), &name, true);
        let private = format!("#{name}#localhost");
        h.bytes(
            Reader::id(r),
            &request(ServiceType::JOIN_MESS, &private, &["g"], b""),
        );
        readers.push(Reader {
            name: private,
            life: Life::Live,
            unwritten: VecDeque::new(),
            blocked: false,
            data: 0,
        });
    }
    h.connect(SENDER, "snd", false);
    // Everything so far was written (auto-drain); from now on the model decides.
    h.sent.clear();
    h.auto_drain = false;
    (h, readers)
}

/// What one reader got during one step.
#[derive(Debug, Default)]
struct Got {
    data: u64,
    /// Readers whose disconnect it was told about.
    disconnects: Vec<String>,
}

/// Feeds one step to the daemon and to the model; returns the length of the data message
/// sent, if the step sent one.
fn apply(h: &mut Harness, readers: &mut [Reader], step: &Step, sent: &mut u64) -> Option<usize> {
    let live = |r: &Reader| r.life == Life::Live;
    match *step {
        Step::Send(n) => {
            let seq = sent.to_le_bytes();
            let body: Vec<u8> = seq.iter().copied().cycle().take(n.max(8)).collect();
            let req = request(ServiceType::RELIABLE, "#snd#localhost", &["g"], &body);
            h.bytes(SENDER, &req);
            *sent += 1;
            return Some(req.len());
        }
        Step::Drain(r, n) => {
            let n = n.min(readers[r].unwritten.len());
            if live(&readers[r]) {
                readers[r].unwritten.drain(..n);
                readers[r].blocked = false;
            }
            let session = SessionId(Reader::id(r));
            h.input(SessionInput::Drained {
                session,
                messages: n,
            });
        }
        Step::Block(r) => {
            if live(&readers[r]) {
                readers[r].blocked = true;
            }
            h.input(SessionInput::Blocked {
                session: SessionId(Reader::id(r)),
            });
        }
        Step::Vanish(r) => {
            if live(&readers[r]) {
                readers[r].life = Life::Vanished;
            }
            h.input(SessionInput::Closed {
                session: SessionId(Reader::id(r)),
            });
        }
    }
    None
}

/// Takes reader `r`'s outputs of the step: each message must have been admissible when it
/// was queued, and a kill must have had its reason.
fn collect(
    h: &mut Harness,
    i: usize,
    r: &mut Reader,
    max: usize,
    data_len: Option<usize>,
) -> Result<Got, TestCaseError> {
    let mut got = Got::default();
    let sends = h.take(Reader::id(i));
    if r.life != Life::Live {
        prop_assert!(
            sends.is_empty(),
            "{} got {} messages after it ended",
            r.name,
            sends.len()
        );
        return Ok(got);
    }
    for data in sends {
        prop_assert!(
            r.admits(data.len(), max),
            "{} got a message past the limit: {r:?}",
            r.name
        );
        r.unwritten.push_back(data.len());
        let mut buf = BytesMut::from(&data[..]);
        let Some(frame) = decode_frame(&mut buf, Direction::ToClient).ok().flatten() else {
            return Err(TestCaseError::fail("a Send that is not one message"));
        };
        let service = frame.header.service;
        let body = frame.body();
        if service.intersects(ServiceType::REGULAR_MESS) {
            let seq = body
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            prop_assert_eq!(seq, Some(r.data), "{} out of order", r.name);
            r.data += 1;
            got.data += 1;
        } else if service.intersects(ServiceType::CAUSED_BY_DISCONNECT) {
            let names = (0..READERS).map(|o| format!("#r{o}#localhost"));
            got.disconnects.extend(
                names.filter(|o| *o != r.name && body.windows(o.len()).any(|w| w == o.as_bytes())),
            );
        }
    }
    if h.closed.contains(&SessionId(Reader::id(i))) {
        // Killed now: only when its next message could not be queued.
        let next = data_len.unwrap_or(0).max(MEMBERSHIP_MAX);
        prop_assert!(
            (r.blocked && r.unwritten.len() >= max) || r.bytes() + next > max * LARGEST_MESSAGE,
            "{} killed without reason: {r:?}",
            r.name
        );
        r.life = Life::Killed;
    }
    Ok(got)
}

/// Applies one step and checks what came out.
fn run_step(
    h: &mut Harness,
    readers: &mut [Reader],
    max: usize,
    step: &Step,
    sent: &mut u64,
) -> Result<(), TestCaseError> {
    // Before the step: alive, blocked at the limit, unwritten bytes.
    let before: Vec<(Life, bool, usize)> = readers
        .iter()
        .map(|r| (r.life, r.blocked && r.unwritten.len() >= max, r.bytes()))
        .collect();
    let data_len = apply(h, readers, step, sent);
    let mut got = Vec::new();
    for (i, r) in readers.iter_mut().enumerate() {
        got.push(collect(h, i, r, max, data_len)?);
    }
    let ended: Vec<&String> = readers
        .iter()
        .zip(&before)
        .filter(|(r, b)| b.0 == Life::Live && r.life != Life::Live)
        .map(|(r, _)| &r.name)
        .collect();
    for ((r, &(was, over, bytes)), got) in readers.iter().zip(&before).zip(&got) {
        if was != Life::Live {
            continue;
        }
        if let Some(len) = data_len {
            // 5.0.1's rule: a blocked reader at the limit that is sent a message dies.
            let must_die = over || (bytes > 0 && bytes + len > max * LARGEST_MESSAGE);
            if must_die {
                prop_assert!(r.life == Life::Killed, "{} survived at the limit", r.name);
            } else if r.life == Life::Live {
                // Everyone else keeps going: exactly this message, whatever the others do.
                prop_assert_eq!(got.data, 1, "{} missed a message", r.name);
            }
        }
        if r.life == Life::Live {
            for e in &ended {
                prop_assert!(
                    got.disconnects.contains(e),
                    "{} did not see {e} leave",
                    r.name
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// See the module documentation.
    #[test]
    fn slow_readers_are_killed_exactly_by_5_0_1_rule(
        max in 1usize..6,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let (mut h, mut readers) = setup(max);
        let mut sent = 0u64;
        for s in &steps {
            run_step(&mut h, &mut readers, max, s, &mut sent)?;
        }
        let killed = readers.iter().filter(|r| r.life == Life::Killed).count() as u64;
        prop_assert_eq!(h.d.clients().stats().slow_reader_kills, killed);
        let live = readers.iter().filter(|r| r.life == Life::Live).count();
        prop_assert_eq!(h.d.clients().groups().members(&GroupName::new(b"g")).len(), live);
    }
}
