//! Membership structures (§6.1): ALIVE and JOIN bodies (data port), FORM1/FORM2 token bodies.
//!
//! 5.0.1 sends the fixed-size `members_info` (516 bytes) and `reps_info` (204 bytes) arrays
//! whole in FORM tokens, including slots past the counted entries that may still hold stale
//! ids from earlier use. Those are kept in `stale` so re-encoding is byte-exact; a locally
//! built value leaves `stale` empty (zero-filled on the wire).

use bytes::{Buf, BufMut};

use super::codec::{check_count, Reader, Writer};
use super::{DaemonId, DecodeError, Endian, RingId, Seq, MAX_FORM_REPS, MAX_PROCS_RING, MAX_REPS};

/// Most holes one ring entry may list (bounded by the largest token body).
pub const MAX_RING_HOLES: usize = super::MAX_TOKEN_BODY / 4;

/// Size of the full `members_info` in FORM tokens.
pub const MEMBERS_INFO_LEN: usize = 4 + 4 * MAX_PROCS_RING;
/// Size of the full `reps_info` in FORM1.
pub const REPS_INFO_LEN: usize = 4 + RepInfo::LEN * MAX_REPS;

fn read_ids<B: Buf>(
    r: &mut Reader<'_, B>,
    n: usize,
    what: &'static str,
) -> Result<Vec<DaemonId>, DecodeError> {
    r.need(what, 4 * n)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(DaemonId(r.u32(what)?));
    }
    Ok(v)
}

/// The full 516-byte `members_info` of a FORM token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MembersInfo {
    /// The first `num_members` slots.
    pub members: Vec<DaemonId>,
    /// The next `num_pending` slots.
    pub pending: Vec<DaemonId>,
    /// Leftover slots after them, up to the last non-zero one (re-encoding only).
    pub stale: Vec<DaemonId>,
}

impl MembersInfo {
    /// Decodes the fixed 516 bytes.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, endian);
        r.need("members_info", MEMBERS_INFO_LEN)?;
        let nm = r.count16("num_members", MAX_PROCS_RING)?;
        let np = r.count16("num_pending", MAX_PROCS_RING)?;
        check_count(
            "num_members + num_pending",
            (nm + np) as i64,
            MAX_PROCS_RING,
        )?;
        let mut slots = read_ids(&mut r, MAX_PROCS_RING, "members")?;
        let mut stale = slots.split_off(nm + np);
        let pending = slots.split_off(nm);
        while stale.last() == Some(&DaemonId(0)) {
            stale.pop();
        }
        Ok(Self {
            members: slots,
            pending,
            stale,
        })
    }

    /// Writes the fixed 516 bytes (entries beyond 128 slots are dropped).
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        let nm = self.members.len().min(MAX_PROCS_RING);
        let np = self.pending.len().min(MAX_PROCS_RING - nm);
        w.len16(nm);
        w.len16(np);
        let all = self
            .members
            .iter()
            .take(nm)
            .chain(self.pending.iter().take(np))
            .chain(self.stale.iter());
        let mut n = 0;
        for id in all.take(MAX_PROCS_RING) {
            w.u32(id.0);
            n += 1;
        }
        w.zeros(4 * (MAX_PROCS_RING - n));
    }
}

/// A representative's role (`rep_info.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RepType(pub i16);

impl RepType {
    /// Potential representative.
    pub const POTENTIAL: Self = Self(0);
    /// Segment representative (daemon without a ring).
    pub const SEG: Self = Self(1);
    /// Ring representative (leader of a live ring).
    pub const RING: Self = Self(2);
}

/// `rep_info` (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RepInfo {
    /// Representative's id.
    pub proc_id: DaemonId,
    /// Its role.
    pub rep_type: RepType,
    /// Its segment index.
    pub seg_index: i16,
}

impl RepInfo {
    /// Size on the wire.
    pub const LEN: usize = 8;

    fn read<B: Buf>(r: &mut Reader<'_, B>) -> Result<Self, DecodeError> {
        Ok(Self {
            proc_id: DaemonId(r.u32("rep proc_id")?),
            rep_type: RepType(r.i16("rep type")?),
            seg_index: r.i16("rep seg_index")?,
        })
    }

    fn write<B: BufMut>(&self, w: &mut Writer<'_, B>) {
        w.u32(self.proc_id.0);
        w.i16(self.rep_type.0);
        w.i16(self.seg_index);
    }

    fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

fn read_reps<B: Buf>(r: &mut Reader<'_, B>, n: usize) -> Result<Vec<RepInfo>, DecodeError> {
    r.need("reps", RepInfo::LEN * n)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(RepInfo::read(r)?);
    }
    Ok(v)
}

/// The full 204-byte `reps_info` of a FORM1 token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RepsInfo {
    /// Index of the next rep to visit.
    pub rep_index: i16,
    /// The first `num_reps` slots.
    pub reps: Vec<RepInfo>,
    /// Leftover slots, up to the last non-zero one (re-encoding only).
    pub stale: Vec<RepInfo>,
}

impl RepsInfo {
    /// Decodes the fixed 204 bytes.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, endian);
        r.need("reps_info", REPS_INFO_LEN)?;
        let n = r.count16("num_reps", MAX_REPS)?;
        let rep_index = r.i16("rep_index")?;
        let mut reps = read_reps(&mut r, MAX_REPS)?;
        let mut stale = reps.split_off(n);
        while stale.last().is_some_and(RepInfo::is_zero) {
            stale.pop();
        }
        Ok(Self {
            rep_index,
            reps,
            stale,
        })
    }

    /// Writes the fixed 204 bytes.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        let n = self.reps.len().min(MAX_REPS);
        w.len16(n);
        w.i16(self.rep_index);
        let mut k = 0;
        for rep in self
            .reps
            .iter()
            .take(n)
            .chain(self.stale.iter())
            .take(MAX_REPS)
        {
            rep.write(&mut w);
            k += 1;
        }
        w.zeros(RepInfo::LEN * (MAX_REPS - k));
    }
}

/// ALIVE body: `members_info` truncated to `4 + 4·num_members` bytes (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AliveBody {
    /// Daemons heard in this SEG phase, sender first.
    pub members: Vec<DaemonId>,
    /// `num_pending` as sent (0 from 5.0.1; its ids are not carried).
    pub num_pending: i16,
}

impl AliveBody {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        4 + 4 * self.members.len()
    }

    /// Decodes the truncated members list.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, endian);
        let n = r.count16("num_members", MAX_PROCS_RING)?;
        let num_pending = r.i16("num_pending")?;
        let members = read_ids(&mut r, n, "members")?;
        Ok(Self {
            members,
            num_pending,
        })
    }

    /// Writes the truncated members list.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        let n = self.members.len().min(MAX_PROCS_RING);
        w.len16(n);
        w.i16(self.num_pending);
        for id in self.members.iter().take(n) {
            w.u32(id.0);
        }
    }
}

/// JOIN body: truncated members list then truncated reps list (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JoinBody {
    /// Gathered members (empty in a ring leader's lookup probe).
    pub members: AliveBody,
    /// Stale `rep_index` of the sender's last FORM1 (ignored by receivers).
    pub rep_index: i16,
    /// Known representatives, the sender's own rep first.
    pub reps: Vec<RepInfo>,
}

impl JoinBody {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        self.members.encoded_len() + 4 + RepInfo::LEN * self.reps.len()
    }

    /// Decodes both truncated lists.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let members = AliveBody::decode(buf, endian)?;
        let mut r = Reader::new(buf, endian);
        let n = r.count16("num_reps", MAX_REPS)?;
        let rep_index = r.i16("rep_index")?;
        let reps = read_reps(&mut r, n)?;
        Ok(Self {
            members,
            rep_index,
            reps,
        })
    }

    /// Writes both truncated lists.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        self.members.encode(buf, endian);
        let mut w = Writer::new(buf, endian);
        let n = self.reps.len().min(MAX_REPS);
        w.len16(n);
        w.i16(self.rep_index);
        for rep in self.reps.iter().take(n) {
            rep.write(&mut w);
        }
    }
}

/// One old ring described in a FORM token (`ring_info` + holes + ids, §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RingInfo {
    /// The old ring.
    pub memb_id: RingId,
    /// 0 until the new leader stamps it.
    pub trans_time: i32,
    /// That ring's aru.
    pub aru: Seq,
    /// That ring's highest seq.
    pub highest_seq: Seq,
    /// Seqs missing at the reporting daemons.
    pub holes: Vec<Seq>,
    /// Transitional set: daemons of that ring that are in the new ring (first `num_trans`).
    pub trans: Vec<DaemonId>,
    /// Rest of the commit set.
    pub commit_rest: Vec<DaemonId>,
}

impl RingInfo {
    /// Fixed part.
    pub const FIXED_LEN: usize = 28;

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN + 4 * (self.holes.len() + self.trans.len() + self.commit_rest.len())
    }

    fn read<B: Buf>(r: &mut Reader<'_, B>) -> Result<Self, DecodeError> {
        let memb_id = RingId::read(r, "ring memb_id")?;
        let trans_time = r.i32("trans_time")?;
        let aru = Seq(r.u32("ring aru")?);
        let highest_seq = Seq(r.u32("ring highest_seq")?);
        let nh = r.count32("num_holes", MAX_RING_HOLES)?;
        let nc = r.count16("num_commit", MAX_PROCS_RING)?;
        let nt = r.count16("num_trans", nc)?;
        r.need("ring holes", 4 * nh)?;
        let mut holes = Vec::with_capacity(nh);
        for _ in 0..nh {
            holes.push(Seq(r.u32("hole")?));
        }
        let mut trans = read_ids(r, nc, "commit set")?;
        let commit_rest = trans.split_off(nt);
        Ok(Self {
            memb_id,
            trans_time,
            aru,
            highest_seq,
            holes,
            trans,
            commit_rest,
        })
    }

    fn write<B: BufMut>(&self, w: &mut Writer<'_, B>) {
        self.memb_id.write(w);
        w.i32(self.trans_time);
        w.u32(self.aru.0);
        w.u32(self.highest_seq.0);
        w.len32(self.holes.len());
        w.len16(self.trans.len() + self.commit_rest.len());
        w.len16(self.trans.len());
        for h in &self.holes {
            w.u32(h.0);
        }
        for id in self.trans.iter().chain(&self.commit_rest) {
            w.u32(id.0);
        }
    }
}

fn read_rings<B: Buf>(buf: &mut B, endian: Endian) -> Result<Vec<RingInfo>, DecodeError> {
    let mut r = Reader::new(buf, endian);
    let n = r.count32("num_rings", MAX_FORM_REPS)?;
    let mut rings = Vec::with_capacity(n);
    for _ in 0..n {
        rings.push(RingInfo::read(&mut r)?);
    }
    Ok(rings)
}

fn write_rings<B: BufMut>(rings: &[RingInfo], buf: &mut B, endian: Endian) {
    let mut w = Writer::new(buf, endian);
    w.len32(rings.len());
    for ring in rings {
        ring.write(&mut w);
    }
}

/// FORM1 token body: `members_info | reps_info | num_rings | rings` (§6.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Form1Body {
    /// Members (visited) and pending daemons.
    pub members: MembersInfo,
    /// Representatives and the next one to visit.
    pub reps: RepsInfo,
    /// Old rings merged into the new one.
    pub rings: Vec<RingInfo>,
}

impl Form1Body {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        MEMBERS_INFO_LEN
            + REPS_INFO_LEN
            + 4
            + self.rings.iter().map(RingInfo::encoded_len).sum::<usize>()
    }

    /// Decodes the body.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let members = MembersInfo::decode(buf, endian)?;
        let reps = RepsInfo::decode(buf, endian)?;
        let rings = read_rings(buf, endian)?;
        Ok(Self {
            members,
            reps,
            rings,
        })
    }

    /// Writes the body.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        self.members.encode(buf, endian);
        self.reps.encode(buf, endian);
        write_rings(&self.rings, buf, endian);
    }
}

/// FORM2 token body: `members_info | new ring id | num_rings | rings` (§6.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Form2Body {
    /// `num_members` installed so far, the rest pending, in configuration order.
    pub members: MembersInfo,
    /// New ring id, written by the leader (before that: stale reps bytes).
    pub new_ring_id: RingId,
    /// Old rings merged into the new one.
    pub rings: Vec<RingInfo>,
}

impl Form2Body {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        MEMBERS_INFO_LEN
            + RingId::LEN
            + 4
            + self.rings.iter().map(RingInfo::encoded_len).sum::<usize>()
    }

    /// Decodes the body.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let members = MembersInfo::decode(buf, endian)?;
        let new_ring_id = RingId::read(&mut Reader::new(buf, endian), "new ring id")?;
        let rings = read_rings(buf, endian)?;
        Ok(Self {
            members,
            new_ring_id,
            rings,
        })
    }

    /// Writes the body.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        self.members.encode(buf, endian);
        self.new_ring_id.write(&mut Writer::new(buf, endian));
        write_rings(&self.rings, buf, endian);
    }
}
