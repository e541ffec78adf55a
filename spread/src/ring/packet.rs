//! Typed daemon↔daemon packets as the ring and membership state machines see them, and the
//! engine's byte encoding of them.
//!
//! The state machines only ever work on these typed values; [`super::codec`] is the single
//! place where they become Spread 5.0.1 datagrams and back.

use super::types::{DaemonId, RingId, MAX_PROCS_RING};
use crate::wire::daemon::RepInfo;

/// Most daemons named in one list.
pub const MAX_IDS: usize = MAX_PROCS_RING;

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
    /// The rest of 5.0.1's commit set: daemons beyond `trans` that members of `trans` had
    /// committed to (a membership that failed after they finished its EVS), in 5.0.1's order.
    pub commit: Vec<DaemonId>,
    /// 0 until the new leader stamps the transitional time (5.0.1 `trans_time`).
    pub trans_time: i32,
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
    /// FORM1: representatives (SEG_REPs first, then configuration order); each adds the
    /// daemons it represents when visited.
    pub reps: Vec<RepInfo>,
    /// FORM1: next representative to visit.
    pub rep_index: u16,
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
    /// FORM1 token (token port).
    Form1(Form),
    /// FORM2 token (token port).
    Form2(Form),
}
