//! Group state: who is in which group, each group's id, and the membership changes that
//! totally-ordered events cause.
//!
//! The state is driven only by events in their agreed order — a join, leave or disconnect
//! from any daemon, or (later, from the ring) a daemon-configuration change — so every daemon
//! applying the same events computes the same groups and group ids. With one daemon the "ring"
//! is a local loop that orders each event as soon as it arrives.
//!
//! Members are ordered as 5.0.1 lists them: by the position of their daemon in the
//! configuration, then by private group name (byte compare). Changes come back as
//! [`Change`] values; [`message`] turns them into the bytes 5.0.1 sends.

pub mod exchange;
pub mod message;
pub mod network;

use std::collections::{BTreeMap, BTreeSet};

pub use network::{NetworkChange, ViewPart};

use crate::session::SessionId;
use crate::wire::client::{GroupId, GroupName};

/// One group member: a session on some daemon, named by its private group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Position of the member's daemon in the configuration (sort key first).
    pub daemon: u16,
    /// The member's private group name, `#name#daemon` (NUL padded).
    pub name: GroupName,
}

/// Id of a daemon-ring configuration: the words 1-2 of every group id formed in it (the one
/// ring id type of the crate).
pub use crate::ids::RingId;

/// Why a regular membership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A member joined.
    Join,
    /// A member left with LEAVE.
    Leave,
    /// A member disconnected (KILL, closed socket, killed by the daemon).
    Disconnect,
    /// The daemon configuration changed.
    Network,
}

/// A member as stored: its sort key plus, for members on this daemon, its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Who.
    pub member: Member,
    /// The local session, if the member is on this daemon.
    pub session: Option<SessionId>,
}

#[derive(Debug, Clone)]
struct Group {
    id: GroupId,
    /// Sorted by `member`.
    members: Vec<Entry>,
}

/// A regular membership message to deliver to every local member of `group` (after the
/// change) that asked for membership messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The group (its name, NUL padded).
    pub group: GroupName,
    /// Why.
    pub cause: Cause,
    /// The new view's id.
    pub group_id: GroupId,
    /// Members after the change, in list order.
    pub members: Vec<Entry>,
    /// The vs-sets: for join/leave/disconnect one set holding the changed member.
    pub vs_sets: Vec<Vec<Member>>,
    /// For a LEAVE: the leaver's own session, which gets the self-leave message.
    pub self_leave: Option<SessionId>,
}

/// All groups known to this daemon.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    ring: RingId,
    groups: BTreeMap<GroupName, Group>,
    /// Groups of each member, for disconnects.
    of_member: BTreeMap<Member, BTreeSet<GroupName>>,
}

impl Groups {
    /// Empty state in ring configuration `ring`.
    pub fn new(ring: RingId) -> Self {
        Self {
            ring,
            ..Self::default()
        }
    }

    /// The current ring configuration id.
    pub fn ring(&self) -> RingId {
        self.ring
    }

    /// Number of groups with at least one member.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Group memberships: the members of every group, added up.
    pub fn membership_count(&self) -> usize {
        self.groups.values().map(|g| g.members.len()).sum()
    }

    /// True if no group has members.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Members of `group` (by key), in list order.
    pub fn members(&self, group: &GroupName) -> &[Entry] {
        self.groups
            .get(&group.key())
            .map(|g| &g.members[..])
            .unwrap_or_default()
    }

    /// The id of `group`'s current view.
    pub fn group_id(&self, group: &GroupName) -> Option<GroupId> {
        self.groups.get(&group.key()).map(|g| g.id)
    }

    /// Groups `member` is in.
    pub fn groups_of(&self, member: &Member) -> impl Iterator<Item = &GroupName> {
        self.of_member.get(member).into_iter().flatten()
    }

    /// Ordered event: `entry` joins `group`. `None` if it already was a member (5.0.1 sends
    /// nothing then).
    pub fn join(&mut self, entry: Entry, group: &GroupName) -> Option<Change> {
        let key = group.key();
        let ring = self.ring;
        let g = self.groups.entry(key).or_insert_with(|| Group {
            id: GroupId {
                proc_id: ring.leader.0 as i32,
                time: ring.time,
                index: 0,
            },
            members: Vec::new(),
        });
        let pos = match g.members.binary_search_by(|e| e.member.cmp(&entry.member)) {
            Ok(_) => return None,
            Err(pos) => pos,
        };
        g.members.insert(pos, entry);
        g.id.index = g.id.index.wrapping_add(1);
        self.of_member.entry(entry.member).or_default().insert(key);
        Some(Change {
            group: key,
            cause: Cause::Join,
            group_id: g.id,
            members: g.members.clone(),
            vs_sets: vec![vec![entry.member]],
            self_leave: None,
        })
    }

    /// Ordered event: `member` leaves `group` with LEAVE. `None` if it was not a member.
    pub fn leave(&mut self, member: &Member, group: &GroupName) -> Option<Change> {
        let (entry, change) = self.remove(member, &group.key(), Cause::Leave)?;
        Some(Change {
            self_leave: entry.session,
            ..change
        })
    }

    /// Ordered event: `member` disconnected; one change per group it was in (by group name).
    pub fn disconnect(&mut self, member: &Member) -> Vec<Change> {
        let groups: Vec<GroupName> = self.groups_of(member).copied().collect();
        groups
            .iter()
            .filter_map(|g| self.remove(member, g, Cause::Disconnect).map(|(_, c)| c))
            .collect()
    }

    fn remove(
        &mut self,
        member: &Member,
        key: &GroupName,
        cause: Cause,
    ) -> Option<(Entry, Change)> {
        let g = self.groups.get_mut(key)?;
        let pos = g.members.binary_search_by(|e| e.member.cmp(member)).ok()?;
        let entry = g.members.remove(pos);
        g.id.index = g.id.index.wrapping_add(1);
        let change = Change {
            group: *key,
            cause,
            group_id: g.id,
            members: g.members.clone(),
            vs_sets: vec![vec![*member]],
            self_leave: None,
        };
        if g.members.is_empty() {
            self.groups.remove(key);
        }
        if let Some(set) = self.of_member.get_mut(member) {
            set.remove(key);
            if set.is_empty() {
                self.of_member.remove(member);
            }
        }
        Some((entry, change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str) -> Entry {
        Entry {
            member: Member {
                daemon: 0,
                name: GroupName::new(name.as_bytes()),
            },
            session: Some(SessionId(name.len() as u64)),
        }
    }

    #[test]
    fn join_leave_disconnect_indexes_and_order() {
        let ring = RingId {
            leader: crate::ids::DaemonId(7),
            time: 99,
        };
        let mut gs = Groups::new(ring);
        let g = GroupName::new(b"grp1");
        let a = m("#alice#localhost");
        let b = m("#bob#localhost");
        let c1 = gs.join(b, &g).unwrap();
        assert_eq!(
            c1.group_id,
            GroupId {
                proc_id: 7,
                time: 99,
                index: 1
            }
        );
        assert!(gs.join(b, &g).is_none(), "re-join is silent");
        let c2 = gs.join(a, &g).unwrap();
        assert_eq!(c2.group_id.index, 2);
        let names: Vec<_> = c2.members.iter().map(|e| e.member.name).collect();
        assert_eq!(names, vec![a.member.name, b.member.name], "sorted by name");
        let c3 = gs.leave(&b.member, &g).unwrap();
        assert_eq!((c3.cause, c3.group_id.index), (Cause::Leave, 3));
        assert_eq!(c3.self_leave, b.session);
        assert_eq!(c3.vs_sets, vec![vec![b.member]]);
        assert!(gs.leave(&b.member, &g).is_none());
        let h = GroupName::new(b"h");
        gs.join(a, &h).unwrap();
        let cs = gs.disconnect(&a.member);
        assert_eq!(cs.len(), 2);
        assert!(cs
            .iter()
            .all(|c| c.members.is_empty() && c.cause == Cause::Disconnect));
        assert!(gs.is_empty());
        // A re-created group starts over at index 1.
        assert_eq!(gs.join(a, &g).unwrap().group_id.index, 1);
    }

    #[test]
    fn daemon_position_sorts_before_name() {
        let mut gs = Groups::new(RingId::default());
        let g = GroupName::new(b"g");
        let far = Entry {
            member: Member {
                daemon: 2,
                name: GroupName::new(b"#a#d3"),
            },
            session: None,
        };
        let near = Entry {
            member: Member {
                daemon: 0,
                name: GroupName::new(b"#z#d1"),
            },
            session: None,
        };
        gs.join(far, &g);
        let c = gs.join(near, &g).unwrap();
        assert_eq!(c.members, vec![near, far]);
    }

    #[test]
    fn garbage_after_nul_names_the_same_group() {
        let mut gs = Groups::new(RingId::default());
        let mut raw = [0u8; 32];
        raw[..1].copy_from_slice(b"g");
        raw[5] = 0xc4;
        gs.join(m("#a#x"), &GroupName(raw)).unwrap();
        assert_eq!(gs.members(&GroupName::new(b"g")).len(), 1);
        assert!(gs.join(m("#a#x"), &GroupName::new(b"g")).is_none());
    }
}
