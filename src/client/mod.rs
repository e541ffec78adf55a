//! # mbus::client — async client library for Spread 5.0.1–compatible daemons
//!
//! Speaks the libspread 5.0.1 protocol to any Spread 5.0.1 daemon or mbus daemon, over TCP
//! (`"<port>@<host>"`), a Unix-domain socket (`"<port>"` → `/tmp/<port>`, or a path), or
//! in-process to a daemon embedded in the same program ([`Mailbox::connect_stream`] over the
//! byte stream the embedded daemon hands out; no socket involved).
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
//! Errors are [`Error`], one variant per Spread error code; [`Error::code`] gives the number a
//! C program would have seen.

mod address;
mod connect;
mod decode;
mod error;
mod mailbox;
mod message;

pub use address::{Address, DEFAULT_PORT};
pub use connect::ConnectOptions;
pub use error::Error;
pub use mailbox::{Mailbox, MailboxReceiver, MailboxSender};
pub use message::{Cause, DataMessage, GroupId, Membership, Message, RejectMessage, ServiceType};
pub use spread::wire::client::ByteOrder;
