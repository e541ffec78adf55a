//! Wire formats and codecs.
//!
//! * [`client`]: the client ↔ daemon protocol of Spread 5.0.1 (handshake, 48-byte message
//!   header in either byte order, membership bodies), both the daemon side and the client side.
//! * [`daemon`]: the daemon ↔ daemon ring protocol (data packets, tokens, membership, GROUPS).
//!
//! Decoders are pure functions over bytes: they check the bytes left before every read and every
//! length against a named maximum before allocating, and never panic on any input.

#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

pub mod client;
pub mod daemon;
