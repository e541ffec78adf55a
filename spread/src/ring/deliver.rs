//! Receiving data packets, the retransmission buffer, reassembly and in-order delivery.

use bytes::BytesMut;

use super::packet::DataPacket;
use super::{Class, DaemonId, Delivery, Engine, Output, Partial, State, MAX_SEQ_GAP};
use crate::time::Instant;

/// Most packets of the next ring buffered before it is installed.
const MAX_EARLY: usize = MAX_SEQ_GAP as usize;

impl Engine {
    pub(crate) fn on_data(&mut self, now: Instant, _from: DaemonId, d: DataPacket) {
        if d.ring == self.ring.id {
            let evs_skip = self.state == State::Evs
                && self
                    .future
                    .as_ref()
                    .is_some_and(|f| !f.entry.contains(d.seq));
            if evs_skip {
                self.stats.dropped += 1;
                return;
            }
            self.insert_packet(d);
            self.deliver_regular();
            return;
        }
        if let Some(f) = self.future.as_mut() {
            if d.ring == f.ring {
                if f.early.len() < MAX_EARLY && !f.early.contains_key(&d.seq) {
                    f.early.insert(d.seq, d);
                } else {
                    self.stats.duplicates += 1;
                }
                return;
            }
        }
        self.stats.dropped += 1;
        // A packet of a ring we do not know: a partition healed (crate::memb).
        self.on_foreign(now, d);
    }

    /// Puts a packet of the installed ring into the buffer.
    pub(crate) fn insert_packet(&mut self, d: DataPacket) {
        let r = &mut self.ring;
        if d.seq <= r.discarded || r.buf.contains_key(&d.seq) {
            self.stats.duplicates += 1;
            return;
        }
        if d.seq > r.aru.saturating_add(2 * MAX_SEQ_GAP) {
            self.stats.dropped += 1;
            return;
        }
        r.highest = r.highest.max(d.seq);
        r.buf.insert(d.seq, d);
        while r.buf.contains_key(&(r.my_aru + 1)) {
            r.my_aru += 1;
        }
    }

    /// Delivers what the regular configuration allows, then discards stable packets.
    pub(crate) fn deliver_regular(&mut self) {
        let delivering =
            self.state == State::Op || (self.state == State::Gather && self.ring_alive);
        if !delivering {
            return;
        }
        while self.ring.delivered < self.ring.my_aru {
            let s = self.ring.delivered + 1;
            let Some(class) = self.ring.buf.get(&s).map(|p| p.class) else {
                break;
            };
            if class == Class::Safe && s > self.ring.aru && !self.early_safe_bug() {
                break;
            }
            self.deliver_packet(s, false);
            self.ring.delivered = s;
        }
        self.discard();
    }

    #[cfg(any(test, feature = "sim"))]
    fn early_safe_bug(&mut self) -> bool {
        self.bug == Some(super::PlantedBug::EarlySafe)
    }

    #[cfg(not(any(test, feature = "sim")))]
    fn early_safe_bug(&mut self) -> bool {
        false
    }

    /// Drops packets every member has and this daemon delivered.
    pub(crate) fn discard(&mut self) {
        let upto = self.ring.aru.min(self.ring.delivered);
        if upto > self.ring.discarded {
            self.ring.buf = self.ring.buf.split_off(&(upto + 1));
            self.ring.discarded = upto;
        }
    }

    /// Reassembles the fragments of packet `seq` and delivers every completed message.
    pub(crate) fn deliver_packet(&mut self, seq: u32, transitional: bool) {
        let Some(p) = self.ring.buf.get(&seq) else {
            return;
        };
        let (sender, class, ring) = (p.sender, p.class, self.ring.id);
        let frags = p.frags.clone();
        for f in frags {
            let (pos, last) = if f.index < 0 {
                (usize::from(f.index.unsigned_abs()) - 1, true)
            } else {
                (usize::from(f.index.unsigned_abs()).saturating_sub(1), false)
            };
            let payload = if pos == 0 && last {
                self.ring.partial.remove(&sender);
                Some(f.data)
            } else if pos == 0 {
                let mut data = BytesMut::with_capacity(f.data.len() * 2);
                data.extend_from_slice(&f.data);
                self.ring.partial.insert(sender, Partial { next: 1, data });
                None
            } else {
                match self.ring.partial.remove(&sender) {
                    Some(mut part) if part.next == pos && part.data.len() < super::MAX_MESSAGE => {
                        part.data.extend_from_slice(&f.data);
                        part.next += 1;
                        if last {
                            Some(part.data.freeze())
                        } else {
                            self.ring.partial.insert(sender, part);
                            None
                        }
                    }
                    // A hole cut this message: it is dropped everywhere alike.
                    _ => None,
                }
            };
            if let Some(payload) = payload {
                let d = Delivery {
                    sender,
                    class,
                    payload,
                    ring,
                    transitional,
                    seq,
                };
                self.stats.delivered += 1;
                self.emit_delivery(d);
            }
        }
    }

    fn emit_delivery(&mut self, d: Delivery) {
        #[cfg(any(test, feature = "sim"))]
        if self.bug == Some(super::PlantedBug::DuplicateDelivery) {
            self.bug = None;
            self.emit(Output::Deliver(d.clone()));
        }
        self.emit(Output::Deliver(d));
    }
}
