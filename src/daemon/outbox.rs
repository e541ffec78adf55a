//! Sending the ring's datagrams: batched with `sendmmsg(2)`, never dropped because the socket
//! buffer is momentarily full.
//!
//! The core task collects every datagram of one step ([`Outbox::push`]) and sends them with
//! [`Outbox::flush`], without waiting: one `sendmmsg(2)` call per [`MAX_BATCH`] datagrams
//! (rustix's safe wrapper; `unsafe` is forbidden in this workspace), or one `sendto` each
//! where `sendmmsg` does not exist or batching is off ([`Outbox::new`]). Runs of datagrams of
//! one size to one address leave in one segmented `sendmsg(2)` instead ([`super::gso`]).
//!
//! The socket is not registered with the runtime: a socket that is always watched for
//! writability wakes the event loop after every send (the kernel reports an edge each time a
//! sent datagram frees buffer space), an extra `epoll_wait` per ring step for nothing. When
//! the socket refuses more (`WouldBlock`: the buffer is full) the rest goes to a backlog that
//! a small task sends, in order, as soon as the socket is writable again (it watches a second
//! handle on the socket for writability only while it waits); while the backlog is not
//! empty, new datagrams queue behind it. The backlog holds at most [`MAX_BACKLOG`]
//! datagrams: beyond it new ones are dropped and counted ([`OutStats::overflow_drops`]), a
//! loss the ring recovers from by retransmission. A datagram the kernel rejects for any other
//! reason (e.g. no route) is skipped and counted ([`OutStats::errors`]).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tracing::{info, trace};

use super::gso;

/// Most datagrams per `sendmmsg(2)` call.
pub(crate) const MAX_BATCH: usize = 64;
/// Most datagrams waiting for the socket to become writable.
pub(crate) const MAX_BACKLOG: usize = 8192;

/// Counters of an [`Outbox`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutStats {
    /// Datagrams handed to the kernel.
    pub(crate) sent: u64,
    /// Send system calls that sent at least one datagram.
    pub(crate) syscalls: u64,
    /// Datagrams that had to wait in the backlog for the socket to become writable.
    pub(crate) deferred: u64,
    /// Datagrams dropped because the backlog was full.
    pub(crate) overflow_drops: u64,
    /// Datagrams the kernel rejected (skipped).
    pub(crate) errors: u64,
    /// Datagrams that left in segmented sends (runs of one size to one address).
    pub(crate) segmented: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    syscalls: AtomicU64,
    deferred: AtomicU64,
    overflow_drops: AtomicU64,
    errors: AtomicU64,
    segmented: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    /// Non-blocking, not registered with the runtime.
    sock: UdpSocket,
    backlog: Mutex<VecDeque<(SocketAddr, Bytes)>>,
    wake: Notify,
    counters: Counters,
    batching: bool,
    /// Segmentation offload: on until the kernel refuses it.
    gso: AtomicBool,
}

/// The send side of the ring socket. See the module documentation.
#[derive(Debug)]
pub(crate) struct Outbox {
    shared: Arc<Shared>,
    batch: Vec<(SocketAddr, Bytes)>,
    task: Option<tokio::task::AbortHandle>,
}

impl Outbox {
    /// Sends from `sock` (set non-blocking here); `batching`: use `sendmmsg(2)` (Linux)
    /// rather than one `sendto` per datagram; `gso`: send runs of one size to one address
    /// segmented ([`super::gso`]). Starts the backlog task when called inside a tokio runtime
    /// (without one, a datagram refused with `WouldBlock` stays in the backlog until a later
    /// flush).
    pub(crate) fn new(sock: UdpSocket, batching: bool, gso: bool) -> Self {
        if let Err(e) = sock.set_nonblocking(true) {
            info!(error = %e, "ring send socket: O_NONBLOCK refused");
        }
        let shared = Arc::new(Shared {
            sock,
            backlog: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            counters: Counters::default(),
            batching: batching && cfg!(target_os = "linux"),
            gso: AtomicBool::new(gso && cfg!(target_os = "linux")),
        });
        let task = tokio::runtime::Handle::try_current()
            .ok()
            .map(|h| h.spawn(drain_backlog(shared.clone())).abort_handle());
        Self {
            shared,
            batch: Vec::new(),
            task,
        }
    }

    /// Queues one datagram for the next [`Outbox::flush`].
    pub(crate) fn push(&mut self, to: SocketAddr, bytes: Bytes) {
        self.batch.push((to, bytes));
    }

    /// Datagrams were pushed since the last flush.
    pub(crate) fn queued(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Sends everything pushed since the last flush (see the module documentation).
    pub(crate) fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let s = &*self.shared;
        if s.gso.load(Ordering::Relaxed) {
            gso::gather_runs(&mut self.batch);
        }
        let mut backlog = s.backlog.lock();
        let mut start = 0;
        if backlog.is_empty() {
            while start < self.batch.len() {
                let end = (start + MAX_BATCH).min(self.batch.len());
                match send_some(s, &self.batch[start..end]) {
                    Ok(n) => start += n.max(1),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        trace!(error = %e, to = %self.batch[start].0, "ring send failed");
                        s.counters.errors.fetch_add(1, Ordering::Relaxed);
                        start += 1;
                    }
                }
            }
        }
        let rest = self.batch.len().saturating_sub(start);
        if rest > 0 {
            let room = MAX_BACKLOG.saturating_sub(backlog.len());
            let keep = rest.min(room);
            backlog.extend(self.batch.drain(start..start + keep));
            let c = &s.counters;
            c.deferred.fetch_add(keep as u64, Ordering::Relaxed);
            c.overflow_drops
                .fetch_add((rest - keep) as u64, Ordering::Relaxed);
            s.wake.notify_one();
        }
        self.batch.clear();
    }

    /// Counters.
    pub(crate) fn stats(&self) -> OutStats {
        let c = &self.shared.counters;
        OutStats {
            sent: c.sent.load(Ordering::Relaxed),
            syscalls: c.syscalls.load(Ordering::Relaxed),
            deferred: c.deferred.load(Ordering::Relaxed),
            overflow_drops: c.overflow_drops.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            segmented: c.segmented.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Sends a prefix of `items` without waiting; returns how many were sent (at least 1), or the
/// error of the first one (`WouldBlock` when the socket is not writable). A run of one size
/// to one address at the start leaves segmented; otherwise the datagrams up to the next such
/// run leave in one `sendmmsg`.
fn send_some(s: &Shared, items: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if s.gso.load(Ordering::Relaxed) {
        let run = gso::run_len(items);
        if run > 1 {
            match gso::send_run(&s.sock, &items[..run]) {
                Ok(n) => {
                    let c = &s.counters;
                    c.sent.fetch_add(n as u64, Ordering::Relaxed);
                    c.segmented.fetch_add(n as u64, Ordering::Relaxed);
                    c.syscalls.fetch_add(1, Ordering::Relaxed);
                    return Ok(n);
                }
                Err(e) if gso::refused(&e) => {
                    info!(error = %e, "segmented UDP sends refused here; ring datagrams go one by one");
                    s.gso.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    }
    let gso = s.gso.load(Ordering::Relaxed);
    // Up to the next run that could leave segmented.
    let end = (1..items.len())
        .find(|&i| gso && gso::run_len(&items[i..]) > 1)
        .unwrap_or(items.len());
    let items = &items[..end];
    let n = send_plain(s, items)?;
    let c = &s.counters;
    c.sent.fetch_add(n as u64, Ordering::Relaxed);
    c.syscalls.fetch_add(1, Ordering::Relaxed);
    Ok(n)
}

/// `items` in one `sendmmsg(2)` (Linux, batching on) or the first of them with `sendto`.
fn send_plain(s: &Shared, items: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if s.batching && items.len() > 1 {
        return sendmmsg(&s.sock, items);
    }
    let (to, bytes) = items.first().ok_or(io::ErrorKind::InvalidInput)?;
    s.sock.send_to(bytes, to)?;
    Ok(1)
}

#[cfg(target_os = "linux")]
fn sendmmsg(sock: &UdpSocket, items: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags};
    let addrs: Vec<_> = items.iter().map(|(a, _)| a.as_any()).collect();
    let iovs: Vec<[io::IoSlice<'_>; 1]> =
        items.iter().map(|(_, b)| [io::IoSlice::new(b)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = items
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((a, iov), c)| MMsgHdr::new_with_addr(a, iov, c))
        .collect();
    Ok(rustix::net::sendmmsg(sock, &mut msgs, SendFlags::empty())?)
}

/// Waits until `sock` is writable, through a second handle on it watched for writability
/// only (registered for this wait, dropped after it).
async fn writable(sock: &UdpSocket) -> io::Result<()> {
    // `with_interest` is deprecated because it cannot check that the descriptor outlives the
    // registration; here the `AsyncFd` owns the handle that owns the descriptor.
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(sock.try_clone()?, Interest::WRITABLE)?;
    fd.writable().await?.retain_ready();
    Ok(())
}

/// Sends the backlog, in order, whenever the socket is writable.
async fn drain_backlog(s: Arc<Shared>) {
    loop {
        s.wake.notified().await;
        loop {
            if s.backlog.lock().is_empty() {
                break;
            }
            if let Err(e) = writable(&s.sock).await {
                trace!(error = %e, "ring socket: waiting to write failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            let mut q = s.backlog.lock();
            let chunk: Vec<(SocketAddr, Bytes)> = q.iter().take(MAX_BATCH).cloned().collect();
            match send_some(&s, &chunk) {
                Ok(n) => {
                    let n = n.min(q.len());
                    q.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    trace!(error = %e, "ring send failed");
                    s.counters.errors.fetch_add(1, Ordering::Relaxed);
                    q.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn pair() -> (UdpSocket, tokio::net::UdpSocket) {
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        (tx, rx)
    }

    /// Puts `items` in `o`'s backlog, as if the socket had refused them.
    fn fill_backlog(o: &Outbox, items: impl IntoIterator<Item = (SocketAddr, Bytes)>) {
        o.shared.backlog.lock().extend(items);
    }

    async fn receive(rx: &tokio::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048];
        while got.len() < n {
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv_from(&mut buf)).await;
            let (len, _) = r.expect("datagram in time").unwrap();
            got.push(buf[..len].to_vec());
        }
        got
    }

    /// A step's datagrams leave at once, in order, in as few calls as batching allows.
    #[tokio::test]
    async fn a_step_leaves_at_once_and_in_order() {
        for batching in [true, false] {
            let (tx, rx) = pair().await;
            let to = rx.local_addr().unwrap();
            let mut o = Outbox::new(tx, batching, false);
            for i in 0..200u16 {
                o.push(to, Bytes::copy_from_slice(&i.to_be_bytes()));
            }
            o.flush();
            let got = receive(&rx, 200).await;
            let want: Vec<Vec<u8>> = (0..200u16).map(|i| i.to_be_bytes().to_vec()).collect();
            assert_eq!(got, want, "batching {batching}");
            let s = o.stats();
            assert_eq!(
                (s.sent, s.deferred, s.overflow_drops, s.errors),
                (200, 0, 0, 0)
            );
            let calls = if batching {
                200u64.div_ceil(MAX_BATCH as u64)
            } else {
                200
            };
            assert_eq!(s.syscalls, calls, "{s:?}");
        }
    }

    /// Datagrams that wait in the backlog leave in order once the socket is writable, and a
    /// step sent meanwhile queues behind them: nothing lost, nothing overtaken.
    #[tokio::test]
    async fn the_backlog_leaves_first_and_in_order() {
        let (tx, rx) = pair().await;
        let to = rx.local_addr().unwrap();
        let mut o = Outbox::new(tx, true, false);
        fill_backlog(
            &o,
            (0..100u16).map(|i| (to, Bytes::copy_from_slice(&i.to_be_bytes()))),
        );
        for i in 100..110u16 {
            o.push(to, Bytes::copy_from_slice(&i.to_be_bytes()));
        }
        // Behind a backlog, a step waits its turn (and wakes the backlog task).
        o.flush();
        assert_eq!(o.stats().deferred, 10);
        let got = receive(&rx, 110).await;
        let want: Vec<Vec<u8>> = (0..110u16).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(got, want);
        assert!(o.shared.backlog.lock().is_empty());
        assert_eq!(o.stats().sent, 110);
    }

    /// Runs of one size leave segmented, and arrive as the datagrams one `sendto` each would
    /// have sent: at a plain socket (as a 5.0.1 peer reads) and, coalesced and cut apart, at
    /// one of ours.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn segmented_runs_arrive_as_the_same_datagrams() {
        let sizes: Vec<usize> = [
            vec![1400; 50],
            vec![700],
            vec![90; 3],
            vec![1000; 20],
            vec![5],
        ]
        .concat();
        let want: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|k| (i * 7 + k) as u8).collect())
            .collect();
        let gro = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        gso::enable_receive(&gro).unwrap();
        for coalescing in [false, true] {
            let (tx, plain) = pair().await;
            let rx = if coalescing { &gro } else { &plain };
            socket2::SockRef::from(rx)
                .set_recv_buffer_size(1 << 20)
                .unwrap();
            let to = rx.local_addr().unwrap();
            let mut o = Outbox::new(tx, true, true);
            for d in &want {
                o.push(to, Bytes::copy_from_slice(d));
            }
            o.flush();
            let mut got = Vec::new();
            let mut reads = 0;
            if coalescing {
                let mut r = gso::Receiver::new(4);
                for _ in 0..1000 {
                    if got.len() >= want.len() {
                        break;
                    }
                    rx.readable().await.unwrap();
                    if let Ok(n) = rx.try_io(Interest::READABLE, || {
                        r.recv(rx, |_, d| got.push(d.to_vec()))
                    }) {
                        reads += n;
                    }
                }
                // The kernel kept each run one buffer up to our socket.
                assert!(reads <= 4, "{reads} reads for {} datagrams", got.len());
            } else {
                got = receive(rx, want.len()).await;
            }
            assert_eq!(got.len(), want.len(), "coalescing {coalescing}");
            assert!(got == want, "coalescing {coalescing}: datagrams differ");
            let s = o.stats();
            assert_eq!((s.sent, s.deferred, s.errors), (want.len() as u64, 0, 0));
            // Runs of ≤ 46 × 1 400 bytes (65 000): 46, then 4 and the shorter 700 that ends
            // their run; 3 × 90; 20 × 1 000 and the 5 that ends theirs.
            assert_eq!(s.segmented, want.len() as u64, "{s:?}");
            assert_eq!(s.syscalls, 4, "{s:?}");
        }
    }

    #[tokio::test]
    async fn backlog_overflow_is_counted() {
        let (tx, rx) = pair().await;
        let to = rx.local_addr().unwrap();
        let mut o = Outbox::new(tx, true, false);
        // Pretend the socket is blocked: fill the backlog directly.
        fill_backlog(
            &o,
            std::iter::repeat_n((to, Bytes::from_static(b"x")), MAX_BACKLOG),
        );
        o.push(to, Bytes::from_static(b"y"));
        o.flush();
        assert_eq!(o.stats().overflow_drops, 1);
    }
}
