//! The ids every layer shares — [`DaemonId`] and [`RingId`], one type each, used by the wire
//! codecs, the ring, membership, groups and sessions — and the daemon ids and configuration
//! hash exactly as Spread 5.0.1 computes them (fact sheet §1, §9, §15.7).

use core::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::config::Config;

/// A daemon id (5.0.1 "proc id", VID): a hash of the daemon name ([`daemon_id`]) or its
/// `VirtualID`, compared as an unsigned integer. On the wire: 4 bytes in the sender's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DaemonId(pub u32);

impl DaemonId {
    /// 0: no daemon.
    pub const NONE: Self = Self(0);
    /// −1: "anyone" (retransmission widening, first token's aru_last_id).
    pub const ANY: Self = Self(u32::MAX);
}

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A ring (membership) id, 5.0.1's `membership_id`: the leader that created the ring and
/// its seconds-based time, strictly increasing per leader (−1 before a daemon's first ring).
/// Also the id of a FORM attempt and the first words of every group id. On the wire: 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RingId {
    /// Leader that created the ring (5.0.1 `proc_id`).
    pub leader: DaemonId,
    /// Creator's seconds-based timestamp.
    pub time: i32,
}

impl RingId {
    /// Size on the wire.
    pub const LEN: usize = 8;
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.leader, self.time)
    }
}

pub use crate::config::oaat;

/// The id of a daemon without a `VirtualID` line: the one-at-a-time hash ([`oaat`]: initial
/// value = length, signed chars) of its name including the terminating NUL; 0 and 0xffffffff
/// are replaced by `(name length + 1) << 16`. Same function as
/// [`crate::config::vid_from_name`], which fills [`crate::config::Host::vid`].
pub fn daemon_id(name: &str) -> DaemonId {
    DaemonId(crate::config::vid_from_name(name))
}

/// One configured daemon as it enters the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashDaemon {
    /// Daemon name.
    pub name: String,
    /// Its configured address.
    pub addr: IpAddr,
    /// Its id (from [`daemon_id`] or `VirtualID`).
    pub id: DaemonId,
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

impl HashInput {
    /// The hash inputs of a parsed configuration: segments and hosts in file order (ports,
    /// segment addresses, names, addresses, ids), `ExcludeSegAddrsFromHash`, and the ring
    /// protocol as 5.0.1's parser sees it (explicit `AcceleratedRing = true` only).
    pub fn from_config(config: &Config) -> Self {
        Self {
            segments: config
                .segments
                .iter()
                .map(|seg| HashSegment {
                    port: seg.port,
                    addrs: seg.addrs.iter().map(|a| a.ip).collect(),
                    daemons: seg
                        .hosts
                        .iter()
                        .map(|h| HashDaemon {
                            name: h.name.clone(),
                            addr: h.addr.ip,
                            id: DaemonId(h.vid),
                        })
                        .collect(),
                })
                .collect(),
            accelerated_ring: config.accelerated_ring(),
            exclude_seg_addrs: config.exclude_seg_addrs_from_hash(),
        }
    }
}

/// The configuration hash of `config`, as carried in every packet and token.
pub fn conf_hash(config: &Config) -> u32 {
    HashInput::from_config(config).conf_hash()
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
        assert_eq!(daemon_id("d1"), DaemonId(0x5c8d_7aef));
        assert_eq!(daemon_id("d2"), DaemonId(0x14c5_65a0));
        assert_eq!(daemon_id("d3"), DaemonId(0xef46_226e));
        assert_eq!(daemon_id("d4"), DaemonId(0xd5c3_0851));
        assert_eq!(daemon_id("localhost"), DaemonId(482_711_334));
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

    #[test]
    fn hash_from_parsed_config() {
        let text = "Spread_Segment 10.98.0.255:4803 {\n  d1 10.98.0.1\n  d2 10.98.0.2\n  d3 10.98.0.3\n}\n";
        let c = Config::parse(text, "t.conf").unwrap();
        assert_eq!(conf_hash(&c), 0x9f2a_d697);
        let c = Config::parse(&format!("{text}AcceleratedRing = true\n"), "t.conf").unwrap();
        assert_eq!(conf_hash(&c), 0x90d8_bf74);
        // `AcceleratedRing = false` is still "Original Ring"; other settings are not hashed.
        let c = Config::parse(
            &format!("{text}AcceleratedRing = false\nWindow = 100\n"),
            "t.conf",
        )
        .unwrap();
        assert_eq!(conf_hash(&c), 0x9f2a_d697);
    }
}
