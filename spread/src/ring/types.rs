//! Public value types of the ring engine: ids, services, inputs, outputs, timers, settings.

use std::time::Duration;

use bytes::Bytes;

/// Most daemons in one ring (MAX_PROCS_RING in 5.0.1).
pub const MAX_PROCS_RING: usize = 128;

pub use crate::ids::{DaemonId, RingId};

/// The six Spread services a message can be sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Travels as RELIABLE (5.0.1 never treats it specially).
    Unreliable,
    /// Reliable, no ordering promise.
    Reliable,
    /// Per-sender FIFO.
    Fifo,
    /// Causal (travels as AGREED).
    Causal,
    /// Total order.
    Agreed,
    /// Total order, delivered in the regular configuration only once every member has it.
    Safe,
}

impl Service {
    /// Number of services.
    pub const COUNT: usize = 6;

    /// A lower-case name of each service, by [`Service::index`] (metric labels).
    pub const LABELS: [&'static str; Self::COUNT] =
        ["unreliable", "reliable", "fifo", "causal", "agreed", "safe"];

    /// Index into per-service counters (0 = UNRELIABLE … 5 = SAFE).
    pub fn index(self) -> usize {
        match self {
            Self::Unreliable => 0,
            Self::Reliable => 1,
            Self::Fifo => 2,
            Self::Causal => 3,
            Self::Agreed => 4,
            Self::Safe => 5,
        }
    }

    /// The packet delivery class 5.0.1 derives from the service (§7.1).
    pub fn class(self) -> Class {
        match self {
            Self::Unreliable | Self::Reliable => Class::Reliable,
            Self::Fifo => Class::Fifo,
            Self::Causal | Self::Agreed => Class::Agreed,
            Self::Safe => Class::Safe,
        }
    }
}

/// Packet delivery class (the type bit of a data packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Class {
    /// RELIABLE 0x2.
    Reliable = 2,
    /// FIFO 0x4.
    Fifo = 4,
    /// AGREED 0x8.
    Agreed = 8,
    /// SAFE 0x10.
    Safe = 16,
}

impl Class {
    /// From the type bit value.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            2 => Some(Self::Reliable),
            4 => Some(Self::Fifo),
            8 => Some(Self::Agreed),
            16 => Some(Self::Safe),
            _ => None,
        }
    }

    /// The class a data packet's type bits carry (5.0.1 reads the highest: SAFE, AGREED,
    /// FIFO, then RELIABLE or UNRELIABLE); `None` without one.
    pub fn of(kind: crate::wire::daemon::TypeBits) -> Option<Self> {
        use crate::wire::daemon::TypeBits as T;
        if kind.has(T::SAFE) {
            Some(Self::Safe)
        } else if kind.has(T::AGREED) {
            Some(Self::Agreed)
        } else if kind.has(T::FIFO) {
            Some(Self::Fifo)
        } else if kind.has(T::RELIABLE | T::UNRELIABLE) {
            Some(Self::Reliable)
        } else {
            None
        }
    }

    /// May messages of classes `self` and `other` share one packet (§7.2: FIFO and AGREED mix,
    /// the others only with themselves)?
    pub fn packs_with(self, other: Self) -> bool {
        self == other
            || matches!(
                (self, other),
                (Self::Fifo, Self::Agreed) | (Self::Agreed, Self::Fifo)
            )
    }
}

/// Which of a daemon's two UDP ports a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// Segment port P: data, JOIN, HURRY, retransmissions.
    Data,
    /// P+1: tokens and FORM tokens.
    Token,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    /// A data packet for every daemon of the ring: my segment's broadcast plus, with several
    /// segments, a ROUTED copy to each other segment's relay (the network layer, §15.2).
    Broadcast,
    /// 5.0.1's "scast": only the other daemons of my configured segment (nothing at all when
    /// I am alone in it). ALIVE, JOIN and the single-segment lookup JOIN go this way.
    Segment,
    /// One daemon (possibly the sender itself, over loopback).
    Unicast(DaemonId),
}

/// An input to [`super::Engine::handle`].
#[derive(Debug, Clone)]
pub enum Input {
    /// A datagram received from daemon `from` (the shell has already mapped the source address
    /// to a configured daemon id; unknown sources are dropped by the shell).
    Packet {
        /// Sending daemon.
        from: DaemonId,
        /// Port it arrived on.
        port: Port,
        /// The datagram.
        bytes: Bytes,
    },
    /// A message to order and deliver to every daemon of the ring.
    Submit {
        /// Requested service.
        service: Service,
        /// Opaque message bytes (in mbus: the 5.0.1 message header, groups and body).
        payload: Bytes,
    },
    /// A message of the group-state exchange of ring `ring` (5.0.1's GROUPS down queue):
    /// sent ahead of [`Input::Submit`] messages and even while the exchange gate holds them
    /// ([`crate::ring::Engine::set_exchanging`]). Dropped if `ring` is no longer installed,
    /// and any still unsent when a new ring is installed.
    SubmitExchange {
        /// The regular configuration whose exchange this message belongs to.
        ring: RingId,
        /// Requested service.
        service: Service,
        /// Opaque message bytes.
        payload: Bytes,
    },
}

/// A message delivered in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Daemon that originated the message.
    pub sender: DaemonId,
    /// Delivery class it travelled with.
    pub class: Class,
    /// The bytes given to `Submit`.
    pub payload: Bytes,
    /// Regular configuration (ring) the message belongs to.
    pub ring: RingId,
    /// Delivered in the transitional configuration that closes `ring`.
    pub transitional: bool,
    /// Sequence number of its last packet in `ring` (for tests and tracing).
    pub seq: u32,
}

/// Kind of a configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    /// The members of the previous regular configuration that move together into the next one.
    Transitional,
    /// A newly installed ring.
    Regular,
}

/// A configuration change, emitted transitional first, then regular.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Transitional or regular.
    pub kind: ConfigKind,
    /// Regular: the new ring id. Transitional: the ring it closes.
    pub ring: RingId,
    /// Regular: the id of the next ring. Transitional: its (leader, time − 1) id as 5.0.1
    /// reports it.
    pub id: RingId,
    /// Members, in configuration order.
    pub members: Vec<DaemonId>,
}

/// An output drained with [`super::Engine::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Put a datagram on the wire.
    Send {
        /// Destination.
        to: Dest,
        /// Destination port.
        port: Port,
        /// The datagram.
        bytes: Bytes,
    },
    /// An ordered message.
    Deliver(Delivery),
    /// A configuration change.
    Configuration(ConfigChange),
}

/// The engine's timers, each one slot of the deadline table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Token_timeout: no valid token for this long means the ring is broken.
    TokenLoss = 0,
    /// Hurry_timeout at the leader: re-send the token (lost, or held on an idle ring).
    TokenHurry = 1,
    /// Join_timeout: re-broadcast JOIN while gathering.
    Join = 2,
    /// Gather_timeout: decide (form or fail).
    Gather = 3,
    /// Form_timeout: the FORM tokens did not come back.
    Form = 4,
    /// Lookup_timeout: the leader probes for daemons outside its ring.
    Lookup = 5,
    /// Alive_timeout: SEG re-sends its ALIVE.
    Alive = 6,
    /// Seg_timeout: SEG decides between GATHER and REPRESENTED.
    Seg = 7,
    /// Rep_timeout: REPRESENTED without news from its representative goes back to SEG.
    Rep = 8,
    /// A token kept for a local reply is sent on ([`RingConfig::reply_wait`]).
    ReplyWait = 9,
}

impl Timer {
    /// Number of timers.
    pub const COUNT: usize = 10;
    /// All timers, in the order they fire when due together.
    pub const ALL: [Self; Self::COUNT] = [
        Self::TokenLoss,
        Self::TokenHurry,
        // Gather before Join, Seg before Alive: 5.0.1's periodic JOIN/ALIVE drift a little
        // later each round, so its decision comes first when both fall due together.
        Self::Gather,
        Self::Join,
        Self::Form,
        Self::Lookup,
        Self::Seg,
        Self::Alive,
        Self::Rep,
        Self::ReplyWait,
    ];
}

/// Counters an operator (and the tests) can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Well-formed packets ignored (wrong ring, wrong state, stale token, own broadcast…).
    pub dropped: u64,
    /// Undecodable packets.
    pub malformed: u64,
    /// Packets re-sent on a retransmission request.
    pub retransmitted: u64,
    /// Data packets received twice.
    pub duplicates: u64,
    /// Data packets originated.
    pub packets_sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Submissions refused because the send queue was full.
    pub queue_full: u64,
    /// Exchange messages dropped: submitted for a ring no longer installed, or left unsent
    /// when a new ring was installed.
    pub stale_exchange: u64,
    /// Regular configurations installed.
    pub installs: u64,
    /// Token losses (ring broken, form failed, EVS failed).
    pub token_losses: u64,
    /// Data packets received from other daemons (5.0.1's `packet_recv`).
    pub packets_received: u64,
    /// Tokens re-sent by the leader on Hurry_timeout, plus re-sent tokens (retrans > 0)
    /// accepted as a member (5.0.1's `token_hurry`).
    pub token_hurry: u64,
    /// Leader: times it visited its held idle token again to send its own new messages
    /// with it (an mbus shortcut; 5.0.1 sends the held token round empty first).
    pub token_revisits: u64,
    /// Visited tokens kept for a local reply ([`RingConfig::reply_wait`]).
    pub reply_holds: u64,
    /// Kept tokens that left with a reply.
    pub reply_hits: u64,
    /// Kept tokens that left without one at the deadline.
    pub reply_misses: u64,
    /// Rings this daemon re-formed because its aru stayed below the ring's highest seq for a
    /// whole Token_timeout while the token kept coming (packets nobody has).
    pub stalls: u64,
    /// Tokens dropped for a seq further ahead of the ring's aru than any honest sender goes
    /// (MAX_SEQ_GAP plus the windows of a couple of rotations).
    pub wild_tokens: u64,
    /// Sequence numbers this daemon asked to have re-sent (entries it put in tokens'
    /// retransmission requests).
    pub retrans_requested: u64,
    /// Leader: token rotations completed (the token it sent came back).
    pub token_rotations: u64,
    /// Leader: sum of the rotation times of [`Stats::token_rotations`], microseconds (from
    /// sending the token, or releasing a held one, to its return).
    pub rotation_time_us: u64,
    /// Leader: the last rotation's time, microseconds.
    pub last_rotation_us: u64,
}

/// Ring and membership settings (built from `spread::config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// This daemon.
    pub me: DaemonId,
    /// Every configured daemon, in configuration order (segment, then position).
    pub daemons: Vec<DaemonId>,
    /// Segment index of each daemon of `daemons` (same length; missing entries count as
    /// segment 0, so an empty list is one segment).
    pub segments: Vec<u16>,
    /// Wide-area mode (5.0.1 `Wide_network`: `WideAreaNetwork`, else several segments): the
    /// last ring member of a segment adds one copy when it re-sends a token.
    pub wide_area: bool,
    /// Token_timeout.
    pub token_timeout: Duration,
    /// Hurry_timeout.
    pub hurry_timeout: Duration,
    /// Join_timeout.
    pub join_timeout: Duration,
    /// Alive_timeout.
    pub alive_timeout: Duration,
    /// Rep_timeout.
    pub rep_timeout: Duration,
    /// Seg_timeout.
    pub seg_timeout: Duration,
    /// Gather_timeout.
    pub gather_timeout: Duration,
    /// Form_timeout.
    pub form_timeout: Duration,
    /// Lookup_timeout.
    pub lookup_timeout: Duration,
    /// Window: packets per rotation, whole ring.
    pub window: u16,
    /// PersonalWindow: packets per token visit.
    pub personal_window: u16,
    /// Configuration hash carried in (and required of) every packet.
    pub conf_hash: u32,
    /// Accelerated Ring (`AcceleratedRing = true`): forward the token before the last
    /// `accelerated_window` new packets of a visit. 5.0.1's default is the original ring.
    pub accelerated: bool,
    /// AcceleratedWindow.
    pub accelerated_window: u16,
    /// Longest a daemon that has just delivered messages keeps a visited token (with nothing
    /// to send) for a client's answer to go with it — an mbus addition, invisible on the wire
    /// (see `ring::reply`); zero: never, as 5.0.1. Default [`DEFAULT_REPLY_WAIT`].
    pub reply_wait: Duration,
}

/// Default [`RingConfig::reply_wait`].
pub const DEFAULT_REPLY_WAIT: Duration = Duration::from_micros(500);

impl RingConfig {
    /// 5.0.1's single-segment (LAN) defaults.
    pub fn lan(me: DaemonId, daemons: Vec<DaemonId>) -> Self {
        let segments = vec![0; daemons.len()];
        Self {
            me,
            daemons,
            segments,
            wide_area: false,
            token_timeout: Duration::from_millis(1250),
            hurry_timeout: Duration::from_millis(500),
            join_timeout: Duration::from_millis(250),
            alive_timeout: Duration::from_millis(250),
            rep_timeout: Duration::from_millis(625),
            seg_timeout: Duration::from_millis(500),
            gather_timeout: Duration::from_millis(1250),
            form_timeout: Duration::from_millis(1250),
            lookup_timeout: Duration::from_millis(30_000),
            window: 160,
            personal_window: 20,
            conf_hash: 0,
            accelerated: false,
            accelerated_window: 15,
            reply_wait: DEFAULT_REPLY_WAIT,
        }
    }
}

impl RingConfig {
    /// Settings for the daemon called `me` from a parsed configuration: daemon ids in
    /// configuration order, the timeout table 5.0.1 would use (explicit `*Timeout` lines, else
    /// WAN with several segments unless `WideAreaNetwork = no`, else LAN), the windows, the ring
    /// protocol and the configuration hash. `None` if `me` is not a configured daemon.
    pub fn from_config(cfg: &crate::config::Config, me: &str) -> Option<Self> {
        let (_, host) = cfg.find_host(me)?;
        let daemons = cfg.hosts().map(|(_, h)| DaemonId(h.vid)).collect();
        let segments = cfg
            .hosts()
            .map(|(id, _)| u16::try_from(id.segment).unwrap_or(u16::MAX))
            .collect();
        let t = cfg.timeouts();
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        let hash = crate::ids::HashInput::from_config(cfg);
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        Some(Self {
            me: DaemonId(host.vid),
            daemons,
            segments,
            wide_area: cfg.wide_area(),
            token_timeout: ms(t.token_ms),
            hurry_timeout: ms(t.hurry_ms),
            join_timeout: ms(t.join_ms),
            alive_timeout: ms(t.alive_ms),
            rep_timeout: ms(t.rep_ms),
            seg_timeout: ms(t.seg_ms),
            gather_timeout: ms(t.gather_ms),
            form_timeout: ms(t.form_ms),
            lookup_timeout: ms(t.lookup_ms),
            window: clamp(cfg.window()),
            personal_window: clamp(cfg.personal_window()),
            conf_hash: hash.conf_hash(),
            accelerated: cfg.accelerated_ring(),
            accelerated_window: clamp(cfg.accelerated_window()),
            reply_wait: DEFAULT_REPLY_WAIT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_capture_configuration_match_5_0_1() {
        let text = "Spread_Segment 10.98.0.255:4803 {\n  d1 10.98.0.1\n  d2 10.98.0.2\n  d3 10.98.0.3\n}\n";
        let cfg = crate::config::Config::parse(text, "t.conf").unwrap();
        let r = RingConfig::from_config(&cfg, "d2").unwrap();
        assert_eq!(r.me, DaemonId(0x14c5_65a0));
        assert_eq!(
            r.daemons,
            vec![
                DaemonId(0x5c8d_7aef),
                DaemonId(0x14c5_65a0),
                DaemonId(0xef46_226e)
            ]
        );
        assert_eq!(r.conf_hash, 0x9f2a_d697);
        assert_eq!(r.token_timeout, Duration::from_millis(1250));
        assert_eq!(
            (r.window, r.personal_window, r.accelerated),
            (160, 20, false)
        );
        let accel = format!("{text}AcceleratedRing = true\n");
        let cfg = crate::config::Config::parse(&accel, "t.conf").unwrap();
        let r = RingConfig::from_config(&cfg, "d1").unwrap();
        assert_eq!((r.conf_hash, r.accelerated), (0x90d8_bf74, true));
        assert!(RingConfig::from_config(&cfg, "d9").is_none());
    }
}
