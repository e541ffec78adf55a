//! Daemon↔daemon wire format of Spread 5.0.1, byte for byte.
//!
//! Two UDP ports per daemon: the data port P carries [`Packet`]s (data packets and their
//! fragments, ALIVE/JOIN/REFER, HURRY, monitor/status control) and P+1 carries [`Token`]s
//! (the regular token with its retransmission requests, and FORM1/FORM2 tokens).
//!
//! Every integer is in the *sender's* byte order; the `type` word carries the endian marker
//! `0x80000080` (set by a little-endian sender). Decoders detect the order from the marker and
//! keep it in the decoded value ([`Endian`]), so that `encode(decode(p)) == p` for every
//! packet 5.0.1 produces, whatever its byte order. Values built locally should use
//! [`Endian::NATIVE`] as 5.0.1 does; receivers accept either order.
//!
//! Decoders are pure functions over `&mut impl Buf`; they check `remaining()` before every
//! read and every count against a named maximum before allocating, and never panic.
//! Encoders write to `BufMut` and cannot fail.
//!
//! Layouts: fact sheet `spread-daemon-protocol.md` §3–§8, §11.
//!
//! # Use
//!
//! * Receive: [`accept::check`] (5.0.1's §1.1 drops: length, hash, known transmitter, source
//!   address, own packets), then [`Packet::from_datagram`] (port P) or
//!   [`Token::from_datagram`] (P+1) and match on [`PacketBody`] / [`TokenBody`].
//! * Send: build with the constructors ([`Packet::alive`], [`Packet::join`],
//!   [`Packet::refer`], [`Packet::hurry`], [`Packet::data`], [`Token::first_regular`],
//!   [`Token::form1`], [`Token::form2`], [`groups::Message::groups`], …) or the public
//!   fields, then `to_vec()`; lengths (`data_len`, `rtr_len`, first fragment) are filled in.
//! * Messages: [`split_message`] cuts a message into fragments, [`DataBody::try_pack`] packs
//!   small ones as 5.0.1 does, [`packet_class`] / [`can_share_packet`] give the packet type.
//! * Relaying a ROUTED packet or retransmitting one under one's own id:
//!   [`PacketHeader::rewrite`] edits the header in place, in the original byte order.
//! * Ids and the configuration hash: [`crate::ids`].

#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

pub mod accept;
mod codec;
pub mod data;
pub mod datagram;
pub mod groups;
pub mod header;
pub mod memb;
pub mod monitor;
pub mod packet;
pub mod token;

#[cfg(test)]
mod proptests;

pub use data::{can_share_packet, packet_class, split_message, DataBody, Fragment};
pub use datagram::{Datagram, DatagramError};
pub use groups::{GroupBlock, GroupDaemon, GroupId, GroupsBody, Message, MessageHeader};
pub use header::{FragHeader, PacketHeader, TokenHeader, HEADER_LEN};
pub use memb::{
    AliveBody, Form1Body, Form2Body, JoinBody, MembersInfo, RepInfo, RepType, RepsInfo, RingInfo,
};
pub use monitor::{FcBody, PartitionBody, StatusRecord};
pub use packet::{Packet, PacketBody};
pub use token::{RtrRequest, Token, TokenBody, FIRST_TOKEN_ARU};

use core::fmt;

/// Largest UDP payload a daemon sends on the data port (MAX_PACKET_SIZE).
pub const MAX_PACKET_SIZE: usize = 1472;
/// Largest packet body (MAX_PACKET_SIZE − 40-byte header).
pub const MAX_PACKET_BODY: usize = MAX_PACKET_SIZE - HEADER_LEN;
/// Largest token body (65535 − 20 IP − 8 UDP − 40 token header).
pub const MAX_TOKEN_BODY: usize = 65535 - 20 - 8 - HEADER_LEN;
/// Most daemons in one ring (MAX_PROCS_RING).
pub const MAX_PROCS_RING: usize = 128;
/// Most representatives in a reps list (MAX_REPS).
pub const MAX_REPS: usize = 25;
/// Most old rings described in one FORM token (MAX_FORM_REPS).
pub const MAX_FORM_REPS: usize = 20;
/// Most segments in a configuration (MAX_SEGMENTS).
pub const MAX_SEGMENTS: usize = 20;
/// Most daemons per segment (MAX_PROCS_SEGMENT).
pub const MAX_PROCS_SEGMENT: usize = 128;
/// The endian marker bits of every `type` word, set by a little-endian sender.
pub const ENDIAN_MARKER: u32 = 0x8000_0080;

/// Why a daemon packet or token could not be decoded. Decoding never changes any state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes were left than the field needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The endian marker bits of the type word are neither both set nor both clear.
    #[error("bad endian marker in type word {0:#010x}")]
    BadEndianMarker(u32),
    /// A count or length exceeds its protocol maximum.
    #[error("{what} too long: {len} > {max}")]
    TooLong {
        /// Field.
        what: &'static str,
        /// Decoded value.
        len: usize,
        /// Named maximum.
        max: usize,
    },
    /// A count that must not be negative is.
    #[error("{what} is negative: {value}")]
    Negative {
        /// Field.
        what: &'static str,
        /// Decoded value.
        value: i64,
    },
    /// A declared length disagrees with the bytes actually present.
    #[error("{what}: declared {declared} bytes, found {actual}")]
    LengthMismatch {
        /// Field.
        what: &'static str,
        /// Declared length.
        declared: usize,
        /// Actual length.
        actual: usize,
    },
    /// Structurally invalid (e.g. fragments not covering the body, non-zero padding).
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Byte order of a packet (the sender's native order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Endian {
    /// Little-endian sender (x86): marker bits set.
    #[default]
    Little,
    /// Big-endian sender: marker bits clear.
    Big,
}

impl Endian {
    /// Byte order of the machine this runs on.
    pub const NATIVE: Self = if cfg!(target_endian = "big") {
        Self::Big
    } else {
        Self::Little
    };

    /// Detects the sender's order from the first 4 bytes of a packet or token.
    pub fn detect(first4: [u8; 4]) -> Result<Self, DecodeError> {
        let le = u32::from_le_bytes(first4);
        match le & ENDIAN_MARKER {
            ENDIAN_MARKER => Ok(Self::Little),
            0 => Ok(Self::Big),
            _ => Err(DecodeError::BadEndianMarker(le)),
        }
    }

    /// The marker bits this order puts in the type word.
    pub fn marker(self) -> u32 {
        match self {
            Self::Little => ENDIAN_MARKER,
            Self::Big => 0,
        }
    }
}

pub use crate::ids::{DaemonId, RingId};

impl RingId {
    pub(crate) fn read<B: bytes::Buf>(
        r: &mut codec::Reader<'_, B>,
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        let leader = DaemonId(r.u32(what)?);
        let time = r.i32(what)?;
        Ok(Self { leader, time })
    }

    pub(crate) fn write<B: bytes::BufMut>(&self, w: &mut codec::Writer<'_, B>) {
        w.u32(self.leader.0);
        w.i32(self.time);
    }
}

/// A ring sequence number (also used for aru values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u32);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The `type` word of a packet or token, without the endian marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TypeBits(pub u32);

impl TypeBits {
    /// Regular message class (never produced by 5.0.1).
    pub const UNRELIABLE: u32 = 0x0000_0001;
    /// Reliable message packet.
    pub const RELIABLE: u32 = 0x0000_0002;
    /// FIFO message packet.
    pub const FIFO: u32 = 0x0000_0004;
    /// Agreed message packet (also CAUSAL, client JOIN/LEAVE/KILL, GROUPS last).
    pub const AGREED: u32 = 0x0000_0008;
    /// Safe message packet.
    pub const SAFE: u32 = 0x0000_0010;
    /// All regular (message) classes.
    pub const REGULAR: u32 = 0x0000_001f;
    /// Copy unicast to another segment's relay.
    pub const ROUTED: u32 = 0x0000_0020;
    /// "Please release the held token".
    pub const HURRY: u32 = 0x0000_0040;
    /// Membership ALIVE.
    pub const ALIVE: u32 = 0x0000_0100;
    /// Membership JOIN.
    pub const JOIN: u32 = 0x0000_0200;
    /// Membership REFER.
    pub const REFER: u32 = 0x0000_0400;
    /// Any membership packet.
    pub const MEMBERSHIP: u32 = 0x0000_0700;
    /// FORM1 token.
    pub const FORM1: u32 = 0x0000_1000;
    /// FORM2 token.
    pub const FORM2: u32 = 0x0000_2000;
    /// Any FORM token.
    pub const FORM: u32 = 0x0000_3000;
    /// Token ARQ counter (bits 16–19).
    pub const ARQ: u32 = 0x000f_0000;
    /// Token retransmission counter (bits 20–23).
    pub const RETRANS: u32 = 0x00f0_0000;
    /// Monitor status request/reply.
    pub const STATUS: u32 = 0x0100_0000;
    /// Monitor partition control.
    pub const PARTITION: u32 = 0x0200_0000;
    /// Monitor flow-control change.
    pub const FC: u32 = 0x0400_0000;
    /// Configuration reload request.
    pub const RELOAD: u32 = 0x0800_0000;
    /// Any control packet.
    pub const CONTROL: u32 = 0x0f00_0000;

    /// True when any of `mask` is set.
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask != 0
    }

    /// Token ARQ counter (0..=15).
    pub fn arq(self) -> u8 {
        ((self.0 & Self::ARQ) >> 16) as u8
    }

    /// Same type with the ARQ counter set (`val` modulo 16).
    #[must_use]
    pub fn with_arq(self, val: u8) -> Self {
        Self((self.0 & !Self::ARQ) | ((u32::from(val) << 16) & Self::ARQ))
    }

    /// Token retransmission counter (0..=15).
    pub fn retrans(self) -> u8 {
        ((self.0 & Self::RETRANS) >> 20) as u8
    }

    /// Same type with the retransmission counter set (`val` modulo 16).
    #[must_use]
    pub fn with_retrans(self, val: u8) -> Self {
        Self((self.0 & !Self::RETRANS) | ((u32::from(val) << 20) & Self::RETRANS))
    }

    pub(crate) fn read<B: bytes::Buf>(buf: &mut B) -> Result<(Self, Endian), DecodeError> {
        let have = buf.remaining();
        if have < 4 {
            return Err(DecodeError::Truncated {
                what: "type",
                need: 4,
                have,
            });
        }
        let mut first = [0u8; 4];
        buf.copy_to_slice(&mut first);
        let endian = Endian::detect(first)?;
        let raw = match endian {
            Endian::Little => u32::from_le_bytes(first),
            Endian::Big => u32::from_be_bytes(first),
        };
        Ok((Self(raw & !ENDIAN_MARKER), endian))
    }

    pub(crate) fn write<B: bytes::BufMut>(self, w: &mut codec::Writer<'_, B>) {
        w.u32((self.0 & !ENDIAN_MARKER) | w.endian.marker());
    }
}
