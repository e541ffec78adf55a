//! The snapshot as OpenMetrics text (`prometheus-client`): names, help texts, labels.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use spread::ring::{Service, State};
use spread::session::Violation;

use super::Snapshot;

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
    b.gauge(
        "ring_accelerated",
        "1 when the Accelerated Ring protocol is in force",
        u64::from(st.accelerated),
    );
    b.gauge(
        "ring_accelerated_window",
        "AcceleratedWindow in force",
        u64::from(st.accelerated_window),
    );
    b.gauge(
        "ring_id_time",
        "Time part of the installed ring's id (changes with every new ring)",
        u64::try_from(m.ring.time).unwrap_or(0),
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
        "ring_stalls",
        "Rings re-formed because missing packets stayed unrecovered for a whole token timeout",
        e.stalls,
    );
    b.counter(
        "wild_tokens",
        "Tokens dropped for claiming a seq no honest daemon can have reached",
        e.wild_tokens,
    );
    b.counter(
        "token_revisits",
        "Leader: held idle token visited again to send its own new messages at once",
        e.token_revisits,
    );
    b.counter(
        "reply_holds",
        "Visited tokens kept for a local client's answer (MBUS_REPLY_WAIT_US)",
        e.reply_holds,
    );
    b.counter(
        "reply_hits",
        "Kept tokens that left with a local client's answer",
        e.reply_hits,
    );
    b.counter(
        "reply_misses",
        "Kept tokens that left without an answer at the deadline",
        e.reply_misses,
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
        "exchanges_forfeited",
        "Members that sent client messages during an exchange before their GROUPS (counted as an empty set)",
        g.exchanges_forfeited,
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
    b.gauge(
        "unsent_bytes",
        "Payload bytes of client messages waiting for the ring (flow control at 4 MiB)",
        m.queues.unsent_bytes as u64,
    );
    // Live reconfiguration.
    let r = &m.reload;
    b.counter(
        "reload_requests",
        "New configurations handed in (RELOAD, SIGHUP)",
        r.requests,
    );
    b.counter("reloads_applied", "New configurations applied", r.applied);
    b.counter(
        "reloads_deferred",
        "New configurations that waited for OP",
        r.deferred,
    );
    b.counter(
        "reload_singletons",
        "Reloads that went through a singleton ring",
        r.singletons,
    );
    b.counter(
        "reload_remerges",
        "Singleton rings after a reload whose partition was cleared",
        r.remerges,
    );
    b.counter(
        "reload_exits",
        "New configurations that made this daemon exit",
        r.exits,
    );
    // The secure ring (only when it is on).
    if let Some(l) = &m.link {
        b.counter("link_sealed", "Datagrams sealed (secure ring)", l.sealed);
        b.counter(
            "link_opened",
            "Datagrams opened, authentic and fresh (secure ring)",
            l.opened,
        );
        b.counters(
            "link_dropped",
            "Datagrams dropped by the secure ring, by reason",
            "reason",
            &[
                ("plain", l.plain),
                ("malformed", l.malformed),
                ("unknown_key", l.unknown_key),
                ("forged", l.forged),
                ("replayed", l.replayed),
                ("misdirected", l.misdirected),
                ("stale_run", l.stale_boot),
            ],
        );
    }
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
        "datagrams_segmented",
        "Ring datagrams sent in segmented runs (UDP GSO: one system call per run)",
        n.segmented,
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
