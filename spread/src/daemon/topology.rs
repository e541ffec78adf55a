//! Where datagrams go and which ones are accepted: 5.0.1's network layer (fact sheet §1.1,
//! §15), decided in the core so the simulator runs the same rules as production.
//!
//! * **Acceptance** (`Topology::accept`, called once per datagram): §1.1 in 5.0.1's order
//!   (header size; on the data port the exact length; configuration hash; the transmitter is a
//!   configured daemon and the datagram came from its address; not our own broadcast, except a
//!   control packet). The shell has mapped the UDP source address to a configured daemon
//!   (`from`); datagrams from other addresses never reach the core.
//! * **ROUTED relaying** (§15.3): an accepted data packet with type bit ROUTED is re-broadcast
//!   to my segment (ROUTED cleared, `transmiter_id` := me, header in the sender's byte order)
//!   when my configured segment has more than one daemon, then processed with ROUTED cleared.
//! * **Routing** (`Topology::route`): the engine's [`Dest`] becomes datagrams to
//!   [`Target`]s. "Scast to my segment" sends nothing when my configured segment has only me;
//!   else one datagram to the segment's broadcast address, or (a segment whose address is a
//!   loopback address, our mode for several daemons on one machine) one unicast per other
//!   daemon of my segment. A broadcast of a data packet with several segments first goes as a
//!   ROUTED copy to each other segment's relay (its first member of the installed ring in
//!   configuration order), then to my segment; any other broadcast goes to my segment plus a
//!   plain unicast to every daemon of the other segments.
//! * A datagram for myself (the token of a singleton ring) is handed back to me without a
//!   socket ([`Target::Daemon`] is never me in the outputs).

use bytes::Bytes;

use crate::config::{Config, HostId};
use crate::ring::{DaemonId, Dest, Port, RingConfig};
use crate::wire::daemon::accept::{self, Accepted, Rejected};
use crate::wire::daemon::{PacketHeader, TypeBits};

/// Where the shell sends a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Another configured daemon's address.
    Daemon(DaemonId),
    /// My segment's broadcast address.
    Segment,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Target,
    /// Which of the target's ports (P or P+1).
    pub port: Port,
    /// The datagram.
    pub bytes: Bytes,
}

/// Counters of the network layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopologyStats {
    /// Datagrams dropped by §1.1, per reason: short, length, hash, unknown transmitter, wrong
    /// source, own.
    pub rejected: [u64; 6],
    /// ROUTED packets re-broadcast to my segment.
    pub relayed: u64,
    /// Datagrams handed back to myself without a socket.
    pub looped: u64,
}

impl TopologyStats {
    /// All datagrams dropped by §1.1.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    fn count(&mut self, r: Rejected) {
        let i = match r {
            Rejected::Short => 0,
            Rejected::Length => 1,
            Rejected::Hash => 2,
            Rejected::UnknownTransmitter => 3,
            Rejected::WrongSource => 4,
            _ => 5,
        };
        if let Some(c) = self.rejected.get_mut(i) {
            *c += 1;
        }
    }
}

/// An accepted datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accept {
    /// A monitor control packet (`spmonitor`).
    Control(Bytes),
    /// A protocol packet for the engine (ROUTED already cleared).
    Protocol(Bytes),
}

/// The configured daemons as the network layer sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    me: DaemonId,
    /// Configured daemons in configuration order, with their segment index.
    daemons: Vec<(DaemonId, usize)>,
    my_seg: usize,
    my_seg_size: usize,
    segments: usize,
    conf_hash: u32,
    /// My segment's address broadcasts; `false` (loopback): unicast to each daemon of it.
    broadcast: bool,
    stats: TopologyStats,
}

impl Topology {
    /// From the ring settings: daemons and their segments; `broadcast`: whether my segment's
    /// address broadcasts (`false` for a loopback segment address).
    pub fn from_ring(ring: &RingConfig, broadcast: bool) -> Self {
        let daemons: Vec<(DaemonId, usize)> = ring
            .daemons
            .iter()
            .enumerate()
            .map(|(i, d)| (*d, usize::from(ring.segments.get(i).copied().unwrap_or(0))))
            .collect();
        let my_seg = daemons
            .iter()
            .find(|(d, _)| *d == ring.me)
            .map_or(0, |(_, s)| *s);
        let my_seg_size = daemons.iter().filter(|(_, s)| *s == my_seg).count();
        let segments = daemons.iter().map(|(_, s)| s + 1).max().unwrap_or(1);
        Self {
            me: ring.me,
            daemons,
            my_seg,
            my_seg_size,
            segments,
            conf_hash: ring.conf_hash,
            broadcast,
            stats: TopologyStats::default(),
        }
    }

    /// For host `me` of a parsed configuration: my segment broadcasts unless its address is a
    /// loopback address.
    pub fn from_config(config: &Config, me: HostId, ring: &RingConfig) -> Self {
        let loopback = config
            .segments
            .get(me.segment)
            .and_then(|s| s.addrs.first())
            .is_some_and(|a| a.ip.is_loopback());
        Self::from_ring(ring, !loopback)
    }

    /// `new`, keeping this topology's counters (a configuration reload).
    pub(crate) fn reconfigured(&self, mut new: Topology) -> Topology {
        new.stats = self.stats;
        new
    }

    /// Counters.
    pub fn stats(&self) -> TopologyStats {
        self.stats
    }

    /// Configured daemons in configuration order, with their segment index.
    pub fn daemons(&self) -> &[(DaemonId, usize)] {
        &self.daemons
    }

    fn known(&self, id: DaemonId) -> Option<DaemonId> {
        let d = DaemonId(id.0);
        self.daemons.iter().any(|(x, _)| *x == d).then_some(d)
    }

    /// §1.1 and ROUTED handling of a datagram from configured daemon `from`; relayed copies
    /// are pushed to `out`. `None`: dropped (counted).
    pub(crate) fn accept(
        &mut self,
        from: DaemonId,
        port: Port,
        bytes: Bytes,
        out: &mut impl FnMut(Transmit),
    ) -> Option<Accept> {
        let wport = match port {
            Port::Data => accept::Port::Data,
            Port::Token => accept::Port::Token,
        };
        let verdict = accept::check(
            &bytes,
            wport,
            &from,
            self.conf_hash,
            DaemonId(self.me.0),
            |id| self.known(id),
        );
        match verdict {
            Err(r) => {
                self.stats.count(r);
                tracing::trace!(%from, ?port, ?r, len = bytes.len(), "datagram dropped (§1.1)");
                None
            }
            Ok(Accepted::Control) => Some(Accept::Control(bytes)),
            Ok(Accepted::Protocol)
                if port == Port::Data && kind(&bytes) & TypeBits::ROUTED != 0 =>
            {
                self.relay(&bytes, out).map(Accept::Protocol)
            }
            Ok(Accepted::Protocol) => Some(Accept::Protocol(bytes)),
        }
    }

    /// A ROUTED data packet: relays it to my segment and returns the copy to process.
    fn relay(&mut self, bytes: &[u8], out: &mut impl FnMut(Transmit)) -> Option<Bytes> {
        let mut plain = bytes.to_vec();
        PacketHeader::rewrite(&mut plain, |h| {
            h.kind = TypeBits(h.kind.0 & !TypeBits::ROUTED);
        })
        .ok()?;
        if self.my_seg_size > 1 {
            let mut copy = plain.clone();
            let me = DaemonId(self.me.0);
            PacketHeader::rewrite(&mut copy, |h| h.transmiter_id = me).ok()?;
            self.stats.relayed += 1;
            self.scast(Port::Data, &Bytes::from(copy), out);
        }
        Some(plain.into())
    }

    /// The datagrams for the engine's `to`; `members` is the installed ring (relays are
    /// chosen among them). A unicast to myself is returned instead (process it as received
    /// from me).
    pub(crate) fn route(
        &mut self,
        members: &[DaemonId],
        to: Dest,
        port: Port,
        bytes: Bytes,
        out: &mut impl FnMut(Transmit),
    ) -> Option<Bytes> {
        match to {
            Dest::Unicast(d) if d == self.me => {
                self.stats.looped += 1;
                return Some(bytes);
            }
            Dest::Unicast(d) => out(Transmit {
                to: Target::Daemon(d),
                port,
                bytes,
            }),
            Dest::Broadcast => {
                if self.segments > 1 {
                    self.other_segments(members, port, &bytes, out);
                }
                self.scast(port, &bytes, out);
            }
            Dest::Segment => self.scast(port, &bytes, out),
        }
        None
    }

    /// A broadcast's copies for the other segments: a ROUTED copy to each relay for a data
    /// packet, a plain unicast to every daemon of the other segments for anything else.
    fn other_segments(
        &self,
        members: &[DaemonId],
        port: Port,
        bytes: &Bytes,
        out: &mut impl FnMut(Transmit),
    ) {
        if port == Port::Data && kind(bytes) & TypeBits::REGULAR != 0 {
            let mut routed = bytes.to_vec();
            if PacketHeader::rewrite(&mut routed, |h| {
                h.kind = TypeBits(h.kind.0 | TypeBits::ROUTED);
            })
            .is_err()
            {
                return;
            }
            let routed = Bytes::from(routed);
            let mut done: Vec<usize> = Vec::new();
            for &(d, seg) in &self.daemons {
                if seg != self.my_seg && !done.contains(&seg) && members.contains(&d) {
                    done.push(seg);
                    out(Transmit {
                        to: Target::Daemon(d),
                        port,
                        bytes: routed.clone(),
                    });
                }
            }
        } else {
            for &(d, seg) in &self.daemons {
                if seg != self.my_seg {
                    out(Transmit {
                        to: Target::Daemon(d),
                        port,
                        bytes: bytes.clone(),
                    });
                }
            }
        }
    }

    /// "Scast to my segment".
    fn scast(&self, port: Port, bytes: &Bytes, out: &mut impl FnMut(Transmit)) {
        if self.my_seg_size <= 1 {
            return;
        }
        if self.broadcast {
            out(Transmit {
                to: Target::Segment,
                port,
                bytes: bytes.clone(),
            });
            return;
        }
        for &(d, seg) in &self.daemons {
            if d != self.me && seg == self.my_seg {
                out(Transmit {
                    to: Target::Daemon(d),
                    port,
                    bytes: bytes.clone(),
                });
            }
        }
    }
}

/// The type bits of a data-port datagram (0 if it has no valid header).
fn kind(bytes: &[u8]) -> u32 {
    PacketHeader::decode(&mut &bytes[..]).map_or(0, |h| h.kind.0)
}

#[cfg(test)]
mod tests;
