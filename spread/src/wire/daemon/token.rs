//! Tokens (token port P+1): the regular token with its retransmission requests (§5) and the
//! FORM1/FORM2 membership tokens (§6.4).

use bytes::{Buf, BufMut, Bytes};

use super::codec::{Reader, Writer};
use super::header::{TokenHeader, HEADER_LEN};
use super::memb::{Form1Body, Form2Body};
use super::{DaemonId, DecodeError, Endian, RingId, Seq, TypeBits, MAX_TOKEN_BODY};

/// Most sequence numbers one retransmission request block can hold (bounded by the body).
pub const MAX_RTR_SEQS: usize = MAX_TOKEN_BODY / 4;

/// One retransmission request block of a regular token (§5.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RtrRequest {
    /// Ring the requested seqs belong to.
    pub memb_id: RingId,
    /// Requester, or [`DaemonId::ANY`] (−1) when anyone may need them.
    pub proc_id: DaemonId,
    /// Requester's segment, or −1.
    pub seg_index: i16,
    /// Requested sequence numbers.
    pub seqs: Vec<Seq>,
}

impl RtrRequest {
    /// Fixed part of a block.
    pub const FIXED_LEN: usize = 16;

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN + 4 * self.seqs.len()
    }

    fn read<B: Buf>(r: &mut Reader<'_, B>) -> Result<Self, DecodeError> {
        let memb_id = RingId::read(r, "rtr memb_id")?;
        let proc_id = DaemonId(r.u32("rtr proc_id")?);
        let seg_index = r.i16("rtr seg_index")?;
        let n = r.count16("rtr num_seq", MAX_RTR_SEQS)?;
        r.need("rtr seqs", 4 * n)?;
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            seqs.push(Seq(r.u32("rtr seq")?));
        }
        Ok(Self {
            memb_id,
            proc_id,
            seg_index,
            seqs,
        })
    }

    fn write<B: BufMut>(&self, w: &mut Writer<'_, B>) {
        self.memb_id.write(w);
        w.u32(self.proc_id.0);
        w.i16(self.seg_index);
        w.len16(self.seqs.len());
        for s in &self.seqs {
            w.u32(s.0);
        }
    }
}

/// What follows a token header, chosen by its type bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBody {
    /// Regular token: retransmission request blocks (empty on an idle ring).
    Regular(Vec<RtrRequest>),
    /// FORM1 token body.
    Form1(Box<Form1Body>),
    /// FORM2 token body.
    Form2(Box<Form2Body>),
}

impl TokenBody {
    /// Decodes a body of exactly `buf.remaining()` bytes for a token of type `kind`.
    pub fn decode(buf: &mut impl Buf, kind: TypeBits, endian: Endian) -> Result<Self, DecodeError> {
        let body = if kind.has(TypeBits::FORM1) {
            Self::Form1(Box::new(Form1Body::decode(buf, endian)?))
        } else if kind.has(TypeBits::FORM2) {
            Self::Form2(Box::new(Form2Body::decode(buf, endian)?))
        } else {
            let mut r = Reader::new(buf, endian);
            let mut blocks = Vec::new();
            // Each block takes at least FIXED_LEN bytes, so this loop is bounded by the body.
            while r.buf.has_remaining() {
                blocks.push(RtrRequest::read(&mut r)?);
            }
            Self::Regular(blocks)
        };
        if buf.has_remaining() {
            return Err(DecodeError::Malformed("trailing bytes in token body"));
        }
        Ok(body)
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Regular(blocks) => blocks.iter().map(RtrRequest::encoded_len).sum(),
            Self::Form1(f) => f.encoded_len(),
            Self::Form2(f) => f.encoded_len(),
        }
    }

    /// Writes the body in `endian`.
    pub fn encode(&self, buf: &mut impl BufMut, endian: Endian) {
        match self {
            Self::Regular(blocks) => {
                let mut w = Writer::new(buf, endian);
                for b in blocks {
                    b.write(&mut w);
                }
            }
            Self::Form1(f) => f.encode(buf, endian),
            Self::Form2(f) => f.encode(buf, endian),
        }
    }
}

/// A whole token datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The header; `rtr_len` is recomputed from the body by [`Token::encode`].
    pub header: TokenHeader,
    /// The body.
    pub body: TokenBody,
}

impl Token {
    /// Decodes a header and its `rtr_len`-byte body; bytes after the body are left in `buf`.
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let header = TokenHeader::decode(buf)?;
        let len = usize::from(header.rtr_len);
        if len > MAX_TOKEN_BODY {
            return Err(DecodeError::TooLong {
                what: "rtr_len",
                len,
                max: MAX_TOKEN_BODY,
            });
        }
        let mut r = Reader::new(buf, header.endian);
        let mut body: Bytes = r.bytes("token body", len)?;
        let body = TokenBody::decode(&mut body, header.kind, header.endian)?;
        Ok(Self { header, body })
    }

    /// Decodes one datagram, which must be exactly 40 + `rtr_len` bytes (5.0.1's check for
    /// regular tokens; FORM tokens are held to it as well).
    pub fn from_datagram(mut datagram: &[u8]) -> Result<Self, DecodeError> {
        let total = datagram.len();
        let tok = Self::decode(&mut datagram)?;
        if datagram.has_remaining() {
            return Err(DecodeError::LengthMismatch {
                what: "token datagram",
                declared: HEADER_LEN + usize::from(tok.header.rtr_len),
                actual: total,
            });
        }
        Ok(tok)
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.encoded_len()
    }

    /// Writes header (with `rtr_len` set to the body length) and body in `header.endian`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut h = self.header;
        h.rtr_len = u16::try_from(self.body.encoded_len()).unwrap_or(u16::MAX);
        h.encode(buf);
        self.body.encode(buf, h.endian);
    }

    /// Encodes into a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// `aru` of the first regular token of a new ring (before the leader lowers it).
pub const FIRST_TOKEN_ARU: Seq = Seq(0x7fff_ffff);

impl Token {
    /// The first regular token of ring `memb_id`, made by the last FORM2 receiver `me`:
    /// seq 0, aru 0x7fffffff, aru_last_id −1, no requests (§5.3).
    pub fn first_regular(me: DaemonId, memb_id: RingId, conf_hash: u32) -> Self {
        let mut header = TokenHeader::new(0, me, memb_id, conf_hash);
        header.aru = FIRST_TOKEN_ARU;
        header.aru_last_id = DaemonId::ANY;
        Self {
            header,
            body: TokenBody::Regular(Vec::new()),
        }
    }

    /// A FORM1 token from `me` for form attempt `form_id` with `seq` = highest seq + 3333.
    pub fn form1(me: DaemonId, form_id: RingId, seq: Seq, conf_hash: u32, body: Form1Body) -> Self {
        let mut header = TokenHeader::new(TypeBits::FORM1, me, form_id, conf_hash);
        header.seq = seq;
        Self {
            header,
            body: TokenBody::Form1(Box::new(body)),
        }
    }

    /// A FORM2 token from `me` for form attempt `form_id`.
    pub fn form2(me: DaemonId, form_id: RingId, seq: Seq, conf_hash: u32, body: Form2Body) -> Self {
        let mut header = TokenHeader::new(TypeBits::FORM2, me, form_id, conf_hash);
        header.seq = seq;
        Self {
            header,
            body: TokenBody::Form2(Box::new(body)),
        }
    }
}

impl core::fmt::Display for Token {
    /// One line for tracing: `token <type> <header>` and a short body summary.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "token {} {}", self.header.kind, self.header)?;
        match &self.body {
            TokenBody::Regular(b) if b.is_empty() => Ok(()),
            TokenBody::Regular(b) => {
                for r in b {
                    write!(
                        f,
                        " | rtr {} by {} seg {}: {:?}",
                        r.memb_id,
                        r.proc_id,
                        r.seg_index,
                        r.seqs.iter().map(|s| s.0).collect::<Vec<_>>()
                    )?;
                }
                Ok(())
            }
            TokenBody::Form1(b) => write!(
                f,
                " | members={} pending={} reps={} rings={}",
                b.members.members.len(),
                b.members.pending.len(),
                b.reps.reps.len(),
                b.rings.len()
            ),
            TokenBody::Form2(b) => write!(
                f,
                " | members={} pending={} new_ring={} rings={}",
                b.members.members.len(),
                b.members.pending.len(),
                b.new_ring_id,
                b.rings.len()
            ),
        }
    }
}
