//! Client ↔ daemon protocol of Spread 5.0.1 (see the fact sheet
//! `spread-client-protocol.md`): both sides of every exchange, so the daemon core and the
//! client library share one implementation.
//!
//! * [`header`]: the 48-byte message header, [`ServiceType`] bits, [`Hint`], [`GroupName`].
//! * [`frame`]: the stream framer ([`decode_frame`]) that cuts a byte stream into whole
//!   messages, checking every length before waiting for or allocating anything.
//! * [`handshake`]: hello, authentication list and choice, accept / reject bytes.
//! * [`memb`]: bodies of membership messages (group id, vs-sets) and of transitional ones.
//!
//! # Group names (decision)
//!
//! The 5.0.1 daemon does not validate group names: a raw client can join `"a b"`, and a
//! 32-byte name without a terminating NUL is accepted and echoed back unterminated (which
//! overflows a 32-byte buffer inside the C daemon and hands C clients an unterminated string).
//! We keep the leniency that is harmless and refuse the part that is undefined behaviour:
//!
//! * a group name is the bytes of its 32-byte field **up to the first NUL**; bytes after the
//!   NUL are not significant for matching (they are still forwarded verbatim in data
//!   messages, as 5.0.1 does);
//! * any byte value other than NUL is allowed (no character check, like 5.0.1), so `"a b"`
//!   works exactly as with the real daemon;
//! * a field **without a NUL** (32 characters) is invalid ([`GroupName::is_terminated`]), and
//!   so is an **empty** name in JOIN/LEAVE: the session that sends one is killed like any
//!   other header violation (no reply; members of its groups see `CAUSED_BY_DISCONNECT`).
//!   This is where we deliberately differ from 5.0.1 (`odd_group_names.hex`);
//! * a JOIN of a name starting with `#` (the private-group namespace) is refused the same way:
//!   such a group could never be addressed, since `#...` destinations mean private groups.
//!
//! The client library applies libspread's stricter rule before sending
//! ([`GroupName::is_valid_for_client`]: 1..=31 bytes in `0x24..=0x7E`).

pub mod frame;
pub mod handshake;
pub mod header;
pub mod memb;

pub use frame::{decode_frame, encode_message, frame_of, Direction, Frame};
pub use handshake::{
    decode_accept, decode_auth_choice, decode_auth_list, decode_hello, encode_accept,
    encode_auth_choice, encode_auth_list, encode_hello, AcceptReply, AuthListReply, Hello,
    HelloError, RejectCode, Version,
};
pub use header::{
    decode_header, encode_header, ByteOrder, GroupName, Hint, MessageHeader, ServiceType,
};
pub use memb::{GroupId, MembershipBody};

use thiserror::Error;

/// Length of the fixed message header.
pub const HEADER_LEN: usize = 48;
/// Length of one group-name field (`MAX_GROUP_NAME`), including the terminating NUL.
pub const GROUP_NAME_LEN: usize = 32;
/// Longest private name a client may ask for (`MAX_PRIVATE_NAME`).
pub const MAX_PRIVATE_NAME: usize = 10;
/// Longest daemon (proc) name (`MAX_PROC_NAME - 1`).
pub const MAX_PROC_NAME: usize = 19;
/// Most groups one client message may name (`MAX_GROUPS_PER_MESSAGE`).
pub const MAX_GROUPS_PER_MESSAGE: usize = 100;
/// `MAX_MESSAGE_BODY_LEN`: largest `data_len` a header may announce.
pub const MAX_MESSAGE_BODY_LEN: usize = 144_000;
/// Largest `data_len + 32 * num_groups` the 5.0.1 header check lets through.
pub const MAX_DATA_PLUS_GROUPS: usize = MAX_MESSAGE_BODY_LEN - HEADER_LEN;
/// Largest whole client message (header + groups + body) the 5.0.1 daemon can really carry
/// (100 internal fragments of 1432 bytes). Anything larger crashes 5.0.1; we kill the session.
pub const MAX_WIRE_MESSAGE: usize = 100 * 1432;
/// The endian marker bits set by a little-endian writer in `type` and `hint`.
pub const ENDIAN_MARKER: u32 = 0x8000_0080;
/// Length of a client's authentication choice: 3 slots of 30 bytes.
pub const AUTH_CHOICE_LEN: usize = MAX_AUTH_METHODS * MAX_AUTH_NAME;
/// Most authentication methods a client may list.
pub const MAX_AUTH_METHODS: usize = 3;
/// Size of one authentication-method slot (name, NUL padded).
pub const MAX_AUTH_NAME: usize = 30;
/// Most members a daemon→client message may list when we decode one (client side bound:
/// 997 sessions on each of up to 128 daemons, rounded up).
pub const MAX_DELIVERED_GROUPS: usize = 1 << 17;
/// Largest body of a daemon→client message we accept when decoding (client side bound).
pub const MAX_DELIVERED_DATA_LEN: usize = 8 << 20;

/// Why some bytes could not be decoded. Decoding never changes any state: the input is left
/// for the caller to drop (a daemon kills the session, a client closes the connection).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were available.
        have: usize,
    },
    /// `num_groups` is negative or above the limit.
    #[error("bad num_groups {0}")]
    BadNumGroups(i32),
    /// `data_len` is negative or above the limit.
    #[error("bad data_len {0}")]
    BadDataLen(i32),
    /// The whole message would exceed what the daemon can carry.
    #[error("message too long: {0} bytes")]
    TooLong(usize),
    /// A count inside a membership body does not fit the body.
    #[error("bad membership body: {0}")]
    BadMembershipBody(&'static str),
}
