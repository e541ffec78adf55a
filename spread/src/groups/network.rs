//! Group state across a daemon-ring configuration change (fact sheet §5.3, §5.4).
//!
//! When the ring installs a new configuration, every daemon in it knows, for each previous
//! configuration that merges into the new one, which members each group had there (5.0.1
//! exchanges this in GROUPS messages; the ring layer collects it). [`Groups::install`] takes
//! those parts and computes, per group:
//!
//! * nothing, if the group's member set does not change (its id stays, index included);
//! * otherwise a REG_MEMB | CAUSED_BY_NETWORK with the new id (the new ring's id, index 1) and
//!   one vs-set per previous configuration the members come from, ordered by that
//!   configuration's id (representative id as a signed number, then time);
//! * preceded by a TRANSITION_MESS (the old id) for this daemon's members if the group lost
//!   members this daemon saw (a merge that loses nobody has no transitional message).

use std::collections::{BTreeMap, BTreeSet};

use super::{Cause, Change, Entry, Group, Groups, RingId};
use crate::wire::client::{GroupId, GroupName};

/// What one previous configuration contributes to a new one: its id and the members each group
/// had in it (only members on daemons that are in the new configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ViewPart {
    /// Id of the previous configuration.
    pub prev_ring: RingId,
    /// Members per group (any order; sorted here).
    pub groups: BTreeMap<GroupName, Vec<Entry>>,
}

/// One group's network change, as this daemon delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkChange {
    /// If set: first send TRANSITION_MESS with this (old) group id to the group's local members
    /// that are still in it.
    pub transition: Option<GroupId>,
    /// The CAUSED_BY_NETWORK membership.
    pub change: Change,
}

impl Groups {
    /// Installs ring configuration `new_ring` whose members came from `parts` (ours included,
    /// already without members on daemons that are gone). Returns the changes to deliver, by
    /// group name.
    pub fn install(&mut self, new_ring: RingId, parts: &[ViewPart]) -> Vec<NetworkChange> {
        let mut order: Vec<&ViewPart> = parts.iter().collect();
        // 5.0.1 compares the int32 words.
        order.sort_by_key(|p| (p.prev_ring.leader.0 as i32, p.prev_ring.time));
        let mut names: BTreeSet<GroupName> = self.groups.keys().copied().collect();
        for p in parts {
            names.extend(
                p.groups
                    .iter()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(g, _)| g.key()),
            );
        }
        let mut out = Vec::new();
        for name in names {
            let mut sets: Vec<Vec<Entry>> = Vec::new();
            for p in &order {
                if let Some(m) = p.groups.get(&name).filter(|m| !m.is_empty()) {
                    let mut m = m.clone();
                    m.sort_by_key(|e| e.member);
                    m.dedup_by(|a, b| a.member == b.member);
                    sets.push(m);
                }
            }
            let mut members: Vec<Entry> = sets.iter().flatten().copied().collect();
            members.sort_by_key(|e| e.member);
            members.dedup_by(|a, b| a.member == b.member);
            let old: Option<(GroupId, Vec<Entry>)> =
                self.groups.get(&name).map(|g| (g.id, g.members.clone()));
            let same = old.as_ref().is_some_and(|(_, m)| {
                m.len() == members.len()
                    && m.iter().zip(&members).all(|(a, b)| a.member == b.member)
            });
            if same || (old.is_none() && members.is_empty()) {
                continue;
            }
            let (old_id, old_members) = old.unwrap_or_default();
            let lost = old_members.iter().any(|e| {
                members
                    .binary_search_by(|m| m.member.cmp(&e.member))
                    .is_err()
            });
            let transition = lost.then_some(old_id);
            self.set_members(name, &members, old_members);
            if members.is_empty() {
                continue;
            }
            let id = GroupId {
                proc_id: new_ring.leader.0 as i32,
                time: new_ring.time,
                index: 1,
            };
            self.groups.insert(
                name,
                Group {
                    id,
                    members: members.clone(),
                },
            );
            out.push(NetworkChange {
                transition,
                change: Change {
                    group: name,
                    cause: Cause::Network,
                    group_id: id,
                    members,
                    vs_sets: sets
                        .iter()
                        .map(|s| s.iter().map(|e| e.member).collect())
                        .collect(),
                    self_leave: None,
                },
            });
        }
        self.ring = new_ring;
        out
    }

    /// Replaces a group's members in the per-member index (the group map is updated by the
    /// caller).
    fn set_members(&mut self, name: GroupName, new: &[Entry], old: Vec<Entry>) {
        for e in old {
            if let Some(set) = self.of_member.get_mut(&e.member) {
                set.remove(&name);
                if set.is_empty() {
                    self.of_member.remove(&e.member);
                }
            }
        }
        for e in new {
            self.of_member.entry(e.member).or_default().insert(name);
        }
        if new.is_empty() {
            self.groups.remove(&name);
        }
    }

    /// This daemon's view of every group, restricted to members on daemons `keep` (what it
    /// contributes to a new configuration).
    pub fn part(&self, keep: &BTreeSet<u16>) -> ViewPart {
        ViewPart {
            prev_ring: self.ring,
            groups: self
                .groups
                .iter()
                .map(|(g, grp)| {
                    let m = grp
                        .members
                        .iter()
                        .filter(|e| keep.contains(&e.member.daemon))
                        .copied()
                        .collect();
                    (*g, m)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{message, Member};
    use crate::session::SessionId;

    fn e(daemon: u16, name: &str, local: bool) -> Entry {
        Entry {
            member: Member {
                daemon,
                name: GroupName::new(name.as_bytes()),
            },
            session: local.then_some(SessionId(1)),
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const D1: RingId = RingId {
        leader: crate::ids::DaemonId(0x5c8d_7aef),
        time: 0x6b06_e3f7,
    };

    fn three_daemon_groups() -> (Groups, GroupName, GroupName) {
        let mut gs = Groups::new(D1);
        let (net, two) = (GroupName::new(b"netgrp"), GroupName::new(b"twogrp"));
        gs.join(e(0, "#obs#d1", true), &net);
        gs.join(e(1, "#m2#d2", false), &net);
        gs.join(e(2, "#m3#d3", false), &net);
        gs.join(e(0, "#obs#d1", true), &two);
        gs.join(e(1, "#m2#d2", false), &two);
        (gs, net, two)
    }

    #[test]
    fn split_then_merge_like_net_partition_merge() {
        let (mut gs, net, two) = three_daemon_groups();
        let split = RingId {
            leader: D1.leader,
            time: D1.time + 5,
        };
        let part = gs.part(&[0, 1].into_iter().collect());
        let changes = gs.install(split, &[part]);
        assert_eq!(changes.len(), 1, "twogrp gets nothing");
        let c = &changes[0];
        assert_eq!(
            c.transition,
            Some(GroupId {
                proc_id: D1.leader.0 as i32,
                time: D1.time,
                index: 3
            })
        );
        assert_eq!(c.change.members.len(), 2);
        assert_eq!(c.change.vs_sets.len(), 1);
        let tr = message::transition(net, c.transition.unwrap());
        assert_eq!(
            &tr[..],
            &hex("802000806e6574677270000000000000000000000000000000000000000000000000000000000000800000800c000000ef7a8d5cf7e3066b03000000")[..]
        );
        let reg = message::regular(&c.change, 0);
        assert_eq!(&reg[..4], &[0x80, 0x18, 0x00, 0x80]);
        assert_eq!(reg.len(), 48 + 64 + 88);
        assert_eq!(
            gs.group_id(&two).unwrap().time,
            D1.time,
            "twogrp keeps its id"
        );
        // Merge: d3's side had [m3] in a configuration whose id is negative (d3's own id).
        let d3_ring = RingId {
            leader: crate::ids::DaemonId(0xef46_226e),
            time: split.time,
        };
        let mut theirs = ViewPart {
            prev_ring: d3_ring,
            ..ViewPart::default()
        };
        theirs.groups.insert(net, vec![e(2, "#m3#d3", false)]);
        let ours = gs.part(&[0, 1, 2].into_iter().collect());
        let merged = RingId {
            leader: D1.leader,
            time: split.time + 31,
        };
        let changes = gs.install(merged, &[ours, theirs]);
        assert_eq!(changes.len(), 1);
        let c = &changes[0];
        assert_eq!(c.transition, None, "a merge has no transitional message");
        assert_eq!(c.change.members.len(), 3);
        let set_names: Vec<usize> = c.change.vs_sets.iter().map(Vec::len).collect();
        assert_eq!(set_names, vec![1, 2], "[m3] then [obs, m2]");
        let reg = message::regular(&c.change, 1);
        assert_eq!(&reg[44..48], &124u32.to_le_bytes());
        // local_vs_set_offset at body offset 16 (after 3 member names).
        let body = 48 + 96;
        assert_eq!(&reg[body + 16..body + 20], &36u32.to_le_bytes());
        assert_eq!(gs.group_id(&net).unwrap().index, 1);
        // Plain changes continue from the new id.
        let j = gs.join(e(0, "#late#d1", true), &net).unwrap();
        assert_eq!((j.group_id.time, j.group_id.index), (merged.time, 2));
    }

    #[test]
    fn a_group_that_loses_everyone_disappears() {
        let (mut gs, net, _) = three_daemon_groups();
        let changes = gs.install(D1, &[gs.part(&[2].into_iter().collect())]);
        // netgrp keeps m3 only; twogrp (obs, m2) is emptied and removed without a message.
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].change.group, net);
        assert_eq!(gs.len(), 1);
        assert_eq!(gs.groups_of(&e(0, "#obs#d1", true).member).count(), 0);
    }
}
