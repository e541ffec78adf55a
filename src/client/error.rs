//! The client library's error type: one variant per Spread `sp.h` error code, plus the
//! underlying I/O error where there is one.

use std::io;

/// Everything that can go wrong in a client call.
///
/// Each variant corresponds to one Spread 5.0.1 error code (`sp.h`); [`Error::code`] gives the
/// number a C application would have seen, and [`Error::from_code`] maps a reject byte received
/// from a daemon back to a variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `ILLEGAL_SPREAD` (−1): the daemon address is not `"<port>"`, `"<port>@<host>"` or a path.
    #[error("illegal daemon address {0:?}")]
    IllegalSpread(String),
    /// `COULD_NOT_CONNECT` (−2): the socket could not be connected.
    #[error("could not connect to the daemon")]
    CouldNotConnect(#[source] io::Error),
    /// `REJECT_QUOTA` (−3): the daemon already has its maximum number of sessions.
    #[error("rejected: the daemon has too many sessions")]
    RejectQuota,
    /// `REJECT_NO_NAME` (−4): defined by Spread, never sent by a 5.0.1 daemon.
    #[error("rejected: no name")]
    RejectNoName,
    /// `REJECT_ILLEGAL_NAME` (−5): the private name is too long or has illegal characters.
    #[error("rejected: illegal private name")]
    RejectIllegalName,
    /// `REJECT_NOT_UNIQUE` (−6): the private name is already in use on that daemon.
    #[error("rejected: private name already in use")]
    RejectNotUnique,
    /// `REJECT_VERSION` (−7): the daemon and this library do not speak compatible versions.
    #[error("rejected: incompatible version")]
    RejectVersion,
    /// `CONNECTION_CLOSED` (−8): the daemon closed the connection or a socket call failed.
    #[error("connection closed")]
    ConnectionClosed(#[source] Option<io::Error>),
    /// `REJECT_AUTH` (−9): authentication or access control refused the session.
    #[error("rejected: authentication refused")]
    RejectAuth,
    /// `ILLEGAL_SESSION` (−11): the session was already disconnected.
    #[error("illegal session")]
    IllegalSession,
    /// `ILLEGAL_SERVICE` (−12): a multicast without exactly one service.
    #[error("illegal service type {0:#x}")]
    IllegalService(u32),
    /// `ILLEGAL_MESSAGE` (−13): the daemon sent a message this library cannot decode.
    #[error("illegal message from the daemon: {0}")]
    IllegalMessage(String),
    /// `ILLEGAL_GROUP` (−14): a group name that is empty, too long or has illegal characters.
    #[error("illegal group name {0:?}")]
    IllegalGroup(String),
    /// `BUFFER_TOO_SHORT` (−15): a receive buffer too small for the body (C API only; this
    /// library always allocates what it needs).
    #[error("buffer too short")]
    BufferTooShort,
    /// `GROUPS_TOO_SHORT` (−16): a group buffer too small (C API only, as above).
    #[error("groups buffer too short")]
    GroupsTooShort,
    /// `MESSAGE_TOO_LONG` (−17): body plus 32 bytes per group exceeds 144000 bytes, or more
    /// than 100 groups.
    #[error("message too long ({0} bytes of body and group names)")]
    MessageTooLong(usize),
    /// `NET_ERROR_ON_SESSION` (−18): an earlier call failed on this session; it is unusable.
    #[error("the session already failed")]
    NetErrorOnSession,
    /// `SP_BUG` (−19): an internal inconsistency (e.g. the embedded daemon went away).
    #[error("internal error: {0}")]
    SpBug(String),
    /// `ILLEGAL_TIME` (−20): a bad timeout.
    #[error("illegal timeout")]
    IllegalTime,
}

impl Error {
    /// The Spread `sp.h` error code of this error (always negative).
    pub fn code(&self) -> i32 {
        match self {
            Self::IllegalSpread(_) => -1,
            Self::CouldNotConnect(_) => -2,
            Self::RejectQuota => -3,
            Self::RejectNoName => -4,
            Self::RejectIllegalName => -5,
            Self::RejectNotUnique => -6,
            Self::RejectVersion => -7,
            Self::ConnectionClosed(_) => -8,
            Self::RejectAuth => -9,
            Self::IllegalSession => -11,
            Self::IllegalService(_) => -12,
            Self::IllegalMessage(_) => -13,
            Self::IllegalGroup(_) => -14,
            Self::BufferTooShort => -15,
            Self::GroupsTooShort => -16,
            Self::MessageTooLong(_) => -17,
            Self::NetErrorOnSession => -18,
            Self::SpBug(_) => -19,
            Self::IllegalTime => -20,
        }
    }

    /// Maps a Spread error code (e.g. the reject byte a daemon sends, read as `i8`) to an
    /// error. Codes whose variant carries details get empty details. `None` for codes that
    /// are not errors (`1` = accept, or unknown numbers).
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            -1 => Self::IllegalSpread(String::new()),
            -2 => Self::CouldNotConnect(io::Error::other("could not connect")),
            -3 => Self::RejectQuota,
            -4 => Self::RejectNoName,
            -5 => Self::RejectIllegalName,
            -6 => Self::RejectNotUnique,
            -7 => Self::RejectVersion,
            -8 => Self::ConnectionClosed(None),
            -9 => Self::RejectAuth,
            -11 => Self::IllegalSession,
            -12 => Self::IllegalService(0),
            -13 => Self::IllegalMessage(String::new()),
            -14 => Self::IllegalGroup(String::new()),
            -15 => Self::BufferTooShort,
            -16 => Self::GroupsTooShort,
            -17 => Self::MessageTooLong(0),
            -18 => Self::NetErrorOnSession,
            -19 => Self::SpBug(String::new()),
            -20 => Self::IllegalTime,
            _ => return None,
        })
    }

    /// True for the five codes a daemon may send as its one-byte connect reject.
    pub fn is_connect_reject(&self) -> bool {
        matches!(
            self,
            Self::RejectQuota
                | Self::RejectIllegalName
                | Self::RejectNotUnique
                | Self::RejectVersion
                | Self::RejectAuth
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        let mut seen = 0;
        for code in -30..=2 {
            if let Some(e) = Error::from_code(code) {
                assert_eq!(e.code(), code);
                seen += 1;
            }
        }
        // −1..−9 and −11..−20: every sp.h error code.
        assert_eq!(seen, 19);
        assert!(Error::from_code(1).is_none());
        assert!(Error::from_code(-10).is_none());
    }

    #[test]
    fn reject_bytes_map_to_variants() {
        for (byte, code) in [(0xfdu8, -3), (0xfb, -5), (0xfa, -6), (0xf9, -7), (0xf7, -9)] {
            let e = Error::from_code(i32::from(byte as i8)).unwrap();
            assert_eq!(e.code(), code);
            assert!(e.is_connect_reject());
        }
        assert!(!Error::RejectNoName.is_connect_reject());
    }
}
