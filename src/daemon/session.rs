//! Client sessions in the tokio shell.
//!
//! One task owns the sans-IO [`spread::Daemon`] (no lock around it). Each connection — TCP,
//! the Unix socket, or an in-process pipe — gets a reader task and a writer task that only move
//! bytes:
//!
//! * the **reader** reads big chunks ([`READ_CHUNK`] bytes) and hands each chunk to the core,
//!   which parses every message in it (many messages per read);
//! * the **writer** takes every message queued for its connection and writes them with
//!   vectored writes ([`MAX_IOVECS`] slices per call), then reports how many were written,
//!   and when the socket refuses bytes, that it is blocked, so the core can apply
//!   `MaxSessionMessages` to the messages the socket refused (as 5.0.1), not to those merely
//!   in flight. These reports go out of band on an unbounded progress channel that the core
//!   drains before every input, never behind a flood of reads in the input queue.
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
/// While the core is [`Core::backlogged`], it feeds one step of input per this interval
/// (a write that unblocks the reader ends the pacing at once): senders are paced to the slow
/// reader, yet a reader that never reads still reaches `MaxSessionMessages` and is killed.
pub const BACKLOG_PACE: std::time::Duration = std::time::Duration::from_millis(20);
/// Most bytes of a read chunk fed to the core at once; the writers get a turn between
/// slices, so one big read cannot queue thousands of messages for a reader in one step.
pub const SLICE: usize = 32 * 1024;
/// First paced step while backlogged (doubles per step, up to [`READ_CHUNK`]).
pub const PACED_SLICE_MIN: usize = 4 * 1024;
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
    /// A datagram for the ring (see [`Core::packet`]).
    Packet(Packet),
}

/// A datagram received on a ring socket.
#[derive(Debug)]
pub struct Packet {
    /// Source address.
    pub from: std::net::SocketAddr,
    /// Arrived on the token port (P+1), else the data port (P).
    pub token: bool,
    /// Payload.
    pub bytes: Bytes,
}

/// What the core task drives: the sans-IO [`spread::Daemon`] alone (one daemon, local
/// ordering) or a whole ring daemon ([`super::ring_net::RingCore`]).
pub trait Core: Send + 'static {
    /// A client-session input.
    fn handle(&mut self, now: spread::time::Instant, input: Input);
    /// Timers due at `now`.
    fn handle_timeout(&mut self, now: spread::time::Instant);
    /// Next output for a client session.
    fn poll_output(&mut self) -> Option<Output>;
    /// Next deadline.
    fn poll_timeout(&self) -> Option<spread::time::Instant>;
    /// Counters.
    fn stats(&self) -> Stats;
    /// A datagram from a ring socket (ignored without a ring).
    fn packet(&mut self, _now: spread::time::Instant, _packet: Packet) {}
    /// Some session's socket is full with many messages waiting: read input slowly
    /// (see [`BACKLOG_PACE`]).
    fn backlogged(&self) -> bool {
        false
    }
}

impl Core for Daemon {
    fn handle(&mut self, now: spread::time::Instant, input: Input) {
        Daemon::handle(self, now, input);
    }
    fn handle_timeout(&mut self, now: spread::time::Instant) {
        Daemon::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Daemon::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<spread::time::Instant> {
        Daemon::poll_timeout(self)
    }
    fn stats(&self) -> Stats {
        Daemon::stats(self).clone()
    }
    fn backlogged(&self) -> bool {
        Daemon::backlogged(self)
    }
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
    progress: mpsc::UnboundedSender<Input>,
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
        let links = WriterLinks {
            core: self.tx.clone(),
            progress: self.progress.clone(),
        };
        tokio::spawn(write_loop(id, wr, wrx, links, reader).instrument(span));
        Ok(id)
    }

    /// Opens a session from this process without a socket: returns the client's end of an
    /// in-memory pipe (speak the normal client protocol over it, e.g. with `mbus::client`).
    pub async fn connect_in_process(&self) -> Result<DuplexStream, CoreStopped> {
        let (client, server) = tokio::io::duplex(IN_PROCESS_PIPE);
        self.accept(server, Peer::InProcess).await?;
        Ok(client)
    }

    /// Hands a ring datagram to the core.
    pub async fn packet(&self, packet: Packet) -> Result<(), CoreStopped> {
        self.tx
            .send(CoreMsg::Packet(packet))
            .await
            .map_err(|_| CoreStopped)
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
    spawn_core_with(Daemon::new(config), shutdown)
}

/// [`spawn_core`] for any [`Core`].
pub fn spawn_core_with<C: Core>(
    core: C,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (CoreHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (progress, progress_rx) = mpsc::unbounded_channel();
    let handle = CoreHandle {
        tx,
        progress,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let task = tokio::spawn(core_loop(core, rx, progress_rx, shutdown));
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

async fn core_loop<C: Core>(
    mut daemon: C,
    mut rx: mpsc::Receiver<CoreMsg>,
    mut progress: mpsc::UnboundedReceiver<Input>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let origin = Instant::now();
    let mut writers: BTreeMap<SessionId, mpsc::UnboundedSender<WriterMsg>> = BTreeMap::new();
    let mut batches: BTreeMap<SessionId, Vec<Bytes>> = BTreeMap::new();
    // The unfed rest of a read chunk (fed before any other input).
    let mut held: Option<(SessionId, Bytes)> = None;
    // While backlogged: when the next paced step is due, and how many bytes it feeds.
    let mut pace_at: Option<Instant> = None;
    let mut burst = PACED_SLICE_MIN;
    tokio::pin!(shutdown);
    loop {
        let deadline = daemon.poll_timeout().map(|t| to_tokio(origin, t));
        let paced = daemon.backlogged();
        if paced {
            pace_at.get_or_insert_with(|| Instant::now() + BACKLOG_PACE);
        } else {
            pace_at = None;
            burst = PACED_SLICE_MIN;
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = progress.recv() => {
                let now = core_now(origin);
                if let Some(p) = p {
                    daemon.handle(now, p);
                }
                drain_progress(&mut daemon, &mut progress, now);
            }
            () = sleep_until(deadline) => daemon.handle_timeout(core_now(origin)),
            step = next_step(&mut rx, paced, held.is_some(), pace_at) => {
                let now = core_now(origin);
                drain_progress(&mut daemon, &mut progress, now);
                match step {
                    // Backlogged: one step per BACKLOG_PACE, growing while the reader
                    // stays stuck.
                    Step::Paced(msg) => {
                        pace_at = None;
                        held = match (held.take(), msg) {
                            (Some((id, data)), _) => feed(&mut daemon, now, id, data, burst),
                            (None, Some(msg)) => on_msg(&mut daemon, &mut writers, now, msg, burst),
                            (None, None) => break,
                        };
                        burst = (burst * 2).min(READ_CHUNK);
                    }
                    // The rest of a chunk, after the writers had a turn.
                    Step::Rest => {
                        if let Some((id, data)) = held.take() {
                            held = feed(&mut daemon, now, id, data, SLICE);
                        }
                    }
                    Step::Fresh(msg) => {
                        let Some(msg) = msg else { break };
                        held = on_msg(&mut daemon, &mut writers, now, msg, SLICE);
                        for _ in 1..MAX_INPUT_BATCH {
                            if held.is_some() || daemon.backlogged() {
                                break;
                            }
                            match rx.try_recv() {
                                Ok(msg) => {
                                    drain_progress(&mut daemon, &mut progress, now);
                                    held = on_msg(&mut daemon, &mut writers, now, msg, SLICE);
                                }
                                Err(_) => break,
                            }
                        }
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

/// What the core loop does next with client input.
enum Step {
    /// Backlogged: the paced step is due; feed the held chunk, else this input (`None`:
    /// the queue closed).
    Paced(Option<CoreMsg>),
    /// Feed the rest of the held chunk.
    Rest,
    /// A new input, then a batch (`None`: the queue closed).
    Fresh(Option<CoreMsg>),
}

async fn next_step(
    rx: &mut mpsc::Receiver<CoreMsg>,
    paced: bool,
    held: bool,
    at: Option<Instant>,
) -> Step {
    if paced {
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
        Step::Paced(if held { None } else { rx.recv().await })
    } else if held {
        tokio::task::yield_now().await;
        Step::Rest
    } else {
        Step::Fresh(rx.recv().await)
    }
}

/// Feeds at most `limit` bytes of a read chunk to the core; returns the rest.
fn feed<C: Core>(
    daemon: &mut C,
    now: spread::time::Instant,
    session: SessionId,
    mut data: Bytes,
    limit: usize,
) -> Option<(SessionId, Bytes)> {
    let rest = (data.len() > limit).then(|| data.split_off(limit));
    daemon.handle(now, Input::Bytes { session, data });
    rest.map(|r| (session, r))
}

/// Applies every write report already sent (so the slow-reader rule sees what the writers
/// have really written before the next input is handled).
fn drain_progress<C: Core>(
    daemon: &mut C,
    progress: &mut mpsc::UnboundedReceiver<Input>,
    now: spread::time::Instant,
) {
    while let Ok(p) = progress.try_recv() {
        daemon.handle(now, p);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn on_msg<C: Core>(
    daemon: &mut C,
    writers: &mut BTreeMap<SessionId, mpsc::UnboundedSender<WriterMsg>>,
    now: spread::time::Instant,
    msg: CoreMsg,
    limit: usize,
) -> Option<(SessionId, Bytes)> {
    match msg {
        CoreMsg::Connected { id, peer, writer } => {
            writers.insert(id, writer);
            daemon.handle(now, Input::Connected { session: id, peer });
        }
        CoreMsg::Input(Input::Bytes { session, data }) => {
            return feed(daemon, now, session, data, limit);
        }
        CoreMsg::Input(input) => {
            if let Input::Closed { session } = &input {
                writers.remove(session);
            }
            daemon.handle(now, input);
        }
        CoreMsg::Stats(tx) => {
            let _ = tx.send(daemon.stats());
        }
        CoreMsg::Packet(p) => daemon.packet(now, p),
    }
    None
}

/// Hands every output to the writers, one batch per session.
fn flush<C: Core>(
    daemon: &mut C,
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

/// Where a writer reports: the input queue (for a failed connection) and the progress channel.
struct WriterLinks {
    core: mpsc::Sender<CoreMsg>,
    progress: mpsc::UnboundedSender<Input>,
}

async fn write_loop<W: AsyncWrite + Unpin>(
    id: SessionId,
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    links: WriterLinks,
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
        if !pending.is_empty()
            && write_all_vectored(id, &mut wr, &mut pending, &links.progress)
                .await
                .is_err()
        {
            break;
        }
    }
    if closing {
        debug!("closing session");
    } else {
        // Write failed or the core dropped us: make sure the core knows (it ignores repeats).
        let _ = links
            .core
            .try_send(CoreMsg::Input(Input::Closed { session: id }));
    }
    let _ = wr.shutdown().await;
    reader.abort();
    drop(wr);
}

/// Writes every buffer, [`MAX_IOVECS`] at a time, consuming `bufs`; after each write call,
/// tells the core how many messages are now completely written (5.0.1 counts a session's
/// queue per message written), and when the socket refuses bytes, that it is blocked.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    id: SessionId,
    wr: &mut W,
    bufs: &mut Vec<Bytes>,
    progress: &mpsc::UnboundedSender<Input>,
) -> io::Result<()> {
    let mut start = 0;
    while start < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[start..]
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut told_blocked = false;
        let mut n = std::future::poll_fn(|cx| {
            let r = std::pin::Pin::new(&mut *wr).poll_write_vectored(cx, &slices);
            if r.is_pending() && !told_blocked {
                told_blocked = true;
                let _ = progress.send(Input::Blocked { session: id });
            }
            r
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let before = start;
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
        // After a block, any progress (even inside one message) clears it in the core.
        if start > before || told_blocked {
            let drained = Input::Drained {
                session: id,
                messages: start - before,
            };
            if progress.send(drained).is_err() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
    }
    bufs.clear();
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn handshake(p: &mut DuplexStream, name: &str) -> Vec<u8> {
        let mut hello = vec![5, 0, 1, 1, name.len() as u8];
        hello.extend(name.as_bytes());
        p.write_all(&hello).await.unwrap();
        let mut list = [0u8; 6];
        p.read_exact(&mut list).await.unwrap();
        assert_eq!(&list, b"\x05NULL ");
        let mut auth = b"NULL".to_vec();
        auth.resize(90, 0);
        p.write_all(&auth).await.unwrap();
        let mut acc = vec![0u8; 5 + 1 + name.len() + 10];
        p.read_exact(&mut acc).await.unwrap();
        acc
    }

    #[tokio::test]
    async fn in_process_session_joins_and_gets_membership() {
        let (core, _task) =
            spawn_core(DaemonConfig::new("localhost", 7, 9), std::future::pending());
        let mut p = core.connect_in_process().await.unwrap();
        let acc = handshake(&mut p, "alice").await;
        assert_eq!(&acc[..5], &[1, 5, 0, 1, 16]);
        assert_eq!(&acc[5..], b"#alice#localhost");
        let mut join = Vec::new();
        spread::wire::client::encode_header(
            &spread::wire::client::MessageHeader {
                service: spread::wire::client::ServiceType::JOIN_MESS,
                sender: spread::wire::client::GroupName::new(b"#alice#localhost"),
                num_groups: 1,
                hint: spread::wire::client::Hint::DAEMON,
                data_len: 0,
                order: spread::wire::client::ByteOrder::Little,
            },
            &mut join,
        );
        join.extend_from_slice(&spread::wire::client::GroupName::new(b"g").0);
        p.write_all(&join).await.unwrap();
        let mut memb = vec![0u8; 48 + 32 + 56];
        p.read_exact(&mut memb).await.unwrap();
        assert_eq!(&memb[..4], &[0x80, 0x11, 0x00, 0x80]);
        assert_eq!(&memb[80..84], &7i32.to_le_bytes());
        assert_eq!(core.stats().await.unwrap().accepted, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connection_is_closed_after_one_second() {
        let (core, _task) =
            spawn_core(DaemonConfig::new("localhost", 7, 9), std::future::pending());
        let mut p = core.connect_in_process().await.unwrap();
        let start = Instant::now();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), p.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "closed without a byte");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
            "{waited:?}"
        );
        assert_eq!(core.stats().await.unwrap().hello_timeouts, 1);
    }

    #[tokio::test]
    async fn shutdown_closes_every_session() {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (core, task) = spawn_core(DaemonConfig::new("localhost", 7, 9), async {
            let _ = stop_rx.await;
        });
        let mut p = core.connect_in_process().await.unwrap();
        handshake(&mut p, "bob").await;
        stop_tx.send(()).unwrap();
        task.await.unwrap();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), p.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        assert!(core.connect_in_process().await.is_err());
    }
}
