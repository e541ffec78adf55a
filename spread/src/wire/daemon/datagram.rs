//! Whole datagrams of either port with 5.0.1's configuration check (§1.1): what the ring
//! engine receives and sends.

use bytes::Bytes;

use super::{DaemonId, DecodeError, Packet, Token};

/// A datagram of the data port P ([`Packet`]) or of the token port P+1 ([`Token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// Data port: data packets, ALIVE/JOIN/REFER, HURRY, monitor control.
    Packet(Packet),
    /// Token port: the regular token and the FORM1/FORM2 tokens.
    Token(Token),
}

/// Why a datagram was not accepted. Nothing changes in the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Not a valid 5.0.1 datagram.
    #[error("malformed: {0}")]
    Malformed(#[from] DecodeError),
    /// Valid, but from another configuration (hash differs): dropped silently by 5.0.1.
    #[error("configuration hash {0:#x} differs")]
    OtherConfiguration(u32),
}

impl Datagram {
    /// Decodes a whole datagram of the token port (`token_port`) or the data port and checks
    /// that it carries configuration hash `conf_hash`.
    pub fn decode(conf_hash: u32, token_port: bool, bytes: &[u8]) -> Result<Self, DatagramError> {
        let (d, hash) = if token_port {
            let t = Token::from_datagram(bytes)?;
            let h = t.header.conf_hash;
            (Self::Token(t), h)
        } else {
            let p = Packet::from_datagram(bytes)?;
            let h = p.header.conf_hash;
            (Self::Packet(p), h)
        };
        if hash != conf_hash {
            return Err(DatagramError::OtherConfiguration(hash));
        }
        Ok(d)
    }

    /// Decodes a whole datagram already accepted by the §1.1 checks
    /// ([`super::accept::check`]): no configuration check here.
    pub fn decode_accepted(token_port: bool, bytes: &[u8]) -> Result<Self, DatagramError> {
        Ok(if token_port {
            Self::Token(Token::from_datagram(bytes)?)
        } else {
            Self::Packet(Packet::from_datagram(bytes)?)
        })
    }

    /// The daemon that sent it (`transmiter_id`).
    pub fn transmitter(&self) -> DaemonId {
        match self {
            Self::Packet(p) => p.header.transmiter_id,
            Self::Token(t) => t.header.transmiter_id,
        }
    }

    /// Encodes the datagram.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(match self {
            Self::Packet(p) => p.to_vec(),
            Self::Token(t) => t.to_vec(),
        })
    }
}
