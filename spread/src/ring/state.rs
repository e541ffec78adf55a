//! The engine's bookkeeping that outlives membership phases: the installed ring and its
//! packets, the token's duplicate suppression and holding, and the send queue's messages.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};

use super::{Class, DaemonId, RingId};
use crate::wire::daemon as w;

/// A message waiting in the send queue.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) class: Class,
    pub(crate) payload: Bytes,
    /// Elements already put in packets.
    pub(crate) next: usize,
    /// Number of elements.
    pub(crate) total: usize,
}

/// A message being reassembled from its fragments.
#[derive(Debug, Clone)]
pub(crate) struct Partial {
    pub(crate) next: usize,
    pub(crate) data: BytesMut,
    /// An own message: the payload as submitted, delivered whole instead of a copy
    /// reassembled from its fragments (which are slices of it).
    pub(crate) whole: Option<Bytes>,
}

/// Own multi-fragment messages sent in this ring and not yet delivered, kept for delivery
/// without reassembly (at most this many).
pub(crate) const MAX_OWN_LARGE: usize = 256;

/// The installed ring and its packets.
#[derive(Debug, Clone)]
pub(crate) struct RingState {
    pub(crate) id: RingId,
    pub(crate) members: Vec<DaemonId>,
    /// Received packets not yet discarded.
    pub(crate) buf: BTreeMap<u32, w::Packet>,
    /// Every seq up to this has been received.
    pub(crate) my_aru: u32,
    /// Highest seq seen.
    pub(crate) highest: u32,
    /// Ring-wide aru: every member has every seq up to this (5.0.1's rule: the lower of the
    /// arus on the last two tokens this daemon sent).
    pub(crate) aru: u32,
    /// Every member has every seq up to this too, learnt from a token as it arrives
    /// ([`super::stable`]); SAFE delivery follows the higher of this and `aru`.
    pub(crate) stable: u32,
    /// The token this daemon last sent in this ring ([`super::stable`]).
    pub(crate) sent: Option<super::stable::Sent>,
    /// Delivered (or skipped) up to this seq.
    pub(crate) delivered: u32,
    /// Seqs above `delivered` already delivered on receipt (RELIABLE).
    pub(crate) early: BTreeSet<u32>,
    /// Everything up to this has been discarded from `buf`.
    pub(crate) discarded: u32,
    pub(crate) partial: BTreeMap<DaemonId, Partial>,
    /// Own multi-fragment messages sent in this ring, in send order ([`MAX_OWN_LARGE`]).
    pub(crate) own_large: std::collections::VecDeque<Bytes>,
}

impl RingState {
    pub(crate) fn new(id: RingId, members: Vec<DaemonId>) -> Self {
        Self {
            id,
            members,
            buf: BTreeMap::new(),
            my_aru: 0,
            highest: 0,
            aru: 0,
            stable: 0,
            sent: None,
            delivered: 0,
            early: BTreeSet::new(),
            discarded: 0,
            partial: BTreeMap::new(),
            own_large: std::collections::VecDeque::new(),
        }
    }

    /// SAFE packets up to this seq may be delivered: every member has them.
    pub(crate) fn safe_line(&self) -> u32 {
        self.aru.max(self.stable)
    }

    /// Has this daemon received `seq` of this ring (possibly discarded since)?
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn holds(&self, seq: u32) -> bool {
        seq <= self.discarded || self.buf.contains_key(&seq)
    }
}

/// Token bookkeeping (duplicate suppression, re-sending, holding).
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenState {
    /// Last token this daemon sent, with its destination.
    pub(crate) last_tx: Option<(DaemonId, w::Token)>,
    /// Leader: arq of the token it is waiting for.
    pub(crate) last_tx_arq: u8,
    /// Leader: a token is out and expected back.
    pub(crate) awaiting: bool,
    /// Leader: the token is held (idle ring).
    pub(crate) holding: bool,
    /// Leader holding the token: own messages came at this time; the held token is visited
    /// again at the next output poll (so every message of the same input goes with it).
    pub(crate) revisit_at: Option<crate::time::Instant>,
    /// My aru when it was last seen below the ring's highest seq, and since when it has not
    /// moved (a stall: [`super::Engine`]'s `stalled`).
    pub(crate) stall: Option<(u32, crate::time::Instant)>,
    /// Non-leader: arq of the last accepted token.
    pub(crate) last_rx_arq: Option<u8>,
    pub(crate) last_rx_retrans: u8,
    /// aru of the token sent one rotation before.
    pub(crate) prev_sent_aru: u32,
    /// Packets this daemon sent on its last visit (flow control).
    pub(crate) my_last_sent: u16,
    /// 5.0.1 `Token_counter`: consecutive token visits after which the ring-wide aru equalled
    /// the highest seq (the leader holds the token once it passes 1).
    pub(crate) token_counter: u32,
    /// Tokens processed in this ring.
    pub(crate) round: u32,
    /// seq of the token sent on the previous visit (accelerated ring's request limit).
    pub(crate) prev_sent_seq: u32,
    /// Accelerated ring: new packets to send right after the token.
    pub(crate) after_token: Vec<w::Packet>,
    /// A visited token kept for a local reply ([`super::reply`]).
    pub(crate) reply: Option<super::reply::ReplyHold>,
    /// Leader: when the token now out was sent (rotation time, [`super::Stats`]).
    pub(crate) rotation_start: Option<crate::time::Instant>,
}
