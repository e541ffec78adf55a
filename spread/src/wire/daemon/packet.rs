//! Whole data-port datagrams: header + body chosen by the type bits.

use bytes::{Buf, BufMut, Bytes};

use super::codec::Reader;
use super::data::DataBody;
use super::header::{FragHeader, PacketHeader, HEADER_LEN};
use super::memb::{AliveBody, JoinBody, RepInfo, RepType};
use super::monitor::{FcBody, PartitionBody, StatusRecord};
use super::{DaemonId, DecodeError, RingId, Seq, TypeBits, MAX_PACKET_BODY};

/// What follows a data-port header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketBody {
    /// Message packet (RELIABLE/FIFO/AGREED/SAFE, possibly ROUTED): fragments.
    Data(DataBody),
    /// ALIVE.
    Alive(AliveBody),
    /// JOIN.
    Join(JoinBody),
    /// REFER: header only (`memb_id` = referred rep and its type).
    Refer,
    /// HURRY: header only.
    Hurry,
    /// STATUS request (`None`, header only) or reply (`Some`, 96-byte record).
    Status(Option<StatusRecord>),
    /// PARTITION control.
    Partition(PartitionBody),
    /// FC control.
    Fc(FcBody),
    /// RELOAD control: header only.
    Reload,
    /// A body that fits none of the above (unknown type bits, or bytes after a header-only
    /// type); kept raw so it re-encodes exactly.
    Other(Bytes),
}

impl PacketBody {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Data(d) => d.encoded_len(),
            Self::Alive(a) => a.encoded_len(),
            Self::Join(j) => j.encoded_len(),
            Self::Refer | Self::Hurry | Self::Reload | Self::Status(None) => 0,
            Self::Status(Some(_)) => StatusRecord::LEN,
            Self::Partition(p) => 2 * p.components.len(),
            Self::Fc(f) => 4 * f.entries.len(),
            Self::Other(b) => b.len(),
        }
    }
}

/// A whole data-port datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The header; `data_len` (and for data packets `first_frag`) are recomputed from the
    /// body by [`Packet::encode`].
    pub header: PacketHeader,
    /// The body.
    pub body: PacketBody,
}

fn decode_body(mut body: Bytes, h: &PacketHeader) -> Result<PacketBody, DecodeError> {
    let k = h.kind;
    let e = h.endian;
    let empty = !body.has_remaining();
    let parsed = if k.has(TypeBits::CONTROL) {
        if k.has(TypeBits::STATUS) {
            if empty {
                PacketBody::Status(None)
            } else {
                PacketBody::Status(Some(StatusRecord::decode(&mut body, e)?))
            }
        } else if k.has(TypeBits::PARTITION) {
            PacketBody::Partition(PartitionBody::decode(&mut body, e)?)
        } else if k.has(TypeBits::FC) {
            PacketBody::Fc(FcBody::decode(&mut body, e)?)
        } else if empty {
            PacketBody::Reload
        } else {
            return Ok(PacketBody::Other(body));
        }
    } else if k.has(TypeBits::ALIVE) {
        PacketBody::Alive(AliveBody::decode(&mut body, e)?)
    } else if k.has(TypeBits::JOIN) {
        PacketBody::Join(JoinBody::decode(&mut body, e)?)
    } else if k.has(TypeBits::REFER) && empty {
        PacketBody::Refer
    } else if k.has(TypeBits::HURRY) && empty {
        PacketBody::Hurry
    } else if k.has(TypeBits::REGULAR) && (!empty || h.first_frag != FragHeader::default()) {
        // An empty body with a fragment header is one empty fragment (what `encode` writes
        // for a zero-length message); found by the `packing_structured` fuzz target.
        PacketBody::Data(DataBody::decode(&mut body, h.first_frag, e)?)
    } else {
        return Ok(PacketBody::Other(body));
    };
    if body.has_remaining() {
        return Err(DecodeError::Malformed("trailing bytes in packet body"));
    }
    Ok(parsed)
}

impl Packet {
    /// Decodes a header and its `data_len`-byte body; bytes after it are left in `buf`.
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let header = PacketHeader::decode(buf)?;
        let len = usize::from(header.data_len);
        if len > MAX_PACKET_BODY {
            return Err(DecodeError::TooLong {
                what: "data_len",
                len,
                max: MAX_PACKET_BODY,
            });
        }
        let body = Reader::new(buf, header.endian).bytes("packet body", len)?;
        let body = decode_body(body, &header)?;
        Ok(Self { header, body })
    }

    /// Decodes one datagram, which must be exactly 40 + `data_len` bytes (5.0.1's check).
    pub fn from_datagram(mut datagram: &[u8]) -> Result<Self, DecodeError> {
        let total = datagram.len();
        let p = Self::decode(&mut datagram)?;
        if datagram.has_remaining() {
            return Err(DecodeError::LengthMismatch {
                what: "packet datagram",
                declared: HEADER_LEN + usize::from(p.header.data_len),
                actual: total,
            });
        }
        Ok(p)
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.encoded_len()
    }

    /// Writes header and body in `header.endian`, with `data_len` set to the body length and,
    /// for data packets, `first_frag` set from the first fragment.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut h = self.header;
        h.data_len = u16::try_from(self.body.encoded_len()).unwrap_or(u16::MAX);
        let e = h.endian;
        if let PacketBody::Data(d) = &self.body {
            h.first_frag = d.first_header();
        }
        h.encode(buf);
        match &self.body {
            PacketBody::Data(d) => d.encode(buf, e),
            PacketBody::Alive(a) => a.encode(buf, e),
            PacketBody::Join(j) => j.encode(buf, e),
            PacketBody::Refer
            | PacketBody::Hurry
            | PacketBody::Reload
            | PacketBody::Status(None) => {}
            PacketBody::Status(Some(s)) => s.encode(buf, e),
            PacketBody::Partition(p) => p.encode(buf, e),
            PacketBody::Fc(f) => f.encode(buf, e),
            PacketBody::Other(b) => buf.put_slice(b),
        }
    }

    /// Encodes into a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

impl Packet {
    /// ALIVE from `me` listing `members` (itself first).
    pub fn alive(me: DaemonId, conf_hash: u32, members: Vec<DaemonId>) -> Self {
        Self {
            header: PacketHeader::new(TypeBits::ALIVE, me, conf_hash),
            body: PacketBody::Alive(AliveBody {
                members,
                num_pending: 0,
            }),
        }
    }

    /// JOIN from `me` with its gathered members and known reps.
    pub fn join(
        me: DaemonId,
        conf_hash: u32,
        members: Vec<DaemonId>,
        reps: Vec<RepInfo>,
        rep_index: i16,
    ) -> Self {
        Self {
            header: PacketHeader::new(TypeBits::JOIN, me, conf_hash),
            body: PacketBody::Join(JoinBody {
                members: AliveBody {
                    members,
                    num_pending: 0,
                },
                rep_index,
                reps,
            }),
        }
    }

    /// REFER from `me` pointing to representative `rep` of type `rep_type` (§6.3).
    pub fn refer(me: DaemonId, conf_hash: u32, rep: DaemonId, rep_type: RepType) -> Self {
        let mut header = PacketHeader::new(TypeBits::REFER, me, conf_hash);
        header.memb_id = RingId {
            leader: rep,
            time: i32::from(rep_type.0),
        };
        Self {
            header,
            body: PacketBody::Refer,
        }
    }

    /// HURRY from `me` to the ring leader.
    pub fn hurry(me: DaemonId, conf_hash: u32) -> Self {
        Self {
            header: PacketHeader::new(TypeBits::HURRY, me, conf_hash),
            body: PacketBody::Hurry,
        }
    }

    /// A data packet: `kind` is the packet class (plus ROUTED for a routed copy).
    pub fn data(
        kind: u32,
        me: DaemonId,
        conf_hash: u32,
        memb_id: RingId,
        seq: Seq,
        token_round: u32,
        body: DataBody,
    ) -> Self {
        let mut header = PacketHeader::new(kind, me, conf_hash);
        header.memb_id = memb_id;
        header.seq = seq;
        header.token_round = token_round;
        Self {
            header,
            body: PacketBody::Data(body),
        }
    }
}

impl Packet {
    /// STATUS request as spmonitor sends it: from `me` (a configured daemon's id, sent from
    /// its address), the reply port in `seq`.
    pub fn status_request(me: DaemonId, conf_hash: u32, return_port: u16) -> Self {
        let mut header = PacketHeader::new(TypeBits::STATUS, me, conf_hash);
        header.seq = Seq(u32::from(return_port));
        Self {
            header,
            body: PacketBody::Status(None),
        }
    }

    /// STATUS reply of daemon `me`: 5.0.1 leaves `transmiter_id` and `conf_hash` at 0.
    pub fn status_reply(me: DaemonId, record: StatusRecord) -> Self {
        let mut header = PacketHeader::new(TypeBits::STATUS, me, 0);
        header.transmiter_id = DaemonId::NONE;
        Self {
            header,
            body: PacketBody::Status(Some(record)),
        }
    }
}

impl core::fmt::Display for Packet {
    /// One line for tracing: `packet <type names> <header>` and a short body summary.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "packet {} {}", self.header.kind, self.header)?;
        match &self.body {
            PacketBody::Data(d) => write!(f, " | {} fragment(s)", d.fragments.len()),
            PacketBody::Alive(a) => write!(
                f,
                " | members={:?}",
                a.members
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
            PacketBody::Join(j) => write!(
                f,
                " | members={:?} reps={:?}",
                j.members
                    .members
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                j.reps
                    .iter()
                    .map(|r| format!("{}/{}/seg{}", r.proc_id, r.rep_type.0, r.seg_index))
                    .collect::<Vec<_>>()
            ),
            PacketBody::Status(Some(s)) => write!(f, " | status of {:08x}", s.my_id),
            PacketBody::Other(b) => write!(f, " | {} unparsed bytes", b.len()),
            _ => Ok(()),
        }
    }
}
