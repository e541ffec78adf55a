//! [`ReconnectingMailbox`]: a session that survives daemon restarts. It remembers the groups it
//! joined; when the connection is lost it reconnects with bounded backoff, re-joins them and
//! hands the caller a [`Message::Reconnected`] before anything from the new session, so the gap
//! is never silent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use task::Task;

mod task;

use super::{Address, ConnectOptions, Error, Mailbox, Message, ServiceType};

/// How many received messages wait for the caller before the session stops reading (the
/// daemon then queues them, as for any slow reader).
const EVENT_QUEUE: usize = 1024;

/// How a [`ReconnectingMailbox`] retries after losing its connection: at once, then after
/// `initial_delay`, doubling up to `max_delay`, at most `max_attempts` times (`None`: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Wait before the second attempt.
    pub initial_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// Give up after this many failed attempts (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    /// 100 ms, doubling up to 5 s, forever.
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

/// What a [`ReconnectingMailbox`] tells its caller after it reconnected: everything sent to its
/// groups between the loss and the re-join was missed. The new session's own membership
/// messages for each re-joined group (cause [`super::Cause::Join`]) follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnected {
    /// The private group of the session that was lost.
    pub previous_private_group: String,
    /// The private group of the new session.
    pub private_group: String,
    /// The groups re-joined, in the order they were first joined.
    pub groups: Vec<String>,
    /// Why the old session ended (the error, as text).
    pub cause: String,
    /// From noticing the loss to the new session being accepted.
    pub outage: Duration,
    /// Connection attempts it took.
    pub attempts: u32,
}

/// A request from a handle to the session task.
enum Command {
    Join(String, oneshot::Sender<Result<(), Error>>),
    Leave(String, oneshot::Sender<Result<(), Error>>),
    Multicast {
        service: ServiceType,
        groups: Vec<String>,
        mess_type: i16,
        body: Bytes,
        reply: oneshot::Sender<Result<usize, Error>>,
    },
    Disconnect(oneshot::Sender<Result<(), Error>>),
}

/// State the handles can read.
#[derive(Debug, Default)]
struct Shared {
    private_group: Mutex<String>,
    groups: Mutex<Vec<String>>,
}

/// A session that reconnects to its daemon and re-joins its groups when the connection is
/// lost (the daemon restarted, the network dropped the TCP connection, …).
///
/// After each reconnection, [`ReconnectingMailbox::receive`] (and the stream) yields one
/// [`Message::Reconnected`] before any message of the new session: messages sent while it was
/// away are lost, and the caller must be able to tell. While disconnected, joins and leaves
/// are remembered and take effect on reconnection; multicasts fail with
/// [`Error::ConnectionClosed`]. When the [`ReconnectPolicy`] gives up, the receiving side
/// yields the last connection error and then ends.
///
/// A background task owns the connection: the sending side ([`ReconnectingSender`]) is cheap
/// to clone, and the receiving side is also a [`futures_core::Stream`].
///
/// ```no_run
/// # async fn demo() -> Result<(), mbus::client::Error> {
/// use mbus::client::{Mailbox, Message, ServiceType};
///
/// let mut mb = Mailbox::builder("4803@127.0.0.1").name("watcher").connect_reconnecting().await?;
/// mb.join("news").await?;
/// loop {
///     match mb.receive().await? {
///         Message::Reconnected(r) => eprintln!("lost {} for {:?}: {}", r.previous_private_group, r.outage, r.cause),
///         Message::Data(d) => println!("{}: {:?}", d.sender, d.body),
///         _ => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ReconnectingMailbox {
    tx: ReconnectingSender,
    rx: ReconnectingReceiver,
}

/// The sending side of a [`ReconnectingMailbox`] (clone it freely).
#[derive(Debug, Clone)]
pub struct ReconnectingSender {
    cmds: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// The receiving side of a [`ReconnectingMailbox`]; also a `Stream` of messages.
#[derive(Debug)]
pub struct ReconnectingReceiver {
    pub(super) events: mpsc::Receiver<Result<Message, Error>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Join(..) => "Join",
            Self::Leave(..) => "Leave",
            Self::Multicast { .. } => "Multicast",
            Self::Disconnect(_) => "Disconnect",
        })
    }
}

impl ReconnectingMailbox {
    /// Connects to `addr` with `opts` (this first attempt must succeed) and starts the task
    /// that keeps the session alive. Needs a tokio runtime.
    pub async fn connect(
        addr: Address,
        opts: ConnectOptions,
        policy: ReconnectPolicy,
    ) -> Result<Self, Error> {
        let mb = Mailbox::connect_with(&addr, &opts).await?;
        let shared = Arc::new(Shared::default());
        *shared.private_group.lock() = mb.private_group().to_owned();
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let task = Task::new(addr, opts, policy, cmd_rx, ev_tx, shared.clone());
        tokio::spawn(task.run(mb));
        Ok(Self {
            tx: ReconnectingSender {
                cmds: cmd_tx,
                shared: shared.clone(),
            },
            rx: ReconnectingReceiver {
                events: ev_rx,
                shared,
            },
        })
    }

    /// The current session's private group (it changes when the session reconnects).
    pub fn private_group(&self) -> String {
        self.tx.private_group()
    }

    /// The groups this session is in (or will re-join).
    pub fn groups(&self) -> Vec<String> {
        self.tx.groups()
    }

    /// Joins `group`; remembered and re-joined after every reconnection.
    pub async fn join(&self, group: &str) -> Result<(), Error> {
        self.tx.join(group).await
    }

    /// Leaves `group`.
    pub async fn leave(&self, group: &str) -> Result<(), Error> {
        self.tx.leave(group).await
    }

    /// Multicasts `body` to `group` (see [`Mailbox::multicast`]); fails with
    /// [`Error::ConnectionClosed`] while disconnected.
    pub async fn multicast(
        &self,
        service: ServiceType,
        group: &str,
        mess_type: i16,
        body: impl Into<Bytes>,
    ) -> Result<usize, Error> {
        self.tx.multicast(service, group, mess_type, body).await
    }

    /// Waits for the next message (a [`Message::Reconnected`] after each reconnection).
    pub async fn receive(&mut self) -> Result<Message, Error> {
        self.rx.receive().await
    }

    /// Disconnects the session and stops reconnecting.
    pub async fn disconnect(self) -> Result<(), Error> {
        self.tx.disconnect().await
    }

    /// Splits into a sending and a receiving side.
    pub fn split(self) -> (ReconnectingSender, ReconnectingReceiver) {
        (self.tx, self.rx)
    }

    pub(super) fn receiver_mut(&mut self) -> &mut ReconnectingReceiver {
        &mut self.rx
    }
}

impl ReconnectingSender {
    /// See [`ReconnectingMailbox::private_group`].
    pub fn private_group(&self) -> String {
        self.shared.private_group.lock().clone()
    }

    /// See [`ReconnectingMailbox::groups`].
    pub fn groups(&self) -> Vec<String> {
        self.shared.groups.lock().clone()
    }

    /// See [`ReconnectingMailbox::join`].
    pub async fn join(&self, group: &str) -> Result<(), Error> {
        self.call(|r| Command::Join(group.to_owned(), r)).await
    }

    /// See [`ReconnectingMailbox::leave`].
    pub async fn leave(&self, group: &str) -> Result<(), Error> {
        self.call(|r| Command::Leave(group.to_owned(), r)).await
    }

    /// See [`ReconnectingMailbox::multicast`].
    pub async fn multicast(
        &self,
        service: ServiceType,
        group: &str,
        mess_type: i16,
        body: impl Into<Bytes>,
    ) -> Result<usize, Error> {
        self.multigroup_multicast(service, &[group], mess_type, body)
            .await
    }

    /// Multicasts to several groups at once (see [`Mailbox::multigroup_multicast`]).
    pub async fn multigroup_multicast(
        &self,
        service: ServiceType,
        groups: &[&str],
        mess_type: i16,
        body: impl Into<Bytes>,
    ) -> Result<usize, Error> {
        let body = body.into();
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self.call(|reply| Command::Multicast {
            service,
            groups,
            mess_type,
            body,
            reply,
        })
        .await
    }

    /// Disconnects the session and stops reconnecting (for every handle).
    pub async fn disconnect(self) -> Result<(), Error> {
        self.call(Command::Disconnect).await
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.cmds
            .send(make(reply))
            .await
            .map_err(|_| Error::IllegalSession)?;
        answer.await.map_err(|_| Error::IllegalSession)?
    }
}

impl ReconnectingReceiver {
    /// See [`ReconnectingMailbox::private_group`].
    pub fn private_group(&self) -> String {
        self.shared.private_group.lock().clone()
    }

    /// Waits for the next message; [`Error::NetErrorOnSession`] once the session has ended.
    pub async fn receive(&mut self) -> Result<Message, Error> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(Error::NetErrorOnSession))
    }
}
