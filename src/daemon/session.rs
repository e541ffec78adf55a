//! Client sessions in the tokio shell.
//!
//! One task owns the sans-IO [`spread::Daemon`] (no lock around it). Each connection — TCP,
//! the Unix socket, or an in-process pipe — gets a reader task and a writer task that only move
//! bytes:
//!
//! * the **reader** reads big chunks ([`READ_CHUNK`] bytes) and hands each chunk to the core,
//!   which parses every message in it (many messages per read);
//! * the **writer** takes every message queued for its connection and writes them with
//!   vectored writes ([`MAX_IOVECS`] slices per call), then reports how many were written so
//!   the core can apply `MaxSessionMessages`.
//!
//! The core task drains inputs in batches ([`MAX_INPUT_BATCH`]) before flushing outputs, so a
//! burst of messages to one session becomes one batch for its writer. There is no per-message
//! syscall on the hot path.

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use spread::session::{Peer, SessionId};
use spread::{Daemon, DaemonConfig, Input, Output, Stats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, trace, Instrument};

/// Bytes asked for per read (the real daemon reads 1432-byte pieces).
pub const READ_CHUNK: usize = 256 * 1024;
/// Inputs taken from the queue before outputs are flushed.
pub const MAX_INPUT_BATCH: usize = 256;
/// Most buffers passed to one vectored write.
pub const MAX_IOVECS: usize = 64;
/// Capacity of the queue of inputs to the core (readers wait when it is full).
pub const INPUT_QUEUE: usize = 4096;
/// Capacity of each direction of an in-process pipe.
pub const IN_PROCESS_PIPE: usize = 1 << 20;

enum CoreMsg {
    Connected {
        id: SessionId,
        peer: Peer,
        writer: mpsc::UnboundedSender<WriterMsg>,
    },
    Input(Input),
    Stats(oneshot::Sender<Stats>),
}

enum WriterMsg {
    /// Messages to write, in order.
    Data(Vec<Bytes>),
    /// Write what is queued, then close.
    Close,
}

/// Handle to the core task: hands it connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    tx: mpsc::Sender<CoreMsg>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for CoreMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreMsg")
    }
}

/// The core stopped (shut down); the connection was dropped.
#[derive(Debug, thiserror::Error)]
#[error("the daemon core has stopped")]
pub struct CoreStopped;

impl CoreHandle {
    /// Serves a new connection: spawns its reader and writer tasks.
    pub async fn accept<S>(&self, stream: S, peer: Peer) -> Result<SessionId, CoreStopped>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (wtx, wrx) = mpsc::unbounded_channel();
        self.tx
            .send(CoreMsg::Connected {
                id,
                peer,
                writer: wtx,
            })
            .await
            .map_err(|_| CoreStopped)?;
        let (rd, wr) = tokio::io::split(stream);
        let span = tracing::debug_span!("session", id = id.0, ?peer);
        let reader = tokio::spawn(read_loop(id, rd, self.tx.clone()).instrument(span.clone()));
        tokio::spawn(write_loop(id, wr, wrx, self.tx.clone(), reader).instrument(span));
        Ok(id)
    }

    /// Opens a session from this process without a socket: returns the client's end of an
    /// in-memory pipe (speak the normal client protocol over it, e.g. with `mbus::client`).
    pub async fn connect_in_process(&self) -> Result<DuplexStream, CoreStopped> {
        let (client, server) = tokio::io::duplex(IN_PROCESS_PIPE);
        self.accept(server, Peer::InProcess).await?;
        Ok(client)
    }

    /// The core's counters.
    pub async fn stats(&self) -> Result<Stats, CoreStopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(CoreMsg::Stats(tx))
            .await
            .map_err(|_| CoreStopped)?;
        rx.await.map_err(|_| CoreStopped)
    }
}

/// Starts the core task; it runs until `shutdown` completes (then every session is closed).
pub fn spawn_core(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (CoreHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let handle = CoreHandle {
        tx,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let task = tokio::spawn(core_loop(Daemon::new(config), rx, shutdown));
    (handle, task)
}

/// The core's clock: microseconds since the task started.
fn core_now(origin: Instant) -> spread::time::Instant {
    spread::time::Instant(
        u64::try_from(Instant::now().saturating_duration_since(origin).as_micros())
            .unwrap_or(u64::MAX),
    )
}

fn to_tokio(origin: Instant, t: spread::time::Instant) -> Instant {
    origin + std::time::Duration::from_micros(t.as_micros())
}

async fn core_loop(
    mut daemon: Daemon,
    mut rx: mpsc::Receiver<CoreMsg>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let origin = Instant::now();
    let mut writers: BTreeMap<SessionId, mpsc::UnboundedSender<WriterMsg>> = BTreeMap::new();
    let mut batches: BTreeMap<SessionId, Vec<Bytes>> = BTreeMap::new();
    tokio::pin!(shutdown);
    loop {
        let deadline = daemon.poll_timeout().map(|t| to_tokio(origin, t));
        tokio::select! {
            _ = &mut shutdown => break,
            () = sleep_until(deadline) => daemon.handle_timeout(core_now(origin)),
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let now = core_now(origin);
                on_msg(&mut daemon, &mut writers, now, msg);
                for _ in 1..MAX_INPUT_BATCH {
                    match rx.try_recv() {
                        Ok(msg) => on_msg(&mut daemon, &mut writers, now, msg),
                        Err(_) => break,
                    }
                }
            }
        }
        flush(&mut daemon, &mut writers, &mut batches);
    }
    for w in writers.values() {
        let _ = w.send(WriterMsg::Close);
    }
    debug!("core stopped");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn on_msg(
    daemon: &mut Daemon,
    writers: &mut BTreeMap<SessionId, mpsc::UnboundedSender<WriterMsg>>,
    now: spread::time::Instant,
    msg: CoreMsg,
) {
    match msg {
        CoreMsg::Connected { id, peer, writer } => {
            writers.insert(id, writer);
            daemon.handle(now, Input::Connected { session: id, peer });
        }
        CoreMsg::Input(input) => {
            if let Input::Closed { session } = &input {
                writers.remove(session);
            }
            daemon.handle(now, input);
        }
        CoreMsg::Stats(tx) => {
            let _ = tx.send(daemon.stats().clone());
        }
    }
}

/// Hands every output to the writers, one batch per session.
fn flush(
    daemon: &mut Daemon,
    writers: &mut BTreeMap<SessionId, mpsc::UnboundedSender<WriterMsg>>,
    batches: &mut BTreeMap<SessionId, Vec<Bytes>>,
) {
    let mut closes = Vec::new();
    while let Some(out) = daemon.poll_output() {
        match out {
            Output::Send { session, data } => batches.entry(session).or_default().push(data),
            Output::Close { session } => closes.push(session),
        }
    }
    for (id, batch) in std::mem::take(batches) {
        if let Some(w) = writers.get(&id) {
            let _ = w.send(WriterMsg::Data(batch));
        }
    }
    for id in closes {
        if let Some(w) = writers.remove(&id) {
            let _ = w.send(WriterMsg::Close);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(id: SessionId, mut rd: R, tx: mpsc::Sender<CoreMsg>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                trace!(n, "read");
                let data = buf.split().freeze();
                let msg = CoreMsg::Input(Input::Bytes { session: id, data });
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(CoreMsg::Input(Input::Closed { session: id })).await;
}

async fn write_loop<W: AsyncWrite + Unpin>(
    id: SessionId,
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    core: mpsc::Sender<CoreMsg>,
    reader: JoinHandle<()>,
) {
    let mut pending: Vec<Bytes> = Vec::new();
    let mut closing = false;
    while !closing {
        let Some(first) = rx.recv().await else { break };
        let take = |m: WriterMsg, pending: &mut Vec<Bytes>| match m {
            WriterMsg::Data(d) => {
                pending.extend(d);
                false
            }
            WriterMsg::Close => true,
        };
        closing = take(first, &mut pending);
        while !closing {
            match rx.try_recv() {
                Ok(m) => closing = take(m, &mut pending),
                Err(_) => break,
            }
        }
        let n = pending.len();
        if n > 0 {
            if write_all_vectored(&mut wr, &mut pending).await.is_err() {
                break;
            }
            let drained = Input::Drained {
                session: id,
                messages: n,
            };
            if core.send(CoreMsg::Input(drained)).await.is_err() {
                break;
            }
        }
    }
    if closing {
        debug!("closing session");
    } else {
        // Write failed or the core dropped us: make sure the core knows (it ignores repeats).
        let _ = core.try_send(CoreMsg::Input(Input::Closed { session: id }));
    }
    let _ = wr.shutdown().await;
    reader.abort();
    drop(wr);
}

/// Writes every buffer, [`MAX_IOVECS`] at a time, consuming `bufs`.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bufs: &mut Vec<Bytes>,
) -> io::Result<()> {
    let mut start = 0;
    while start < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[start..]
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(b) = bufs.get_mut(start) else { break };
            if n >= b.len() {
                n -= b.len();
                start += 1;
            } else {
                let _ = b.split_to(n);
                n = 0;
            }
        }
        while bufs.get(start).is_some_and(Bytes::is_empty) {
            start += 1;
        }
    }
    bufs.clear();
    wr.flush().await
}
