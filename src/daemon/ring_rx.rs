//! The ring sockets, read by the core task itself (Linux).
//!
//! A datagram used to travel from a receive task per socket through a channel to the core
//! task: per datagram a task wake-up, a channel push and pop, and the receive task's own
//! `select!`. In a ring every token visit is such a datagram, and a forwarding daemon did
//! little else: its CPU per token visit was ~40 % above 5.0.1's with the same system calls.
//! Here the core task waits on the sockets' readiness directly and hands what one
//! `recvmmsg(2)` read ([`super::gso::Receiver`]: coalesced runs cut apart) to the core in
//! the same step. The sockets take turns (a busy data port cannot starve the token port); a
//! read that returns fewer datagrams than it could take emptied its socket, so its
//! readiness is cleared without a read that would only say `EAGAIN`.

use std::io;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tracing::{debug, error, trace};

use super::gso;
use super::session::Packet;

/// One ring socket.
struct Sock {
    fd: AsyncFd<std::net::UdpSocket>,
    token: bool,
    rx: gso::Receiver,
}

/// The ring sockets of a daemon, polled by the core task.
pub(crate) struct RingReader {
    socks: Vec<Sock>,
    /// The socket polled first next time (round robin).
    next: usize,
}

impl RingReader {
    /// Takes the ring sockets (`true`: a token port); UDP GRO on where allowed
    /// ([`gso::enabled_from_env`]). A socket that cannot be polled is logged and left out.
    pub(crate) fn new(socks: Vec<(UdpSocket, bool)>) -> Self {
        let socks = socks
            .into_iter()
            .filter_map(|(sock, token)| {
                if gso::enabled_from_env() {
                    if let Err(e) = gso::enable_receive(&sock) {
                        debug!(error = %e, "UDP_GRO on a ring socket refused; datagrams read one by one");
                    }
                }
                // tokio's `UdpSocket` clears readiness only on `EAGAIN`; an `AsyncFd` guard
                // can clear it after a read that emptied the socket (a datagram arriving
                // meanwhile sets it again: tokio compares readiness ticks). `with_interest`
                // is deprecated because it cannot check that the descriptor outlives the
                // registration; here the `AsyncFd` owns the socket that owns the descriptor
                // (the non-deprecated way needs `unsafe`).
                #[allow(deprecated)]
                let fd = sock
                    .into_std()
                    .and_then(|s| AsyncFd::with_interest(s, tokio::io::Interest::READABLE));
                match fd {
                    Ok(fd) => Some(Sock {
                        fd,
                        token,
                        rx: gso::Receiver::new(if token { 2 } else { 8 }),
                    }),
                    Err(e) => {
                        error!(error = %e, "ring socket cannot be polled; its datagrams are not read");
                        None
                    }
                }
            })
            .collect();
        Self { socks, next: 0 }
    }

    /// Waits until a ring socket has datagrams and reads one batch of them into `out`
    /// (never completes without ring sockets).
    pub(crate) async fn read(&mut self, out: &mut Vec<Packet>) {
        std::future::poll_fn(|cx| self.poll_read(cx, out)).await;
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut Vec<Packet>) -> Poll<()> {
        let n = self.socks.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let Some(s) = self.socks.get_mut(i) else {
                continue;
            };
            // Registers this task's waker with every socket that is not ready.
            let Poll::Ready(ready) = s.fd.poll_read_ready(cx) else {
                continue;
            };
            let mut guard = match ready {
                Ok(g) => g,
                Err(e) => {
                    trace!(error = %e, "ring socket readiness error");
                    continue;
                }
            };
            let (token, slots, rx) = (s.token, s.rx.slots(), &mut s.rx);
            let read = guard.try_io(|sock| {
                rx.recv(sock.get_ref(), |from, d| {
                    let bytes = bytes::Bytes::copy_from_slice(d);
                    out.push(Packet { from, token, bytes });
                })
            });
            match read {
                Ok(Ok(got)) => {
                    if got < slots {
                        guard.clear_ready();
                    }
                    self.next = (i + 1) % n;
                    return Poll::Ready(());
                }
                // ICMP errors on unconnected sockets: read again (soon, not in this poll).
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Anything else: wait for the socket's next readiness (no spinning on a
                // persistent error).
                Ok(Err(e)) => {
                    trace!(error = %e, "ring recv error");
                    guard.clear_ready();
                }
                // Not readable after all: `try_io` cleared the readiness.
                Err(_would_block) => {}
            }
            drop(guard);
            // Readiness cleared: poll again so this task's waker is registered (or, if a
            // datagram came meanwhile, come back for it).
            if s.fd.poll_read_ready(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }
}
