//! What a session receives: the typed [`Message`] and its parts.

use bytes::Bytes;

pub use spread::wire::client::{GroupId, ServiceType};

/// A message received from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An application message multicast by some session.
    Data(DataMessage),
    /// A regular membership of a group this session is in.
    Membership(Membership),
    /// A transitional membership: the group's view is about to change because of the network;
    /// messages up to the next [`Message::Membership`] are delivered in the transitional
    /// configuration.
    Transitional {
        /// The group.
        group: String,
        /// The id of the view that is ending.
        group_id: GroupId,
    },
    /// This session left `group` (the last message it gets for that group).
    SelfLeave {
        /// The group left.
        group: String,
    },
    /// The daemon refused one of this session's requests.
    Reject(RejectMessage),
    /// Only from a [`super::ReconnectingMailbox`]: the connection was lost and a new session
    /// re-joined the groups. Messages sent to them in between were missed.
    Reconnected(super::Reconnected),
}

/// An application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMessage {
    /// The sender's private group name (`#name#daemon`).
    pub sender: String,
    /// The destination groups exactly as the sender listed them.
    pub groups: Vec<String>,
    /// The service it was sent with (including [`ServiceType::SELF_DISCARD`] if set).
    pub service: ServiceType,
    /// The sender's 16-bit message type.
    pub mess_type: i16,
    /// True if the sender's byte order differs from this host's (the body is not swapped).
    pub endian_mismatch: bool,
    /// The body, unchanged.
    pub body: Bytes,
}

/// Why a regular membership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A session joined.
    Join,
    /// A session left.
    Leave,
    /// A session disconnected (or was killed).
    Disconnect,
    /// Daemons joined or left the ring.
    Network,
}

/// A regular membership message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group.
    pub group: String,
    /// Why it changed.
    pub cause: Cause,
    /// The new view's id.
    pub group_id: GroupId,
    /// Private group names of all members, in the same order at every member.
    pub members: Vec<String>,
    /// Index of this session in [`Membership::members`] (libspread's `mess_type`).
    pub my_index: Option<usize>,
    /// For join/leave/disconnect: the member who joined, left or disconnected.
    pub changed_member: Option<String>,
    /// The virtual-synchrony sets: members that went through the change together.
    pub vs_sets: Vec<Vec<String>>,
    /// Index into [`Membership::vs_sets`] of the set containing this session.
    pub my_vs_set: usize,
}

/// A request the daemon refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectMessage {
    /// The refused request's type bits (service, or CAUSED_BY_JOIN / CAUSED_BY_LEAVE for a
    /// refused join/leave), without the REJECT bit.
    pub original_type: u32,
    /// The private group in the reject header (this session's).
    pub sender: String,
    /// The request's groups, with the private group appended by the daemon.
    pub groups: Vec<String>,
    /// The request's message type.
    pub mess_type: i16,
    /// The request's body.
    pub body: Bytes,
}

impl Message {
    /// The data message, if this is one.
    pub fn as_data(&self) -> Option<&DataMessage> {
        match self {
            Self::Data(d) => Some(d),
            _ => None,
        }
    }

    /// The regular membership, if this is one.
    pub fn as_membership(&self) -> Option<&Membership> {
        match self {
            Self::Membership(m) => Some(m),
            _ => None,
        }
    }
}
