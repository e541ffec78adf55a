//! Daemon ids and the configuration hash, exactly as Spread 5.0.1 computes them
//! (fact sheet §1, §9, §15.7).

use core::fmt::Write as _;
use std::net::IpAddr;

use crate::wire::daemon::ProcId;

/// Bob Jenkins' one-at-a-time hash as 5.0.1's `stdhcode_oaat`: initial value = length, each
/// byte added as a **signed** C `char` (sign-extended).
pub fn oaat(bytes: &[u8]) -> u32 {
    let mut h = bytes.len() as u32;
    for &b in bytes {
        // Sign-extend like x86's signed `char`.
        h = h.wrapping_add(i32::from(b as i8) as u32);
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// The id of a daemon without a `VirtualID` line: the hash of its name including the
/// terminating NUL; 0 and 0xffffffff are replaced by `(name length + 1) << 16`.
pub fn daemon_id(name: &str) -> ProcId {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    let h = oaat(&bytes);
    if h == 0 || h == u32::MAX {
        let alt = (bytes.len() as u32) << 16;
        ProcId(if alt == 0 { 1 << 16 } else { alt })
    } else {
        ProcId(h)
    }
}

/// One configured daemon as it enters the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashDaemon {
    /// Daemon name.
    pub name: String,
    /// Its configured address.
    pub addr: IpAddr,
    /// Its id (from [`daemon_id`] or `VirtualID`).
    pub id: ProcId,
}

/// One `Spread_Segment` as it enters the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSegment {
    /// Segment port P.
    pub port: u16,
    /// Segment (broadcast/multicast) addresses, in file order.
    pub addrs: Vec<IpAddr>,
    /// Daemons in file order.
    pub daemons: Vec<HashDaemon>,
}

/// Inputs of the configuration hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashInput {
    /// Segments in file order.
    pub segments: Vec<HashSegment>,
    /// `AcceleratedRing = true` present in the file (absent or false → "Original Ring").
    pub accelerated_ring: bool,
    /// `ExcludeSegAddrsFromHash = yes`.
    pub exclude_seg_addrs: bool,
}

/// The spread major version in the hash string.
pub const SP_MAJOR_VERSION: u32 = 5;

impl HashInput {
    /// The canonical text that is hashed (without the terminating NUL).
    pub fn canonical_text(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            let _ = write!(s, "Segment: port = {};", seg.port);
            if !self.exclude_seg_addrs {
                for a in &seg.addrs {
                    let _ = write!(s, " [{a}]");
                }
            }
            s.push('\n');
            for d in &seg.daemons {
                let _ = writeln!(s, "\t'{}' [{}] [{}]", d.name, d.addr, d.id.0);
            }
            s.push('\n');
        }
        let proto = if self.accelerated_ring {
            "Accelerated Ring"
        } else {
            "Original Ring"
        };
        let _ = write!(s, "Version: {SP_MAJOR_VERSION}\nProtocol: {proto}\n");
        s
    }

    /// The configuration hash carried in every packet and token.
    pub fn conf_hash(&self) -> u32 {
        let mut bytes = self.canonical_text().into_bytes();
        bytes.push(0);
        oaat(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, ip: &str) -> HashDaemon {
        HashDaemon {
            name: name.into(),
            addr: ip.parse().unwrap(),
            id: daemon_id(name),
        }
    }

    #[test]
    fn ids_match_captures() {
        assert_eq!(daemon_id("d1"), ProcId(0x5c8d_7aef));
        assert_eq!(daemon_id("d2"), ProcId(0x14c5_65a0));
        assert_eq!(daemon_id("d3"), ProcId(0xef46_226e));
        assert_eq!(daemon_id("d4"), ProcId(0xd5c3_0851));
        assert_eq!(daemon_id("localhost"), ProcId(482_711_334));
    }

    #[test]
    fn hash_of_the_test_config() {
        let mut h = HashInput {
            segments: vec![HashSegment {
                port: 4803,
                addrs: vec!["10.98.0.255".parse().unwrap()],
                daemons: vec![
                    d("d1", "10.98.0.1"),
                    d("d2", "10.98.0.2"),
                    d("d3", "10.98.0.3"),
                ],
            }],
            ..HashInput::default()
        };
        assert_eq!(h.conf_hash(), 0x9f2a_d697);
        h.accelerated_ring = true;
        assert_eq!(h.conf_hash(), 0x90d8_bf74);
    }
}
