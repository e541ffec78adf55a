//! Messages carried inside data packets (§7.1) and the GROUPS state-exchange body (§8).
//!
//! A message between daemons is the client protocol's 48-byte header, `num_groups` 32-byte
//! group names and the body, cut into fragments of at most one packet body.

use bytes::{Buf, BufMut, Bytes};

use super::codec::{Reader, Writer};
use super::{DaemonId, DecodeError, Endian, RingId, MAX_PROCS_RING};

/// Size of a group / private group name field.
pub const GROUP_NAME_LEN: usize = 32;
/// Largest GROUPS message body (GROUPS_BUF_SIZE).
pub const MAX_GROUPS_BODY: usize = 100_000;
/// Most groups one message may name (bounded so names fit a maximal message).
pub const MAX_MESSAGE_GROUPS: usize = MAX_GROUPS_BODY / GROUP_NAME_LEN;
/// `GROUPS_MESS` bit of a message header type.
pub const GROUPS_MESS: u32 = 0x0008_0000;

/// A 32-byte NUL-padded name field, kept byte for byte.
pub type NameField = [u8; GROUP_NAME_LEN];

/// The 48-byte message header at the start of every message's first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// Byte order of `type`, `num_groups`, `data_len` (from the type's marker).
    pub endian: Endian,
    /// Service / kind bits without the marker.
    pub kind: u32,
    /// Sender's private group name (GROUPS: daemon name, last 4 bytes = synced-set size).
    pub sender: NameField,
    /// Number of 32-byte group names after the header.
    pub num_groups: i32,
    /// `hint` as raw bytes: it carries its own marker and is never swapped by daemons.
    pub hint: [u8; 4],
    /// Body length.
    pub data_len: i32,
}

impl MessageHeader {
    /// Size on the wire.
    pub const LEN: usize = 48;

    /// Decodes the header.
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let have = buf.remaining();
        if have < Self::LEN {
            return Err(DecodeError::Truncated {
                what: "message header",
                need: Self::LEN,
                have,
            });
        }
        let (kind, endian) = super::TypeBits::read(buf)?;
        let mut sender = [0u8; GROUP_NAME_LEN];
        buf.copy_to_slice(&mut sender);
        let mut r = Reader::new(buf, endian);
        let num_groups = r.i32("num_groups")?;
        let mut hint = [0u8; 4];
        r.need("hint", 4)?;
        r.buf.copy_to_slice(&mut hint);
        let data_len = r.i32("message data_len")?;
        Ok(Self {
            endian,
            kind: kind.0,
            sender,
            num_groups,
            hint,
            data_len,
        })
    }

    /// Writes the header.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut w = Writer::new(buf, self.endian);
        super::TypeBits(self.kind).write(&mut w);
        w.slice(&self.sender);
        w.i32(self.num_groups);
        w.slice(&self.hint);
        w.i32(self.data_len);
    }

    /// True for a GROUPS state-exchange message.
    pub fn is_groups(&self) -> bool {
        self.kind & GROUPS_MESS != 0
    }

    /// GROUPS messages: the synced-set size hidden in the sender field's last 4 bytes.
    pub fn groups_synced_size(&self) -> u32 {
        let [.., a, b, c, d] = self.sender;
        match self.endian {
            Endian::Little => u32::from_le_bytes([a, b, c, d]),
            Endian::Big => u32::from_be_bytes([a, b, c, d]),
        }
    }

    /// GROUPS messages: store the synced-set size in the sender field's last 4 bytes.
    pub fn set_groups_synced_size(&mut self, size: u32) {
        let bytes = match self.endian {
            Endian::Little => size.to_le_bytes(),
            Endian::Big => size.to_be_bytes(),
        };
        if let Some(tail) = self.sender.get_mut(GROUP_NAME_LEN - 4..) {
            tail.copy_from_slice(&bytes);
        }
    }
}

/// A whole (reassembled) message: header, group names, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header (its `num_groups`/`data_len` are recomputed on encode).
    pub header: MessageHeader,
    /// Destination group names.
    pub groups: Vec<NameField>,
    /// Body.
    pub body: Bytes,
}

impl Message {
    /// Decodes a message that must be complete (exactly header + names + body).
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let header = MessageHeader::decode(buf)?;
        let ng = super::codec::check_count(
            "num_groups",
            i64::from(header.num_groups),
            MAX_MESSAGE_GROUPS,
        )?;
        let len = super::codec::check_count(
            "message data_len",
            i64::from(header.data_len),
            buf.remaining(),
        )?;
        let mut r = Reader::new(buf, header.endian);
        r.need("group names", ng * GROUP_NAME_LEN + len)?;
        let mut groups = Vec::with_capacity(ng);
        for _ in 0..ng {
            let mut g = [0u8; GROUP_NAME_LEN];
            r.buf.copy_to_slice(&mut g);
            groups.push(g);
        }
        let body = r.bytes("message body", len)?;
        Ok(Self {
            header,
            groups,
            body,
        })
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        MessageHeader::LEN + GROUP_NAME_LEN * self.groups.len() + self.body.len()
    }

    /// Writes the message.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut h = self.header;
        h.num_groups = i32::try_from(self.groups.len()).unwrap_or(i32::MAX);
        h.data_len = i32::try_from(self.body.len()).unwrap_or(i32::MAX);
        h.encode(buf);
        for g in &self.groups {
            buf.put_slice(g);
        }
        buf.put_slice(&self.body);
    }
}

/// A group id: (membership id, index) at the group's representative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupId {
    /// Membership the id was assigned in.
    pub memb_id: RingId,
    /// Counter within that membership.
    pub index: i32,
}

/// One daemon's local members of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupDaemon {
    /// The daemon.
    pub proc_id: DaemonId,
    /// The group id's memb_id as known at that daemon.
    pub memb_id: RingId,
    /// Private group names of its local members.
    pub members: Vec<NameField>,
}

/// One group's block in a GROUPS body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupBlock {
    /// Group name.
    pub name: NameField,
    /// Group id at the representative.
    pub group_id: GroupId,
    /// 0/1: changed by this membership.
    pub changed: u16,
    /// Daemons (in this message) with local members.
    pub daemons: Vec<GroupDaemon>,
}

/// Body of a GROUPS message (§8).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupsBody {
    /// The ring id just installed.
    pub memb_id: RingId,
    /// The synced set, present (flag 1) in the daemon's first GROUPS message only.
    pub synced_set: Option<Vec<DaemonId>>,
    /// Group blocks, sorted by name.
    pub groups: Vec<GroupBlock>,
}

fn read_name<B: Buf>(r: &mut Reader<'_, B>, what: &'static str) -> Result<NameField, DecodeError> {
    r.need(what, GROUP_NAME_LEN)?;
    let mut n = [0u8; GROUP_NAME_LEN];
    r.buf.copy_to_slice(&mut n);
    Ok(n)
}

impl GroupsBody {
    /// Decodes a whole body (all remaining bytes, at most [`MAX_GROUPS_BODY`]).
    pub fn decode(buf: &mut impl Buf, endian: Endian) -> Result<Self, DecodeError> {
        let total = buf.remaining();
        if total > MAX_GROUPS_BODY {
            return Err(DecodeError::TooLong {
                what: "groups body",
                len: total,
                max: MAX_GROUPS_BODY,
            });
        }
        let mut r = Reader::new(buf, endian);
        let memb_id = RingId::read(&mut r, "groups memb_id")?;
        let synced_set = match r.u8("groups flag")? {
            0 => None,
            1 => {
                let n = r.count32("synced set size", MAX_PROCS_RING)?;
                r.need("synced set", 4 * n)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(DaemonId(r.u32("synced set id")?));
                }
                Some(ids)
            }
            _ => return Err(DecodeError::Malformed("groups flag")),
        };
        let mut groups = Vec::new();
        // Bounded: each block consumes at least 48 bytes of a body of at most 100000.
        while r.buf.has_remaining() {
            groups.push(Self::read_group(&mut r)?);
        }
        Ok(Self {
            memb_id,
            synced_set,
            groups,
        })
    }

    fn read_group<B: Buf>(r: &mut Reader<'_, B>) -> Result<GroupBlock, DecodeError> {
        let name = read_name(r, "group name")?;
        let gid_memb = RingId::read(r, "group_id")?;
        let index = r.i32("group_id index")?;
        let changed = r.u16("changed")?;
        let nd = usize::from(r.u16("num_daemons")?);
        // Each daemon entry takes at least 14 bytes: check before allocating.
        r.need("group daemons", 14 * nd)?;
        let mut daemons = Vec::with_capacity(nd);
        for _ in 0..nd {
            let proc_id = DaemonId(r.u32("daemon proc_id")?);
            let memb_id = RingId::read(r, "daemon memb_id")?;
            let nm = usize::from(r.u16("num_members")?);
            r.need("member names", GROUP_NAME_LEN * nm)?;
            let mut members = Vec::with_capacity(nm);
            for _ in 0..nm {
                members.push(read_name(r, "member name")?);
            }
            daemons.push(GroupDaemon {
                proc_id,
                memb_id,
                members,
            });
        }
        Ok(GroupBlock {
            name,
            group_id: GroupId {
                memb_id: gid_memb,
                index,
            },
            changed,
            daemons,
        })
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        let mut n = RingId::LEN + 1;
        if let Some(s) = &self.synced_set {
            n += 4 + 4 * s.len();
        }
        for g in &self.groups {
            n += GROUP_NAME_LEN + 12 + 4;
            for d in &g.daemons {
                n += 14 + GROUP_NAME_LEN * d.members.len();
            }
        }
        n
    }

    /// Writes the body.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        let mut w = Writer::new(buf, endian);
        self.memb_id.write(&mut w);
        match &self.synced_set {
            None => w.u8(0),
            Some(ids) => {
                w.u8(1);
                w.len32(ids.len());
                for id in ids {
                    w.u32(id.0);
                }
            }
        }
        for g in &self.groups {
            w.slice(&g.name);
            g.group_id.memb_id.write(&mut w);
            w.i32(g.group_id.index);
            w.u16(g.changed);
            w.u16(u16::try_from(g.daemons.len()).unwrap_or(u16::MAX));
            for d in &g.daemons {
                w.u32(d.proc_id.0);
                d.memb_id.write(&mut w);
                w.u16(u16::try_from(d.members.len()).unwrap_or(u16::MAX));
                for m in &d.members {
                    w.slice(m);
                }
            }
        }
    }
}

/// Client-protocol service bit RELIABLE_MESS (all GROUPS messages but the last).
const RELIABLE_MESS: u32 = 0x0000_0002;
/// Client-protocol service bit AGREED_MESS (the last GROUPS message of a daemon).
const AGREED_MESS: u32 = 0x0000_0010;
/// Longest daemon name that fits before the synced-set size (5.0.1 allows 20 with NUL).
pub const MAX_GROUPS_SENDER_NAME: usize = GROUP_NAME_LEN - 4 - 1;

impl Message {
    /// A GROUPS message of daemon `daemon_name` (§8): type GROUPS | RELIABLE, or | AGREED for
    /// the daemon's `last` one; sender = the name NUL-padded with the synced-set size in its
    /// last 4 bytes; no groups; `hint` = the marker only. Longer names are cut to
    /// [`MAX_GROUPS_SENDER_NAME`] bytes.
    pub fn groups(
        daemon_name: &str,
        synced_size: u32,
        last: bool,
        body: &GroupsBody,
        endian: Endian,
    ) -> Self {
        let mut sender = [0u8; GROUP_NAME_LEN];
        for (d, s) in sender
            .iter_mut()
            .zip(daemon_name.as_bytes().iter().take(MAX_GROUPS_SENDER_NAME))
        {
            *d = *s;
        }
        let mut bytes = Vec::with_capacity(body.encoded_len());
        body.encode(&mut bytes, endian);
        let hint = match endian {
            Endian::Little => super::ENDIAN_MARKER.to_le_bytes(),
            Endian::Big => [0; 4],
        };
        let mut header = MessageHeader {
            endian,
            kind: GROUPS_MESS | if last { AGREED_MESS } else { RELIABLE_MESS },
            sender,
            num_groups: 0,
            hint,
            data_len: i32::try_from(bytes.len()).unwrap_or(i32::MAX),
        };
        header.set_groups_synced_size(synced_size);
        Self {
            header,
            groups: Vec::new(),
            body: Bytes::from(bytes),
        }
    }
}
