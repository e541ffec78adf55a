//! # mbus::client — async client library for Spread 5.0.1–compatible daemons
//!
//! Connects to a daemon over TCP (`"<port>@<host>"`), a Unix-domain socket (`"<port>"` →
//! `/tmp/<port>`, or a path), or in-process to a daemon embedded in the same program.

mod address;
mod error;

pub use address::{Address, DEFAULT_PORT};
pub use error::Error;
