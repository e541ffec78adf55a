//! # mbus — an embeddable, Spread 5.0.1–compatible group-messaging bus
//!
//! This crate is the I/O shell around the sans-IO core in the [`spread`] crate: the tokio
//! daemon, the client library, the cluster manager and the binaries.
#![forbid(unsafe_code)]

pub use spread;

pub mod cli;
pub mod client;
pub mod cluster;
pub mod console;
pub mod daemon;
pub mod ecconf;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
