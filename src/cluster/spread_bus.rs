//! [`Bus`] over the `mbus` client library: a connection to any Spread 5.0.1–compatible
//! daemon (ours or the real one). Multicasts are AGREED. A pump task turns received messages
//! into [`BusEvent`]s so that [`Bus::recv`] is cancel-safe.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use super::bus::{Bus, BusAction, BusError, BusEvent};
use crate::client::{Address, ConnectOptions, Mailbox, MailboxSender, Message, ServiceType};

/// Depth of the receive queue between the pump task and the owner.
const QUEUE: usize = 1024;

/// A bus connection through the client library.
#[derive(Debug)]
pub struct SpreadBus {
    tx: MailboxSender,
    rx: mpsc::Receiver<BusEvent>,
    private: String,
    daemon: String,
    pump: tokio::task::JoinHandle<()>,
}

impl SpreadBus {
    /// Connects to `daemon` (`4803`, `4803@host`, or a socket path) with private name `name`.
    pub async fn connect(daemon: &str, name: &str, timeout: Duration) -> Result<Self, BusError> {
        let addr: Address = daemon
            .parse()
            .map_err(|e| BusError::Refused(format!("{daemon}: {e}")))?;
        let mut opts = ConnectOptions::new(name, true);
        opts.timeout = Some(timeout);
        let mb = Mailbox::connect_with(&addr, &opts)
            .await
            .map_err(|e| BusError::Refused(format!("{daemon}: {e}")))?;
        Ok(Self::attach(mb, daemon))
    }

    /// A daemon embedded in this process ([`crate::daemon::RunningDaemon`]): a session over
    /// an in-memory pipe, no socket; `daemon` names it in status output.
    pub async fn connect_in_process(
        core: &crate::daemon::CoreHandle,
        daemon: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, BusError> {
        let mut opts = ConnectOptions::new(name, true);
        opts.timeout = Some(timeout);
        let mb = core
            .connect_mailbox(&opts)
            .await
            .map_err(|e| BusError::Refused(format!("{daemon}: {e}")))?;
        Ok(Self::attach(mb, daemon))
    }

    /// The bus over a connected mailbox.
    fn attach(mb: Mailbox, daemon: &str) -> Self {
        let private = mb.private_group().to_string();
        let (tx, mut rxh) = mb.split();
        let (etx, rx) = mpsc::channel(QUEUE);
        let pump = tokio::spawn(async move {
            loop {
                let ev = match rxh.receive().await {
                    Ok(Message::Data(d)) => BusEvent::Message {
                        sender: d.sender,
                        groups: d.groups,
                        msg_type: d.mess_type,
                        payload: d.body,
                    },
                    Ok(Message::Membership(m)) => BusEvent::Membership {
                        group: m.group,
                        members: m.members,
                    },
                    Ok(Message::Reject(r)) => {
                        tracing::warn!("bus rejected a message to {:?}", r.groups);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!("bus connection lost: {e}");
                        let _ = etx.send(BusEvent::Disconnected).await;
                        return;
                    }
                };
                if etx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        Self {
            tx,
            rx,
            private,
            daemon: daemon.to_string(),
            pump,
        }
    }
}

impl Drop for SpreadBus {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl Bus for SpreadBus {
    fn private_name(&self) -> &str {
        &self.private
    }

    fn daemon(&self) -> String {
        self.daemon.clone()
    }

    async fn act(&mut self, action: BusAction) -> Result<(), BusError> {
        let r = match action {
            BusAction::Join(g) => self.tx.join(&g).await,
            BusAction::Leave(g) => self.tx.leave(&g).await,
            BusAction::Multicast {
                groups,
                msg_type,
                payload,
            } => {
                let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
                if refs.len() == 1 {
                    self.tx
                        .multicast(ServiceType::AGREED, refs[0], msg_type, &payload)
                        .await
                        .map(|_| ())
                } else {
                    self.tx
                        .multigroup_multicast(ServiceType::AGREED, &refs, msg_type, &payload)
                        .await
                        .map(|_| ())
                }
            }
        };
        r.map_err(|e| BusError::Refused(e.to_string()))
    }

    fn recv(&mut self) -> impl Future<Output = Option<BusEvent>> + Send {
        self.rx.recv()
    }
}
