//! Typed daemon↔daemon packets as the ring and membership state machines see them, and the
//! engine's byte encoding of them.
//!
//! The state machines only ever work on these typed values; `encode`/`decode` are the single
//! place where bytes are produced or read, so the byte layout can be swapped for the exact
//! Spread 5.0.1 codecs of `spread::wire::daemon` without touching the protocol logic.
//! Decoding checks `remaining()` before every read and every count against a named maximum
//! before allocating; it never panics.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::types::{Class, DaemonId, RingId, MAX_PROCS_RING};

/// Largest body of one data packet (1472-byte UDP payload minus the 40-byte header).
pub const MAX_PACKET_BODY: usize = 1432;
/// Most sequence numbers one retransmission block may carry.
pub const MAX_RTR_SEQS: usize = 512;
/// Most retransmission blocks one token may carry.
pub const MAX_RTR_BLOCKS: usize = MAX_PROCS_RING;
/// Most old-ring entries one FORM token may carry (MAX_FORM_REPS in 5.0.1).
pub const MAX_FORM_RINGS: usize = 20;
/// Most "held above aru" sequence numbers a FORM ring entry may list.
pub const MAX_ENTRY_EXTRA: usize = 4096;
/// Most fragments in one data packet.
pub const MAX_FRAGS: usize = 1 + MAX_PACKET_BODY / 4;

/// Errors from [`decode`]. The engine counts them as malformed and drops the packet; no state
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Fewer bytes than the field needs.
    #[error("truncated packet reading {0}")]
    Truncated(&'static str),
    /// A count is larger than its named maximum.
    #[error("{0} too large")]
    TooLong(&'static str),
    /// Unknown packet kind or class.
    #[error("unknown packet kind {0}")]
    BadKind(u8),
}

/// One fragment of a message inside a data packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frag {
    /// k+1 if element k of a message with more elements following, −(number of elements)
    /// for the last element (5.0.1's convention).
    pub index: i16,
    /// The bytes of this element.
    pub data: Bytes,
}

/// A data packet: one or more message fragments with a ring sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket {
    /// Ring the sequence number belongs to.
    pub ring: RingId,
    /// Sequence number in that ring.
    pub seq: u32,
    /// Originating daemon.
    pub sender: DaemonId,
    /// Sender's token round when sent.
    pub round: u32,
    /// Delivery class of every message in the packet.
    pub class: Class,
    /// Fragments, in order.
    pub frags: Vec<Frag>,
}

/// Retransmission request block carried on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtrBlock {
    /// Ring the requested sequence numbers belong to.
    pub ring: RingId,
    /// Daemon asking.
    pub requester: DaemonId,
    /// Requested sequence numbers, ascending.
    pub seqs: Vec<u32>,
}

/// Regular token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Ring this token circulates in.
    pub ring: RingId,
    /// Highest sequence number assigned so far (EVS: the FORM's last_seq).
    pub seq: u32,
    /// All-received-up-to, lowered by anyone missing something.
    pub aru: u32,
    /// Daemon that last set `aru` (None on a ring's first token).
    pub aru_last: Option<DaemonId>,
    /// Packets sent in the last rotation.
    pub fc: u16,
    /// 4-bit rotation counter, bumped by the leader.
    pub arq: u8,
    /// 4-bit re-send counter.
    pub retrans: u8,
    /// Retransmission requests.
    pub rtr: Vec<RtrBlock>,
}

/// JOIN: "I am gathering a membership and represent these daemons".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The ring the sender currently has (or last had).
    pub ring: RingId,
    /// Whether that ring is still running at the sender (it is a ring leader merging).
    pub ring_alive: bool,
    /// Daemons the sender brings into a new membership (itself, or its whole live ring).
    pub represented: Vec<DaemonId>,
}

/// What one old ring contributes to a new membership (5.0.1's `ring_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingEntry {
    /// The old ring.
    pub ring: RingId,
    /// Every seq up to this is held by some member moving from that ring.
    pub aru_max: u32,
    /// Highest seq any such member saw.
    pub highest: u32,
    /// Seqs above `aru_max` held by some such member, ascending.
    pub extra: Vec<u32>,
    /// Largest ring-wide aru any such member computed (SAFE delivery bound in the regular
    /// configuration).
    pub safe_aru: u32,
    /// Members of the new ring coming from this old ring (the transitional set).
    pub trans: Vec<DaemonId>,
}

impl RingEntry {
    /// Is `seq` in the set of packets the transitional set will deliver?
    pub fn contains(&self, seq: u32) -> bool {
        seq <= self.aru_max || self.extra.binary_search(&seq).is_ok()
    }

    /// Last seq of the agreed set.
    pub fn last(&self) -> u32 {
        self.extra.last().copied().unwrap_or(0).max(self.aru_max)
    }
}

/// FORM1 / FORM2 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Id of this form attempt (creator, creator time).
    pub form_id: RingId,
    /// FORM1: visited members; FORM2: all members of the new ring, configuration order.
    pub members: Vec<DaemonId>,
    /// FORM1: still to visit; FORM2: how many members have received it (in `visited`).
    pub pending: Vec<DaemonId>,
    /// FORM2: members that already installed the future ring.
    pub visited: u16,
    /// New ring id (written by the new leader in FORM2).
    pub new_ring: RingId,
    /// EVS end marker (5.0.1: highest seq + 3333).
    pub last_seq: u32,
    /// Old rings' entries.
    pub rings: Vec<RingEntry>,
}

/// Every packet the engine sends or receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Ordered message fragments (data port).
    Data(DataPacket),
    /// Membership JOIN (data port).
    Join(Join),
    /// "Release the held token" (data port).
    Hurry,
    /// Regular token (token port).
    Token(Token),
    /// FORM1 token (token port).
    Form1(Form),
    /// FORM2 token (token port).
    Form2(Form),
}

const K_DATA: u8 = 1;
const K_JOIN: u8 = 2;
const K_HURRY: u8 = 3;
const K_TOKEN: u8 = 4;
const K_FORM1: u8 = 5;
const K_FORM2: u8 = 6;

/// Encodes `p` sent by `transmitter`.
pub fn encode(transmitter: DaemonId, p: &Packet) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    let kind = match p {
        Packet::Data(_) => K_DATA,
        Packet::Join(_) => K_JOIN,
        Packet::Hurry => K_HURRY,
        Packet::Token(_) => K_TOKEN,
        Packet::Form1(_) => K_FORM1,
        Packet::Form2(_) => K_FORM2,
    };
    b.put_u8(kind);
    b.put_u32_le(transmitter.0);
    match p {
        Packet::Data(d) => {
            put_ring(&mut b, d.ring);
            b.put_u32_le(d.seq);
            b.put_u32_le(d.sender.0);
            b.put_u32_le(d.round);
            b.put_u8(d.class as u8);
            b.put_u16_le(len16(d.frags.len()));
            for f in &d.frags {
                b.put_i16_le(f.index);
                b.put_u16_le(len16(f.data.len()));
                b.put_slice(&f.data);
            }
        }
        Packet::Join(j) => {
            put_ring(&mut b, j.ring);
            b.put_u8(u8::from(j.ring_alive));
            put_ids(&mut b, &j.represented);
        }
        Packet::Hurry => {}
        Packet::Token(t) => {
            put_ring(&mut b, t.ring);
            b.put_u32_le(t.seq);
            b.put_u32_le(t.aru);
            b.put_u32_le(t.aru_last.map_or(u32::MAX, |d| d.0));
            b.put_u16_le(t.fc);
            b.put_u8(t.arq);
            b.put_u8(t.retrans);
            b.put_u16_le(len16(t.rtr.len()));
            for r in &t.rtr {
                put_ring(&mut b, r.ring);
                b.put_u32_le(r.requester.0);
                put_u32s(&mut b, &r.seqs);
            }
        }
        Packet::Form1(f) | Packet::Form2(f) => {
            put_ring(&mut b, f.form_id);
            put_ids(&mut b, &f.members);
            put_ids(&mut b, &f.pending);
            b.put_u16_le(f.visited);
            put_ring(&mut b, f.new_ring);
            b.put_u32_le(f.last_seq);
            b.put_u16_le(len16(f.rings.len()));
            for e in &f.rings {
                put_ring(&mut b, e.ring);
                b.put_u32_le(e.aru_max);
                b.put_u32_le(e.highest);
                put_u32s(&mut b, &e.extra);
                b.put_u32_le(e.safe_aru);
                put_ids(&mut b, &e.trans);
            }
        }
    }
    b.freeze()
}

/// Decodes one datagram into (transmitter, packet).
pub fn decode(mut b: Bytes) -> Result<(DaemonId, Packet), PacketError> {
    let kind = get_u8(&mut b, "kind")?;
    let tx = DaemonId(get_u32(&mut b, "transmitter")?);
    let p = match kind {
        K_DATA => {
            let ring = get_ring(&mut b)?;
            let seq = get_u32(&mut b, "seq")?;
            let sender = DaemonId(get_u32(&mut b, "sender")?);
            let round = get_u32(&mut b, "round")?;
            let c = get_u8(&mut b, "class")?;
            let class = Class::from_u8(c).ok_or(PacketError::BadKind(c))?;
            let n = usize::from(get_u16(&mut b, "frag count")?);
            if n > MAX_FRAGS {
                return Err(PacketError::TooLong("fragments"));
            }
            let mut frags = Vec::with_capacity(n);
            for _ in 0..n {
                let index = get_u16(&mut b, "frag index")? as i16;
                let len = usize::from(get_u16(&mut b, "frag len")?);
                if len > MAX_PACKET_BODY {
                    return Err(PacketError::TooLong("fragment"));
                }
                if b.remaining() < len {
                    return Err(PacketError::Truncated("fragment"));
                }
                frags.push(Frag {
                    index,
                    data: b.split_to(len),
                });
            }
            Packet::Data(DataPacket {
                ring,
                seq,
                sender,
                round,
                class,
                frags,
            })
        }
        K_JOIN => {
            let ring = get_ring(&mut b)?;
            let ring_alive = get_u8(&mut b, "alive")? != 0;
            let represented = get_ids(&mut b)?;
            Packet::Join(Join {
                ring,
                ring_alive,
                represented,
            })
        }
        K_HURRY => Packet::Hurry,
        K_TOKEN => {
            let ring = get_ring(&mut b)?;
            let seq = get_u32(&mut b, "seq")?;
            let aru = get_u32(&mut b, "aru")?;
            let last = get_u32(&mut b, "aru_last")?;
            let fc = get_u16(&mut b, "fc")?;
            let arq = get_u8(&mut b, "arq")? & 0x0f;
            let retrans = get_u8(&mut b, "retrans")? & 0x0f;
            let n = usize::from(get_u16(&mut b, "rtr count")?);
            if n > MAX_RTR_BLOCKS {
                return Err(PacketError::TooLong("rtr blocks"));
            }
            let mut rtr = Vec::with_capacity(n);
            for _ in 0..n {
                let ring = get_ring(&mut b)?;
                let requester = DaemonId(get_u32(&mut b, "requester")?);
                let seqs = get_u32s(&mut b, MAX_RTR_SEQS)?;
                rtr.push(RtrBlock {
                    ring,
                    requester,
                    seqs,
                });
            }
            Packet::Token(Token {
                ring,
                seq,
                aru,
                aru_last: (last != u32::MAX).then_some(DaemonId(last)),
                fc,
                arq,
                retrans,
                rtr,
            })
        }
        K_FORM1 | K_FORM2 => {
            let form_id = get_ring(&mut b)?;
            let members = get_ids(&mut b)?;
            let pending = get_ids(&mut b)?;
            let visited = get_u16(&mut b, "visited")?;
            let new_ring = get_ring(&mut b)?;
            let last_seq = get_u32(&mut b, "last_seq")?;
            let n = usize::from(get_u16(&mut b, "rings")?);
            if n > MAX_FORM_RINGS {
                return Err(PacketError::TooLong("form rings"));
            }
            let mut rings = Vec::with_capacity(n);
            for _ in 0..n {
                rings.push(RingEntry {
                    ring: get_ring(&mut b)?,
                    aru_max: get_u32(&mut b, "aru_max")?,
                    highest: get_u32(&mut b, "highest")?,
                    extra: get_u32s(&mut b, MAX_ENTRY_EXTRA)?,
                    safe_aru: get_u32(&mut b, "safe_aru")?,
                    trans: get_ids(&mut b)?,
                });
            }
            let f = Form {
                form_id,
                members,
                pending,
                visited,
                new_ring,
                last_seq,
                rings,
            };
            if kind == K_FORM1 {
                Packet::Form1(f)
            } else {
                Packet::Form2(f)
            }
        }
        k => return Err(PacketError::BadKind(k)),
    };
    Ok((tx, p))
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn put_ring(b: &mut BytesMut, r: RingId) {
    b.put_u32_le(r.leader.0);
    b.put_u32_le(r.time);
}

fn put_ids(b: &mut BytesMut, ids: &[DaemonId]) {
    b.put_u16_le(len16(ids.len()));
    for d in ids {
        b.put_u32_le(d.0);
    }
}

fn put_u32s(b: &mut BytesMut, v: &[u32]) {
    b.put_u16_le(len16(v.len()));
    for s in v {
        b.put_u32_le(*s);
    }
}

fn get_u8(b: &mut Bytes, what: &'static str) -> Result<u8, PacketError> {
    if b.remaining() < 1 {
        return Err(PacketError::Truncated(what));
    }
    Ok(b.get_u8())
}

fn get_u16(b: &mut Bytes, what: &'static str) -> Result<u16, PacketError> {
    if b.remaining() < 2 {
        return Err(PacketError::Truncated(what));
    }
    Ok(b.get_u16_le())
}

fn get_u32(b: &mut Bytes, what: &'static str) -> Result<u32, PacketError> {
    if b.remaining() < 4 {
        return Err(PacketError::Truncated(what));
    }
    Ok(b.get_u32_le())
}

fn get_ring(b: &mut Bytes) -> Result<RingId, PacketError> {
    Ok(RingId {
        leader: DaemonId(get_u32(b, "ring leader")?),
        time: get_u32(b, "ring time")?,
    })
}

fn get_ids(b: &mut Bytes) -> Result<Vec<DaemonId>, PacketError> {
    let n = usize::from(get_u16(b, "id count")?);
    if n > MAX_PROCS_RING {
        return Err(PacketError::TooLong("id list"));
    }
    if b.remaining() < 4 * n {
        return Err(PacketError::Truncated("id list"));
    }
    Ok((0..n).map(|_| DaemonId(b.get_u32_le())).collect())
}

fn get_u32s(b: &mut Bytes, max: usize) -> Result<Vec<u32>, PacketError> {
    let n = usize::from(get_u16(b, "seq count")?);
    if n > max {
        return Err(PacketError::TooLong("seq list"));
    }
    if b.remaining() < 4 * n {
        return Err(PacketError::Truncated("seq list"));
    }
    Ok((0..n).map(|_| b.get_u32_le()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(l: u32, t: u32) -> RingId {
        RingId {
            leader: DaemonId(l),
            time: t,
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let packets = vec![
            Packet::Data(DataPacket {
                ring: ring(1, 2),
                seq: 7,
                sender: DaemonId(3),
                round: 4,
                class: Class::Safe,
                frags: vec![
                    Frag {
                        index: 1,
                        data: Bytes::from_static(b"abc"),
                    },
                    Frag {
                        index: -2,
                        data: Bytes::new(),
                    },
                ],
            }),
            Packet::Join(Join {
                ring: ring(5, 6),
                ring_alive: true,
                represented: vec![DaemonId(5), DaemonId(9)],
            }),
            Packet::Hurry,
            Packet::Token(Token {
                ring: ring(1, 1),
                seq: 10,
                aru: 8,
                aru_last: Some(DaemonId(2)),
                fc: 3,
                arq: 15,
                retrans: 2,
                rtr: vec![RtrBlock {
                    ring: ring(1, 1),
                    requester: DaemonId(2),
                    seqs: vec![9, 10],
                }],
            }),
            Packet::Form2(Form {
                form_id: ring(1, 3),
                members: vec![DaemonId(1)],
                pending: vec![],
                visited: 1,
                new_ring: ring(1, 4),
                last_seq: 3333,
                rings: vec![RingEntry {
                    ring: ring(1, 1),
                    aru_max: 4,
                    highest: 9,
                    extra: vec![6, 9],
                    safe_aru: 3,
                    trans: vec![DaemonId(1)],
                }],
            }),
        ];
        for p in packets {
            let bytes = encode(DaemonId(42), &p);
            assert_eq!(decode(bytes.clone()), Ok((DaemonId(42), p)));
            // Every strict prefix is rejected, never a panic.
            for cut in 0..bytes.len() {
                let r = decode(bytes.slice(..cut));
                if let Ok((_, q)) = r {
                    assert!(matches!(q, Packet::Hurry), "prefix {cut} decoded");
                }
            }
        }
    }

    #[test]
    fn hostile_counts_are_rejected() {
        let mut b = BytesMut::new();
        b.put_u8(K_JOIN);
        b.put_u32_le(1);
        b.put_u64_le(0);
        b.put_u8(0);
        b.put_u16_le(u16::MAX);
        assert_eq!(decode(b.freeze()), Err(PacketError::TooLong("id list")));
        assert_eq!(
            decode(Bytes::from_static(&[99, 0, 0, 0, 0])),
            Err(PacketError::BadKind(99))
        );
    }
}
