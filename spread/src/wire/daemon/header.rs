//! The two 40-byte headers: data-port packet header (§3) and token header (§5.1).

use bytes::{Buf, BufMut};

use super::codec::{Reader, Writer};
use super::{DaemonId, DecodeError, Endian, RingId, Seq, TypeBits};

/// Size of both headers on the wire.
pub const HEADER_LEN: usize = 40;

/// `{int16 fragment_index, int16 fragment_len}` (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FragHeader {
    /// k+1 if element k of a message with more elements following; −(elements) if last.
    pub index: i16,
    /// Bytes of this fragment.
    pub len: i16,
}

impl FragHeader {
    /// Size on the wire.
    pub const LEN: usize = 4;

    pub(crate) fn read<B: Buf>(r: &mut Reader<'_, B>) -> Result<Self, DecodeError> {
        let index = r.i16("fragment_index")?;
        let len = r.i16("fragment_len")?;
        Ok(Self { index, len })
    }

    pub(crate) fn write<B: BufMut>(&self, w: &mut Writer<'_, B>) {
        w.i16(self.index);
        w.i16(self.len);
    }
}

/// The 40-byte header of every data-port datagram (§3), all fields as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PacketHeader {
    /// Byte order of the sender (from the type word's marker).
    pub endian: Endian,
    /// Type bits without the marker.
    pub kind: TypeBits,
    /// Daemon that put this datagram on the wire.
    pub transmiter_id: DaemonId,
    /// Daemon that originated the packet.
    pub proc_id: DaemonId,
    /// Ring id (REFER: referred rep id and rep type).
    pub memb_id: RingId,
    /// Ring sequence number (STATUS request: the monitor's return port).
    pub seq: Seq,
    /// Sender's token-round counter.
    pub token_round: u32,
    /// Configuration hash.
    pub conf_hash: u32,
    /// Body bytes following the header.
    pub data_len: u16,
    /// Always 0 from 5.0.1; never checked, kept for exact re-encoding.
    pub padding: u16,
    /// Header of the first fragment in the body.
    pub first_frag: FragHeader,
}

impl PacketHeader {
    /// Decodes the 40-byte header; the byte order comes from the type word.
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        if buf.remaining() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                what: "packet header",
                need: HEADER_LEN,
                have: buf.remaining(),
            });
        }
        let (kind, endian) = TypeBits::read(buf)?;
        let mut r = Reader::new(buf, endian);
        let transmiter_id = DaemonId(r.u32("transmiter_id")?);
        let proc_id = DaemonId(r.u32("proc_id")?);
        let memb_id = RingId::read(&mut r, "memb_id")?;
        let seq = Seq(r.u32("seq")?);
        let token_round = r.u32("token_round")?;
        let conf_hash = r.u32("conf_hash")?;
        let data_len = r.u16("data_len")?;
        // `padding` is never flipped by 5.0.1: keep its raw bytes as they are.
        r.need("padding", 2)?;
        let padding = r.buf.get_u16_le();
        let first_frag = FragHeader::read(&mut r)?;
        Ok(Self {
            endian,
            kind,
            transmiter_id,
            proc_id,
            memb_id,
            seq,
            token_round,
            conf_hash,
            data_len,
            padding,
            first_frag,
        })
    }

    /// Writes the 40 bytes in `self.endian`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut w = Writer::new(buf, self.endian);
        self.kind.write(&mut w);
        w.u32(self.transmiter_id.0);
        w.u32(self.proc_id.0);
        self.memb_id.write(&mut w);
        w.u32(self.seq.0);
        w.u32(self.token_round);
        w.u32(self.conf_hash);
        w.u16(self.data_len);
        w.buf.put_u16_le(self.padding);
        self.first_frag.write(&mut w);
    }
}

/// The 40-byte header of every token-port datagram (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenHeader {
    /// Byte order of the sender.
    pub endian: Endian,
    /// Type bits without the marker: 0 (+ARQ/RETRANS) for a regular token, FORM1/FORM2.
    pub kind: TypeBits,
    /// Daemon that sent this datagram.
    pub transmiter_id: DaemonId,
    /// Daemon that last processed the token.
    pub proc_id: DaemonId,
    /// Ring id (FORM tokens: the form attempt id).
    pub memb_id: RingId,
    /// Highest sequence number assigned in the ring (FORM: highest seq + 3333).
    pub seq: Seq,
    /// All-received-up-to.
    pub aru: Seq,
    /// Daemon that last set aru.
    pub aru_last_id: DaemonId,
    /// Packets sent during the last rotation.
    pub flow_control: i16,
    /// Body length.
    pub rtr_len: u16,
    /// Configuration hash.
    pub conf_hash: u32,
}

impl TokenHeader {
    /// Decodes the 40-byte token header.
    pub fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        if buf.remaining() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                what: "token header",
                need: HEADER_LEN,
                have: buf.remaining(),
            });
        }
        let (kind, endian) = TypeBits::read(buf)?;
        let mut r = Reader::new(buf, endian);
        Ok(Self {
            endian,
            kind,
            transmiter_id: DaemonId(r.u32("transmiter_id")?),
            proc_id: DaemonId(r.u32("proc_id")?),
            memb_id: RingId::read(&mut r, "memb_id")?,
            seq: Seq(r.u32("seq")?),
            aru: Seq(r.u32("aru")?),
            aru_last_id: DaemonId(r.u32("aru_last_id")?),
            flow_control: r.i16("flow_control")?,
            rtr_len: r.u16("rtr_len")?,
            conf_hash: r.u32("conf_hash")?,
        })
    }

    /// Writes the 40 bytes in `self.endian`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut w = Writer::new(buf, self.endian);
        self.kind.write(&mut w);
        w.u32(self.transmiter_id.0);
        w.u32(self.proc_id.0);
        self.memb_id.write(&mut w);
        w.u32(self.seq.0);
        w.u32(self.aru.0);
        w.u32(self.aru_last_id.0);
        w.i16(self.flow_control);
        w.u16(self.rtr_len);
        w.u32(self.conf_hash);
    }
}

fn rewrite_in_place<H>(
    datagram: &mut [u8],
    decode: impl FnOnce(&mut &[u8]) -> Result<H, DecodeError>,
    encode: impl FnOnce(&H, &mut &mut [u8]),
    f: impl FnOnce(&mut H),
) -> Result<(), DecodeError> {
    let have = datagram.len();
    let head = datagram
        .get_mut(..HEADER_LEN)
        .ok_or(DecodeError::Truncated {
            what: "header",
            need: HEADER_LEN,
            have,
        })?;
    let mut h = decode(&mut &*head)?;
    f(&mut h);
    encode(&h, &mut &mut *head);
    Ok(())
}

impl PacketHeader {
    /// A header for a packet this daemon originates: `transmiter_id = proc_id = me`,
    /// native byte order, everything else 0.
    pub fn new(kind: u32, me: DaemonId, conf_hash: u32) -> Self {
        Self {
            endian: Endian::NATIVE,
            kind: TypeBits(kind),
            transmiter_id: me,
            proc_id: me,
            conf_hash,
            ..Self::default()
        }
    }

    /// Rewrites the header of a whole datagram in place, in its own byte order, leaving the
    /// body untouched (relaying a ROUTED packet, retransmitting under one's own
    /// `transmiter_id`, forwarding a foreign packet).
    pub fn rewrite(datagram: &mut [u8], f: impl FnOnce(&mut Self)) -> Result<(), DecodeError> {
        rewrite_in_place(datagram, |b| Self::decode(b), |h, b| h.encode(b), f)
    }
}

impl TokenHeader {
    /// A token header from this daemon: `transmiter_id = proc_id = me`, native byte order.
    pub fn new(kind: u32, me: DaemonId, memb_id: RingId, conf_hash: u32) -> Self {
        Self {
            endian: Endian::NATIVE,
            kind: TypeBits(kind),
            transmiter_id: me,
            proc_id: me,
            memb_id,
            conf_hash,
            ..Self::default()
        }
    }

    /// Rewrites the header of a whole token datagram in place (e.g. re-sending the last
    /// token with a higher retrans counter).
    pub fn rewrite(datagram: &mut [u8], f: impl FnOnce(&mut Self)) -> Result<(), DecodeError> {
        rewrite_in_place(datagram, |b| Self::decode(b), |h, b| h.encode(b), f)
    }
}

/// Names of the type bits, in the order the capture decodes print them.
const TYPE_NAMES: [(u32, &str); 16] = [
    (TypeBits::UNRELIABLE, "UNRELIABLE"),
    (TypeBits::RELIABLE, "RELIABLE"),
    (TypeBits::FIFO, "FIFO"),
    (TypeBits::AGREED, "AGREED"),
    (TypeBits::SAFE, "SAFE"),
    (TypeBits::ROUTED, "ROUTED"),
    (TypeBits::HURRY, "HURRY"),
    (TypeBits::ALIVE, "ALIVE"),
    (TypeBits::JOIN, "JOIN"),
    (TypeBits::REFER, "REFER"),
    (TypeBits::FORM1, "FORM1"),
    (TypeBits::FORM2, "FORM2"),
    (TypeBits::STATUS, "STATUS"),
    (TypeBits::PARTITION, "PARTITION"),
    (TypeBits::FC, "FC"),
    (TypeBits::RELOAD, "RELOAD"),
];

impl core::fmt::Display for TypeBits {
    /// `AGREED|ROUTED`, `JOIN`, `FORM2`, `arq=3|retrans=1`, `TOKEN` (a bare regular token).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut parts: Vec<String> = TYPE_NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| (*n).to_string())
            .collect();
        if self.arq() != 0 {
            parts.push(format!("arq={}", self.arq()));
        }
        if self.retrans() != 0 {
            parts.push(format!("retrans={}", self.retrans()));
        }
        if parts.is_empty() {
            parts.push("TOKEN".to_string());
        }
        f.write_str(&parts.join("|"))
    }
}

impl core::fmt::Display for PacketHeader {
    /// The capture decode format: `type=0x… trans=… proc_id=… memb=(…,…) seq=… round=… hash=…
    /// data_len=… pad=… frag=(…,…)`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "type={:#010x} trans={} proc_id={} memb={} seq={} round={} hash={:08x} data_len={} pad={} frag=({},{})",
            self.kind.0,
            self.transmiter_id,
            self.proc_id,
            self.memb_id,
            self.seq,
            self.token_round,
            self.conf_hash,
            self.data_len,
            self.padding,
            self.first_frag.index,
            self.first_frag.len
        )
    }
}

impl core::fmt::Display for TokenHeader {
    /// The capture decode format: `type=0x… trans=… proc_id=… memb=(…,…) seq=… aru=…
    /// aru_last_id=… fcc=… rtr_len=… hash=…`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "type={:#010x} trans={} proc_id={} memb={} seq={} aru={} aru_last_id={} fcc={} rtr_len={} hash={:08x}",
            self.kind.0,
            self.transmiter_id,
            self.proc_id,
            self.memb_id,
            self.seq,
            self.aru,
            self.aru_last_id,
            self.flow_control,
            self.rtr_len,
            self.conf_hash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_rewrite_keeps_body_and_order() {
        // An AGREED|ROUTED packet from a big-endian sender, relayed by 0x11223344.
        let mut h = PacketHeader::new(TypeBits::AGREED | TypeBits::ROUTED, DaemonId(7), 0xabcd);
        h.endian = Endian::Big;
        h.data_len = 3;
        let mut dg = Vec::new();
        h.encode(&mut dg);
        dg.extend_from_slice(b"xyz");
        PacketHeader::rewrite(&mut dg, |h| {
            h.kind = TypeBits(h.kind.0 & !TypeBits::ROUTED);
            h.transmiter_id = DaemonId(0x1122_3344);
        })
        .unwrap();
        let back = PacketHeader::decode(&mut &dg[..]).unwrap();
        assert_eq!(back.endian, Endian::Big);
        assert_eq!(back.kind, TypeBits(TypeBits::AGREED));
        assert_eq!(back.transmiter_id, DaemonId(0x1122_3344));
        assert_eq!(back.proc_id, DaemonId(7));
        assert_eq!(&dg[40..], b"xyz");
        assert!(PacketHeader::rewrite(&mut [0u8; 10], |_| {}).is_err());
    }

    #[test]
    fn token_retrans_rewrite() {
        let h = TokenHeader::new(0, DaemonId(1), RingId::default(), 5);
        let mut dg = Vec::new();
        h.encode(&mut dg);
        TokenHeader::rewrite(&mut dg, |h| h.kind = h.kind.with_retrans(2)).unwrap();
        assert_eq!(TokenHeader::decode(&mut &dg[..]).unwrap().kind.retrans(), 2);
    }
}
