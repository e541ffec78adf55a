//! What a session's socket has not taken yet, and 5.0.1's slow-reader rule over it.
//!
//! 5.0.1 (`Sess_write`) tries to write each message to the session's socket at once; what the
//! socket refuses is linked on the session's queue, and a message for a session that already
//! has `MaxSessionMessages` messages queued kills the session instead (`Sess_kill`: the queue
//! is freed, the other members see the disconnect). Our shell writes from another task, so
//! a message handed to it may still be *in flight* (never offered to the socket yet). The
//! shell reports refusals ([`crate::SessionInput::Blocked`]) and progress
//! ([`crate::SessionInput::Drained`]); only while the socket is blocked do the unwritten messages
//! count, as in 5.0.1 only refused messages do.
//!
//! The count alone does not bound memory while the socket is not blocked (a writer that has
//! fallen behind), so a byte cap of `MaxSessionMessages` × [`LARGEST_MESSAGE`] applies
//! always: the bound 5.0.1's own queue has.

use std::collections::VecDeque;

use crate::wire::client::MAX_MESSAGE_BODY_LEN;

/// The largest message a daemon hands a client (header, groups and data together; 5.0.1's
/// `MAX_MESSAGE_BODY_LEN`).
pub const LARGEST_MESSAGE: usize = MAX_MESSAGE_BODY_LEN;

/// The messages handed to the shell for one session and not yet reported written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Length of each message, oldest first.
    sizes: VecDeque<u32>,
    /// Sum of `sizes`.
    bytes: usize,
    /// The shell reported the socket full and has written nothing since.
    blocked: bool,
}

/// Why a message cannot be queued: the session is to be killed as a slow reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The socket is blocked with `MaxSessionMessages` messages waiting (5.0.1's rule).
    Messages,
    /// The unwritten bytes would pass `MaxSessionMessages` × [`LARGEST_MESSAGE`].
    Bytes,
}

impl Backlog {
    /// Messages not yet written (5.0.1's `num_mess` while blocked).
    pub fn messages(&self) -> usize {
        self.sizes.len()
    }

    /// Bytes not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The socket refused bytes and nothing was written since.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Whether one more message of `len` bytes may be queued under `max_messages`
    /// (`MaxSessionMessages`). The first message is always admitted.
    pub fn admit(&self, len: usize, max_messages: usize) -> Result<(), Overflow> {
        if self.blocked && self.sizes.len() >= max_messages {
            return Err(Overflow::Messages);
        }
        let cap = max_messages.max(1).saturating_mul(LARGEST_MESSAGE);
        if self.bytes > 0 && self.bytes.saturating_add(len) > cap {
            return Err(Overflow::Bytes);
        }
        Ok(())
    }

    /// A message of `len` bytes was handed to the shell.
    pub fn push(&mut self, len: usize) {
        self.sizes.push_back(u32::try_from(len).unwrap_or(u32::MAX));
        self.bytes = self.bytes.saturating_add(len);
    }

    /// The shell wrote the `messages` oldest ones; any report clears the block.
    pub fn drained(&mut self, messages: usize) {
        let n = messages.min(self.sizes.len());
        for len in self.sizes.drain(..n) {
            self.bytes = self.bytes.saturating_sub(len as usize);
        }
        self.blocked = false;
    }

    /// The shell reported the socket full.
    pub fn block(&mut self) {
        self.blocked = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_blocked_and_bytes_always() {
        let mut b = Backlog::default();
        for _ in 0..10 {
            assert_eq!(b.admit(100, 5), Ok(()));
            b.push(100);
        }
        // Ten in flight, not blocked: still admitted.
        assert_eq!(b.admit(100, 5), Ok(()));
        b.block();
        assert_eq!(b.admit(100, 5), Err(Overflow::Messages));
        b.drained(6);
        assert_eq!((b.messages(), b.bytes(), b.is_blocked()), (4, 400, false));
        b.block();
        assert_eq!(b.admit(100, 5), Ok(()));
        // Over-reporting is harmless.
        b.drained(99);
        assert_eq!((b.messages(), b.bytes()), (0, 0));
        // The byte cap holds without a block; the first message always fits.
        assert_eq!(b.admit(LARGEST_MESSAGE * 3, 2), Ok(()));
        b.push(LARGEST_MESSAGE);
        assert_eq!(b.admit(LARGEST_MESSAGE, 2), Ok(()));
        b.push(LARGEST_MESSAGE);
        assert_eq!(b.admit(1, 2), Err(Overflow::Bytes));
    }
}
