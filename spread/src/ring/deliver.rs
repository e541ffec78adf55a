//! Receiving data packets, the retransmission buffer, reassembly, and delivery by service as
//! 5.0.1 does it (daemon fact sheet §7.3, `protocol.c`):
//!
//! * **RELIABLE packets** (UNRELIABLE and RELIABLE messages) made only of whole messages
//!   (every fragment index −1) are delivered **on receipt** when they arrive out of order (a
//!   hole before them), and a daemon's own ones right after it sent them; they are marked
//!   delivered and skipped later. A RELIABLE packet that arrives in order simply takes its
//!   place in the order below (5.0.1 quirk: behind a SAFE packet still waiting it waits too).
//!   A RELIABLE message cut in several packets is delivered in order like AGREED.
//! * **FIFO, AGREED (and CAUSAL)** packets: in sequence order once every lower seq is held
//!   (`my_aru`), stopping at the first SAFE packet not yet stable. (5.0.1 gives FIFO nothing
//!   special: it is ordered like AGREED.)
//! * **SAFE** packets: once the ring-wide aru covers them (5.0.1's rule, or the line an
//!   arriving token proves, [`super::stable`], whichever is higher); everything up to it is
//!   then delivered too.
//! * Nothing is delivered by these rules outside `Op` (or a merging leader's `Gather` with
//!   its ring alive), nor while the shell holds RELIABLE delivery (5.0.1's delivery threshold
//!   during the group-state exchange).
//! * **At a configuration change** ([`Engine::deliver_old_ring`], 5.0.1 `Read_form2` +
//!   `Discard_packets` in EVS): in the regular configuration, everything up to the FORM's
//!   aru, then on up to the first hole or the first SAFE packet above that aru; then the
//!   transitional configuration; then every remaining packet up to the first hole, and after
//!   it only packets whose sender is in the transitional set or the rest of its commit set
//!   (a message of a departed sender after a hole could depend on the missing packet).

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

use super::{Class, ConfigChange, DaemonId, Delivery, Engine, Output, Partial, MAX_SEQ_GAP};
use crate::memb::Phase;
use crate::time::Instant;
use crate::wire::daemon::{self as w, Fragment, PacketBody, PacketHeader, RingInfo};

/// Most packets of the next ring buffered before it is installed.
const MAX_EARLY: usize = MAX_SEQ_GAP as usize;

impl Engine {
    /// A data packet (own copy, see [`own_data_copy`]) from `_from`.
    pub(crate) fn on_data(&mut self, now: Instant, _from: DaemonId, d: w::Packet) {
        let (ring, seq) = (d.header.memb_id, d.header.seq.0);
        if ring == self.ring.id {
            let evs_skip = matches!(
                &self.phase,
                Phase::Evs { future, .. } if !future.entry.contains(seq)
            );
            if evs_skip {
                self.stats.dropped += 1;
                return;
            }
            let in_order = seq == self.ring.my_aru.saturating_add(1);
            self.insert_packet(d);
            if in_order {
                self.deliver_regular();
            } else {
                self.deliver_reliable(seq..=seq);
            }
            return;
        }
        if let Phase::Evs { future: f, .. } = &mut self.phase {
            if ring == f.ring {
                if f.early.len() < MAX_EARLY && !f.early.contains_key(&seq) {
                    f.early.insert(seq, d);
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
    pub(crate) fn insert_packet(&mut self, d: w::Packet) {
        let r = &mut self.ring;
        let seq = d.header.seq.0;
        if seq <= r.discarded || r.buf.contains_key(&seq) {
            self.stats.duplicates += 1;
            return;
        }
        if seq > r.aru.saturating_add(2 * MAX_SEQ_GAP) {
            self.stats.dropped += 1;
            return;
        }
        r.highest = r.highest.max(seq);
        r.buf.insert(seq, d);
        while r.buf.contains_key(&(r.my_aru + 1)) {
            r.my_aru += 1;
        }
    }

    /// May the regular delivery rules run now (not while forming a new ring)?
    fn delivering(&self) -> bool {
        self.ring_alive()
    }

    /// Delivers what the regular configuration allows (AGREED order up to `my_aru`, SAFE up to
    /// the ring-wide aru), then discards stable packets.
    pub(crate) fn deliver_regular(&mut self) {
        if !self.delivering() {
            return;
        }
        while self.ring.delivered < self.ring.my_aru {
            let s = self.ring.delivered + 1;
            let Some(class) = self.ring.buf.get(&s).map(class_of) else {
                break;
            };
            if self.ring.early.remove(&s) {
                // A RELIABLE packet delivered on receipt.
                self.ring.delivered = s;
                continue;
            }
            if class == Class::Safe && s > self.ring.safe_line() && !self.early_safe_bug() {
                break;
            }
            self.deliver_packet(s, false);
            self.ring.delivered = s;
        }
        self.discard();
    }

    /// Delivers, among `seqs`, the RELIABLE packets of whole messages not delivered yet
    /// (5.0.1 `Deliver_reliable_packets`).
    pub(crate) fn deliver_reliable(&mut self, seqs: std::ops::RangeInclusive<u32>) {
        if !self.delivering() || self.exchanging {
            return;
        }
        let start = (*seqs.start()).max(self.ring.delivered.saturating_add(1));
        let end = *seqs.end();
        if start > end {
            return;
        }
        let ready: Vec<u32> = self
            .ring
            .buf
            .range(start..=end)
            .filter(|(s, p)| self.on_receipt(p) && !self.ring.early.contains(s))
            .map(|(s, _)| *s)
            .take(2 * MAX_SEQ_GAP as usize)
            .collect();
        for s in ready {
            self.ring.early.insert(s);
            #[cfg(any(test, feature = "sim"))]
            if self.bug == Some(super::PlantedBug::LoseReliable) {
                continue;
            }
            self.deliver_whole(s);
        }
    }

    /// Is this packet delivered on receipt (RELIABLE, whole messages only)?
    fn on_receipt(&self, p: &w::Packet) -> bool {
        let whole = fragments(p).iter().all(|f| f.index == -1);
        #[cfg(any(test, feature = "sim"))]
        if self.bug == Some(super::PlantedBug::OrderlessDelivery) {
            return class_of(p) != Class::Safe && whole;
        }
        class_of(p) == Class::Reliable && whole
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

    /// Ends the old ring at an installation (EVS done): delivers what is left of it by the
    /// rules in the module documentation and emits `trans` (unless `real_old` is false: a
    /// daemon that had no ring) at its place.
    pub(crate) fn deliver_old_ring(&mut self, e: &RingInfo, trans: &ConfigChange, real_old: bool) {
        let last = e.last();
        let mut regular = true;
        let mut after_hole = false;
        let mut s = self.ring.delivered.saturating_add(1);
        let mut steps = 0;
        while s <= last && steps < 4 * MAX_SEQ_GAP {
            let packet = self
                .ring
                .buf
                .get(&s)
                .map(|p| (class_of(p), p.header.proc_id));
            let hole = !e.contains(s) || packet.is_none();
            let unsafe_here = packet.is_some_and(|p| p.0 == Class::Safe) && s > e.aru.0;
            if regular && (hole || unsafe_here) {
                regular = false;
                if real_old {
                    self.emit(Output::Configuration(trans.clone()));
                }
            }
            after_hole |= hole;
            let already = self.ring.early.remove(&s);
            // 5.0.1 `Commit_membership`: the transitional set and the rest of the commit set.
            let committed = |d: &DaemonId| e.trans.contains(d) || e.commit_rest.contains(d);
            let wanted = packet.is_some_and(|(_, sender)| !after_hole || committed(&sender));
            if !hole && !already && wanted {
                self.deliver_packet(s, !regular);
            }
            self.ring.delivered = s;
            s += 1;
            steps += 1;
        }
        self.ring.early = BTreeSet::new();
        if regular && real_old {
            self.emit(Output::Configuration(trans.clone()));
        }
    }

    /// Delivers a packet of whole messages outside the order (RELIABLE on receipt): no
    /// reassembly state is touched.
    fn deliver_whole(&mut self, seq: u32) {
        let Some(p) = self.ring.buf.get(&seq) else {
            return;
        };
        let (sender, class, ring) = (p.header.proc_id, class_of(p), self.ring.id);
        let frags: Vec<_> = fragments(p).iter().map(|f| f.data.clone()).collect();
        for payload in frags {
            self.stats.delivered += 1;
            self.emit_delivery(Delivery {
                sender,
                class,
                payload,
                ring,
                transitional: false,
                seq,
            });
        }
    }

    /// Reassembles the fragments of packet `seq` and delivers every completed message.
    /// The payload an own message's first fragment `first` was cut from, if this ring still
    /// has it (older entries, of messages that will not be delivered whole, are dropped).
    fn own_whole(&mut self, first: &Bytes) -> Option<Bytes> {
        let own = &mut self.ring.own_large;
        while let Some(w) = own.pop_front() {
            if w.as_ptr() == first.as_ptr() && w.len() > first.len() {
                return Some(w);
            }
        }
        None
    }

    pub(crate) fn deliver_packet(&mut self, seq: u32, transitional: bool) {
        let Some(p) = self.ring.buf.get(&seq) else {
            return;
        };
        let (sender, class, ring) = (p.header.proc_id, class_of(p), self.ring.id);
        let frags = fragments(p).to_vec();
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
                let whole = if sender == self.cfg.me {
                    self.own_whole(&f.data)
                } else {
                    None
                };
                let data = if whole.is_some() {
                    BytesMut::new()
                } else {
                    // Room for the whole message at once: no regrowth (and copy) per fragment.
                    let mut d = BytesMut::with_capacity(super::MAX_MESSAGE.min(64 * f.data.len()));
                    d.extend_from_slice(&f.data);
                    d
                };
                self.ring.partial.insert(
                    sender,
                    Partial {
                        next: 1,
                        data,
                        whole,
                    },
                );
                None
            } else {
                match self.ring.partial.remove(&sender) {
                    Some(mut part) if part.next == pos && part.data.len() < super::MAX_MESSAGE => {
                        if part.whole.is_none() {
                            part.data.extend_from_slice(&f.data);
                        }
                        part.next += 1;
                        if last {
                            Some(part.whole.take().unwrap_or_else(|| part.data.freeze()))
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

/// The fragments of a stored data packet.
pub(crate) fn fragments(p: &w::Packet) -> &[Fragment] {
    match &p.body {
        PacketBody::Data(b) => &b.fragments,
        _ => &[],
    }
}

/// The delivery class of a stored data packet (its type is its class's bit).
pub(crate) fn class_of(p: &w::Packet) -> Class {
    Class::of(p.header.kind).unwrap_or(Class::Reliable)
}

/// The copy of a received data packet of class `class` that this daemon keeps and sends on
/// (retransmission, a foreign packet forwarded): its own header — native order, `me` as
/// transmitter, the class as the only type bit, zero padding — over the same originator,
/// ring, seq, round and fragments.
pub(crate) fn own_data_copy(p: w::Packet, class: Class, me: DaemonId, conf_hash: u32) -> w::Packet {
    let h = p.header;
    let mut header = PacketHeader::new(class as u32, me, conf_hash);
    header.proc_id = h.proc_id;
    header.memb_id = h.memb_id;
    header.seq = h.seq;
    header.token_round = h.token_round;
    w::Packet {
        header,
        body: p.body,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Class, DaemonId, Engine, Output, RingConfig, State};
    use crate::time::Instant;
    use crate::wire::daemon::{self as w, DataBody, Fragment, Seq};

    /// A lone daemon (configured among 3) with its ring installed.
    fn installed() -> (Engine, Instant) {
        let ids = vec![DaemonId(1), DaemonId(2), DaemonId(3)];
        let mut e = Engine::new(RingConfig::lan(DaemonId(1), ids), Instant(1_000_000), 1000);
        let mut now = Instant(1_000_000);
        for _ in 0..400 {
            while let Some(o) = e.poll_output() {
                if let Output::Send { to, port, bytes } = o {
                    if to == super::super::Dest::Unicast(DaemonId(1)) {
                        let from = DaemonId(1);
                        e.handle(now, super::super::Input::Packet { from, port, bytes });
                    }
                }
            }
            if e.state() == State::Op && e.stats().installs == 1 {
                return (e, now);
            }
            now = e.poll_timeout().expect("a timer");
            e.handle_timeout(now);
        }
        panic!("no ring");
    }

    fn packet(e: &Engine, seq: u32, class: Class, indexes: &[i16]) -> w::Packet {
        let fragments = indexes
            .iter()
            .map(|i| Fragment {
                index: *i,
                data: Bytes::from(format!("m{seq}.{i}")),
            })
            .collect();
        let body = DataBody { fragments };
        w::Packet::data(class as u32, DaemonId(2), 0, e.ring_id(), Seq(seq), 1, body)
    }

    /// Feeds packets, returns the seqs delivered (one entry per message).
    fn feed(e: &mut Engine, now: Instant, ps: Vec<w::Packet>) -> Vec<u32> {
        let mut got = Vec::new();
        for p in ps {
            e.on_data(now, DaemonId(2), p);
            while let Some(o) = e.poll_output() {
                if let Output::Deliver(d) = o {
                    got.push(d.seq);
                }
            }
        }
        got
    }

    #[test]
    fn reliable_is_delivered_on_receipt_and_the_rest_in_order() {
        let (mut e, now) = installed();
        let ps = vec![
            packet(&e, 2, Class::Reliable, &[-1, -1]),
            packet(&e, 3, Class::Agreed, &[-1]),
            packet(&e, 4, Class::Fifo, &[-1]),
            // A RELIABLE message in two packets waits for the order.
            packet(&e, 6, Class::Reliable, &[-2]),
        ];
        let p5 = packet(&e, 5, Class::Reliable, &[1]);
        let p1 = packet(&e, 1, Class::Agreed, &[-1]);
        // Hole at 1: only the packed RELIABLE packet 2 (two messages) goes at once.
        assert_eq!(feed(&mut e, now, ps), vec![2, 2]);
        assert_eq!(feed(&mut e, now, vec![p5]), vec![]);
        // 1 fills the hole: 1, 3, 4 in order (2 is not delivered again), then 5+6.
        assert_eq!(feed(&mut e, now, vec![p1]), vec![1, 3, 4, 6]);
    }

    #[test]
    fn reliable_in_order_waits_behind_a_pending_safe_like_5_0_1() {
        let (mut e, now) = installed();
        let ps = vec![
            packet(&e, 1, Class::Safe, &[-1]),
            // In order (my_aru + 1): takes its place behind the SAFE packet.
            packet(&e, 2, Class::Reliable, &[-1]),
            // After a hole (3): on receipt.
            packet(&e, 4, Class::Reliable, &[-1]),
            packet(&e, 5, Class::Agreed, &[-1]),
        ];
        assert_eq!(feed(&mut e, now, ps), vec![4]);
        assert_eq!(e.ring.my_aru, 2);
    }

    #[test]
    fn held_reliable_waits_for_the_order_until_released() {
        let (mut e, now) = installed();
        e.set_exchanging(now, true);
        let ps = vec![
            packet(&e, 2, Class::Reliable, &[-1]),
            packet(&e, 3, Class::Reliable, &[-1]),
        ];
        assert_eq!(feed(&mut e, now, ps), vec![]);
        e.set_exchanging(now, false);
        let mut got = Vec::new();
        while let Some(o) = e.poll_output() {
            if let Output::Deliver(d) = o {
                got.push(d.seq);
            }
        }
        assert_eq!(got, vec![2, 3]);
        let p1 = packet(&e, 1, Class::Agreed, &[-1]);
        assert_eq!(feed(&mut e, now, vec![p1]), vec![1]);
    }
}
