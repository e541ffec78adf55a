//! Receive-side acceptance checks of 5.0.1's network layer (fact sheet §1.1), as a pure
//! function: the shell (or the core) calls it on every datagram before decoding further.

use super::header::{PacketHeader, TokenHeader, HEADER_LEN};
use super::{DaemonId, TypeBits};

/// Why a datagram is dropped before the protocol sees it. Nothing changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// Shorter than the 40-byte header, or unreadable type word.
    #[error("shorter than a header or bad type word")]
    Short,
    /// Data port: UDP length differs from 40 + `data_len`.
    #[error("length differs from 40 + data_len")]
    Length,
    /// Configuration hash differs from ours.
    #[error("different configuration hash")]
    Hash,
    /// `transmiter_id` is not a configured daemon.
    #[error("unknown transmitter")]
    UnknownTransmitter,
    /// UDP source IP is not the configured address of `transmiter_id`.
    #[error("source address is not the transmitter's configured address")]
    WrongSource,
    /// A non-control packet sent by ourselves (our own broadcast).
    #[error("own packet")]
    Own,
}

/// What an accepted datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Accepted {
    /// Monitor/status control packet (accepted even from ourselves).
    Control,
    /// Anything else, from another configured daemon.
    Protocol,
}

/// Which port a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// Segment port P.
    Data,
    /// P+1.
    Token,
}

/// Applies §1.1 in 5.0.1's order: header size; (data port) exact length; hash; known
/// transmitter; source address; own packets. `addr_of` maps a configured daemon id to its
/// configured address (`None` = not configured); `source` is the UDP source address.
pub fn check<A: PartialEq>(
    datagram: &[u8],
    port: Port,
    source: &A,
    conf_hash: u32,
    my_id: DaemonId,
    addr_of: impl Fn(DaemonId) -> Option<A>,
) -> Result<Accepted, Rejected> {
    if datagram.len() < HEADER_LEN {
        return Err(Rejected::Short);
    }
    let (kind, transmiter, hash) = match port {
        Port::Data => {
            let h = PacketHeader::decode(&mut &datagram[..]).map_err(|_| Rejected::Short)?;
            if datagram.len() - HEADER_LEN != usize::from(h.data_len) {
                return Err(Rejected::Length);
            }
            (h.kind, h.transmiter_id, h.conf_hash)
        }
        Port::Token => {
            let h = TokenHeader::decode(&mut &datagram[..]).map_err(|_| Rejected::Short)?;
            (h.kind, h.transmiter_id, h.conf_hash)
        }
    };
    if hash != conf_hash {
        return Err(Rejected::Hash);
    }
    let Some(addr) = addr_of(transmiter) else {
        return Err(Rejected::UnknownTransmitter);
    };
    if addr != *source {
        return Err(Rejected::WrongSource);
    }
    if port == Port::Data && kind.has(TypeBits::CONTROL) {
        return Ok(Accepted::Control);
    }
    if transmiter == my_id {
        return Err(Rejected::Own);
    }
    Ok(Accepted::Protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::daemon::{Packet, TokenHeader as TH};

    fn addr_of(id: DaemonId) -> Option<u8> {
        match id.0 {
            1 => Some(1),
            2 => Some(2),
            _ => None,
        }
    }

    #[test]
    fn checks_in_order() {
        let me = DaemonId(1);
        let p = Packet::hurry(DaemonId(2), 77).to_vec();
        assert_eq!(
            check(&p, Port::Data, &2, 77, me, addr_of),
            Ok(Accepted::Protocol)
        );
        assert_eq!(
            check(&p[..39], Port::Data, &2, 77, me, addr_of),
            Err(Rejected::Short)
        );
        let mut long = p.clone();
        long.push(0);
        assert_eq!(
            check(&long, Port::Data, &2, 77, me, addr_of),
            Err(Rejected::Length)
        );
        assert_eq!(
            check(&p, Port::Data, &2, 78, me, addr_of),
            Err(Rejected::Hash)
        );
        assert_eq!(
            check(&p, Port::Data, &1, 77, me, addr_of),
            Err(Rejected::WrongSource)
        );
        let stranger = Packet::hurry(DaemonId(9), 77).to_vec();
        assert_eq!(
            check(&stranger, Port::Data, &2, 77, me, addr_of),
            Err(Rejected::UnknownTransmitter)
        );
        let own = Packet::hurry(me, 77).to_vec();
        assert_eq!(
            check(&own, Port::Data, &1, 77, me, addr_of),
            Err(Rejected::Own)
        );
        let mut status = Packet::hurry(me, 77);
        status.header.kind = TypeBits(TypeBits::STATUS);
        status.body = crate::wire::daemon::PacketBody::Status(None);
        assert_eq!(
            check(&status.to_vec(), Port::Data, &1, 77, me, addr_of),
            Ok(Accepted::Control)
        );
        // Tokens: no length check at this layer.
        let mut t = Vec::new();
        TH::new(0, DaemonId(2), Default::default(), 77).encode(&mut t);
        t.extend_from_slice(&[0; 8]);
        assert_eq!(
            check(&t, Port::Token, &2, 77, me, addr_of),
            Ok(Accepted::Protocol)
        );
    }
}
