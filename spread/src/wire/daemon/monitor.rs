//! Monitor / status control packets (§11): STATUS reply record, PARTITION and FC bodies.

use bytes::{Buf, BufMut};

use super::codec::{Reader, Writer};
use super::{DecodeError, Endian, MAX_PACKET_BODY};

/// The 96-byte status record of a STATUS reply (18 int32 then 12 int16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)] // field names are 5.0.1's `status` struct, in wire order
pub struct StatusRecord {
    pub sec: i32,
    pub state: i32,
    pub gstate: i32,
    pub packet_sent: i32,
    pub packet_recv: i32,
    pub packet_delivered: i32,
    pub retrans: i32,
    pub u_retrans: i32,
    pub s_retrans: i32,
    pub b_retrans: i32,
    pub aru: i32,
    pub my_aru: i32,
    pub highest_seq: i32,
    pub token_hurry: i32,
    pub token_rounds: i32,
    pub my_id: i32,
    pub leader_id: i32,
    pub message_delivered: i32,
    pub membership_changes: i16,
    pub num_procs: i16,
    pub num_segments: i16,
    pub window: i16,
    pub personal_window: i16,
    pub accelerated_ring: i16,
    pub accelerated_window: i16,
    pub num_sessions: i16,
    pub num_groups: i16,
    pub major_version: i16,
    pub minor_version: i16,
    pub patch_version: i16,
}

impl StatusRecord {
    /// Size on the wire.
    pub const LEN: usize = 18 * 4 + 12 * 2;

    /// Decodes the record.
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, endian);
        r.need("status record", Self::LEN)?;
        let mut i = [0i32; 18];
        for v in &mut i {
            *v = r.i32("status int32")?;
        }
        let mut s = [0i16; 12];
        for v in &mut s {
            *v = r.i16("status int16")?;
        }
        let [sec, state, gstate, packet_sent, packet_recv, packet_delivered, retrans, u_retrans, s_retrans, b_retrans, aru, my_aru, highest_seq, token_hurry, token_rounds, my_id, leader_id, message_delivered] =
            i;
        let [membership_changes, num_procs, num_segments, window, personal_window, accelerated_ring, accelerated_window, num_sessions, num_groups, major_version, minor_version, patch_version] =
            s;
        Ok(Self {
            sec,
            state,
            gstate,
            packet_sent,
            packet_recv,
            packet_delivered,
            retrans,
            u_retrans,
            s_retrans,
            b_retrans,
            aru,
            my_aru,
            highest_seq,
            token_hurry,
            token_rounds,
            my_id,
            leader_id,
            message_delivered,
            membership_changes,
            num_procs,
            num_segments,
            window,
            personal_window,
            accelerated_ring,
            accelerated_window,
            num_sessions,
            num_groups,
            major_version,
            minor_version,
            patch_version,
        })
    }

    /// Writes the record.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        for v in [
            self.sec,
            self.state,
            self.gstate,
            self.packet_sent,
            self.packet_recv,
            self.packet_delivered,
            self.retrans,
            self.u_retrans,
            self.s_retrans,
            self.b_retrans,
            self.aru,
            self.my_aru,
            self.highest_seq,
            self.token_hurry,
            self.token_rounds,
            self.my_id,
            self.leader_id,
            self.message_delivered,
        ] {
            w.i32(v);
        }
        for v in [
            self.membership_changes,
            self.num_procs,
            self.num_segments,
            self.window,
            self.personal_window,
            self.accelerated_ring,
            self.accelerated_window,
            self.num_sessions,
            self.num_groups,
            self.major_version,
            self.minor_version,
            self.patch_version,
        ] {
            w.i16(v);
        }
    }
}

/// PARTITION body: one int16 component per configured daemon (config order), −1 = exit.
/// spmonitor sends the whole 128-entry array.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PartitionBody {
    /// Component numbers.
    pub components: Vec<i16>,
}

impl PartitionBody {
    /// Decodes all remaining bytes (an even number).
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let n = buf.remaining();
        if n > MAX_PACKET_BODY || n % 2 != 0 {
            return Err(DecodeError::Malformed("partition body length"));
        }
        let mut r = Reader::new(buf, endian);
        let mut components = Vec::with_capacity(n / 2);
        for _ in 0..n / 2 {
            components.push(r.i16("partition entry")?);
        }
        Ok(Self { components })
    }

    /// Writes the entries.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        for c in &self.components {
            w.i16(*c);
        }
    }
}

/// FC body: per configured daemon {PersonalWindow, AcceleratedWindow}, then {Window, −};
/// −1 keeps a value. spmonitor sends the whole 128-entry array.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FcBody {
    /// Pairs of int16.
    pub entries: Vec<[i16; 2]>,
}

impl FcBody {
    /// Decodes all remaining bytes (a multiple of 4).
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let n = buf.remaining();
        if n > MAX_PACKET_BODY || n % 4 != 0 {
            return Err(DecodeError::Malformed("fc body length"));
        }
        let mut r = Reader::new(buf, endian);
        let mut entries = Vec::with_capacity(n / 4);
        for _ in 0..n / 4 {
            entries.push([r.i16("fc entry")?, r.i16("fc entry")?]);
        }
        Ok(Self { entries })
    }

    /// Writes the entries.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        for [a, b] in &self.entries {
            w.i16(*a);
            w.i16(*b);
        }
    }
}
