//! Group-state changes caused by the daemon ring (fact sheet §5.3–5.4, daemon fact sheet §8):
//! dropping the members of daemons that left, snapshots for the GROUPS exchange, and
//! installing the merged table with CAUSED_BY_NETWORK views.

use super::{Cause, Change, Entry, Group, Groups, Member, RingId};
use crate::wire::client::{GroupId, GroupName};

/// A group that lost members because their daemons left the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The group.
    pub group: GroupName,
    /// Id of the view that ends (the TRANSITION_MESS body).
    pub old_id: GroupId,
    /// Members that remain (possibly none).
    pub members: Vec<Entry>,
}

/// One group of a merged table: the members each synced set brings, in set order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The group.
    pub group: GroupName,
    /// Its id if it does not change (one set, not flagged changed).
    pub keep_id: Option<GroupId>,
    /// Members per synced set (non-empty sets only), each sorted.
    pub sets: Vec<Vec<Entry>>,
}

impl Groups {
    /// Moves to ring configuration `ring`: groups created or changed by the network from now
    /// on take their id from it.
    pub fn set_ring(&mut self, ring: RingId) {
        self.ring = ring;
    }

    /// Moves every member to the daemon position `map` gives for its daemon's old position
    /// (a configuration reload re-orders the daemons; 5.0.1 `G_signal_conf_reload`), and
    /// re-sorts each group's members.
    pub fn remap_daemons(&mut self, map: impl Fn(u16) -> u16) {
        for g in self.groups.values_mut() {
            for e in &mut g.members {
                e.member.daemon = map(e.member.daemon);
            }
            g.members.sort_by_key(|e| e.member);
        }
        self.of_member = std::mem::take(&mut self.of_member)
            .into_iter()
            .map(|(mut m, gs)| {
                m.daemon = map(m.daemon);
                (m, gs)
            })
            .collect();
    }

    /// Removes every member whose daemon `keep` refuses; returns the groups that lost
    /// members (by name), with their ending id and remaining members. Groups left empty are
    /// removed.
    pub fn drop_daemons(&mut self, keep: impl Fn(u16) -> bool) -> Vec<Lost> {
        let mut lost = Vec::new();
        let mut emptied = Vec::new();
        for (name, g) in &mut self.groups {
            let before = g.members.len();
            g.members.retain(|e| keep(e.member.daemon));
            if g.members.len() != before {
                lost.push(Lost {
                    group: *name,
                    old_id: g.id,
                    members: g.members.clone(),
                });
                if g.members.is_empty() {
                    emptied.push(*name);
                }
            }
        }
        for name in emptied {
            self.groups.remove(&name);
        }
        self.of_member.retain(|m, _| keep(m.daemon));
        lost
    }

    /// Every group in name order: name, id, members.
    pub fn snapshot(&self) -> impl Iterator<Item = (GroupName, GroupId, &[Entry])> {
        self.groups.iter().map(|(n, g)| (*n, g.id, &g.members[..]))
    }

    /// Gives `group` a new view caused by the network: id = (current ring, index 1),
    /// members = the union of `sets`, vs-sets = `sets`. Returns the change to deliver.
    pub fn network_view(&mut self, group: GroupName, sets: &[Vec<Entry>]) -> Option<Change> {
        let key = group.key();
        let mut members: Vec<Entry> = sets.iter().flatten().copied().collect();
        members.sort_by_key(|e| e.member);
        members.dedup_by(|a, b| a.member == b.member);
        self.remove_group(&key);
        if members.is_empty() {
            return None;
        }
        let id = GroupId {
            proc_id: self.ring.leader.0 as i32,
            time: self.ring.time,
            index: 1,
        };
        self.insert_group(key, id, members.clone());
        Some(Change {
            group: key,
            cause: Cause::Network,
            group_id: id,
            members,
            vs_sets: sets
                .iter()
                .map(|s| s.iter().map(|e| e.member).collect::<Vec<Member>>())
                .filter(|s| !s.is_empty())
                .collect(),
            self_leave: None,
        })
    }

    /// Installs `group` with `id` and `members` as given (a view learnt from the exchange that
    /// does not change).
    pub fn install_view(&mut self, group: GroupName, id: GroupId, mut members: Vec<Entry>) {
        let key = group.key();
        members.sort_by_key(|e| e.member);
        members.dedup_by(|a, b| a.member == b.member);
        self.remove_group(&key);
        if !members.is_empty() {
            self.insert_group(key, id, members);
        }
    }

    /// Forgets every group.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.of_member.clear();
    }

    fn remove_group(&mut self, key: &GroupName) {
        if let Some(g) = self.groups.remove(key) {
            for e in g.members {
                if let Some(set) = self.of_member.get_mut(&e.member) {
                    set.remove(key);
                    if set.is_empty() {
                        self.of_member.remove(&e.member);
                    }
                }
            }
        }
    }

    fn insert_group(&mut self, key: GroupName, id: GroupId, members: Vec<Entry>) {
        for e in &members {
            self.of_member.entry(e.member).or_default().insert(key);
        }
        self.groups.insert(key, Group { id, members });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(daemon: u16, name: &str) -> Entry {
        Entry {
            member: Member {
                daemon,
                name: GroupName::new(name.as_bytes()),
            },
            session: None,
        }
    }

    #[test]
    fn drop_then_network_view() {
        let mut gs = Groups::new(RingId {
            leader: crate::ids::DaemonId(5),
            time: 10,
        });
        let g = GroupName::new(b"g");
        gs.join(e(0, "#a#d1"), &g);
        gs.join(e(1, "#b#d2"), &g);
        gs.join(e(2, "#c#d3"), &g);
        let h = GroupName::new(b"h");
        gs.join(e(2, "#c#d3"), &h);
        let lost = gs.drop_daemons(|d| d != 2);
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[0].old_id.index, 3);
        assert_eq!(lost[0].members.len(), 2);
        assert!(lost[1].members.is_empty());
        assert_eq!(gs.len(), 1, "h emptied");
        gs.set_ring(RingId {
            leader: crate::ids::DaemonId(5),
            time: 11,
        });
        let c = gs.network_view(g, &[lost[0].members.clone()]).unwrap();
        assert_eq!(
            c.group_id,
            GroupId {
                proc_id: 5,
                time: 11,
                index: 1
            }
        );
        assert_eq!(c.vs_sets.len(), 1);
        // Plain changes continue from index 1.
        assert_eq!(gs.join(e(0, "#z#d1"), &g).unwrap().group_id.index, 2);
        assert_eq!(gs.groups_of(&e(2, "#c#d3").member).count(), 0);
    }
}
