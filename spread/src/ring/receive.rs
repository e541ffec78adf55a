//! Receiving a datagram: 5.0.1's acceptance (configuration hash, transmitter, FORM checks)
//! and the dispatch of each wire packet kind to its handler.

use bytes::Bytes;

use super::{Class, DaemonId, Engine, Port};
use crate::memb;
use crate::time::Instant;
use crate::wire::daemon::{self as w, Datagram, DatagramError, PacketBody, RepType, TokenBody};

impl Engine {
    pub(super) fn on_datagram(&mut self, now: Instant, from: DaemonId, port: Port, bytes: Bytes) {
        let me = self.cfg.me;
        // Bare (tests, fuzz targets): the engine applies §1.1's hash and transmitter checks
        // itself; inside a whole daemon the network layer has applied them, once.
        let decoded = if self.upstream_acceptance {
            Datagram::decode_accepted(port == Port::Token, &bytes)
        } else {
            Datagram::decode(self.cfg.conf_hash, port == Port::Token, &bytes)
        };
        let dg = match decoded {
            Ok(x) => x,
            Err(DatagramError::Malformed(e)) => {
                tracing::trace!(%me, %from, ?port, ?e, len = bytes.len(), "malformed");
                self.stats.malformed += 1;
                return;
            }
            Err(e) => {
                tracing::trace!(%me, %from, ?port, ?e, len = bytes.len(), "other configuration");
                self.stats.dropped += 1;
                return;
            }
        };
        let tx = dg.transmitter();
        match dg {
            Datagram::Packet(p) => {
                if self.accepted(tx, from, port) {
                    self.on_packet(now, from, p);
                }
            }
            Datagram::Token(t) => {
                match memb::check_form(&t) {
                    Ok(()) => {}
                    Err(memb::FormRefusal::EntryTooLong) => {
                        tracing::trace!(%me, %from, "malformed FORM ring entry");
                        self.stats.malformed += 1;
                        return;
                    }
                    Err(e) => {
                        tracing::trace!(%me, %from, ?e, "FORM refused");
                        self.stats.dropped += 1;
                        return;
                    }
                }
                if !self.accepted(tx, from, port) {
                    return;
                }
                match &t.body {
                    TokenBody::Regular(_) => self.on_token(now, from, t),
                    TokenBody::Form1(_) => {
                        let t = memb::own_form_copy(t, me, self.cfg.conf_hash);
                        self.on_form1(now, t);
                    }
                    TokenBody::Form2(_) => {
                        let t = memb::own_form_copy(t, me, self.cfg.conf_hash);
                        self.on_form2(now, t);
                    }
                }
            }
        }
    }

    /// 5.0.1's transmitter check: the datagram names its (configured) sender.
    fn accepted(&mut self, tx: DaemonId, from: DaemonId, port: Port) -> bool {
        if self.upstream_acceptance {
            return true;
        }
        if tx != from || self.rank(from).is_none() {
            tracing::trace!(me = %self.cfg.me, %from, %tx, ?port, "transmitter mismatch");
            self.stats.dropped += 1;
            return false;
        }
        true
    }

    /// A data-port packet from `from` (hash and transmitter checked).
    fn on_packet(&mut self, now: Instant, from: DaemonId, p: w::Packet) {
        let own = from == self.cfg.me;
        tracing::trace!(me = %self.cfg.me, %from, kind = %p.header.kind, seq = %p.header.seq, "packet");
        match p.body {
            // As 5.0.1 (Prot_handle_bcast "unknown proc"): the originator must be a configured
            // daemon (found by the daemon_stateful campaign: a spoofed sender was delivered),
            // or — after a configuration reload removed it — a member of the ring being left,
            // whose packets the survivors still recover in EVS (found by the simulator).
            PacketBody::Data(_) => match Class::of(p.header.kind) {
                Some(class)
                    if !own
                        && (self.rank(p.header.proc_id).is_some()
                            || self.ring.members.contains(&p.header.proc_id)) =>
                {
                    self.stats.packets_received += 1;
                    let d =
                        super::deliver::own_data_copy(p, class, self.cfg.me, self.cfg.conf_hash);
                    self.on_data(now, from, d);
                }
                _ => self.stats.dropped += 1,
            },
            PacketBody::Join(j) if !own => self.on_join(now, from, &j),
            PacketBody::Alive(a) if !own => self.on_alive(now, from, &a.members),
            PacketBody::Refer if !own => {
                // REFER: the referred rep and its type travel in `memb_id`.
                let id = p.header.memb_id;
                let rep_type = RepType(i16::try_from(id.time).unwrap_or(-1));
                self.on_refer(id.leader, rep_type);
            }
            PacketBody::Hurry => self.on_hurry(now),
            // Own membership packets, monitor control (handled by the daemon) and the rest.
            _ => self.stats.dropped += 1,
        }
    }
}
