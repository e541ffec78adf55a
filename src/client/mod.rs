//! # mbus::client — async client library for Spread 5.0.1–compatible daemons
//!
//! Speaks the libspread 5.0.1 protocol to any Spread 5.0.1 daemon or mbus daemon, over TCP
//! (`"<port>@<host>"`), a Unix-domain socket (`"<port>"` → `/tmp/<port>`, or a path), or
//! in-process to a daemon embedded in the same program ([`Mailbox::connect_in_process`]: an
//! in-memory pipe to the core task, no socket involved).
//!
//! ```no_run
//! use mbus::client::{Mailbox, Message, ServiceType};
//!
//! # async fn demo() -> Result<(), mbus::client::Error> {
//! let mut mb = Mailbox::connect("4803@127.0.0.1", "alice", true).await?;
//! mb.join("chat").await?;
//! mb.multicast(ServiceType::AGREED, "chat", 7, b"hello").await?;
//! loop {
//!     match mb.receive().await? {
//!         Message::Data(d) => println!("{} says {:?}", d.sender, d.body),
//!         Message::Membership(m) => println!("{}: {:?} {:?}", m.group, m.cause, m.members),
//!         other => println!("{other:?}"),
//!     }
//! #   break;
//! }
//! mb.disconnect().await?;
//! # Ok(())
//! # }
//! ```
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
//! let mut mb = Mailbox::connect_in_process(&core, &ConnectOptions::new("me", true)).await?;
//! mb.join("local").await?;
//! mb.multicast(ServiceType::SAFE, "local", 0, b"no socket involved").await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are [`Error`], one variant per Spread error code; [`Error::code`] gives the number a
//! C program would have seen.

mod address;
mod connect;
pub(crate) mod decode;
mod error;
mod mailbox;
mod message;

pub use address::{Address, DEFAULT_PORT};
pub use connect::ConnectOptions;
pub use error::Error;
pub use mailbox::{Mailbox, MailboxReceiver, MailboxSender};
pub use message::{Cause, DataMessage, GroupId, Membership, Message, RejectMessage, ServiceType};
pub use spread::wire::client::ByteOrder;
