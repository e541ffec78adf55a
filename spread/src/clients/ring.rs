//! The ring ordering backend of [`Clients`]: requests leave as 5.0.1 messages to be ordered by
//! the token ring, ordered deliveries come back from every daemon, and daemon-configuration
//! changes run the group-state exchange (daemon fact sheet §7–§8, client fact sheet §5.3–5.4).
//!
//! # Contract (used by [`crate::daemon::Node`])
//!
//! * [`Clients::enable_ring`] once, before any input: from then on every JOIN / LEAVE / KILL /
//!   disconnect / data message is not applied at once but queued as a submission; drain them
//!   with [`Clients::poll_submission`] and hand them to the ring engine.
//! * Every [`Delivery`] of the engine goes to [`Clients::on_delivery`], every configuration
//!   change to [`Clients::on_configuration`], interleaved exactly as the engine emitted them.
//!
//! # Messages on the ring (5.0.1 layout, §7.1)
//!
//! Client header + groups + body, little-endian with the marker. JOIN `0x00010000` and LEAVE
//! `0x00020000` name the group; a session's own KILL is `KILL_MESS` naming its private group
//! (AGREED); a closed socket or a session the daemon killed is `KILL_MESS | SAFE_MESS` with no
//! group and travels SAFE; data messages travel as the client sent them.
//!
//! # Network changes
//!
//! Transitional and regular configurations drive 5.0.1's group-layer state machine
//! (GOP / GTRANS / GGATHER / GGT) and its group-state exchange: see [`super::exchange`].
//! While an exchange runs, client messages delivered are held and [`Clients::exchanging`]
//! tells the node to keep the engine's exchange gate closed.

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use tracing::trace;

use super::exchange::GState;
use super::{Clients, Event};
use crate::groups::{Entry, Member};
use crate::ring::{ConfigChange, ConfigKind, DaemonId, Delivery, Service};
use crate::wire::client::{
    encode_header, frame_of, ByteOrder, Direction, GroupName, Hint, MessageHeader, ServiceType,
};

/// Counters of the ring backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Delivered messages that did not decode (dropped).
    pub malformed: u64,
    /// Delivered messages from a daemon not in the configuration, or GROUPS messages of
    /// another ring (dropped).
    pub ignored: u64,
    /// GROUPS messages sent.
    pub groups_sent: u64,
    /// Group-state exchanges completed.
    pub exchanges: u64,
    /// Client messages held while an exchange ran.
    pub held: u64,
    /// GROUPS messages delivered when no exchange expected them (5.0.1 would abort: a peer
    /// that is not 5.0.1's rule-follower sent them; counted and dropped).
    pub unexpected_groups: u64,
    /// Exchanges cut by a new configuration change (5.0.1 GGATHER → GGT).
    pub exchanges_cut: u64,
    /// Members that sent client messages during an exchange before their GROUPS (a lying
    /// peer), counted from then on as a set with no groups.
    pub exchanges_forfeited: u64,
    /// Exchanges that completed from GROUPS messages delivered after a transitional
    /// configuration (5.0.1 GGT completion).
    pub completed_in_transition: u64,
    /// Deliveries on which a 5.0.1 daemon in this daemon's group state would have aborted
    /// (`docs/interop.md` rows G1–G7); see [`crate::Daemon::interop_violations`]. Zero when every
    /// daemon of the ring follows 5.0.1's rules.
    pub fatal_for_5_0_1: u64,
}

/// Most descriptions kept by [`Clients::interop_violations`].
const MAX_VIOLATIONS: usize = 16;

/// State of the ring backend.
#[derive(Debug)]
pub(crate) struct RingSide {
    pub(super) me: DaemonId,
    pub(super) daemons: Vec<DaemonId>,
    pub(super) submissions: VecDeque<(Service, Bytes)>,
    /// GROUPS messages for the engine's exchange queue, with the ring they belong to.
    pub(super) exchange_out: VecDeque<(crate::ring::RingId, Service, Bytes)>,
    /// The regular configuration's daemons.
    pub(super) members: Vec<DaemonId>,
    /// 5.0.1's synced set: the daemons known to hold the same group state as this one
    /// (configuration order, this daemon included).
    pub(super) synced: Vec<DaemonId>,
    /// 5.0.1's group-layer state.
    pub(super) gstate: GState,
    /// Groups marked changed (lost daemons, merged tables) since the last completed exchange
    /// or network view.
    pub(super) lost: BTreeSet<GroupName>,
    pub(super) stats: RingStats,
    /// The first deliveries a 5.0.1 daemon in our state would have aborted on.
    pub(super) violations: Vec<String>,
    /// The next disconnect is the session's own KILL request.
    pub(super) own_kill: bool,
    /// Daemons a configuration reload removed, with the positions their members were moved
    /// to (past the new list), until the next reload.
    pub(super) departed: Vec<(DaemonId, u16)>,
}

impl RingSide {
    /// Daemon `me` among `daemons`, in 5.0.1's GOP with no exchange yet.
    pub(super) fn new(me: DaemonId, daemons: Vec<DaemonId>) -> Self {
        Self {
            me,
            daemons,
            submissions: VecDeque::new(),
            exchange_out: VecDeque::new(),
            members: vec![me],
            synced: vec![me],
            gstate: GState::Op,
            lost: BTreeSet::new(),
            violations: Vec::new(),
            stats: RingStats::default(),
            own_kill: false,
            departed: Vec::new(),
        }
    }
}

/// The ring engine's service for a client message type.
fn service_of(t: ServiceType) -> Service {
    if t.intersects(ServiceType::UNRELIABLE) {
        Service::Unreliable
    } else if t.intersects(ServiceType::RELIABLE) {
        Service::Reliable
    } else if t.intersects(ServiceType::FIFO) {
        Service::Fifo
    } else if t.intersects(ServiceType::CAUSAL) {
        Service::Causal
    } else if t.intersects(ServiceType::AGREED) {
        Service::Agreed
    } else if t.intersects(ServiceType::SAFE) {
        Service::Safe
    } else {
        Service::Agreed
    }
}

/// A daemon-originated request message (no body).
fn request(service: ServiceType, sender: GroupName, groups: &[GroupName]) -> Bytes {
    let mut out = BytesMut::with_capacity(48 + 32 * groups.len());
    encode_header(
        &MessageHeader {
            service,
            sender,
            num_groups: groups.len() as i32,
            hint: Hint::DAEMON,
            data_len: 0,
            order: ByteOrder::Little,
        },
        &mut out,
    );
    for g in groups {
        g.encode(&mut out);
    }
    out.freeze()
}

impl Clients {
    /// Counters of the ring side.
    pub(crate) fn ring_stats(&self) -> RingStats {
        self.ring.stats
    }

    /// True while a group-state exchange runs (5.0.1 GGATHER or GGT): client messages are
    /// not sent and delivered ones are held.
    pub(crate) fn exchanging(&self) -> bool {
        self.ring.gstate.exchange().is_some()
    }

    /// What was delivered to this daemon that a 5.0.1 daemon in the same group state would
    /// have aborted on (at most the first 16, with [`RingStats::fatal_for_5_0_1`] counting
    /// all): a JOIN/LEAVE/KILL or a data message to a known group during the group-state
    /// exchange, a GROUPS message outside it, overlapping or unknown synced sets. Empty in a
    /// ring whose daemons all follow 5.0.1's rules; the simulator fails a case otherwise.
    pub(crate) fn interop_violations(&self) -> &[String] {
        &self.ring.violations
    }

    /// 5.0.1's group-layer state name (GOP, GTRANS, GGATHER, GGT), for status output.
    pub(crate) fn group_state(&self) -> &'static str {
        self.ring.gstate.name()
    }

    /// The next client message to submit to the ring engine ([`crate::ring::Input::Submit`]).
    pub(crate) fn poll_submission(&mut self) -> Option<(Service, Bytes)> {
        self.ring.submissions.pop_front()
    }

    /// The next GROUPS message of the exchange of the given ring, for the engine's exchange
    /// queue ([`crate::ring::Input::SubmitExchange`]).
    pub(crate) fn poll_exchange_submission(
        &mut self,
    ) -> Option<(crate::ring::RingId, Service, Bytes)> {
        self.ring.exchange_out.pop_front()
    }

    /// Queues `ev` for ordering by the ring (configuration changes come from the ring itself
    /// and are applied at once).
    pub(super) fn submit(&mut self, ev: Event) {
        let ring = &mut *self.ring;
        let item = match ev {
            Event::Join(entry, g) => (
                Service::Agreed,
                request(ServiceType::JOIN_MESS, entry.member.name, &[g]),
            ),
            Event::Leave(member, g) => (
                Service::Agreed,
                request(ServiceType::LEAVE_MESS, member.name, &[g]),
            ),
            // 5.0.1: a KILL request travels as the client sent it (AGREED, own private group
            // as the group); a closed socket or a session the daemon killed as KILL|SAFE with
            // no group, in a SAFE packet (§7.3).
            Event::Disconnect(member) if std::mem::take(&mut ring.own_kill) => (
                Service::Agreed,
                request(ServiceType::KILL_MESS, member.name, &[member.name]),
            ),
            Event::Disconnect(member) => (
                Service::Safe,
                request(ServiceType::KILL_MESS | ServiceType::SAFE, member.name, &[]),
            ),
            Event::Data(_, frame) => {
                let service = service_of(frame.header.service);
                let i = service.index();
                if let Some(c) = self.stats.messages_in.get_mut(i) {
                    *c += 1;
                }
                if let Some(c) = self.stats.bytes_in.get_mut(i) {
                    *c += frame.raw.len() as u64;
                }
                (service, frame.raw)
            }
        };
        ring.submissions.push_back(item);
    }

    /// Marks whether the next disconnect ordered is a session's own KILL.
    pub(super) fn note_own_kill(&mut self, own: bool) {
        {
            let r = &mut *self.ring;
            r.own_kill = own;
        }
    }

    /// An ordered message from the ring.
    pub(crate) fn on_delivery(&mut self, d: Delivery) {
        self.answerers = 0;
        let ring = &mut *self.ring;
        let is_groups = d.payload.len() >= 4
            && crate::wire::daemon::groups::MessageHeader::decode(&mut &d.payload[..])
                .is_ok_and(|h| h.is_groups());
        if is_groups {
            self.on_groups(&d);
        } else if ring.gstate.exchange().is_some() {
            self.check_held(&d);
            let sender = d.sender;
            {
                let ring = &mut *self.ring;
                ring.stats.held += 1;
                if let Some(ex) = ring.gstate.exchange_mut() {
                    ex.held.push_back(d);
                }
            }
            self.forfeit_exchange(sender);
        } else {
            self.apply_delivery(&d);
        }
        self.reap();
    }

    /// A configuration change from the ring.
    pub(crate) fn on_configuration(&mut self, c: ConfigChange) {
        match c.kind {
            ConfigKind::Transitional => self.on_transitional(c.members),
            ConfigKind::Regular => self.on_regular(c.ring, c.members),
        }
        self.reap();
    }

    /// Records a delivery a 5.0.1 daemon in our state would abort on.
    pub(super) fn violation(&mut self, what: String) {
        let r = &mut *self.ring;
        r.stats.fatal_for_5_0_1 += 1;
        tracing::warn!(
            state = r.gstate.name(),
            "{what} (a 5.0.1 daemon would abort here)"
        );
        if r.violations.len() < MAX_VIOLATIONS {
            r.violations.push(format!("{}: {what}", r.gstate.name()));
        }
    }

    /// A client message delivered during the exchange: 5.0.1 aborts on JOIN/LEAVE/KILL
    /// (G1/G2) and on data naming a group it knows (G3).
    fn check_held(&mut self, d: &Delivery) {
        let Some(frame) = frame_of(d.payload.clone(), Direction::ToDaemon) else {
            return;
        };
        let t = frame.header.service;
        let what = if t.intersects(ServiceType::JOIN_MESS) {
            "JOIN"
        } else if t.intersects(ServiceType::LEAVE_MESS) {
            "LEAVE"
        } else if t.intersects(ServiceType::KILL_MESS) {
            "KILL"
        } else {
            let known = (0..frame.header.num_groups.max(0) as usize)
                .filter_map(|i| frame.group(i))
                .any(|g| !g.is_private() && self.groups.group_id(&g.key()).is_some());
            if !known {
                return;
            }
            "data to a known group"
        };
        self.violation(format!(
            "{what} from {} delivered during the group-state exchange",
            d.sender
        ));
    }

    pub(super) fn position_of(&self, d: DaemonId) -> Option<u16> {
        let Some(p) = self.ring.daemons.iter().position(|x| *x == d) else {
            return self
                .ring
                .departed
                .iter()
                .find(|(x, _)| *x == d)
                .map(|(_, p)| *p);
        };
        u16::try_from(p).ok()
    }

    pub(super) fn local_entry(&self, member: Member) -> Entry {
        let session = if member.daemon == self.config.position {
            self.names.get(&member.name).copied()
        } else {
            None
        };
        Entry { member, session }
    }

    pub(super) fn count(&mut self, malformed: bool) {
        {
            let r = &mut *self.ring;
            if malformed {
                r.stats.malformed += 1;
            } else {
                r.stats.ignored += 1;
            }
        }
    }

    /// Decodes a client-level message and applies it as an event.
    pub(super) fn apply_delivery(&mut self, d: &Delivery) {
        let Some(pos) = self.position_of(d.sender) else {
            self.count(false);
            return;
        };
        // The delivered message as one frame, sharing its bytes (no copy of the body).
        let Some(frame) = frame_of(d.payload.clone(), Direction::ToDaemon) else {
            self.count(true);
            return;
        };
        let member = Member {
            daemon: pos,
            name: frame.header.sender.key(),
        };
        let t = frame.header.service;
        trace!(sender = %d.sender, ty = t.0, "ordered message");
        if t.intersects(ServiceType::JOIN_MESS) || t.intersects(ServiceType::LEAVE_MESS) {
            let Some(g) = frame.group(0) else {
                self.count(true);
                return;
            };
            if t.intersects(ServiceType::JOIN_MESS) {
                let entry = self.local_entry(member);
                self.apply(Event::Join(entry, g));
            } else {
                self.apply(Event::Leave(member, g));
            }
        } else if t.intersects(ServiceType::KILL_MESS) {
            self.apply(Event::Disconnect(member));
        } else {
            let i = service_of(t).index();
            if let Some(c) = self.stats.messages_delivered.get_mut(i) {
                *c += 1;
            }
            if let Some(c) = self.stats.bytes_delivered.get_mut(i) {
                *c += frame.raw.len() as u64;
            }
            self.apply(Event::Data(member, frame));
        }
    }
}
