//! The task that owns a [`ReconnectingMailbox`](super::ReconnectingMailbox)'s connection:
//! serves the handles' requests, forwards what arrives, reconnects and re-joins.

use std::sync::Arc;
use std::time::Instant;

use spread::wire::client::GroupName;
use tokio::sync::{mpsc, oneshot};

use super::{Command, ReconnectPolicy, Reconnected, Shared};
use crate::client::{Address, ConnectOptions, Error, Mailbox, MailboxSender, Message};

/// True for errors that mean the connection is gone (as opposed to a bad request).
fn is_connection_error(e: &Error) -> bool {
    matches!(
        e,
        Error::ConnectionClosed(_) | Error::NetErrorOnSession | Error::CouldNotConnect(_)
    )
}

/// The background task that owns the connection.
pub(super) struct Task {
    addr: Address,
    opts: ConnectOptions,
    policy: ReconnectPolicy,
    cmds: mpsc::Receiver<Command>,
    cmds_open: bool,
    events: mpsc::Sender<Result<Message, Error>>,
    groups: Groups,
}

/// The joined groups, in join order: the ones to re-join.
pub(super) struct Groups {
    list: Vec<String>,
    shared: Arc<Shared>,
}

/// How a connected phase ended.
enum Ended {
    /// The connection was lost with this error.
    Lost(Error),
    /// The caller disconnected or dropped the receiving side.
    Stop,
}

impl Task {
    /// A task for a session connected to `addr` with `opts`.
    pub(super) fn new(
        addr: Address,
        opts: ConnectOptions,
        policy: ReconnectPolicy,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<Result<Message, Error>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            addr,
            opts,
            policy,
            cmds,
            cmds_open: true,
            events,
            groups: Groups {
                list: Vec::new(),
                shared,
            },
        }
    }

    /// Serves the session opened as `mb` until the caller stops it or the policy gives up.
    pub(super) async fn run(mut self, mut mb: Mailbox) {
        let mut note = None;
        loop {
            let previous = mb.private_group().to_owned();
            let cause = match self.serve(mb, note.take()).await {
                Ended::Stop => return,
                Ended::Lost(e) => e,
            };
            let lost_at = Instant::now();
            match self.reconnect().await {
                Ok(Some((new, attempts))) => {
                    mb = new;
                    let r = Reconnected {
                        previous_private_group: previous,
                        private_group: mb.private_group().to_owned(),
                        groups: self.groups.list.clone(),
                        cause: format!("{cause:#}"),
                        outage: lost_at.elapsed(),
                        attempts,
                    };
                    tracing::info!(
                        "reconnected as {} after {:?}; re-joined {:?}",
                        r.private_group,
                        r.outage,
                        r.groups
                    );
                    note = Some(Message::Reconnected(r));
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = self.events.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    /// Runs one connected session until it is lost or stopped; `first` is handed to the
    /// caller before anything the session receives. Requests are served even while the caller
    /// is not reading (a message is read from the daemon only when there is room for it).
    async fn serve(&mut self, mb: Mailbox, mut first: Option<Message>) -> Ended {
        let (mut tx, mut rx) = mb.split();
        let Self {
            cmds,
            cmds_open,
            events,
            groups,
            ..
        } = self;
        loop {
            let permit = tokio::select! {
                p = events.reserve() => match p {
                    Ok(p) => p,
                    Err(_) => {
                        let _ = tx.disconnect_ref().await;
                        return Ended::Stop;
                    }
                },
                c = cmds.recv(), if *cmds_open => {
                    match serve_command(groups, &mut tx, c, cmds_open).await {
                        Some(end) => return end,
                        None => continue,
                    }
                }
            };
            if let Some(m) = first.take() {
                permit.send(Ok(m));
                continue;
            }
            tokio::select! {
                r = rx.receive() => match r {
                    Ok(m) => permit.send(Ok(m)),
                    Err(e) => return Ended::Lost(e),
                },
                c = cmds.recv(), if *cmds_open => {
                    drop(permit);
                    if let Some(end) = serve_command(groups, &mut tx, c, cmds_open).await {
                        return end;
                    }
                }
                () = events.closed() => {
                    let _ = tx.disconnect_ref().await;
                    return Ended::Stop;
                }
            }
        }
    }

    /// Reconnects with backoff and re-joins the groups: `Ok(Some)` when done, `Ok(None)` when
    /// the caller stopped the session meanwhile, `Err` (the last error) when the policy gave
    /// up.
    async fn reconnect(&mut self) -> Result<Option<(Mailbox, u32)>, Error> {
        let mut delay = self.policy.initial_delay;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let err = match self.attempt().await {
                Ok(mb) => {
                    mb.private_group()
                        .clone_into(&mut self.groups.shared.private_group.lock());
                    return Ok(Some((mb, attempts)));
                }
                Err(e) => e,
            };
            if self.policy.max_attempts.is_some_and(|m| attempts >= m) {
                tracing::warn!(
                    "giving up reconnecting to {} after {attempts} attempt(s): {err:#}",
                    self.addr
                );
                return Err(err);
            }
            tracing::debug!(
                "reconnecting to {} (attempt {attempts}): {err:#}; next in {delay:?}",
                self.addr
            );
            let deadline = tokio::time::Instant::now() + delay;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    c = self.cmds.recv(), if self.cmds_open => match c {
                        None => self.cmds_open = false,
                        Some(Command::Disconnect(reply)) => {
                            let _ = reply.send(Ok(()));
                            return Ok(None);
                        }
                        Some(cmd) => self.groups.offline(cmd),
                    },
                    () = self.events.closed() => return Ok(None),
                }
            }
            delay = (delay * 2).min(self.policy.max_delay);
        }
    }

    /// One connection attempt with the re-joins.
    async fn attempt(&self) -> Result<Mailbox, Error> {
        let mut mb = Mailbox::connect_with(&self.addr, &self.opts).await?;
        for g in &self.groups.list {
            mb.join(g).await?;
        }
        Ok(mb)
    }
}

/// Serves one request while connected; `Some` if the session phase ends.
async fn serve_command(
    groups: &mut Groups,
    tx: &mut MailboxSender,
    cmd: Option<Command>,
    cmds_open: &mut bool,
) -> Option<Ended> {
    match cmd {
        None => {
            *cmds_open = false;
            None
        }
        Some(Command::Disconnect(reply)) => {
            let _ = reply.send(tx.disconnect_ref().await);
            Some(Ended::Stop)
        }
        Some(cmd) => groups.apply(tx, cmd).await.err().map(Ended::Lost),
    }
}

impl Groups {
    /// Carries out a join, leave or multicast; `Err` if the connection failed doing it.
    async fn apply(&mut self, tx: &mut MailboxSender, cmd: Command) -> Result<(), Error> {
        match cmd {
            Command::Join(g, reply) => {
                let r = tx.join(&g).await;
                self.membership_request(r, reply, &g, true)
            }
            Command::Leave(g, reply) => {
                let r = tx.leave(&g).await;
                self.membership_request(r, reply, &g, false)
            }
            Command::Multicast {
                service,
                groups,
                mess_type,
                body,
                reply,
            } => {
                let names: Vec<&str> = groups.iter().map(String::as_str).collect();
                match tx
                    .multigroup_multicast(service, &names, mess_type, &body)
                    .await
                {
                    Err(e) if is_connection_error(&e) => {
                        let _ = reply.send(Err(Error::ConnectionClosed(None)));
                        Err(e)
                    }
                    r => {
                        let _ = reply.send(r);
                        Ok(())
                    }
                }
            }
            // Handled by the caller.
            Command::Disconnect(reply) => {
                let _ = reply.send(Ok(()));
                Ok(())
            }
        }
    }

    /// Answers a join or leave: a bad group name is the caller's error; a lost connection is
    /// not (the request is remembered and takes effect on reconnection).
    fn membership_request(
        &mut self,
        r: Result<(), Error>,
        reply: oneshot::Sender<Result<(), Error>>,
        group: &str,
        join: bool,
    ) -> Result<(), Error> {
        match r {
            Ok(()) => {
                self.remember(group, join);
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Err(e) if is_connection_error(&e) => {
                self.remember(group, join);
                let _ = reply.send(Ok(()));
                Err(e)
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Ok(())
            }
        }
    }

    fn remember(&mut self, group: &str, join: bool) {
        if join {
            if !self.list.iter().any(|g| g == group) {
                self.list.push(group.to_owned());
            }
        } else {
            self.list.retain(|g| g != group);
        }
        self.shared.groups.lock().clone_from(&self.list);
    }

    /// A request while disconnected.
    fn offline(&mut self, cmd: Command) {
        match cmd {
            Command::Join(g, reply) | Command::Leave(g, reply)
                if !GroupName::is_valid_for_client(g.as_bytes()) =>
            {
                let _ = reply.send(Err(Error::IllegalGroup(g)));
            }
            Command::Join(g, reply) => {
                self.remember(&g, true);
                let _ = reply.send(Ok(()));
            }
            Command::Leave(g, reply) => {
                self.remember(&g, false);
                let _ = reply.send(Ok(()));
            }
            Command::Multicast { reply, .. } => {
                let _ = reply.send(Err(Error::ConnectionClosed(None)));
            }
            Command::Disconnect(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }
}
