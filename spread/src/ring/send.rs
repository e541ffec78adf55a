//! Sending new packets on a token visit: flow control (Window / PersonalWindow / MAX_SEQ_GAP),
//! fragmentation of large messages and packing of small ones (§7.2, §10).

use super::token::flow_control;
use super::{Class, Dest, Engine, MAX_SEQ_GAP};
use crate::wire::daemon::{self as w, DataBody, Fragment, Seq, TokenHeader, MAX_PACKET_BODY};
use bytes::Bytes;

/// Fragment header size of a packed (inline) element.
const FRAG_HEADER: usize = 4;

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl Engine {
    /// Sends as many new packets as flow control allows (raising the token's `seq`), less
    /// the `already` this visit sent (a visit topped up with a reply, `ring::reply`);
    /// returns how many.
    pub(crate) fn send_new_packets(&mut self, t: &mut TokenHeader, already: u16) -> u16 {
        if !self.ring_alive() || !self.has_sendable() {
            return 0;
        }
        let others = flow_control(t).saturating_sub(self.tok.my_last_sent);
        let allowed = self
            .cfg
            .personal_window
            .min(self.cfg.window.saturating_sub(others))
            .saturating_sub(already);
        let mut sent = 0u16;
        let mut fresh = Vec::new();
        // Configured alone: nothing is broadcast, so nothing is kept to send.
        let alone = self.configured_alone();
        while sent < allowed {
            let next = t.seq.0.max(self.ring.highest).saturating_add(1);
            if next > self.ring.aru.saturating_add(MAX_SEQ_GAP) {
                break;
            }
            let Some((class, frags)) = self.build_packet() else {
                break;
            };
            let (me, hash, ring, round) = (
                self.cfg.me,
                self.cfg.conf_hash,
                self.ring.id,
                self.tok.round,
            );
            let body = DataBody { fragments: frags };
            let p = w::Packet::data(class as u32, me, hash, ring, Seq(next), round, body);
            t.seq = Seq(next);
            self.stats.packets_sent += 1;
            if alone {
                self.insert_packet(p);
            } else {
                self.insert_packet(p.clone());
                fresh.push(p);
            }
            sent += 1;
        }
        // Accelerated ring: the last AcceleratedWindow packets leave after the token and
        // carry the next round (§10).
        let keep = if self.cfg.accelerated {
            fresh.len().min(usize::from(self.cfg.accelerated_window))
        } else {
            0
        };
        let mut later = fresh.split_off(fresh.len() - keep);
        for p in fresh {
            self.send_packet(Dest::Broadcast, &p);
        }
        for p in &mut later {
            let h = &mut p.header;
            h.token_round = h.token_round.wrapping_add(1);
            if let Some(b) = self.ring.buf.get_mut(&h.seq.0) {
                b.header.token_round = h.token_round;
            }
        }
        self.tok.after_token = later;
        sent
    }

    /// Accelerated ring: sends the packets held back until the token left.
    pub(crate) fn flush_after_token(&mut self) {
        for p in std::mem::take(&mut self.tok.after_token) {
            self.send_packet(Dest::Broadcast, &p);
        }
    }

    /// Takes the next packet's worth of fragments from the exchange queue, or (exchange gate
    /// open) the send queue.
    fn build_packet(&mut self) -> Option<(Class, Vec<Fragment>)> {
        // A daemon configured alone puts no data packet on the wire: it packs small messages
        // up to the largest message instead of the datagram body (fewer packets to order).
        let room = if self.configured_alone() {
            super::MAX_MESSAGE
        } else {
            MAX_PACKET_BODY
        };
        let (class, frags, whole) = if !self.exchange_q.is_empty() {
            take_packet(&mut self.exchange_q, room, &mut 0)?
        } else if self.exchanging {
            return None;
        } else {
            take_packet(&mut self.send_q, room, &mut self.send_q_bytes)?
        };
        if let Some(w) = whole {
            let own = &mut self.ring.own_large;
            if own.len() >= super::state::MAX_OWN_LARGE {
                own.pop_front();
            }
            own.push_back(w);
        }
        Some((class, frags))
    }
}

/// Takes the next packet's worth of fragments from `q`: the next fragment of its first
/// message, or a whole small message packed with the following ones of a compatible class
/// while they fit in `room` bytes of body; `queued` (the queue's payload bytes) loses the
/// messages taken out whole.
/// With the first fragment of a message of several, also the whole payload (own messages are
/// delivered from it, not reassembled).
fn take_packet(
    q: &mut std::collections::VecDeque<super::Pending>,
    room: usize,
    queued: &mut usize,
) -> Option<(Class, Vec<Fragment>, Option<Bytes>)> {
    let front = q.front_mut()?;
    if front.next == 0 {
        // Cut when its first piece is taken, for the room of now: a message queued while the
        // daemon was configured alone is fragmented if a reload has given it peers since.
        front.total = if room > MAX_PACKET_BODY {
            1
        } else {
            front.payload.len().div_ceil(MAX_PACKET_BODY).max(1)
        };
    }
    let class = front.class;
    // A message of one fragment is taken whole (a daemon configured alone makes every message
    // one fragment, whatever its size).
    let piece = if front.total == 1 {
        front.payload.len()
    } else {
        MAX_PACKET_BODY
    };
    let start = front.next * piece;
    let end = (start + piece).min(front.payload.len());
    let index = if front.next + 1 == front.total {
        -i16::try_from(front.total).unwrap_or(i16::MAX)
    } else {
        i16::try_from(front.next + 1).unwrap_or(i16::MAX)
    };
    let mut frags = vec![Fragment {
        index,
        data: front.payload.slice(start..end),
    }];
    let mut used = end - start;
    let whole = (front.next == 0 && front.total > 1).then(|| front.payload.clone());
    front.next += 1;
    if front.next < front.total {
        return Some((class, frags, whole));
    }
    *queued = queued.saturating_sub(front.payload.len());
    q.pop_front();
    // Pack following one-element messages of a compatible class while they fit.
    while let Some(next) = q.front() {
        let need = pad4(used) + FRAG_HEADER + next.payload.len();
        if next.total != 1 || !class.packs_with(next.class) || need > room {
            break;
        }
        frags.push(Fragment {
            index: -1,
            data: next.payload.clone(),
        });
        used = need;
        *queued = queued.saturating_sub(next.payload.len());
        q.pop_front();
    }
    Some((class, frags, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Input, RingConfig, Service};
    use crate::time::Instant;
    use bytes::Bytes;

    /// An engine of a two-daemon configuration (a daemon configured alone does not fragment).
    fn engine() -> Engine {
        let me = crate::ring::DaemonId(1);
        let other = crate::ring::DaemonId(2);
        Engine::new(RingConfig::lan(me, vec![me, other]), Instant::ZERO, 100)
    }

    fn submit(e: &mut Engine, service: Service, len: usize) {
        e.handle(
            Instant::ZERO,
            Input::Submit {
                service,
                payload: Bytes::from(vec![7u8; len]),
            },
        );
    }

    #[test]
    fn large_messages_are_fragmented_with_5_0_1_indexes() {
        let mut e = engine();
        submit(&mut e, Service::Agreed, 5080);
        let mut idx = Vec::new();
        while let Some((_, f)) = e.build_packet() {
            assert_eq!(f.len(), 1);
            idx.push((f[0].index, f[0].data.len()));
        }
        assert_eq!(idx, vec![(1, 1432), (2, 1432), (3, 1432), (-4, 784)]);
    }

    /// A message queued whole (while the daemon was configured alone) is fragmented when it
    /// is taken for a ring with peers (after a reload), never sent over the datagram size.
    #[test]
    fn a_message_queued_whole_is_cut_for_a_ring_with_peers() {
        let mut q = std::collections::VecDeque::new();
        q.push_back(crate::ring::Pending {
            class: Class::Agreed,
            payload: Bytes::from(vec![1u8; 5080]),
            next: 0,
            total: 1,
        });
        let mut queued = 5080;
        let mut sizes = Vec::new();
        while let Some((_, f, _)) = take_packet(&mut q, MAX_PACKET_BODY, &mut queued) {
            sizes.extend(f.iter().map(|f| (f.index, f.data.len())));
        }
        assert_eq!(sizes, vec![(1, 1432), (2, 1432), (3, 1432), (-4, 784)]);
        assert_eq!(queued, 0);
    }

    #[test]
    fn small_messages_are_packed_by_compatible_class() {
        let mut e = engine();
        for _ in 0..6 {
            submit(&mut e, Service::Agreed, 380);
        }
        submit(&mut e, Service::Fifo, 10);
        submit(&mut e, Service::Safe, 10);
        submit(&mut e, Service::Reliable, 10);
        let mut shapes = Vec::new();
        while let Some((c, f)) = e.build_packet() {
            shapes.push((c, f.len()));
        }
        // 380 + (4+380) + (4+380) = 1148 fits, a fourth would not (5.0.1: data_len 1148).
        assert_eq!(
            shapes,
            vec![
                (Class::Agreed, 3),
                (Class::Agreed, 4),
                (Class::Safe, 1),
                (Class::Reliable, 1)
            ]
        );
    }
}
