//! Datagram classes, mutations and the events that record them.

use std::fmt;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use spread::ids::{DaemonId, RingId};
use spread::wire::client::ServiceType;
use spread::wire::daemon::{
    Datagram, Fragment, MessageHeader, PacketBody, PacketHeader, Seq, TokenHeader, TypeBits,
    HEADER_LEN,
};

use super::super::Rng;

/// Kinds of datagrams the fuzzer's daemon sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// ALIVE.
    Alive,
    /// Membership JOIN.
    Join,
    /// REFER.
    Refer,
    /// HURRY.
    Hurry,
    /// FORM1 token.
    Form1,
    /// FORM2 token.
    Form2,
    /// Regular token.
    Token,
    /// Data packet whose first message is a client data message.
    Data,
    /// Data packet carrying a GROUPS (state exchange) message.
    Groups,
    /// Data packet carrying a JOIN, LEAVE or KILL request.
    Request,
    /// Anything else (continuation fragments, monitor packets).
    Other,
}

const CLASSES: [(Class, &str); 11] = [
    (Class::Alive, "alive"),
    (Class::Join, "join"),
    (Class::Refer, "refer"),
    (Class::Hurry, "hurry"),
    (Class::Form1, "form1"),
    (Class::Form2, "form2"),
    (Class::Token, "token"),
    (Class::Data, "data"),
    (Class::Groups, "groups"),
    (Class::Request, "request"),
    (Class::Other, "other"),
];

impl Class {
    /// Its name in replay files.
    pub fn name(self) -> &'static str {
        CLASSES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("other", |(_, n)| n)
    }

    fn parse(s: &str) -> Result<Self> {
        CLASSES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(c, _)| *c)
            .with_context(|| format!("unknown class {s:?}"))
    }

    /// The class of a datagram the fuzzer's daemon is about to send.
    pub fn of(token_port: bool, bytes: &[u8]) -> Self {
        match Datagram::decode_accepted(token_port, bytes) {
            Ok(Datagram::Token(t)) => {
                if t.header.kind.has(TypeBits::FORM1) {
                    Self::Form1
                } else if t.header.kind.has(TypeBits::FORM2) {
                    Self::Form2
                } else {
                    Self::Token
                }
            }
            Ok(Datagram::Packet(p)) => match &p.body {
                PacketBody::Alive(_) => Self::Alive,
                PacketBody::Join(_) => Self::Join,
                PacketBody::Refer => Self::Refer,
                PacketBody::Hurry => Self::Hurry,
                PacketBody::Data(d) => match first_message(&d.fragments) {
                    Some((_, h)) if h.is_groups() => Self::Groups,
                    Some((_, h)) if h.kind & ServiceType::REQUEST_MASK.0 != 0 => Self::Request,
                    Some(_) => Self::Data,
                    None => Self::Other,
                },
                _ => Self::Other,
            },
            Err(_) => Self::Other,
        }
    }
}

/// The first fragment that starts a message, and that message's header.
fn first_message(frags: &[Fragment]) -> Option<(usize, MessageHeader)> {
    frags.iter().enumerate().find_map(|(i, f)| {
        if f.index != 1 && f.index != -1 {
            return None;
        }
        MessageHeader::decode(&mut &f.data[..]).ok().map(|h| (i, h))
    })
}

/// What is done to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Not sent.
    Drop,
    /// Sent 2–40 times (a retransmission storm).
    Storm,
    /// Sent 0.2–3 s late (stale).
    Delay,
    /// Another ring id in the header.
    RingId,
    /// A seq 1–20 behind.
    SeqBack,
    /// A seq ahead (a hole).
    SeqFwd,
    /// A token whose aru lies.
    AruLie,
    /// The first message's type changed (GROUPS, JOIN, LEAVE, KILL, data).
    Retype,
    /// Another transmitter or originator id.
    Spoof,
    /// One byte flipped.
    Flip,
    /// Cut short.
    Truncate,
    /// Replaced by a datagram of the same port captured from real 5.0.1 daemons (other
    /// daemons' ids and rings inside), sent as this daemon's with this ring's hash.
    Capture,
}

const MUTATIONS: [(Mutation, &str); 12] = [
    (Mutation::Drop, "drop"),
    (Mutation::Storm, "storm"),
    (Mutation::Delay, "delay"),
    (Mutation::RingId, "ringid"),
    (Mutation::SeqBack, "seqback"),
    (Mutation::SeqFwd, "seqfwd"),
    (Mutation::AruLie, "arulie"),
    (Mutation::Retype, "retype"),
    (Mutation::Spoof, "spoof"),
    (Mutation::Flip, "flip"),
    (Mutation::Truncate, "truncate"),
    (Mutation::Capture, "capture"),
];

/// Captures of real 5.0.1 rings (`tests/data/daemon`): what [`Mutation::Capture`] sends.
const CAPTURES: [&str; 4] = [
    include_str!("../../../tests/data/daemon/b_two_daemons_form_ring.hex"),
    include_str!("../../../tests/data/daemon/d_data_messages.hex"),
    include_str!("../../../tests/data/daemon/e_client_join_leave.hex"),
    include_str!("../../../tests/data/daemon/f_partition_merge.hex"),
];

/// The captured datagrams: (data port, token port). Lines `P TIME SRC DST LEN HEX`; the
/// captures' rings use port 4803, so 4804 is the token port.
fn captured() -> &'static (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    type Lists = (Vec<Vec<u8>>, Vec<Vec<u8>>);
    static LISTS: std::sync::OnceLock<Lists> = std::sync::OnceLock::new();
    LISTS.get_or_init(|| {
        let (mut data, mut token) = (Vec::new(), Vec::new());
        for line in CAPTURES.iter().flat_map(|c| c.lines()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 6 || f[0] != "P" {
                continue;
            }
            let Ok(bytes) = super::super::replay::decode_hex(f[5]) else {
                continue;
            };
            match f[3].rsplit(':').next() {
                Some("4803") => data.push(bytes),
                Some("4804") => token.push(bytes),
                _ => {}
            }
        }
        (data, token)
    })
}

impl Mutation {
    /// Its name in replay files.
    pub fn name(self) -> &'static str {
        MUTATIONS
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("drop", |(_, n)| n)
    }

    fn parse(s: &str) -> Result<Self> {
        MUTATIONS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .with_context(|| format!("unknown mutation {s:?}"))
    }

    /// A fault the protocol must tolerate (loss, duplication, delay), as opposed to a lie.
    pub fn is_benign(self) -> bool {
        matches!(self, Self::Drop | Self::Storm | Self::Delay)
    }

    /// Mutations that make sense for a class.
    fn for_class(c: Class) -> &'static [Mutation] {
        use Mutation::*;
        match c {
            Class::Token => &[
                Drop, Storm, Delay, RingId, SeqBack, SeqFwd, AruLie, Spoof, Flip, Truncate, Capture,
            ],
            Class::Data | Class::Groups | Class::Request => &[
                Drop, Storm, Delay, RingId, SeqBack, SeqFwd, Retype, Retype, Retype, Retype, Spoof,
                Flip, Capture,
            ],
            Class::Form1 | Class::Form2 => {
                &[Drop, Storm, Delay, RingId, SeqBack, Spoof, Flip, Capture]
            }
            _ => &[Drop, Storm, Delay, RingId, Spoof, Flip, Truncate, Capture],
        }
    }
}

/// One mutation applied: to the `nth` datagram of `class` in its episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// The datagram's class.
    pub class: Class,
    /// Its number among the episode's datagrams of that class (from 0).
    pub nth: u32,
    /// What was done.
    pub mutation: Mutation,
    /// Seed of the mutation's parameters.
    pub subseed: u64,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} {} {} {}",
            self.class.name(),
            self.nth,
            self.mutation.name(),
            self.subseed
        )
    }
}

impl std::str::FromStr for Event {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() != 5 || w[0] != "event" {
            bail!("`event CLASS N MUTATION SEED` expected: {s:?}");
        }
        Ok(Self {
            class: Class::parse(w[1])?,
            nth: w[2].parse().context("bad n")?,
            mutation: Mutation::parse(w[3])?,
            subseed: w[4].parse().context("bad seed")?,
        })
    }
}

/// A rule of an episode's plan: mutate `pct`% of the datagrams of `class`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    pub(super) class: Class,
    pub(super) mutation: Mutation,
    pub(super) pct: u32,
}

pub(super) fn draw_rules(rng: &mut Rng, benign_only: bool) -> Vec<Rule> {
    if rng.chance(15) {
        return Vec::new(); // a valid episode
    }
    (0..1 + rng.below(3))
        .map(|_| {
            let class = rng.pick(&[
                Class::Alive,
                Class::Join,
                Class::Refer,
                Class::Form1,
                Class::Form2,
                Class::Token,
                Class::Token,
                Class::Data,
                Class::Data,
                Class::Groups,
                Class::Groups,
                Class::Groups,
                Class::Request,
                Class::Request,
            ]);
            let mutation = if benign_only {
                rng.pick(&[Mutation::Drop, Mutation::Storm, Mutation::Delay])
            } else {
                rng.pick(Mutation::for_class(class))
            };
            Rule {
                class,
                mutation,
                pct: rng.pick(&[5, 20, 50, 100]),
            }
        })
        .collect()
}

/// Applies `m` to a datagram; the copies to send, each after a delay (ms).
pub(super) fn apply(
    m: Mutation,
    subseed: u64,
    token_port: bool,
    bytes: &Bytes,
    ids: [DaemonId; 2],
) -> Vec<(u64, Bytes)> {
    let mut rng = Rng::new(subseed);
    let mut v = bytes.to_vec();
    let rewrite = |v: &mut Vec<u8>, f: &mut dyn FnMut(&mut RingId, &mut Seq, &mut DaemonId)| {
        if token_port {
            let _ =
                TokenHeader::rewrite(v, |h| f(&mut h.memb_id, &mut h.seq, &mut h.transmiter_id));
        } else {
            let _ =
                PacketHeader::rewrite(v, |h| f(&mut h.memb_id, &mut h.seq, &mut h.transmiter_id));
        }
    };
    match m {
        Mutation::Drop => return Vec::new(),
        Mutation::Storm => {
            let n = 2 + rng.below(39);
            return (0..n).map(|_| (0, bytes.clone())).collect();
        }
        Mutation::Delay => return vec![(200 + rng.below(2800) as u64, bytes.clone())],
        Mutation::RingId => {
            let other = DaemonId(rng.u64() as u32);
            let leader = rng.pick(&[ids[0], ids[1], other]);
            let dt = rng.pick(&[1i32, -1, 1000, i32::MIN / 2]);
            rewrite(&mut v, &mut |r, _, _| {
                r.leader = leader;
                r.time = r.time.wrapping_add(dt);
            });
        }
        Mutation::SeqBack => {
            let k = 1 + rng.below(20) as u32;
            rewrite(&mut v, &mut |_, s, _| s.0 = s.0.saturating_sub(k));
        }
        Mutation::SeqFwd => {
            let k = rng.pick(&[1u32, 1, 2, 5, 50]);
            rewrite(&mut v, &mut |_, s, _| s.0 = s.0.wrapping_add(k));
        }
        Mutation::AruLie => {
            let how = rng.below(4);
            let who = rng.pick(&ids);
            if token_port {
                let _ = TokenHeader::rewrite(&mut v, |h| {
                    h.aru = match how {
                        0 => h.seq,
                        1 => Seq(0),
                        2 => Seq(h.seq.0.wrapping_add(10)),
                        _ => Seq(h.aru.0.wrapping_add(5)),
                    };
                    h.aru_last_id = who;
                });
            }
        }
        Mutation::Retype => {
            let kind = rng.pick(&[
                ServiceType::JOIN_MESS.0,
                ServiceType::LEAVE_MESS.0,
                ServiceType::KILL_MESS.0,
                0x0008_0000, // GROUPS_MESS
                ServiceType::AGREED.0,
                ServiceType::RELIABLE.0,
            ]);
            if let Ok(Datagram::Packet(mut p)) = Datagram::decode_accepted(false, &v) {
                if let PacketBody::Data(d) = &mut p.body {
                    if let Some((i, mut h)) = first_message(&d.fragments) {
                        h.kind = kind;
                        let mut data = d.fragments[i].data.to_vec();
                        let mut head = Vec::with_capacity(MessageHeader::LEN);
                        h.encode(&mut head);
                        data[..MessageHeader::LEN].copy_from_slice(&head);
                        d.fragments[i].data = Bytes::from(data);
                        v = p.to_vec();
                    }
                }
            }
        }
        Mutation::Spoof => {
            let other = DaemonId(rng.u64() as u32);
            let who = rng.pick(&[ids[0], other]);
            rewrite(&mut v, &mut |_, _, t| *t = who);
        }
        Mutation::Flip => {
            if !v.is_empty() {
                let from = if rng.chance(80) && v.len() > HEADER_LEN {
                    HEADER_LEN
                } else {
                    0
                };
                let i = from + rng.below(v.len() - from);
                v[i] ^= 1 + rng.below(255) as u8;
            }
        }
        Mutation::Truncate => {
            let keep = rng.below(v.len().max(1));
            v.truncate(keep);
        }
        Mutation::Capture => {
            let (data, token) = captured();
            let list = if token_port { token } else { data };
            if !list.is_empty() {
                let mut c = list[rng.below(list.len())].clone();
                let me = ids[1];
                if token_port {
                    if let Ok(h) = TokenHeader::decode(&mut &v[..]) {
                        let keep_ring = rng.chance(50);
                        let _ = TokenHeader::rewrite(&mut c, |x| {
                            x.conf_hash = h.conf_hash;
                            x.transmiter_id = me;
                            if keep_ring {
                                x.memb_id = h.memb_id;
                            }
                        });
                    }
                } else if let Ok(h) = PacketHeader::decode(&mut &v[..]) {
                    let keep_ring = rng.chance(50);
                    let _ = PacketHeader::rewrite(&mut c, |x| {
                        x.conf_hash = h.conf_hash;
                        x.transmiter_id = me;
                        x.proc_id = me;
                        if keep_ring {
                            x.memb_id = h.memb_id;
                        }
                    });
                }
                v = c;
            }
        }
    }
    vec![(0, Bytes::from(v))]
}
