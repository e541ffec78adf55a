//! # mbus::client — async client library for Spread 5.0.1–compatible daemons
//!
//! Speaks the libspread 5.0.1 protocol to any Spread 5.0.1 daemon or mbus daemon, over TCP
//! (`"<port>@<host>"`), a Unix-domain socket (`"<port>"` → `/tmp/<port>`, or a path), or
//! any byte stream ([`Mailbox::connect_stream`]) — e.g. the in-memory pipe of a daemon embedded
//! in the same program (`mbus::daemon`, which uses this library; this library does not depend
//! on the daemon).
//!
//! Connecting, joining, sending and receiving:
//!
//! ```no_run
//! use std::time::Duration;
//! use mbus::client::{Mailbox, Message, ServiceType};
//!
//! # async fn demo() -> Result<(), mbus::client::Error> {
//! let mut mb = Mailbox::builder("4803@127.0.0.1") // or "4803" for the Unix socket /tmp/4803
//!     .name("alice")
//!     .group_membership(true)
//!     .timeout(Duration::from_secs(5))
//!     .connect()
//!     .await?;
//! mb.join("chat").await?;
//! mb.multicast(ServiceType::AGREED, "chat", 7, b"hello").await?;
//! loop {
//!     match mb.receive().await? {
//!         Message::Data(d) => {
//!             println!("{} says {}", d.sender, String::from_utf8_lossy(&d.body));
//!             break;
//!         }
//!         Message::Membership(m) => println!("{}: {:?} {:?}", m.group, m.cause, m.members),
//!         other => println!("{other:?}"),
//!     }
//! }
//! mb.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The receiving half is also a `futures` [`Stream`](futures_core::Stream)
//! ([`MailboxReceiver::into_stream`]); [`ReconnectingMailbox`] (from
//! [`MailboxBuilder::connect_reconnecting`]) survives daemon restarts, re-joins its groups and
//! says so with a [`Message::Reconnected`]:
//!
//! ```no_run
//! use futures_util::StreamExt as _;
//! use mbus::client::{Mailbox, Message, ServiceType};
//!
//! # async fn demo() -> Result<(), mbus::client::Error> {
//! let mut mb = Mailbox::builder("4803@127.0.0.1").name("bob").connect_reconnecting().await?;
//! mb.join("chat").await?;
//! mb.multicast(ServiceType::AGREED, "chat", 0, "hi from bob").await?;
//! while let Some(m) = mb.next().await {
//!     match m? {
//!         Message::Reconnected(r) => eprintln!("connection lost ({}); missed messages since", r.cause),
//!         Message::Data(d) => println!("{}: {}", d.sender, String::from_utf8_lossy(&d.body)),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Runnable programs are in `examples/`: `chat` (like `spuser`), `flooder` (like
//! `spflooder`) and `ping` (round-trip latency percentiles).
//!
//! Embedded daemon, no socket at all:
//!
//! ```no_run
//! use mbus::client::{ConnectOptions, Mailbox, ServiceType};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (core, _task) = mbus::daemon::spawn_core(
//!     spread::DaemonConfig::new("localhost", 1, 0),
//!     std::future::pending(), // runs until the program ends
//! );
//! let mut mb = core.connect_mailbox(&ConnectOptions::new("me", true)).await?;
//! mb.join("local").await?;
//! mb.multicast(ServiceType::SAFE, "local", 0, b"no socket involved").await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are [`Error`], one variant per Spread error code; [`Error::code`] gives the number a
//! C program would have seen.

mod address;
mod builder;
mod connect;
pub(crate) mod decode;
mod error;
mod mailbox;
mod message;
mod reconnect;
mod stream;

pub use address::{Address, DEFAULT_PORT};
pub use builder::MailboxBuilder;
pub use connect::{AuthMethod, ConnectOptions};
pub use error::Error;
pub use mailbox::{Mailbox, MailboxReceiver, MailboxSender};
pub use message::{Cause, DataMessage, GroupId, Membership, Message, RejectMessage, ServiceType};
pub use reconnect::{
    ReconnectPolicy, Reconnected, ReconnectingMailbox, ReconnectingReceiver, ReconnectingSender,
};
pub use spread::wire::client::ByteOrder;
pub use stream::MessageStream;
