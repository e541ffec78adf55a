//! Target for the group-state exchange after a ring configuration change: GROUPS bodies from
//! other daemons merged into a daemon's group state (`crate::clients::ring`,
//! `crate::groups::exchange`), and the merge of previous configurations' views
//! (`crate::groups::network`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use bytes::{BufMut, Bytes, BytesMut};

use super::records;
use super::ring::DAEMONS;
use super::session::check_send;
use crate::clients::{Clients, DaemonConfig, SessionInput, SessionOutput};
use crate::groups::{Entry, Groups, Member, ViewPart};
use crate::ring::{Class, ConfigChange, ConfigKind, DaemonId, Delivery, RingId};
use crate::session::{Peer, SessionId};
use crate::time::Instant;
use crate::wire::client::{
    encode_header, encode_hello, ByteOrder, GroupId, GroupName, Hello, Hint, MessageHeader,
    ServiceType,
};
use crate::wire::daemon::groups::{
    GroupBlock, GroupDaemon, GroupId as WireGroupId, GroupsBody, Message,
};
use crate::wire::daemon::Endian;

/// Local client sessions of the fuzzed daemon (d1), connected at the start.
const LOCAL: [&str; 2] = ["a", "b"];
/// Group names the structured join/leave records use.
const GROUP_NAMES: [&[u8]; 4] = [b"g0", b"netgrp", b"twogrp", b"#a#d1"];

/// The fuzzed daemon (d1 of [`DAEMONS`]) and what the harness knows about it.
struct Harness {
    d: Clients,
    now: Instant,
    /// Current regular ring and its members.
    ring: RingId,
    members: Vec<DaemonId>,
    /// Sessions the daemon may send to.
    open: BTreeSet<SessionId>,
    /// Name fields the input could carry so far: bounds the members of all groups.
    names_in: usize,
    seq: u32,
}

/// A GROUPS state exchange driven by hostile daemons. Clients d1 (of the captures' d1, d2, d3)
/// with two local clients (`#a#d1`, `#b#d1`, membership messages on) runs its ring backend;
/// what it submits is ordered back to it at once. SessionInput: a script of records
/// `[tag u8][len u16 LE][payload]`, kind `tag & 7`, argument `tag >> 3`:
///
/// * 0 / 1: daemon `arg % 3` delivers a GROUPS message (1: its last one, AGREED) whose body is
///   `payload` with its first 8 bytes (memb_id) set to the current ring's id, so it is taken
///   as part of the running exchange;
/// * 2: daemon `arg % 3` delivers `payload` as is (any message: GROUPS, JOIN, data, garbage);
/// * 3: configuration change: transitional configuration of d1 and the daemons in bits 1-2 of
///   `payload[0]`, then a regular one with d1 and the daemons in bits 1-2 of `payload[1]`
///   (leader `payload[2] % 3`), which starts an exchange when the state is not synced;
/// * 4 / 5: local session `arg % 2` joins / leaves group `GROUP_NAMES[payload[0] % 4]`;
/// * 6: member `payload[1..]` on daemon `arg % 3` joins (even `payload[0]`) or leaves group
///   `GROUP_NAMES[payload[0] / 2 % 4]`, ordered by the ring;
/// * 7: the previous-views merge of `Groups::install` on a separate table: `payload` is
///   decoded as a GROUPS body, read as the view of a previous configuration, and merged
///   with the table's own view (restricted to the daemons in bits 0-2 of `arg`).
///
/// Checks after every record: in every group the members are sorted and unique, names are
/// keys (nothing after the NUL), only d1's members have sessions, the member→groups index
/// agrees with the groups, and the state is bounded by the names the input carried; the
/// table re-encodes as a GROUPS body that decodes to the same table (both byte orders); the
/// daemon sends only to open sessions, each Send one whole message; the merge's changes list
/// sorted unique members that are exactly the union of their vs-sets, with the new ring's id.
pub fn group_exchange(data: &[u8]) {
    run(data);
}

/// [`group_exchange`]; returns the daemon's ring counters.
fn run(data: &[u8]) -> crate::clients::RingStats {
    let mut h = Harness::new();
    let mut table = Groups::new(RingId {
        leader: DAEMONS[0],
        time: 1,
    });
    for rec in records(data) {
        let arg = rec.tag >> 3;
        h.names_in += rec.payload.len() / 32 + 1;
        match rec.tag & 7 {
            k @ (0 | 1) => {
                let mut body = rec.payload.to_vec();
                let id = h.ring;
                let mut head = Vec::with_capacity(8);
                head.put_u32_le(id.leader.0);
                head.put_i32_le(id.time);
                for (b, s) in body.iter_mut().zip(head) {
                    *b = s;
                }
                let from = DAEMONS[usize::from(arg) % DAEMONS.len()];
                let m = Message::groups("d", 1, k == 1, &GroupsBody::default(), Endian::Little);
                let mut header = m.header;
                header.data_len = i32::try_from(body.len()).unwrap_or(i32::MAX);
                let m = Message {
                    header,
                    groups: Vec::new(),
                    body: Bytes::from(body),
                };
                let mut bytes = Vec::with_capacity(m.encoded_len());
                m.encode(&mut bytes);
                h.deliver(from, Bytes::from(bytes));
            }
            2 => {
                let from = DAEMONS[usize::from(arg) % DAEMONS.len()];
                h.deliver(from, Bytes::copy_from_slice(rec.payload));
            }
            3 => {
                let mask = |i: usize| rec.payload.get(i).copied().unwrap_or(0xff);
                let leader = DAEMONS[usize::from(mask(2)) % DAEMONS.len()];
                h.configure(mask(0), mask(1), leader);
            }
            k @ (4 | 5) => {
                let s = usize::from(arg) % LOCAL.len();
                let g = GROUP_NAMES[usize::from(rec.payload.first().copied().unwrap_or(0)) % 4];
                let service = if k == 4 {
                    ServiceType::JOIN_MESS
                } else {
                    ServiceType::LEAVE_MESS
                };
                let me = format!("#{}#d1", LOCAL[s]);
                let bytes = request(service, me.as_bytes(), g);
                h.input(SessionInput::Bytes {
                    session: SessionId(s as u64),
                    data: bytes,
                });
            }
            6 => {
                let from = DAEMONS[usize::from(arg) % DAEMONS.len()];
                let sel = rec.payload.first().copied().unwrap_or(0);
                let g = GROUP_NAMES[usize::from(sel / 2) % 4];
                let service = if sel % 2 == 0 {
                    ServiceType::JOIN_MESS
                } else {
                    ServiceType::LEAVE_MESS
                };
                let name = rec.payload.get(1..).unwrap_or_default();
                h.deliver(from, request(service, name, g));
            }
            _ => merge(&mut table, arg, rec.payload),
        }
        h.check();
        check_table(&table, h.names_in);
    }
    h.d.ring_stats()
}

/// A JOIN / LEAVE request of `sender` for `group`, as a client sends it.
fn request(service: ServiceType, sender: &[u8], group: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(80);
    encode_header(
        &MessageHeader {
            service,
            sender: GroupName::new(sender),
            num_groups: 1,
            hint: Hint::new(0, ByteOrder::Little),
            data_len: 0,
            order: ByteOrder::Little,
        },
        &mut out,
    );
    GroupName::new(group).encode(&mut out);
    out.freeze()
}

impl Harness {
    fn new() -> Self {
        let mut config = DaemonConfig::new("d1", DAEMONS[0].0 as i32, 1);
        config.max_sessions = LOCAL.len();
        let d = Clients::new(config, DAEMONS[0], DAEMONS.to_vec());
        let mut h = Self {
            d,
            now: Instant(1_000_000),
            ring: RingId {
                leader: DAEMONS[0],
                time: 1,
            },
            members: vec![DAEMONS[0]],
            open: BTreeSet::new(),
            names_in: 0,
            seq: 0,
        };
        // Alone first: a regular configuration of d1 only (synced, no exchange).
        h.configure(0, 0, DAEMONS[0]);
        for (i, name) in LOCAL.iter().enumerate() {
            let session = SessionId(i as u64);
            h.open.insert(session);
            h.input(SessionInput::Connected {
                session,
                peer: Peer::Tcp(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            });
            let mut hello = Vec::new();
            encode_hello(&Hello::new(name.as_bytes(), true, false), &mut hello);
            h.input(SessionInput::Bytes {
                session,
                data: Bytes::from(hello),
            });
            let mut auth = b"NULL".to_vec();
            auth.resize(90, 0);
            h.input(SessionInput::Bytes {
                session,
                data: Bytes::from(auth),
            });
        }
        h
    }

    /// One client event, then whatever it causes.
    fn input(&mut self, i: SessionInput) {
        self.d.handle(self.now, i);
        self.pump();
    }

    /// An ordered message from daemon `from`.
    fn deliver(&mut self, from: DaemonId, payload: Bytes) {
        self.seq = self.seq.wrapping_add(1);
        self.d.on_delivery(Delivery {
            sender: from,
            class: Class::Agreed,
            payload,
            ring: self.ring,
            transitional: false,
            seq: self.seq,
        });
        self.pump();
    }

    /// Transitional configuration (d1 + daemons in bits 1-2 of `trans`, among the current
    /// members), then a regular one (d1 + daemons in bits 1-2 of `regular`).
    fn configure(&mut self, trans: u8, regular: u8, leader: DaemonId) {
        let pick = |mask: u8| -> Vec<DaemonId> {
            DAEMONS
                .iter()
                .enumerate()
                .filter(|(i, _)| *i == 0 || mask & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect()
        };
        let old = self.ring;
        let trans: Vec<DaemonId> = pick(trans)
            .into_iter()
            .filter(|d| self.members.contains(d))
            .collect();
        self.d.on_configuration(ConfigChange {
            kind: ConfigKind::Transitional,
            ring: old,
            id: RingId {
                leader: old.leader,
                time: old.time.wrapping_sub(1),
            },
            members: trans,
        });
        self.pump();
        let members = pick(regular);
        let leader = if members.contains(&leader) {
            leader
        } else {
            DAEMONS[0]
        };
        self.ring = RingId {
            leader,
            time: old.time.wrapping_add(1),
        };
        self.members = members.clone();
        self.d.on_configuration(ConfigChange {
            kind: ConfigKind::Regular,
            ring: self.ring,
            id: self.ring,
            members,
        });
        self.pump();
    }

    /// Orders d1's own submissions back to it at once and checks the client outputs.
    fn pump(&mut self) {
        for _ in 0..4096 {
            let mut busy = false;
            while let Some(o) = self.d.poll_output() {
                busy = true;
                match o {
                    SessionOutput::Send { session, data } => {
                        assert!(self.open.contains(&session), "Send to closed {session:?}");
                        check_send(&data);
                        self.d.handle(
                            self.now,
                            SessionInput::Drained {
                                session,
                                messages: 1,
                            },
                        );
                    }
                    SessionOutput::Close { session } => {
                        assert!(self.open.remove(&session), "Close of closed {session:?}");
                    }
                }
            }
            // The engine's exchange gate: GROUPS first; client messages only once the
            // exchange is over.
            if let Some((_, _, payload)) = self.d.poll_exchange_submission() {
                busy = true;
                self.deliver_own(payload);
            } else if !self.d.exchanging() {
                if let Some((_, payload)) = self.d.poll_submission() {
                    busy = true;
                    self.deliver_own(payload);
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the daemon does not quiesce");
    }

    fn deliver_own(&mut self, payload: Bytes) {
        self.seq = self.seq.wrapping_add(1);
        self.d.on_delivery(Delivery {
            sender: DAEMONS[0],
            class: Class::Agreed,
            payload,
            ring: self.ring,
            transitional: false,
            seq: self.seq,
        });
    }

    fn check(&self) {
        check_table(
            self.d.groups(),
            self.names_in + LOCAL.len() * GROUP_NAMES.len(),
        );
        assert!(self.d.session_count() <= LOCAL.len());
    }
}

/// The invariants of a group table, and its GROUPS encoding round trip.
fn check_table(gs: &Groups, names_in: usize) {
    let mut total = 0usize;
    let mut seen: BTreeMap<Member, BTreeSet<GroupName>> = BTreeMap::new();
    for (name, _, entries) in gs.snapshot() {
        assert_eq!(name, name.key(), "group name is not a key");
        assert!(!entries.is_empty(), "an empty group is kept");
        assert!(
            entries.windows(2).all(|w| w[0].member < w[1].member),
            "members of {name:?} not sorted and unique"
        );
        for e in entries {
            assert_eq!(
                e.member.name,
                e.member.name.key(),
                "member name is not a key"
            );
            assert!(
                usize::from(e.member.daemon) < DAEMONS.len(),
                "unknown daemon"
            );
            assert!(
                e.session.is_none() || e.member.daemon == 0,
                "remote session"
            );
            seen.entry(e.member).or_default().insert(name);
        }
        total += entries.len();
    }
    assert!(gs.len() <= names_in.max(1), "{} groups", gs.len());
    assert!(
        total <= names_in.saturating_mul(4).max(1),
        "{total} members"
    );
    for (m, groups) in &seen {
        let index: BTreeSet<GroupName> = gs.groups_of(m).copied().collect();
        assert_eq!(&index, groups, "member index of {m:?}");
    }
    // Re-encode: the table as a GROUPS body (as `send_groups` writes it), both byte orders.
    let body = GroupsBody {
        memb_id: gs.ring(),
        synced_set: Some(vec![DaemonId(DAEMONS[0].0)]),
        groups: gs
            .snapshot()
            .map(|(name, id, entries)| block(name, id, entries))
            .collect(),
    };
    for endian in [Endian::Little, Endian::Big] {
        let mut enc = Vec::with_capacity(body.encoded_len());
        body.encode(&mut enc, endian);
        assert_eq!(enc.len(), body.encoded_len());
        let again = GroupsBody::decode(&mut &enc[..], endian);
        if enc.len() <= crate::wire::daemon::groups::MAX_GROUPS_BODY {
            assert_eq!(again.as_ref(), Ok(&body), "GROUPS re-encoding");
            let back: Vec<(GroupName, Vec<Member>)> = again.iter().flat_map(table_of).collect();
            let want: Vec<(GroupName, Vec<Member>)> = gs
                .snapshot()
                .map(|(n, _, es)| (n, es.iter().map(|e| e.member).collect()))
                .collect();
            assert_eq!(back, want, "the table does not survive its GROUPS encoding");
        }
    }
}

/// One group's block: members by daemon, in list order (grouped by daemon position).
fn block(name: GroupName, id: GroupId, entries: &[Entry]) -> GroupBlock {
    let memb_id = RingId {
        leader: DaemonId(id.proc_id as u32),
        time: id.time,
    };
    let mut daemons: Vec<GroupDaemon> = Vec::new();
    for e in entries {
        let pid = DaemonId(DAEMONS[usize::from(e.member.daemon) % DAEMONS.len()].0);
        match daemons.last_mut() {
            Some(gd) if gd.proc_id == pid => gd.members.push(e.member.name.0),
            _ => daemons.push(GroupDaemon {
                proc_id: pid,
                memb_id,
                members: vec![e.member.name.0],
            }),
        }
    }
    GroupBlock {
        name: name.0,
        group_id: WireGroupId {
            memb_id,
            index: id.index,
        },
        changed: 0,
        daemons,
    }
}

/// A GROUPS body read back as (group, members) with daemon positions.
fn table_of(body: &GroupsBody) -> Vec<(GroupName, Vec<Member>)> {
    body.groups
        .iter()
        .map(|b| {
            let members = b
                .daemons
                .iter()
                .flat_map(|gd| {
                    let pos = DAEMONS.iter().position(|d| d.0 == gd.proc_id.0);
                    gd.members.iter().filter_map(move |n| {
                        Some(Member {
                            daemon: u16::try_from(pos?).ok()?,
                            name: GroupName(*n).key(),
                        })
                    })
                })
                .collect();
            (GroupName(b.name).key(), members)
        })
        .collect()
}

/// `Groups::install` on the separate table: its own view restricted to the daemons in bits
/// 0-2 of `arg`, and `payload` (a GROUPS body, little-endian) as another previous
/// configuration's view. Checks each change.
fn merge(table: &mut Groups, arg: u8, payload: &[u8]) {
    let Ok(body) = GroupsBody::decode(&mut &payload[..], Endian::Little) else {
        return;
    };
    let keep: BTreeSet<u16> = (0..3u16).filter(|i| arg & (1 << i) != 0).collect();
    let ours = table.part(&keep);
    let mut theirs = ViewPart {
        prev_ring: body.memb_id,
        groups: BTreeMap::new(),
    };
    for (name, members) in table_of(&body) {
        theirs
            .groups
            .entry(name)
            .or_default()
            .extend(members.into_iter().map(|member| Entry {
                member,
                session: None,
            }));
    }
    let before: BTreeMap<GroupName, GroupId> = table.snapshot().map(|(n, id, _)| (n, id)).collect();
    let new_ring = RingId {
        leader: table.ring().leader,
        time: table.ring().time.wrapping_add(1),
    };
    let changes = table.install(new_ring, &[ours, theirs]);
    assert_eq!(table.ring(), new_ring);
    let mut changed = BTreeSet::new();
    for nc in &changes {
        let c = &nc.change;
        assert!(changed.insert(c.group), "two changes for {:?}", c.group);
        assert_eq!(
            c.group_id,
            GroupId {
                proc_id: new_ring.leader.0 as i32,
                time: new_ring.time,
                index: 1
            }
        );
        assert!(!c.members.is_empty());
        assert!(c.members.windows(2).all(|w| w[0].member < w[1].member));
        let union: BTreeSet<Member> = c.vs_sets.iter().flatten().copied().collect();
        let members: BTreeSet<Member> = c.members.iter().map(|e| e.member).collect();
        assert_eq!(union, members, "vs-sets are not the members");
        assert!(c.vs_sets.iter().all(|s| !s.is_empty()));
        if let Some(old) = nc.transition {
            assert_eq!(
                before.get(&c.group),
                Some(&old),
                "transition with a wrong old id"
            );
        }
        assert_eq!(table.members(&c.group), &c.members[..]);
    }
    // A group without a change keeps its id.
    for (n, id, _) in table.snapshot() {
        if !changed.contains(&n) {
            assert_eq!(before.get(&n), Some(&id), "{n:?} changed silently");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: u8, p: &[u8]) -> Vec<u8> {
        let mut r = vec![tag];
        r.extend_from_slice(&u16::try_from(p.len()).unwrap().to_le_bytes());
        r.extend_from_slice(p);
        r
    }

    /// Local joins, a remote join, then a merge with d2 whose GROUPS message completes the
    /// exchange: the harness reaches the merge (so fuzzed bodies are merged, not ignored).
    #[test]
    fn exchange_completes_and_merges() {
        let mut s = Vec::new();
        s.extend(rec(4, &[1]));
        s.extend(rec(4 | 1 << 3, &[1]));
        s.extend(rec(6 | 2 << 3, b"\x02#m3#d3"));
        // d2 joins: d1's synced set is {d1}, so an exchange starts and d1 sends its table.
        s.extend(rec(3, &[0, 2, 0]));
        let body = GroupsBody {
            memb_id: RingId::default(),
            synced_set: Some(vec![DaemonId(DAEMONS[1].0)]),
            groups: vec![block(
                GroupName::new(b"netgrp"),
                GroupId::default(),
                &[Entry {
                    member: Member {
                        daemon: 1,
                        name: GroupName::new(b"#m2#d2"),
                    },
                    session: None,
                }],
            )],
        };
        let mut enc = Vec::new();
        body.encode(&mut enc, Endian::Little);
        s.extend(rec(1 | 1 << 3, &enc));
        let stats = run(&s);
        assert_eq!(stats.exchanges, 1, "{stats:?}");
        assert!(stats.groups_sent >= 1, "{stats:?}");
    }
}

#[cfg(test)]
mod capture_tests {
    use super::*;

    /// The seeds cut from the captures' GROUPS messages complete an exchange with the
    /// captured body, so the target merges real tables.
    #[test]
    fn captured_bodies_complete_exchanges() {
        let seeds = crate::fuzzing::capture_seeds("group_exchange");
        let total = seeds.len();
        let merged = seeds.iter().filter(|d| run(d).exchanges >= 1).count();
        assert!(
            total >= 10 && merged * 2 > total,
            "{merged} of {total} merged"
        );
    }
}
