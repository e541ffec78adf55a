//! The two tasks of one client connection: a reader that hands what it reads to the core
//! task, and a writer that writes what the core queued for the connection. Neither decides
//! anything; both are bounded.
//!
//! * **Reader.** Reads at most [`READ_CHUNK`] bytes at a time. Before handing a chunk to the
//!   core it waits until fewer than [`CHUNKS_PER_SESSION`] of its chunks are queued, then for
//!   room in the input budget shared by all sessions ([`INPUT_BUDGET`] bytes, a fair FIFO
//!   semaphore). The core's queue therefore holds at most two chunks of a flooding client,
//!   and a new client's handshake waits behind those, not behind the flood; the queue's bytes
//!   stay within the budget however many clients flood. Both are given back once the core
//!   has handled the chunk.
//! * **Writer.** Writes everything queued with vectored writes ([`MAX_IOVECS`] slices per
//!   call) and reports on the progress channel how many messages each call completed and
//!   when the socket refused bytes, so the core applies `MaxSessionMessages` to the
//!   messages the socket refused (as 5.0.1). It watches its queue while waiting for the
//!   socket, so a `Close` takes effect at once: a short queue (a reject byte, the last
//!   replies; [`CLOSE_FLUSH_MAX`]) still goes out within [`CLOSE_LINGER`], a long one (a
//!   killed slow reader's) is dropped but for what the socket takes without waiting; then
//!   the socket is shut down and closed and the reader stopped. A killed slow reader's
//!   socket never outlives its session by more than [`CLOSE_LINGER`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};
use spread::session::SessionId;
use spread::SessionInput as Input;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tracing::{debug, trace};

/// Most bytes handed to the core per read (the real daemon reads 1432-byte pieces).
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// First read size of a connection; doubles while reads fill it, up to [`READ_CHUNK`]
/// (an idle session keeps a small buffer).
pub(crate) const FIRST_READ: usize = 4 * 1024;
/// Most bytes read from all clients and not yet handled by the core.
pub(crate) const INPUT_BUDGET: usize = 16 * READ_CHUNK;
/// Most chunks of one session waiting for the core (two: the next is ready when the core
/// finishes one).
pub(crate) const CHUNKS_PER_SESSION: usize = 2;
/// Most buffers passed to one vectored write.
pub(crate) const MAX_IOVECS: usize = 64;
/// A session the daemon closes with at most this many bytes queued (a reject byte, the last
/// replies) gets them written, waiting at most [`CLOSE_LINGER`] for the socket; a longer
/// queue (a killed slow reader's) is dropped at once, but for what the socket takes
/// without waiting.
pub(crate) const CLOSE_FLUSH_MAX: usize = 4 * 1024;
/// See [`CLOSE_FLUSH_MAX`].
pub(crate) const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// What the reader hands the core.
#[derive(Debug)]
pub(crate) enum ReadEvent {
    /// Bytes read, holding their share of [`INPUT_BUDGET`] until dropped.
    Bytes {
        /// From whom.
        session: SessionId,
        /// What.
        data: Bytes,
        /// Room in the session's queue and in the shared budget, given back when dropped
        /// (once the core has handled `data`).
        room: Room,
    },
    /// The peer closed (or the read failed).
    Closed(SessionId),
}

/// A chunk's place in the queue to the core (see the module documentation).
#[derive(Debug)]
pub(crate) struct Room {
    _session: OwnedSemaphorePermit,
    _budget: OwnedSemaphorePermit,
}

/// What the core asks of a writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Messages to write, in order.
    Data(Vec<Bytes>),
    /// Close now (see the module documentation).
    Close,
}

/// A fresh input budget ([`INPUT_BUDGET`] bytes).
pub(crate) fn input_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(INPUT_BUDGET))
}

/// Reads until the peer closes, handing each read to `send` (which waits for the core's
/// queue); then reports the close.
pub(crate) async fn read_loop<R, F, Fut>(
    id: SessionId,
    mut rd: R,
    budget: Arc<Semaphore>,
    mut send: F,
) where
    R: AsyncRead + Unpin,
    F: FnMut(ReadEvent) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut buf = BytesMut::new();
    let mut want = FIRST_READ;
    let mine = Arc::new(Semaphore::new(CHUNKS_PER_SESSION));
    loop {
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        let n = match rd.read_buf(&mut (&mut buf).limit(want)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        trace!(n, "read");
        want = if n == want {
            (want * 2).min(READ_CHUNK)
        } else {
            FIRST_READ
        };
        let Ok(session_room) = mine.clone().acquire_owned().await else {
            return;
        };
        // n <= READ_CHUNK <= INPUT_BUDGET, so this always completes.
        let Ok(budget_room) = budget.clone().acquire_many_owned(n as u32).await else {
            return;
        };
        let room = Room {
            _session: session_room,
            _budget: budget_room,
        };
        let data = buf.split().freeze();
        if !send(ReadEvent::Bytes {
            session: id,
            data,
            room,
        })
        .await
        {
            return;
        }
    }
    send(ReadEvent::Closed(id)).await;
}

/// Writes what the core queues for session `id` until it closes the session, forgets it
/// (drops the queue's sender) or the connection fails (reported as [`Input::Closed`]).
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    id: SessionId,
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    progress: mpsc::UnboundedSender<Input>,
    reader: AbortHandle,
) {
    let mut pending = Pending::default();
    // The core was told the socket is blocked and not yet that it moved again.
    let mut blocked = false;
    let why = loop {
        // Wait for the queue while idle; while writing, watch it too (a Close acts at once).
        let msg = if pending.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                biased;
                r = write_some(id, &mut wr, &mut pending, &progress, &mut blocked) => match r {
                    Ok(()) => continue,
                    Err(e) => break End::Failed(e),
                },
                m = rx.recv() => m,
            }
        };
        match msg {
            Some(WriterMsg::Data(d)) => pending.extend(d),
            Some(WriterMsg::Close) => break End::Close,
            None => break End::Forgotten,
        }
    };
    match why {
        End::Close => {
            if pending.bytes() <= CLOSE_FLUSH_MAX {
                let _ = tokio::time::timeout(CLOSE_LINGER, write_rest(&mut wr, &mut pending)).await;
            } else {
                write_now(&mut wr, &mut pending);
            }
            debug!(dropped = pending.len(), "session closed by the daemon");
        }
        End::Forgotten => debug!("session forgotten by the daemon"),
        End::Failed(e) => {
            debug!(error = %e, "write failed");
            // The core ignores a repeated close.
            let _ = progress.send(Input::Closed { session: id });
        }
    }
    drop(pending);
    // Shutdown of a socket does not wait (it queues the FIN); one poll is enough.
    let _ = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut wr).poll_shutdown(cx))).await;
    reader.abort();
    drop(wr);
}

/// Why a writer stops.
enum End {
    /// The core closed the session.
    Close,
    /// The core forgot the session (the peer closed first).
    Forgotten,
    /// Writing failed.
    Failed(io::Error),
}

/// Messages not yet written: `bufs[start..]`, the first possibly begun.
#[derive(Default)]
struct Pending {
    bufs: Vec<Bytes>,
    start: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.start >= self.bufs.len()
    }

    fn extend(&mut self, more: Vec<Bytes>) {
        if self.is_empty() {
            self.bufs = more;
            self.start = 0;
        } else {
            if self.start > self.bufs.len() / 2 {
                self.bufs.drain(..self.start);
                self.start = 0;
            }
            self.bufs.extend(more);
        }
    }

    /// The next slices to write.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        self.bufs
            .get(self.start..)
            .unwrap_or_default()
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect()
    }

    /// `n` bytes were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(b) = self.bufs.get_mut(self.start) else {
                break;
            };
            if n >= b.len() {
                n -= b.len();
                // Free the message's bytes now, not when the whole batch is written.
                *b = Bytes::new();
                self.start += 1;
            } else {
                let _ = b.split_to(n);
                n = 0;
            }
        }
        while self.bufs.get(self.start).is_some_and(Bytes::is_empty) {
            self.start += 1;
        }
        if self.is_empty() {
            self.bufs = Vec::new();
            self.start = 0;
        }
    }

    /// Bytes not yet written.
    fn bytes(&self) -> usize {
        self.bufs
            .get(self.start..)
            .unwrap_or_default()
            .iter()
            .map(Bytes::len)
            .sum()
    }

    /// Messages not yet completely written.
    fn len(&self) -> usize {
        self.bufs.len().saturating_sub(self.start)
    }
}

/// One vectored write (waiting for the socket); reports the messages it completed, and
/// that the socket is blocked when it has to wait (`blocked`: told and not yet cleared; any
/// progress after a block clears it, even inside one message). Cancel-safe: nothing is
/// written unless the future completes.
async fn write_some<W: AsyncWrite + Unpin>(
    id: SessionId,
    wr: &mut W,
    pending: &mut Pending,
    progress: &mpsc::UnboundedSender<Input>,
    blocked: &mut bool,
) -> io::Result<()> {
    let before = pending.len();
    let n = {
        let slices = pending.slices();
        std::future::poll_fn(|cx| {
            let r = Pin::new(&mut *wr).poll_write_vectored(cx, &slices);
            if r.is_pending() && !*blocked {
                *blocked = true;
                let _ = progress.send(Input::Blocked { session: id });
            }
            r
        })
        .await?
    };
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    pending.advance(n);
    let messages = before - pending.len();
    if messages > 0 || *blocked {
        *blocked = false;
        let drained = Input::Drained {
            session: id,
            messages,
        };
        if progress.send(drained).is_err() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
    }
    Ok(())
}

/// Writes everything (the caller bounds the wait).
async fn write_rest<W: AsyncWrite + Unpin>(wr: &mut W, pending: &mut Pending) -> io::Result<()> {
    while !pending.is_empty() {
        let n = {
            let slices = pending.slices();
            std::future::poll_fn(|cx| Pin::new(&mut *wr).poll_write_vectored(cx, &slices)).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        pending.advance(n);
    }
    Ok(())
}

/// Writes what the socket takes without waiting.
fn write_now<W: AsyncWrite + Unpin>(wr: &mut W, pending: &mut Pending) {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    // Each round writes at least one byte or stops; bounded by the bytes pending.
    while !pending.is_empty() {
        let slices = pending.slices();
        match Pin::new(&mut *wr).poll_write_vectored(&mut cx, &slices) {
            Poll::Ready(Ok(n)) if n > 0 => {
                drop(slices);
                pending.advance(n);
            }
            _ => break,
        }
    }
}
