//! Target for the receive-side acceptance checks (`crate::wire::daemon::accept`).

use crate::wire::daemon::accept::{check, Accepted, Port, Rejected};
use crate::wire::daemon::{DaemonId, PacketHeader, TokenHeader, TypeBits, HEADER_LEN};

/// The configured daemons of the fuzzed acceptance check (the captures' d1, d2, d3), with the
/// "address" (an index) each is configured at.
const DAEMONS: [(DaemonId, u8); 3] = [
    (DaemonId(0x5c8d_7aef), 1),
    (DaemonId(0x14c5_65a0), 2),
    (DaemonId(0xef46_226e), 3),
];
/// Configuration hash of the captures (`tests/data/daemon`).
const CAPTURE_HASH: u32 = 0x9f2a_d697;

/// The header fields the acceptance check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    kind: TypeBits,
    transmiter: DaemonId,
    hash: u32,
    data_len: Option<u16>,
}

/// Decodes the header of `datagram` as `port` reads it; checks bytes consumed = 40 ≤ given
/// and decode → encode → decode; returns the fields and the re-encoded header.
fn header(datagram: &[u8], port: Port) -> Option<(Fields, Vec<u8>)> {
    let mut buf = datagram;
    let mut enc = Vec::with_capacity(HEADER_LEN);
    let fields = match port {
        Port::Data => {
            let h = PacketHeader::decode(&mut buf).ok()?;
            h.encode(&mut enc);
            assert_eq!(
                PacketHeader::decode(&mut &enc[..]),
                Ok(h),
                "header round trip"
            );
            Fields {
                kind: h.kind,
                transmiter: h.transmiter_id,
                hash: h.conf_hash,
                data_len: Some(h.data_len),
            }
        }
        Port::Token => {
            let h = TokenHeader::decode(&mut buf).ok()?;
            h.encode(&mut enc);
            assert_eq!(
                TokenHeader::decode(&mut &enc[..]),
                Ok(h),
                "header round trip"
            );
            Fields {
                kind: h.kind,
                transmiter: h.transmiter_id,
                hash: h.conf_hash,
                data_len: None,
            }
        }
    };
    let used = datagram.len() - buf.len();
    assert_eq!(used, HEADER_LEN, "a header is 40 bytes");
    assert!(used <= datagram.len());
    assert_eq!(enc.len(), HEADER_LEN, "an encoded header is 40 bytes");
    Some((fields, enc))
}

/// The acceptance check of 5.0.1's network layer (§1.1), on any datagram. Input: a selector
/// byte, then the datagram. Selector bits: 0 the port (data / token); 1-2 which configured
/// daemon we are (`% 3`); 3-4 the UDP source (address of d1 / d2 / d3, or an unconfigured
/// one); 5 whether our configuration hash is the captures' or the one the datagram carries
/// (so the later checks are reached).
///
/// Checks: the header decodes → encodes → decodes to the same value, taking exactly 40 bytes;
/// the verdict is the one §1.1's rules give for the decoded fields, in 5.0.1's order (short,
/// length, hash, unknown transmitter, source, own); the verdict depends only on the decoded
/// fields (the datagram with its header re-encoded gets the same verdict).
pub fn accept(data: &[u8]) {
    let Some((&sel, datagram)) = data.split_first() else {
        return;
    };
    let port = if sel & 1 == 0 {
        Port::Data
    } else {
        Port::Token
    };
    let me = DAEMONS[usize::from((sel >> 1) & 3) % DAEMONS.len()].0;
    let source: u8 = match (sel >> 3) & 3 {
        3 => 0,
        i => DAEMONS[usize::from(i)].1,
    };
    let decoded = if datagram.len() < HEADER_LEN {
        None
    } else {
        header(datagram, port)
    };
    let conf_hash = match (sel & 0x20 != 0, &decoded) {
        (false, Some((f, _))) => f.hash,
        _ => CAPTURE_HASH,
    };
    let addr_of = |id: DaemonId| DAEMONS.iter().find(|(p, _)| *p == id).map(|(_, a)| *a);
    let verdict = check(datagram, port, &source, conf_hash, me, addr_of);

    let Some((f, enc)) = decoded else {
        assert_eq!(
            verdict,
            Err(Rejected::Short),
            "an undecodable header passed"
        );
        return;
    };
    let expected = if f
        .data_len
        .is_some_and(|n| datagram.len() - HEADER_LEN != usize::from(n))
    {
        Err(Rejected::Length)
    } else if f.hash != conf_hash {
        Err(Rejected::Hash)
    } else if let Some(addr) = addr_of(f.transmiter) {
        if addr != source {
            Err(Rejected::WrongSource)
        } else if port == Port::Data && f.kind.has(TypeBits::CONTROL) {
            Ok(Accepted::Control)
        } else if f.transmiter == me {
            Err(Rejected::Own)
        } else {
            Ok(Accepted::Protocol)
        }
    } else {
        Err(Rejected::UnknownTransmitter)
    };
    assert_eq!(verdict, expected, "verdict for {f:?} from {source}");
    let mut again = enc;
    again.extend_from_slice(datagram.get(HEADER_LEN..).unwrap_or_default());
    assert_eq!(
        check(&again, port, &source, conf_hash, me, addr_of),
        verdict,
        "the verdict depends on more than the decoded header"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::daemon::Packet;

    /// Every verdict is reachable from the target's input format.
    #[test]
    fn every_verdict_is_reached() {
        let d2 = DAEMONS[1].0;
        let hurry = Packet::hurry(d2, CAPTURE_HASH).to_vec();
        let with = |sel: u8, d: &[u8]| [&[sel][..], d].concat();
        // We are d1, source d2's address, our hash = the datagram's.
        let me_d1_from_d2 = 1 << 3;
        let cases: Vec<(Vec<u8>, Result<Accepted, Rejected>)> = vec![
            (with(me_d1_from_d2, &hurry), Ok(Accepted::Protocol)),
            (with(me_d1_from_d2, &hurry[..39]), Err(Rejected::Short)),
            (
                with(me_d1_from_d2, &[&hurry[..], &[0]].concat()),
                Err(Rejected::Length),
            ),
            (with(3 << 3, &hurry), Err(Rejected::WrongSource)),
            (with(1 << 1 | 1 << 3, &hurry), Err(Rejected::Own)),
        ];
        for (input, want) in cases {
            accept(&input);
            let port = Port::Data;
            let me = DAEMONS[usize::from((input[0] >> 1) & 3) % 3].0;
            let source = match (input[0] >> 3) & 3 {
                3 => 0,
                i => DAEMONS[usize::from(i)].1,
            };
            let addr_of = |id: DaemonId| DAEMONS.iter().find(|(p, _)| *p == id).map(|(_, a)| *a);
            assert_eq!(
                check(&input[1..], port, &source, CAPTURE_HASH, me, addr_of),
                want
            );
        }
    }
}
