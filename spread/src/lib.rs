//! # spread — the sans-IO core of mbus
//!
//! Everything that decides *what* a Spread 5.0.1–compatible daemon does lives here: wire
//! codecs (client↔daemon and daemon↔daemon), configuration parsing, client sessions, group
//! state, the token ring and the membership protocol. Nothing here opens a socket, reads a
//! clock or sleeps: callers feed inputs with `handle(now, input)` / `handle_timeout(now)`,
//! drain outputs with `poll_output()` and sleep until `poll_timeout()`.
#![forbid(unsafe_code)]

pub(crate) mod clients;
pub mod config;
pub mod daemon;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
pub mod ids;
pub mod memb;
pub mod ring;
pub mod session;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod time;
pub mod wire;

pub use clients::{
    ClientStats, DaemonConfig, RingStats as GroupStats, SessionInput, SessionOutput,
    DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSION_MESSAGES, MAX_LOCAL_GROUP_MEMBERS,
};
pub use daemon::{Daemon, Input, Output};
