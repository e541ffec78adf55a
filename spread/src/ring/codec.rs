//! Maps the engine's typed packets to and from Spread 5.0.1 datagrams, using the byte-exact
//! codecs of [`crate::wire::daemon`].
//!
//! Exact on the wire: data packets (header, fragments, packing), HURRY, regular tokens
//! (arq/retrans bits, aru, aru_last_id, flow_control, retransmission blocks), FORM1/FORM2
//! layouts (members_info, reps_info / new ring id, ring_info with holes and transitional
//! sets). Where our membership carries facts 5.0.1 encodes differently the mapping is:
//! * ALIVE, JOIN and REFER exactly as 5.0.1 (JOIN: F_members then F_reps and the stale
//!   `rep_index`, header `memb_id` 0; REFER: header only, `memb_id` = (referred rep, rep type));
//! * ring_info as 5.0.1: `aru` = the largest ring-wide aru of the daemons moving from that
//!   ring, `holes` = the seqs above it none of them holds, `trans_time` stamped by the new
//!   leader, the commit list = the transitional set, then the rest of the commit set.
//!
//! Receive-side acceptance as 5.0.1 (§1.1): configuration hash, known transmitter (the shell
//! has checked the source address), datagram length.

use bytes::Bytes;

use super::packet::{Form, Packet, RingEntry};
use crate::wire::daemon::{
    self as w, Form1Body, Form2Body, MembersInfo, RepInfo, RepType, RepsInfo, RingInfo, TokenBody,
    TokenHeader,
};
use crate::wire::daemon::{DaemonId, RingId, Seq, TypeBits};

/// Why a datagram was not turned into a packet. Nothing changes in the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not a valid 5.0.1 datagram.
    #[error("malformed: {0}")]
    Malformed(#[from] w::DecodeError),
    /// Valid, but from another configuration (hash differs): dropped silently by 5.0.1.
    #[error("configuration hash {0:#x} differs")]
    OtherConfiguration(u32),
    /// Valid 5.0.1 packet this engine does not act on (ALIVE, REFER, monitor…).
    #[error("ignored packet type {0:#x}")]
    Ignored(u32),
}

/// Encodes `p`, sent by `me`, in native byte order with configuration hash `hash`.
pub fn encode(me: DaemonId, hash: u32, p: &Packet) -> Bytes {
    let me_p = me;
    match p {
        Packet::Form1(f) | Packet::Form2(f) => {
            let form2 = matches!(p, Packet::Form2(_));
            let kind = if form2 {
                TypeBits::FORM2
            } else {
                TypeBits::FORM1
            };
            let mut h = TokenHeader::new(kind, me_p, f.form_id, hash);
            h.seq = Seq(f.last_seq);
            h.aru_last_id = DaemonId(0);
            let rings = f.rings.iter().map(ring_info).collect();
            let body = if form2 {
                let split = usize::from(f.visited).min(f.members.len());
                let (done, rest) = f.members.split_at(split);
                TokenBody::Form2(Box::new(Form2Body {
                    members: MembersInfo {
                        members: done.to_vec(),
                        pending: rest.to_vec(),
                        stale: Vec::new(),
                    },
                    new_ring_id: f.new_ring,
                    rings,
                }))
            } else {
                TokenBody::Form1(Box::new(Form1Body {
                    members: MembersInfo {
                        members: f.members.to_vec(),
                        pending: f.pending.to_vec(),
                        stale: Vec::new(),
                    },
                    reps: RepsInfo {
                        rep_index: i16::try_from(f.rep_index).unwrap_or(i16::MAX),
                        reps: f.reps.clone(),
                        stale: Vec::new(),
                    },
                    rings,
                }))
            };
            Bytes::from(w::Token { header: h, body }.to_vec())
        }
    }
}

/// Is this a representative type 5.0.1 knows?
fn known_rep_type(r: &RepInfo) -> bool {
    matches!(
        r.rep_type,
        RepType::POTENTIAL | RepType::SEG | RepType::RING
    )
}

fn ring_info(e: &RingEntry) -> RingInfo {
    // 5.0.1: `aru` is the ring-wide aru; `holes` the seqs above it nobody moving from that
    // ring holds (everything up to `aru_max` is held by someone).
    // `checked_add`: with aru_max = u32::MAX there is nothing above it (found by the ring_packet
    // campaign: `saturating_add` listed u32::MAX itself as a hole).
    let holes = e
        .aru_max
        .checked_add(1)
        .into_iter()
        .flat_map(|first| first..=e.highest)
        .take(4 * super::MAX_SEQ_GAP as usize)
        .filter(|s| e.extra.binary_search(s).is_err())
        .map(Seq)
        .collect();
    RingInfo {
        memb_id: e.ring,
        trans_time: e.trans_time,
        aru: Seq(e.safe_aru),
        highest_seq: Seq(e.highest),
        holes,
        trans: e.trans.to_vec(),
        commit_rest: e.commit.to_vec(),
    }
}

fn ring_entry(r: &RingInfo) -> Result<RingEntry, CodecError> {
    let (aru, highest) = (r.aru.0, r.highest_seq.0);
    if highest.saturating_sub(aru) > 4 * super::MAX_SEQ_GAP {
        return Err(CodecError::Malformed(w::DecodeError::Malformed(
            "ring_info spans too many seqs",
        )));
    }
    let mut holes: Vec<u32> = r.holes.iter().map(|s| s.0).collect();
    holes.sort_unstable();
    let mut aru_max = aru;
    let mut extra: Vec<u32> = (aru.saturating_add(1)..=highest)
        .filter(|s| holes.binary_search(s).is_err())
        .collect();
    // `checked_add`: a hostile ring_info may carry aru = u32::MAX (found by the ring_packet
    // corpus replay).
    while aru_max
        .checked_add(1)
        .is_some_and(|next| extra.first() == Some(&next))
    {
        extra.remove(0);
        aru_max += 1;
    }
    Ok(RingEntry {
        ring: r.memb_id,
        aru_max,
        highest,
        extra,
        safe_aru: aru,
        trans: r.trans.to_vec(),
        commit: r.commit_rest.to_vec(),
        trans_time: r.trans_time,
    })
}

/// A received token-port datagram as the engine takes it.
#[derive(Debug)]
pub(crate) enum Received {
    /// A regular token, as received.
    Token(w::Token),
    /// FORM1.
    Form1(Form),
    /// FORM2.
    Form2(Form),
}

/// The engine's view of a received token-port datagram.
pub(crate) fn token_packet(t: w::Token) -> Result<Received, CodecError> {
    let h = t.header;
    let packet = match t.body {
        TokenBody::Regular(_) => Received::Token(t),
        TokenBody::Form1(f) => Received::Form1(Form {
            form_id: h.memb_id,
            members: f.members.members.to_vec(),
            pending: f.members.pending.to_vec(),
            visited: 0,
            reps: if f.reps.reps.iter().all(known_rep_type) {
                f.reps.reps.clone()
            } else {
                return Err(CodecError::Ignored(h.kind.0));
            },
            rep_index: u16::try_from(f.reps.rep_index).unwrap_or(0),
            new_ring: RingId::default(),
            last_seq: h.seq.0,
            rings: f.rings.iter().map(ring_entry).collect::<Result<_, _>>()?,
        }),
        TokenBody::Form2(f) => {
            let visited = u16::try_from(f.members.members.len()).unwrap_or(u16::MAX);
            let members = f
                .members
                .members
                .iter()
                .chain(f.members.pending.iter())
                .copied()
                .collect();
            Received::Form2(Form {
                form_id: h.memb_id,
                members,
                pending: Vec::new(),
                visited,
                reps: Vec::new(),
                rep_index: 0,
                new_ring: f.new_ring_id,
                last_seq: h.seq.0,
                rings: f.rings.iter().map(ring_entry).collect::<Result<_, _>>()?,
            })
        }
    };
    Ok(packet)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::daemon::{Datagram, DatagramError};

    const HASH: u32 = 0x9f2a_d697;

    /// The engine's view of a datagram (what the engine's receive path does).
    pub(crate) fn decode(
        hash: u32,
        token: bool,
        bytes: &[u8],
    ) -> Result<(DaemonId, Packet), CodecError> {
        let d = Datagram::decode(hash, token, bytes).map_err(|e| match e {
            DatagramError::Malformed(e) => CodecError::Malformed(e),
            DatagramError::OtherConfiguration(h) => CodecError::OtherConfiguration(h),
        })?;
        let tx = d.transmitter();
        let p = match d {
            Datagram::Packet(p) => return Err(CodecError::Ignored(p.header.kind.0)),
            Datagram::Token(t) => match token_packet(t)? {
                Received::Form1(f) => Packet::Form1(f),
                Received::Form2(f) => Packet::Form2(f),
                Received::Token(t) => return Err(CodecError::Ignored(t.header.kind.0)),
            },
        };
        Ok((tx, p))
    }

    fn rid(l: u32, t: i32) -> RingId {
        RingId {
            leader: DaemonId(l),
            time: t,
        }
    }

    #[test]
    fn typed_packets_round_trip_through_5_0_1_layouts() {
        let entry = RingEntry {
            ring: rid(1, 1),
            aru_max: 4,
            highest: 9,
            extra: vec![6, 9],
            safe_aru: 3,
            trans: vec![DaemonId(1), DaemonId(3)],
            commit: vec![DaemonId(4)],
            trans_time: 0,
        };
        let form2 = Packet::Form2(Form {
            form_id: rid(1, 3),
            members: vec![DaemonId(1), DaemonId(3)],
            pending: vec![],
            visited: 1,
            reps: vec![],
            rep_index: 0,
            new_ring: rid(1, 4),
            last_seq: 3342,
            rings: vec![entry.clone()],
        });
        let form1 = Packet::Form1(Form {
            form_id: rid(1, 3),
            members: vec![DaemonId(1)],
            pending: vec![DaemonId(3)],
            visited: 0,
            reps: vec![
                RepInfo {
                    proc_id: DaemonId(1),
                    rep_type: RepType::SEG,
                    seg_index: 0,
                },
                RepInfo {
                    proc_id: DaemonId(7),
                    rep_type: RepType::RING,
                    seg_index: 2,
                },
            ],
            rep_index: 1,
            new_ring: RingId::default(),
            last_seq: 3342,
            rings: vec![entry],
        });
        for (p, tok) in [(form1, true), (form2, true)] {
            let b = encode(DaemonId(42), HASH, &p);
            assert_eq!(
                decode(HASH, tok, &b),
                Ok((DaemonId(42), p.clone())),
                "{p:?}"
            );
            assert_eq!(
                decode(HASH + 1, tok, &b),
                Err(CodecError::OtherConfiguration(HASH))
            );
            for cut in 0..b.len() {
                assert!(
                    decode(HASH, tok, &b[..cut]).is_err(),
                    "prefix {cut} of {p:?}"
                );
            }
        }
    }
}
