//! The membership log of `spread -l y` (5.0.1 `log.c`): what happened, as events; the shell
//! writes them ([`MembershipLogEvent::line`]) to a file named after the daemon, with the wall
//! clock of the moment it writes.
//!
//! 5.0.1 writes (its `SPREAD_PROTOCOL` is 3), one line each, fields padded with `printf`:
//!
//! ```text
//! B %13ld                                   start: time
//! M %13ld %13d %11d >  %2d|--  …            regular membership: time, ring id time,
//!                                           highest seq, one field per configured daemon
//! C %13ld %11d %3d %-16s %-10s              session accepted: time, highest seq, mailbox,
//!                                           client address, user name
//! D %13ld %11d %3d %-46s %-10s %d           session ended: …, messages still queued to it
//! ```
//!
//! Observed with the real daemon (`-l y`, one daemon, two `spuser` sessions over TCP):
//! `M    1796189556    1796189558           0 >   0`,
//! `C    1796189557           0  11 127.0.0.1        alice     `; over the Unix socket the
//! address is `address conversion failed`. In an `M` line every member prints the
//! configuration index of the **first** member (5.0.1's `found` is set once), a daemon not in
//! the membership `--`. The highest seq of an `M` line is the ring being left's (5.0.1 logs
//! before resetting it). The mailbox is 5.0.1's socket number; here it is the session number.

use std::fmt::Write as _;

use super::Daemon;
use crate::ring::DaemonId;
use crate::session::{Peer, SessionId};
use crate::wire::client::GroupName;

/// One membership-log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipLogEvent {
    /// A regular membership was installed.
    Membership {
        /// The ring id's time.
        ring_time: i32,
        /// Highest seq of the ring that ended.
        highest_seq: u32,
        /// Configured daemons, configuration order.
        configured: Vec<DaemonId>,
        /// The new membership.
        members: Vec<DaemonId>,
    },
    /// A session was accepted.
    Connect {
        /// The session.
        session: SessionId,
        /// Where it came from.
        peer: Peer,
        /// Its user name.
        name: String,
        /// Highest seq of the installed ring.
        highest_seq: u32,
    },
    /// An accepted session ended.
    Disconnect {
        /// The session.
        session: SessionId,
        /// Where it came from.
        peer: Peer,
        /// Its user name.
        name: String,
        /// Highest seq of the installed ring.
        highest_seq: u32,
        /// Messages still queued to it.
        queued: usize,
    },
}

/// The start line, at wall-clock second `now`.
pub fn start_line(now: i64) -> String {
    format!("B {now:13}\n")
}

/// 5.0.1's `SPU_ADDR_NTOP` of a client address (a Unix-socket peer has none it can print).
fn address(peer: Peer) -> String {
    match peer {
        Peer::Tcp(ip) => ip.to_string(),
        Peer::Unix | Peer::InProcess => "address conversion failed".to_owned(),
    }
}

impl MembershipLogEvent {
    /// The line 5.0.1 writes for this event at wall-clock second `now` (newline included).
    pub fn line(&self, now: i64) -> String {
        match self {
            Self::Membership {
                ring_time,
                highest_seq,
                configured,
                members,
            } => {
                let mut l = format!("M {now:13} {ring_time:13} {highest_seq:11} > ");
                // 5.0.1: every member prints the index of the first member found.
                let first = configured.iter().position(|d| members.contains(d));
                for d in configured {
                    match (members.contains(d), first) {
                        (true, Some(i)) => {
                            let _ = write!(l, " {i:2}");
                        }
                        _ => l.push_str(" --"),
                    }
                }
                l.push('\n');
                l
            }
            Self::Connect {
                session,
                peer,
                name,
                highest_seq,
            } => format!(
                "C {now:13} {highest_seq:11} {:3} {:<16} {name:<10}\n",
                session.0,
                address(*peer)
            ),
            Self::Disconnect {
                session,
                peer,
                name,
                highest_seq,
                queued,
            } => format!(
                "D {now:13} {highest_seq:11} {:3} {:<46} {name:<10} {queued}\n",
                session.0,
                address(*peer)
            ),
        }
    }
}

/// The user name of a private group `#user#daemon`.
fn user_of(g: &GroupName) -> String {
    let t = g.text();
    let inner = t.strip_prefix(b"#").unwrap_or(t);
    let user = inner.split(|b| *b == b'#').next().unwrap_or(inner);
    String::from_utf8_lossy(user).into_owned()
}

/// The membership log side of a [`Daemon`].
#[derive(Debug, Default)]
pub(crate) struct MembLog {
    events: std::collections::VecDeque<MembershipLogEvent>,
    /// Highest seq of the installed ring when the current input arrived (5.0.1 logs a
    /// session's end, and a new membership, before what they cause is sequenced).
    highest: u32,
}

impl Daemon {
    /// Turns the membership log on (`-l y`): from now on [`Daemon::poll_membership_log`]
    /// returns its events.
    pub fn enable_membership_log(&mut self) {
        self.memb_log.get_or_insert_with(Box::default);
        self.clients
            .session_log
            .get_or_insert_with(Default::default);
    }

    /// The next membership-log event (none unless [`Daemon::enable_membership_log`]).
    pub fn poll_membership_log(&mut self) -> Option<MembershipLogEvent> {
        self.memb_log.as_mut()?.events.pop_front()
    }

    /// A regular membership `members` was installed.
    pub(crate) fn log_membership(&mut self, ring_time: i32, members: &[DaemonId]) {
        let configured = self.topology.daemons().iter().map(|(d, _)| *d).collect();
        if let Some(m) = &mut self.memb_log {
            m.events.push_back(MembershipLogEvent::Membership {
                ring_time,
                highest_seq: m.highest,
                configured,
                members: members.to_vec(),
            });
        }
    }

    /// An input arrives: remembers the highest seq as it is now.
    pub(crate) fn log_input(&mut self) {
        if let Some(m) = &mut self.memb_log {
            m.highest = self.engine.status().highest_seq;
        }
    }

    /// Collects the session events of the last input.
    pub(crate) fn log_sessions(&mut self) {
        let Some(m) = &mut self.memb_log else {
            return;
        };
        let highest_seq = m.highest;
        if let Some(q) = &mut self.clients.session_log {
            while let Some((accepted, session, peer, group, queued)) = q.pop_front() {
                let name = user_of(&group);
                m.events.push_back(if accepted {
                    MembershipLogEvent::Connect {
                        session,
                        peer,
                        name,
                        highest_seq,
                    }
                } else {
                    MembershipLogEvent::Disconnect {
                        session,
                        peer,
                        name,
                        highest_seq,
                        queued,
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_5_0_1_s() {
        // As the real daemon wrote them (one daemon, two spuser sessions over TCP, one Unix).
        assert_eq!(start_line(1_796_189_554), "B    1796189554\n");
        let me = DaemonId(7);
        let m = MembershipLogEvent::Membership {
            ring_time: 1_796_189_558,
            highest_seq: 0,
            configured: vec![me],
            members: vec![me],
        };
        assert_eq!(
            m.line(1_796_189_556),
            "M    1796189556    1796189558           0 >   0\n"
        );
        let c = MembershipLogEvent::Connect {
            session: SessionId(11),
            peer: Peer::Tcp("127.0.0.1".parse().unwrap()),
            name: "alice".into(),
            highest_seq: 0,
        };
        assert_eq!(
            c.line(1_796_189_557),
            "C    1796189557           0  11 127.0.0.1        alice     \n"
        );
        let d = MembershipLogEvent::Disconnect {
            session: SessionId(11),
            peer: Peer::Tcp("127.0.0.1".parse().unwrap()),
            name: "alice".into(),
            highest_seq: 1,
            queued: 0,
        };
        assert_eq!(
            d.line(1_796_189_558),
            "D    1796189558           1  11 127.0.0.1                                      alice      0\n"
        );
        let u = MembershipLogEvent::Connect {
            session: SessionId(11),
            peer: Peer::Unix,
            name: "alice".into(),
            highest_seq: 0,
        };
        assert_eq!(
            u.line(1_796_189_531),
            "C    1796189531           0  11 address conversion failed alice     \n"
        );
    }

    #[test]
    fn every_member_prints_the_index_of_the_first_one() {
        let ids: Vec<DaemonId> = (1..=4).map(DaemonId).collect();
        let m = MembershipLogEvent::Membership {
            ring_time: 5,
            highest_seq: 42,
            configured: ids.clone(),
            members: vec![ids[1], ids[3]],
        };
        assert_eq!(
            m.line(9),
            "M             9             5          42 >  --  1 --  1\n"
        );
    }

    #[test]
    fn the_user_name_is_the_private_group_s_first_part() {
        assert_eq!(user_of(&GroupName::new(b"#alice#d1")), "alice");
    }
}
