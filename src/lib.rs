//! # mbus — an embeddable, Spread 5.0.1–compatible group-messaging bus
//!
//! This crate is the I/O shell around the sans-IO core in the [`spread`] crate: the tokio
//! daemon, the client library, the cluster manager and the binaries.
//!
//! A client connects to a daemon (ours, or a real Spread 5.0.1), joins a group, sends and
//! receives — see [`client`] for streams, reconnection and in-process daemons:
//!
//! ```no_run
//! use std::time::Duration;
//! use mbus::client::{Mailbox, Message, ServiceType};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mbus::client::Error> {
//! let mut mb = Mailbox::builder("4803@127.0.0.1")
//!     .name("alice")
//!     .timeout(Duration::from_secs(5))
//!     .connect()
//!     .await?;
//! mb.join("chat").await?;
//! mb.multicast(ServiceType::AGREED, "chat", 0, b"hello").await?;
//! loop {
//!     match mb.receive().await? {
//!         Message::Data(d) => {
//!             println!("{}: {}", d.sender, String::from_utf8_lossy(&d.body));
//!             break;
//!         }
//!         Message::Membership(m) => println!("{} is now {:?}", m.group, m.members),
//!         _ => {}
//!     }
//! }
//! mb.disconnect().await
//! # }
//! ```
//!
//! Binaries: `spread` (the daemon), `eccmgr` and `mbus-node` (cluster manager and node agent),
//! `ec_console`, `mbus-bench`; `mbus-gen-docs` writes their man pages and shell completions.
#![forbid(unsafe_code)]

pub use spread;

pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod console;
pub mod daemon;
pub mod ecconf;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod fuzznet;
pub mod status;
