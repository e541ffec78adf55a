//! Client sessions in the tokio shell.
//!
//! One task owns the sans-IO [`spread::Daemon`] (no lock around it). Each connection — TCP,
//! the Unix socket, or an in-process pipe — gets a reader task and a writer task that only move
//! bytes ([`super::client_io`]): the reader hands what it reads to the core through one shared
//! input queue bounded in bytes ([`client_io::INPUT_BUDGET`]); the writer writes what the core queued for
//! its connection and reports progress out of band, on a progress channel the core drains
//! before every input (never behind a flood of reads).
//!
//! The core task never waits for a client: it handles inputs as they come, in batches
//! ([`MAX_INPUT_BATCH`] inputs, [`MAX_BATCH_BYTES`] bytes) before flushing outputs, so a burst
//! of messages to one session becomes one batch for its writer. A slow or stalled reader
//! costs the others nothing: its messages wait in its own writer's queue until the
//! slow-reader rule ([`spread::session::backlog`]) kills it, and its socket is closed at
//! once. The only pacing of senders is the ring's flow control (5.0.1's `WATER_MARK`, see
//! [`super::ring_net`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use spread::session::{Peer, SessionId};
use spread::{ClientStats as Stats, DaemonConfig, SessionInput as Input, SessionOutput as Output};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, Instrument};

use super::client_io::READ_CHUNK;
use super::client_io::{self, ReadEvent, WriterMsg};
use super::ring_net::Core;

/// Inputs taken from the queue before outputs are flushed.
pub(crate) const MAX_INPUT_BATCH: usize = 256;
/// Client bytes handled before outputs are flushed (the writers get their batches).
pub(crate) const MAX_BATCH_BYTES: usize = 4 * READ_CHUNK;
/// Capacity (in items) of the queue of inputs to the core; its bytes are bounded by
/// [`client_io::INPUT_BUDGET`].
pub(crate) const INPUT_QUEUE: usize = 1024;
/// Capacity of each direction of an in-process pipe.
pub(crate) const IN_PROCESS_PIPE: usize = 1 << 20;

enum CoreMsg {
    Connected {
        id: SessionId,
        peer: Peer,
        writer: mpsc::UnboundedSender<WriterMsg>,
    },
    Read(ReadEvent),
    Stats(oneshot::Sender<Stats>),
    NetStats(oneshot::Sender<super::ring_net::NetStats>),
    /// Re-read the configuration file (`SIGHUP`).
    Reload,
    LinkStats(oneshot::Sender<Option<spread::daemon::LinkStats>>),
    LinkKeys(spread::daemon::Keyring, oneshot::Sender<bool>),
}

/// A metrics snapshot request (its own queue: answered even while client input is paused).
type MetricsRequest = oneshot::Sender<super::metrics::Snapshot>;
/// Capacity of the queue of metrics requests.
const METRICS_QUEUE: usize = 16;

/// A datagram received on a ring socket.
#[derive(Debug)]
pub(crate) struct Packet {
    /// Source address.
    pub from: std::net::SocketAddr,
    /// Arrived on the token port (P+1), else the data port (P).
    pub token: bool,
    /// Payload.
    pub bytes: Bytes,
}

/// Handle to the core task: hands it connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    tx: mpsc::Sender<CoreMsg>,
    /// Ring datagrams from receive tasks (systems without `ring_rx`).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    packets: mpsc::Sender<Packet>,
    progress: mpsc::UnboundedSender<Input>,
    metrics: mpsc::Sender<MetricsRequest>,
    budget: Arc<Semaphore>,
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
        let tx = self.tx.clone();
        let send = move |ev| {
            let tx = tx.clone();
            async move { tx.send(CoreMsg::Read(ev)).await.is_ok() }
        };
        let reader = tokio::spawn(
            client_io::read_loop(id, rd, self.budget.clone(), send).instrument(span.clone()),
        );
        let writer =
            client_io::write_loop(id, wr, wrx, self.progress.clone(), reader.abort_handle());
        tokio::spawn(writer.instrument(span));
        Ok(id)
    }

    /// Opens a session from this process without a socket: returns the client's end of an
    /// in-memory pipe (speak the normal client protocol over it, e.g. with `mbus::client`).
    pub async fn connect_in_process(&self) -> Result<DuplexStream, CoreStopped> {
        let (client, server) = tokio::io::duplex(IN_PROCESS_PIPE);
        self.accept(server, Peer::InProcess).await?;
        Ok(client)
    }

    /// Opens a session without a socket and speaks the client protocol over it: a
    /// [`crate::client::Mailbox`] on this daemon (connect-time rejects as over a socket; a
    /// stopped core is `Error::CouldNotConnect`).
    pub async fn connect_mailbox(
        &self,
        opts: &crate::client::ConnectOptions,
    ) -> Result<crate::client::Mailbox, crate::client::Error> {
        let pipe = self
            .connect_in_process()
            .await
            .map_err(|e| crate::client::Error::CouldNotConnect(std::io::Error::other(e)))?;
        crate::client::Mailbox::connect_stream(pipe, opts).await
    }

    /// Hands a ring datagram to the core.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(crate) async fn packet(&self, packet: Packet) -> Result<(), CoreStopped> {
        self.packets.send(packet).await.map_err(|_| CoreStopped)
    }

    /// Counters of the UDP side (all zero for a daemon without sockets).
    pub async fn net_stats(&self) -> Result<super::ring_net::NetStats, CoreStopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(CoreMsg::NetStats(tx))
            .await
            .map_err(|_| CoreStopped)?;
        rx.await.map_err(|_| CoreStopped)
    }

    /// Every counter and gauge of the daemon (what the metrics endpoint shows); answered
    /// between two inputs even while the ring's flow control pauses client input.
    pub async fn metrics(&self) -> Result<super::metrics::Snapshot, CoreStopped> {
        let (tx, rx) = oneshot::channel();
        self.metrics.send(tx).await.map_err(|_| CoreStopped)?;
        rx.await.map_err(|_| CoreStopped)
    }

    /// Re-reads the configuration file and applies it as a monitor RELOAD would (what the
    /// `spread` binary does on `SIGHUP`); a file that does not parse is refused (logged) and
    /// the running configuration kept. Ignored by a daemon without a configuration file.
    pub async fn reload(&self) -> Result<(), CoreStopped> {
        self.tx.send(CoreMsg::Reload).await.map_err(|_| CoreStopped)
    }

    /// Counters of the secure ring (`None`: plain mode).
    pub async fn link_stats(&self) -> Result<Option<spread::daemon::LinkStats>, CoreStopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(CoreMsg::LinkStats(tx))
            .await
            .map_err(|_| CoreStopped)?;
        rx.await.map_err(|_| CoreStopped)
    }

    /// A key rollover step: replaces the secure ring's keys (`false` in plain mode: the
    /// secure ring is chosen at start).
    pub async fn set_link_keys(&self, keys: spread::daemon::Keyring) -> Result<bool, CoreStopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(CoreMsg::LinkKeys(keys, tx))
            .await
            .map_err(|_| CoreStopped)?;
        rx.await.map_err(|_| CoreStopped)
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

/// Capacity (datagrams) of the queue of ring packets to the core.
pub(crate) const PACKET_QUEUE: usize = 4096;

/// Starts an embedded daemon with no socket at all: a one-daemon ring of its own (`config`
/// names it; its token comes back without a socket), reached only through
/// [`CoreHandle::connect_in_process`]. It runs until `shutdown` completes (then every session
/// is closed).
pub fn spawn_core(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (CoreHandle, JoinHandle<()>) {
    let me = spread::ring::DaemonId(config.proc_id as u32);
    let ring = spread::ring::RingConfig::lan(me, vec![me]);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let settings = spread::daemon::Settings::from_parts(config, ring);
    spawn_core_with(
        Core::new(settings, u32::try_from(clock).unwrap_or(u32::MAX)),
        shutdown,
        Vec::new(),
    )
}

/// [`spawn_core`] for a core with sockets.
pub(crate) fn spawn_core_with(
    core: Core,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ring: Vec<(tokio::net::UdpSocket, bool)>,
) -> (CoreHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (packets, packets_rx) = mpsc::channel(PACKET_QUEUE);
    let (progress, progress_rx) = mpsc::unbounded_channel();
    let (metrics, metrics_rx) = mpsc::channel(METRICS_QUEUE);
    let handle = CoreHandle {
        tx,
        packets,
        progress,
        metrics,
        budget: client_io::input_budget(),
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let inputs = Inputs {
        rx,
        packets: packets_rx,
        progress: progress_rx,
        metrics: metrics_rx,
    };
    // Made here, not in the task: the core's timerfd exists once the daemon is started
    // (a descriptor count taken as soon as clients are accepted includes it).
    let alarm = super::alarm::Alarm::new();
    #[cfg(target_os = "linux")]
    let reader = super::ring_rx::RingReader::new(ring);
    #[cfg(not(target_os = "linux"))]
    let reader = NoRingReader(ring);
    let task = tokio::spawn(core_loop(core, inputs, alarm, reader, shutdown));
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

/// The core task's queues.
struct Inputs {
    /// Connections, client bytes, stats requests.
    rx: mpsc::Receiver<CoreMsg>,
    /// Ring datagrams.
    packets: mpsc::Receiver<Packet>,
    /// Writers' reports.
    progress: mpsc::UnboundedReceiver<Input>,
    /// Metrics snapshot requests.
    metrics: mpsc::Receiver<MetricsRequest>,
}

/// The core's side of the sessions: their writers, and the batches being collected.
#[derive(Default)]
struct Writers {
    writers: BTreeMap<SessionId, mpsc::UnboundedSender<WriterMsg>>,
    batches: BTreeMap<SessionId, Vec<Bytes>>,
    /// Sessions whose bytes this step handled.
    senders: Vec<SessionId>,
}

/// Without Linux's `ring_rx`, ring datagrams come through [`CoreHandle::packet`].
#[cfg(not(target_os = "linux"))]
struct NoRingReader(Vec<(tokio::net::UdpSocket, bool)>);

#[cfg(not(target_os = "linux"))]
impl NoRingReader {
    async fn read(&mut self, _out: &mut Vec<Packet>) {
        std::future::pending().await
    }
}

#[cfg(target_os = "linux")]
type RingReader = super::ring_rx::RingReader;
#[cfg(not(target_os = "linux"))]
type RingReader = NoRingReader;

async fn core_loop(
    mut daemon: Core,
    mut inputs: Inputs,
    mut alarm: super::alarm::Alarm,
    mut reader: RingReader,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let origin = Instant::now();
    let mut w = Writers::default();
    let mut read: Vec<Packet> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        let deadline = daemon.poll_timeout().map(|t| to_tokio(origin, t));
        let open = daemon.accepts_input();
        // Unbiased: ring packets and client input take turns under load.
        tokio::select! {
            _ = &mut shutdown => break,
            Some(p) = inputs.progress.recv() => {
                let now = core_now(origin);
                on_progress(&mut daemon, &mut w, now, p);
                drain_progress(&mut daemon, &mut w, &mut inputs.progress, now);
            }
            () = alarm.until(deadline) => daemon.handle_timeout(core_now(origin)),
            Some(tx) = inputs.metrics.recv() => {
                let _ = tx.send(daemon.metrics());
            }
            () = reader.read(&mut read) => {
                let now = core_now(origin);
                drain_progress(&mut daemon, &mut w, &mut inputs.progress, now);
                for p in read.drain(..) {
                    daemon.packet(now, p);
                }
            }
            Some(p) = inputs.packets.recv() => {
                let now = core_now(origin);
                drain_progress(&mut daemon, &mut w, &mut inputs.progress, now);
                daemon.packet(now, p);
                for _ in 1..MAX_INPUT_BATCH {
                    let Ok(p) = inputs.packets.try_recv() else { break };
                    daemon.packet(now, p);
                }
            }
            msg = inputs.rx.recv(), if open => {
                let Some(msg) = msg else { break };
                let now = core_now(origin);
                drain_progress(&mut daemon, &mut w, &mut inputs.progress, now);
                let mut bytes = on_msg(&mut daemon, &mut w, now, msg);
                for _ in 1..MAX_INPUT_BATCH {
                    if bytes >= MAX_BATCH_BYTES || !daemon.accepts_input() {
                        break;
                    }
                    let Ok(msg) = inputs.rx.try_recv() else { break };
                    drain_progress(&mut daemon, &mut w, &mut inputs.progress, now);
                    bytes += on_msg(&mut daemon, &mut w, now, msg);
                }
            }
        }
        flush(&mut daemon, &mut w).await;
    }
    for tx in w.writers.values() {
        let _ = tx.send(WriterMsg::Close);
    }
    debug!("core stopped");
}

/// One writer report.
fn on_progress(daemon: &mut Core, w: &mut Writers, now: spread::time::Instant, p: Input) {
    if let Input::Closed { session } = &p {
        w.writers.remove(session);
    }
    daemon.handle(now, p);
}

/// Applies every write report already sent (so the slow-reader rule sees what the writers
/// have really written before the next input is handled).
fn drain_progress(
    daemon: &mut Core,
    w: &mut Writers,
    progress: &mut mpsc::UnboundedReceiver<Input>,
    now: spread::time::Instant,
) {
    while let Ok(p) = progress.try_recv() {
        on_progress(daemon, w, now, p);
    }
}

/// Handles one input; returns the client bytes it carried.
fn on_msg(daemon: &mut Core, w: &mut Writers, now: spread::time::Instant, msg: CoreMsg) -> usize {
    match msg {
        CoreMsg::Connected { id, peer, writer } => {
            w.writers.insert(id, writer);
            daemon.handle(now, Input::Connected { session: id, peer });
        }
        CoreMsg::Read(ReadEvent::Bytes {
            session,
            data,
            room,
        }) => {
            let n = data.len();
            if !w.senders.contains(&session) {
                w.senders.push(session);
            }
            daemon.handle(now, Input::Bytes { session, data });
            // The bytes are handled (copied into the session's buffer): give the room back.
            drop(room);
            return n;
        }
        CoreMsg::Read(ReadEvent::Closed(session)) => {
            w.writers.remove(&session);
            daemon.handle(now, Input::Closed { session });
        }
        CoreMsg::Stats(tx) => {
            let _ = tx.send(daemon.stats());
        }
        CoreMsg::NetStats(tx) => {
            let _ = tx.send(daemon.net_stats());
        }
        CoreMsg::Reload => daemon.reload(now),
        CoreMsg::LinkStats(tx) => {
            let _ = tx.send(daemon.link_stats());
        }
        CoreMsg::LinkKeys(keys, tx) => {
            let _ = tx.send(daemon.set_link_keys(keys));
        }
    }
    0
}

/// Hands every output to the writers, one batch per session, then sends the step's
/// datagrams. After a client's input, when it reached another local session, the writers go
/// first: a datagram to the segment costs its sender the peers' delivery too (tens of µs on a
/// bridge), and the local reader — maybe about to answer — should not wait for that. A client
/// reading its own message back and deliveries of ring packets do not hold the datagrams
/// (the token and the ring's packets come first there).
async fn flush(daemon: &mut Core, w: &mut Writers) {
    let mut closes = Vec::new();
    while let Some(out) = daemon.poll_step() {
        match out {
            Output::Send { session, data } => w.batches.entry(session).or_default().push(data),
            Output::Close { session } => closes.push(session),
        }
    }
    let local = w
        .batches
        .keys()
        .any(|id| !w.senders.is_empty() && !w.senders.contains(id));
    w.senders.clear();
    for (id, batch) in std::mem::take(&mut w.batches) {
        if let Some(tx) = w.writers.get(&id) {
            let _ = tx.send(WriterMsg::Data(batch));
        }
    }
    for id in closes {
        if let Some(tx) = w.writers.remove(&id) {
            let _ = tx.send(WriterMsg::Close);
        }
    }
    if local && daemon.network_queued() {
        tokio::task::yield_now().await;
    }
    daemon.flush_network();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    /// A request from `me` to group `g`.
    fn request(me: &str, service: spread::wire::client::ServiceType, body: &[u8]) -> Vec<u8> {
        use spread::wire::client::GroupName;
        let mut out = Vec::new();
        let (me, g) = (GroupName::new(me.as_bytes()), GroupName::new(b"g"));
        spread::wire::client::encode_message(service, me, &[g], body, &mut out);
        out
    }

    /// A member that stops reading is killed once its pipe is full and 10 messages wait;
    /// its pipe is closed at once (it reads what the pipe held, then the end), and a new
    /// client is served meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_in_process_reader_is_closed_at_once() {
        use spread::wire::client::ServiceType;
        let mut cfg = DaemonConfig::new("localhost", 7, 9);
        cfg.max_session_messages = 10;
        let (core, _task) = spawn_core(cfg, std::future::pending());
        let mut stalled = core.connect_in_process().await.unwrap();
        handshake(&mut stalled, "a").await;
        stalled
            .write_all(&request("#a#localhost", ServiceType::JOIN_MESS, b""))
            .await
            .unwrap();
        // Its own join (the one-daemon ring has formed; from here on it stops reading).
        let mut memb = vec![0u8; 48 + 32 + 56];
        stalled.read_exact(&mut memb).await.unwrap();
        let mut sender = core.connect_in_process().await.unwrap();
        handshake(&mut sender, "b").await;
        let body = vec![7u8; 10_000];
        // The pipe holds about 100 of these; then 10 more wait, and the next kills.
        for _ in 0..300 {
            sender
                .write_all(&request("#b#localhost", ServiceType::RELIABLE, &body))
                .await
                .unwrap();
        }
        let late = async {
            let mut p = core.connect_in_process().await.unwrap();
            handshake(&mut p, "c").await
        };
        tokio::time::timeout(Duration::from_secs(5), late)
            .await
            .expect("a new client is served");
        // The kill comes once the core has handled enough of the sender's messages, which on
        // a loaded machine can be after the writes above returned: reading the stalled pipe
        // before it would make room for more (CI once read 1.96 MB that way).
        let killed = async {
            while core.stats().await.unwrap().slow_reader_kills == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), killed)
            .await
            .expect("the stalled reader is killed");
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut got))
            .await
            .expect("the stalled reader's pipe is closed")
            .unwrap();
        assert!(got.len() <= IN_PROCESS_PIPE + 200, "{} bytes", got.len());
        assert_eq!(core.stats().await.unwrap().slow_reader_kills, 1);
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
