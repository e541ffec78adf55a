//! The opt-in metrics endpoint: `spread --metrics ADDR:PORT` (or `MBUS_METRICS=ADDR:PORT`)
//! serves every counter of the daemon ([`spread::daemon::Metrics`] and the UDP side's
//! [`NetStats`]) as Prometheus / OpenMetrics text at `http://ADDR:PORT/metrics`.
//!
//! The numbers are counted where the decisions are made (the sans-IO core and the socket
//! layer); this module only takes a snapshot from the core task on each scrape and renders it
//! with `prometheus-client`. The HTTP side is deliberately tiny: one `GET` per connection,
//! bounded request size and time, `Connection: close`.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use spread::daemon::Metrics;
use spread::ring::{Service, State};
use spread::session::Violation;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::ring_net::NetStats;
use super::session::CoreHandle;

/// Environment variable read by `spread` when `--metrics` is not given.
pub const METRICS_ENV: &str = "MBUS_METRICS";
/// Content type of the exposition (what `prometheus-client` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape waits for the core's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one scrape shows: the core's counters and the UDP side's.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The core's counters and gauges.
    pub core: Metrics,
    /// The ring sockets' counters (all zero for a daemon without sockets).
    pub net: NetStats,
}

type Labels = Vec<(&'static str, &'static str)>;

/// Builds registries from one snapshot (every metric is created anew and set to the
/// snapshot's value; nothing is kept between scrapes).
struct Builder {
    reg: Registry,
}

impl Builder {
    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        self.reg.register(name, help, c);
    }

    fn seconds_total(&mut self, name: &str, help: &str, us: u64) {
        let c = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        c.inc_by(us as f64 / 1e6);
        self.reg.register_with_unit(name, help, Unit::Seconds, c);
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        self.reg.register(name, help, g);
    }

    fn seconds(&mut self, name: &str, help: &str, us: u64) {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(us as f64 / 1e6);
        self.reg.register_with_unit(name, help, Unit::Seconds, g);
    }

    fn counters(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        rows: &[(&'static str, u64)],
    ) {
        let f = Family::<Labels, Counter>::default();
        for (value, v) in rows {
            f.get_or_create(&vec![(label, *value)]).inc_by(*v);
        }
        self.reg.register(name, help, f);
    }

    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        rows: &[(&'static str, u64)],
    ) {
        let f = Family::<Labels, Gauge>::default();
        for (value, v) in rows {
            f.get_or_create(&vec![(label, *value)])
                .set(i64::try_from(*v).unwrap_or(i64::MAX));
        }
        self.reg.register(name, help, f);
    }
}

/// Per-service rows of `values`.
fn by_service(values: &[u64; Service::COUNT]) -> Vec<(&'static str, u64)> {
    Service::LABELS
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect()
}

/// Renders `s` in the OpenMetrics text format (every metric prefixed `spread_`).
pub fn render(s: &Snapshot) -> String {
    let m = &s.core;
    let e = &m.engine;
    let c = &m.clients;
    let g = &m.groups;
    let t = &m.topology;
    let mon = &m.monitor;
    let n = &s.net;
    let mut b = Builder {
        reg: Registry::with_prefix("spread"),
    };
    // Sessions, groups, members.
    b.gauge(
        "sessions",
        "Client sessions past the hello",
        m.sessions as u64,
    );
    b.gauge(
        "groups",
        "Groups with at least one member",
        m.group_count as u64,
    );
    b.gauge(
        "group_members",
        "Group memberships (members of all groups added up)",
        m.group_members as u64,
    );
    b.counter(
        "client_connections",
        "Client connections seen",
        c.connections,
    );
    b.counter("sessions_accepted", "Client sessions accepted", c.accepted);
    b.counter("client_requests", "Client requests processed", c.requests);
    b.counter(
        "client_messages_written",
        "Messages handed to local sessions for writing (membership messages included)",
        c.messages_out,
    );
    b.counters(
        "session_rejects",
        "Connect-time rejects sent, by reason",
        "reason",
        &[
            ("quota", c.rejects[0]),
            ("illegal_name", c.rejects[1]),
            ("not_unique", c.rejects[2]),
            ("version", c.rejects[3]),
            ("auth", c.rejects[4]),
        ],
    );
    let mut killed = vec![
        ("slow_reader", c.slow_reader_kills),
        ("hello_timeout", c.hello_timeouts),
    ];
    killed.extend(
        Violation::LABELS
            .iter()
            .copied()
            .zip(c.violations.iter().copied()),
    );
    b.counters(
        "sessions_killed",
        "Sessions the daemon ended, by reason (protocol violations by kind)",
        "reason",
        &killed,
    );
    b.counters(
        "sessions_closed",
        "Sessions ended by the client, by how",
        "how",
        &[
            ("kill_request", c.killed_by_request),
            ("peer_closed", c.closed_by_peer),
        ],
    );
    b.counter(
        "join_rejects",
        "JOINs refused (group full of local members)",
        c.rejected_joins,
    );
    b.counter(
        "unknown_session_inputs",
        "Shell inputs naming an unknown session (ignored)",
        c.unknown_session_inputs,
    );
    // Messages and bytes per service.
    b.counters(
        "messages_in",
        "Data messages received from local clients, by service",
        "service",
        &by_service(&c.messages_in),
    );
    b.counters(
        "bytes_in",
        "Bytes of data messages received from local clients, by service",
        "service",
        &by_service(&c.bytes_in),
    );
    b.counters(
        "messages_delivered",
        "Data messages ordered by the ring and applied here (all daemons' clients), by service",
        "service",
        &by_service(&c.messages_delivered),
    );
    b.counters(
        "bytes_delivered",
        "Bytes of data messages ordered by the ring and applied here, by service",
        "service",
        &by_service(&c.bytes_delivered),
    );
    // Ring.
    let st = &m.ring_status;
    b.gauges(
        "membership_state",
        "Membership state (1 for the current one)",
        "state",
        &[
            ("op", u64::from(m.state == State::Op)),
            ("seg", u64::from(m.state == State::Seg)),
            ("represented", u64::from(m.state == State::Represented)),
            ("gather", u64::from(m.state == State::Gather)),
            ("form", u64::from(m.state == State::Form)),
            ("evs", u64::from(m.state == State::Evs)),
        ],
    );
    b.gauges(
        "group_state",
        "Group-layer state, 5.0.1's names (1 for the current one)",
        "state",
        &[
            ("GOP", u64::from(m.group_state == "GOP")),
            ("GTRANS", u64::from(m.group_state == "GTRANS")),
            ("GGATHER", u64::from(m.group_state == "GGATHER")),
            ("GGT", u64::from(m.group_state == "GGT")),
        ],
    );
    b.gauge(
        "ring_members",
        "Daemons in the installed ring",
        m.ring_members as u64,
    );
    b.gauge(
        "daemon_id",
        "This daemon's id (5.0.1: its IPv4 address as a number)",
        u64::from(m.me.0),
    );
    b.gauge(
        "ring_leader",
        "Daemon id (IPv4 address as a number) of the installed ring's leader",
        u64::from(m.ring.leader.0),
    );
    b.gauge(
        "ring_aru",
        "Ring-wide aru of the installed ring",
        u64::from(st.aru),
    );
    b.gauge(
        "ring_my_aru",
        "Every seq up to this has been received",
        u64::from(st.my_aru),
    );
    b.gauge(
        "ring_highest_seq",
        "Highest seq seen in the installed ring",
        u64::from(st.highest_seq),
    );
    b.gauge(
        "ring_token_rounds",
        "Tokens processed in the installed ring",
        u64::from(st.token_rounds),
    );
    b.gauge("ring_window", "Window in force", u64::from(st.window));
    b.gauge(
        "ring_personal_window",
        "PersonalWindow in force",
        u64::from(st.personal_window),
    );
    b.counter(
        "token_rotations",
        "Leader: token rotations completed",
        e.token_rotations,
    );
    b.seconds_total(
        "token_rotation",
        "Leader: total time of the completed token rotations",
        e.rotation_time_us,
    );
    b.seconds(
        "last_token_rotation",
        "Leader: time of the last token rotation",
        e.last_rotation_us,
    );
    b.counter(
        "token_hurry",
        "Tokens re-sent on Hurry_timeout or accepted re-sent (5.0.1 token_hurry)",
        e.token_hurry,
    );
    b.counter(
        "retransmissions_requested",
        "Sequence numbers this daemon asked to have re-sent",
        e.retrans_requested,
    );
    b.counter(
        "retransmissions_sent",
        "Packets re-sent on a retransmission request",
        e.retransmitted,
    );
    b.counter(
        "ring_packets_sent",
        "Data packets originated",
        e.packets_sent,
    );
    b.counter(
        "ring_packets_received",
        "Data packets received from other daemons",
        e.packets_received,
    );
    b.counter(
        "ring_duplicates",
        "Data packets received twice",
        e.duplicates,
    );
    b.counter(
        "ring_messages_delivered",
        "Messages delivered by the ring (GROUPS, JOIN, LEAVE, KILL included)",
        e.delivered,
    );
    b.counter(
        "membership_changes",
        "Regular configurations installed",
        e.installs,
    );
    b.counter(
        "token_losses",
        "Token losses (ring broken, form failed, EVS failed)",
        e.token_losses,
    );
    // Group-state exchange.
    b.counter("exchanges", "Group-state exchanges completed", g.exchanges);
    b.counter(
        "exchanges_cut",
        "Exchanges cut by a new configuration change",
        g.exchanges_cut,
    );
    b.counter(
        "exchanges_completed_in_transition",
        "Exchanges completed after a transitional configuration",
        g.completed_in_transition,
    );
    b.counter(
        "exchange_held_messages",
        "Client messages held while an exchange ran",
        g.held,
    );
    b.counter(
        "groups_messages_sent",
        "GROUPS messages sent",
        g.groups_sent,
    );
    b.counter(
        "exchanges_timed",
        "Exchanges timed (from the regular configuration to completion)",
        m.exchange.count,
    );
    b.seconds_total(
        "exchange",
        "Total time of the timed exchanges",
        m.exchange.total_us,
    );
    b.seconds(
        "last_exchange",
        "Time of the last exchange",
        m.exchange.last_us,
    );
    b.counter(
        "fatal_for_5_0_1",
        "Deliveries on which a 5.0.1 daemon would have aborted",
        g.fatal_for_5_0_1,
    );
    b.gauge(
        "interop_violations_kept",
        "Descriptions of such deliveries kept",
        m.interop_violations as u64,
    );
    // Drops.
    b.counters(
        "packets_dropped",
        "Datagrams and packets dropped, by reason",
        "reason",
        &[
            ("malformed", e.malformed),
            ("short", t.rejected[0]),
            ("length", t.rejected[1]),
            ("foreign_configuration", t.rejected[2]),
            ("unknown_transmitter", t.rejected[3]),
            ("wrong_source", t.rejected[4]),
            ("own", t.rejected[5]),
            ("unknown_sender", n.unknown_source),
            ("partition", mon.partition_drops),
            ("stale", e.dropped),
            ("group_malformed", g.malformed),
            ("group_foreign", g.ignored),
            ("unexpected_groups", g.unexpected_groups),
        ],
    );
    b.counters(
        "submissions_dropped",
        "Messages dropped over a limit, by limit",
        "limit",
        &[
            ("engine_queue", e.queue_full),
            ("waiting", m.waiting_dropped),
            ("stale_exchange", e.stale_exchange),
        ],
    );
    b.gauges(
        "queue_depth",
        "Messages waiting, by queue",
        "queue",
        &[
            ("waiting", m.queues.waiting as u64),
            ("send", m.queues.send_queue as u64),
            ("sessions", m.queues.session_messages as u64),
        ],
    );
    b.gauge(
        "session_queue_bytes",
        "Bytes queued for local sessions, not yet written",
        m.queues.session_bytes as u64,
    );
    // Network layer and sockets.
    b.counter(
        "relayed",
        "ROUTED packets re-broadcast to my segment",
        t.relayed,
    );
    b.counter(
        "looped",
        "Datagrams handed back to myself without a socket",
        t.looped,
    );
    b.counter("datagrams_sent", "Ring datagrams sent", n.sent);
    b.counter(
        "send_calls",
        "Send system calls (sendmmsg batches)",
        n.send_calls,
    );
    b.counter(
        "send_drops",
        "Datagrams dropped on send (backlog full or kernel error)",
        n.send_drops,
    );
    b.counter(
        "send_deferred",
        "Datagrams that waited for the socket to become writable",
        n.deferred,
    );
    // Monitor.
    b.counter(
        "monitor_status_replies",
        "STATUS replies sent",
        mon.status_replies,
    );
    b.counter(
        "monitor_denied",
        "PARTITION / FC refused (DangerousMonitor off)",
        mon.denied,
    );
    b.counter(
        "monitor_ignored",
        "Control packets accepted but unusable",
        mon.ignored,
    );
    b.counter(
        "monitor_partitions",
        "PARTITION packets applied",
        mon.partitions,
    );
    b.counter(
        "monitor_flow_changes",
        "FC packets applied",
        mon.flow_changes,
    );
    b.counter(
        "monitor_reloads_unsupported",
        "RELOAD requests not supported",
        mon.reloads_unsupported,
    );
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode(&mut out, &b.reg);
    out
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    core: CoreHandle,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "metrics endpoint: http://{a}/metrics");
    }
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let core = core.clone();
                    conns.spawn(async move {
                        if let Err(e) = answer(stream, &core).await {
                            debug!(%peer, error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, core: &CoreHandle) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        std::io::Result::Ok(())
    })
    .await;
    if !matches!(head, Ok(Ok(()))) {
        return Ok(());
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => match tokio::time::timeout(SNAPSHOT_TIMEOUT, core.metrics()).await {
            Ok(Ok(s)) => ("200 OK", CONTENT_TYPE, render(&s)),
            _ => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "the daemon core did not answer\n".to_owned(),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
