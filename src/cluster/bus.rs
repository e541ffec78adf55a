//! The bus as the cluster code sees it: join, leave, AGREED multicast to groups, receive.
//!
//! [`Bus`] is implemented by [`MemConn`] (an in-memory hub with one total order across all
//! groups, used by transcript and simulation tests and by single-process demos) and by the
//! adapter over the `mbus` client library. Every multicast is AGREED: all receivers of two
//! messages deliver them in the same order, and membership changes are delivered in that
//! same order.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Something delivered by the bus, in total order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A multicast message.
    Message {
        /// Private group name of the sender (`#name#daemon`).
        sender: String,
        /// Groups it was sent to.
        groups: Vec<String>,
        /// Application message type (Spread `mess_type`).
        msg_type: i16,
        /// Body.
        payload: Bytes,
    },
    /// New regular membership of a group this connection belongs to.
    Membership {
        /// The group.
        group: String,
        /// Private names of the members, in the agreed order.
        members: Vec<String>,
    },
    /// The connection to the daemon is gone.
    Disconnected,
}

/// A bus request from the cluster cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAction {
    /// Join a group.
    Join(String),
    /// Leave a group.
    Leave(String),
    /// AGREED multicast.
    Multicast {
        /// Destination groups (named groups or private groups).
        groups: Vec<String>,
        /// Message type.
        msg_type: i16,
        /// Body.
        payload: Bytes,
    },
}

/// Errors from a bus connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The connection is closed.
    #[error("not connected to the bus")]
    Disconnected,
    /// The daemon refused the request.
    #[error("bus request refused: {0}")]
    Refused(String),
}

/// A connection to a Spread-compatible bus.
pub trait Bus: Send {
    /// This connection's private group name (`#name#daemon`).
    fn private_name(&self) -> &str;
    /// Name of the daemon this connection is attached to (shown by `info`).
    fn daemon(&self) -> String;
    /// Carries out one action (join, leave or AGREED multicast).
    fn act(&mut self, action: BusAction) -> impl Future<Output = Result<(), BusError>> + Send;
    /// Next delivered event; `None` once the connection is closed. Must be cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<BusEvent>> + Send;
}

#[derive(Debug, Default)]
struct Hub {
    conns: BTreeMap<String, mpsc::UnboundedSender<BusEvent>>,
    groups: BTreeMap<String, Vec<String>>,
    delivered: u64,
}

impl Hub {
    fn announce(&mut self, group: &str) {
        let members = self.groups.get(group).cloned().unwrap_or_default();
        for m in &members {
            if let Some(tx) = self.conns.get(m) {
                let _ = tx.send(BusEvent::Membership {
                    group: group.to_string(),
                    members: members.clone(),
                });
            }
        }
        self.delivered += 1;
    }

    fn leave_all(&mut self, name: &str) {
        let groups: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, m)| m.iter().any(|x| x == name))
            .map(|(g, _)| g.clone())
            .collect();
        for g in groups {
            if let Some(m) = self.groups.get_mut(&g) {
                m.retain(|x| x != name);
                if m.is_empty() {
                    self.groups.remove(&g);
                } else {
                    self.announce(&g);
                }
            }
        }
    }
}

/// An in-memory bus: every operation happens under one lock, so all deliveries (messages and
/// membership changes, across all groups) form one total order.
#[derive(Debug, Clone, Default)]
pub struct MemHub {
    inner: Arc<Mutex<Hub>>,
}

impl MemHub {
    /// A new, empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects a client with private name `#name#daemon`; fails if the name is taken.
    pub fn connect(&self, name: &str, daemon: &str) -> Result<MemConn, BusError> {
        let private = format!("#{name}#{daemon}");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hub = self.inner.lock();
        if hub.conns.contains_key(&private) {
            return Err(BusError::Refused(format!(
                "private name {private} is not unique"
            )));
        }
        hub.conns.insert(private.clone(), tx);
        Ok(MemConn {
            hub: self.clone(),
            private,
            daemon: daemon.into(),
            rx,
        })
    }

    /// Disconnects `private` as if its process died (members see it leave).
    pub fn kill(&self, private: &str) {
        let mut hub = self.inner.lock();
        if let Some(tx) = hub.conns.remove(private) {
            let _ = tx.send(BusEvent::Disconnected);
        }
        hub.leave_all(private);
    }

    /// Members of `group` in agreed order.
    pub fn members(&self, group: &str) -> Vec<String> {
        self.inner
            .lock()
            .groups
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Number of deliveries made so far (messages and membership changes).
    pub fn delivered(&self) -> u64 {
        self.inner.lock().delivered
    }

    fn act(&self, from: &str, action: BusAction) -> Result<(), BusError> {
        let mut hub = self.inner.lock();
        if !hub.conns.contains_key(from) {
            return Err(BusError::Disconnected);
        }
        match action {
            BusAction::Join(g) => {
                let m = hub.groups.entry(g.clone()).or_default();
                if !m.iter().any(|x| x == from) {
                    m.push(from.to_string());
                    hub.announce(&g);
                }
            }
            BusAction::Leave(g) => {
                if let Some(m) = hub.groups.get_mut(&g) {
                    let before = m.len();
                    m.retain(|x| x != from);
                    let changed = m.len() != before;
                    if m.is_empty() {
                        hub.groups.remove(&g);
                    } else if changed {
                        hub.announce(&g);
                    }
                }
            }
            BusAction::Multicast {
                groups,
                msg_type,
                payload,
            } => {
                let mut targets: Vec<String> = Vec::new();
                for g in &groups {
                    if hub.conns.contains_key(g) {
                        targets.push(g.clone());
                    } else if let Some(m) = hub.groups.get(g) {
                        targets.extend(m.iter().cloned());
                    }
                }
                let mut seen = std::collections::BTreeSet::new();
                targets.retain(|t| seen.insert(t.clone()));
                for t in targets {
                    if let Some(tx) = hub.conns.get(&t) {
                        let _ = tx.send(BusEvent::Message {
                            sender: from.to_string(),
                            groups: groups.clone(),
                            msg_type,
                            payload: payload.clone(),
                        });
                    }
                }
                hub.delivered += 1;
            }
        }
        Ok(())
    }
}

/// One connection to a [`MemHub`].
#[derive(Debug)]
pub struct MemConn {
    hub: MemHub,
    private: String,
    daemon: String,
    rx: mpsc::UnboundedReceiver<BusEvent>,
}

impl MemConn {
    /// Carries out an action synchronously.
    pub fn act_now(&self, action: BusAction) -> Result<(), BusError> {
        self.hub.act(&self.private, action)
    }

    /// The next already-delivered event, without waiting.
    pub fn try_recv(&mut self) -> Option<BusEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for MemConn {
    fn drop(&mut self) {
        let mut hub = self.hub.inner.lock();
        if hub.conns.remove(&self.private).is_some() {
            hub.leave_all(&self.private);
        }
    }
}

impl Bus for MemConn {
    fn private_name(&self) -> &str {
        &self.private
    }

    fn daemon(&self) -> String {
        format!("memory:{}", self.daemon)
    }

    fn act(&mut self, action: BusAction) -> impl Future<Output = Result<(), BusError>> + Send {
        let r = self.act_now(action);
        std::future::ready(r)
    }

    fn recv(&mut self) -> impl Future<Output = Option<BusEvent>> + Send {
        self.rx.recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_order_and_membership() {
        let hub = MemHub::new();
        let mut a = hub.connect("a", "d1").unwrap();
        let mut b = hub.connect("b", "d2").unwrap();
        assert!(hub.connect("a", "d1").is_err());
        a.act_now(BusAction::Join("g".into())).unwrap();
        b.act_now(BusAction::Join("g".into())).unwrap();
        let m = |p: &[u8]| BusAction::Multicast {
            groups: vec!["g".into()],
            msg_type: 1,
            payload: Bytes::copy_from_slice(p),
        };
        a.act_now(m(b"1")).unwrap();
        b.act_now(m(b"2")).unwrap();
        // Private group and non-member send.
        let c = hub.connect("c", "d1").unwrap();
        c.act_now(BusAction::Multicast {
            groups: vec!["#b#d2".into()],
            msg_type: 2,
            payload: Bytes::new(),
        })
        .unwrap();
        let drain = |x: &mut MemConn| std::iter::from_fn(|| x.try_recv()).collect::<Vec<_>>();
        let ea = drain(&mut a);
        let eb = drain(&mut b);
        assert_eq!(ea.len(), 4); // join a, join b, 1, 2
        assert_eq!(eb.len(), 4); // join b, 1, 2, private
        assert_eq!(ea[2..], eb[1..3]);
        drop(b);
        assert_eq!(
            drain(&mut a),
            vec![BusEvent::Membership {
                group: "g".into(),
                members: vec!["#a#d1".into()]
            }]
        );
        hub.kill("#a#d1");
        assert_eq!(drain(&mut a), vec![BusEvent::Disconnected]);
        assert!(hub.members("g").is_empty());
    }
}
