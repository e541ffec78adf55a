//! The ring sockets, read by the core task itself (Linux).
//!
//! A datagram used to travel from a receive task per socket through a channel to the core
//! task: per datagram a task wake-up, a channel push and pop, and the receive task's own
//! `select!`. In a ring every token visit is such a datagram, and a forwarding daemon did
//! little else: its CPU per token visit was ~40 % above 5.0.1's with the same system calls.
//! Here the core task waits on the sockets' readiness directly and hands what one
//! `recvmmsg(2)` read ([`super::gso::Receiver`]: coalesced runs cut apart) to the core in
//! the same step. Each step reads every ready socket once, data sockets before token
//! sockets: a token that came with the packets it announces is handled after them (5.0.1
//! serves its data channel first too), not taken for news of lost packets — at 8 daemons
//! reading them in turn made a third of the round trips ask for a retransmission of packets
//! that were already waiting in the data socket. No socket can starve another. A read that
//! returns fewer datagrams than it could take emptied its socket, so its readiness is
//! cleared without a read that would only say `EAGAIN`.

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

/// The ring sockets of a daemon, polled by the core task: data sockets, then token sockets.
pub(crate) struct RingReader {
    socks: Vec<Sock>,
}

impl RingReader {
    /// Takes the ring sockets (`true`: a token port); UDP GRO on where allowed
    /// ([`gso::enabled_from_env`]). A socket that cannot be polled is logged and left out.
    pub(crate) fn new(mut socks: Vec<(UdpSocket, bool)>) -> Self {
        // Data sockets first (stable: their own order is kept).
        socks.sort_by_key(|(_, token)| *token);
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
        Self { socks }
    }

    /// Waits until a ring socket has datagrams and reads one batch of them into `out`
    /// (never completes without ring sockets).
    pub(crate) async fn read(&mut self, out: &mut Vec<Packet>) {
        std::future::poll_fn(|cx| self.poll_read(cx, out)).await;
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut Vec<Packet>) -> Poll<()> {
        // Every ready socket gives one batch, data sockets first (`new` puts them first): a
        // token that arrived with the packets it announces is handled after them, as 5.0.1
        // handles its data channel before the token channel, instead of asking for a
        // retransmission of packets already here. A busy socket cannot starve another one.
        let mut any = false;
        for s in &mut self.socks {
            any |= read_ready(s, cx, out);
        }
        if any {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Reads one batch from `s` into `out` if it is ready (true if it read something);
/// otherwise registers the task's waker with it.
fn read_ready(s: &mut Sock, cx: &mut Context<'_>, out: &mut Vec<Packet>) -> bool {
    // Registers this task's waker with the socket if it is not ready.
    let Poll::Ready(ready) = s.fd.poll_read_ready(cx) else {
        return false;
    };
    let mut guard = match ready {
        Ok(g) => g,
        Err(e) => {
            trace!(error = %e, "ring socket readiness error");
            return false;
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
            return true;
        }
        // ICMP errors on unconnected sockets: read again (soon, not in this poll).
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            cx.waker().wake_by_ref();
            return false;
        }
        // Anything else: wait for the socket's next readiness (no spinning on a persistent
        // error).
        Ok(Err(e)) => {
            trace!(error = %e, "ring recv error");
            guard.clear_ready();
        }
        // Not readable after all: `try_io` cleared the readiness.
        Err(_would_block) => {}
    }
    drop(guard);
    // Readiness cleared: poll again so this task's waker is registered (or, if a datagram
    // came meanwhile, come back for it).
    if s.fd.poll_read_ready(cx).is_ready() {
        cx.waker().wake_by_ref();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token and a data packet both waiting: one read hands the data packet over first,
    /// whatever order they came in and the sockets were given in.
    #[tokio::test]
    async fn waiting_data_is_handed_over_before_a_waiting_token() {
        let data = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let token = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"token", token.local_addr().unwrap()).unwrap();
        tx.send_to(b"data", data.local_addr().unwrap()).unwrap();
        // Both queued before the reader looks (loopback delivers within the send call).
        let mut r = RingReader::new(vec![(token, true), (data, false)]);
        let mut out = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), r.read(&mut out))
            .await
            .expect("readable");
        let got: Vec<(bool, &[u8])> = out.iter().map(|p| (p.token, &p.bytes[..])).collect();
        assert_eq!(got, [(false, &b"data"[..]), (true, &b"token"[..])]);
    }
}
