//! Replays real 5.0.1 multi-segment captures (`tests/data/daemon/n_*.hex`) against one
//! engine: every datagram the capture shows reaching daemon X (unicast to X, or X's segment
//! broadcast) is fed to an engine configured as X, at the captured time; the engine's own
//! timers run on the same clock and its unicasts to itself loop back. The membership packets
//! the engine sends (kind and destination, in order) must be the ones the real X sent.

use bytes::Bytes;

use crate::config::Config;
use crate::ring::{DaemonId, Dest, Engine, Input, Output, Port, RingConfig};
use crate::time::Instant;
use crate::wire::daemon::{Datagram, PacketBody, TokenBody};

/// One captured datagram.
pub(super) struct Dgram {
    pub(super) t_us: u64,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) port: Port,
    pub(super) bytes: Bytes,
}

pub(super) struct Capture {
    pub(super) cfg: Config,
    pub(super) dgrams: Vec<Dgram>,
}

/// Capture times are seconds from capture start; the engine's clock is offset by this much
/// so that times before the capture are still positive.
pub(super) const ORIGIN_US: u64 = 10_000_000;

pub(super) fn load(file: &str) -> Capture {
    let path = format!("{}/../tests/data/daemon/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let conf: String = text
        .lines()
        .skip_while(|l| !l.starts_with("#     Spread_Segment"))
        .take_while(|l| l.starts_with("#     "))
        .map(|l| format!("{}\n", &l[6..]))
        .collect();
    let cfg = Config::parse(&conf, "capture.conf").unwrap_or_else(|e| panic!("{file}: {e}"));
    let dgrams = text
        .lines()
        .filter(|l| l.starts_with("P "))
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            let secs: f64 = c[1].parse().unwrap();
            let (dst, dport) = c[3].split_once(':').unwrap();
            let hex = c[5];
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            Dgram {
                t_us: ORIGIN_US + (secs * 1e6).round() as u64,
                src: c[2].split(':').next().unwrap().to_string(),
                dst: dst.to_string(),
                port: if dport.ends_with('4') {
                    Port::Token
                } else {
                    Port::Data
                },
                bytes: Bytes::from(bytes),
            }
        })
        .collect();
    Capture { cfg, dgrams }
}

/// Short name of a packet kind.
pub(super) fn kind(hash: u32, port: Port, bytes: &[u8]) -> &'static str {
    match Datagram::decode(hash, port == Port::Token, bytes) {
        Ok(Datagram::Packet(p)) => match p.body {
            PacketBody::Alive(_) => "ALIVE",
            PacketBody::Join(_) => "JOIN",
            PacketBody::Refer => "REFER",
            PacketBody::Hurry => "HURRY",
            PacketBody::Data(_) => "DATA",
            _ => "OTHER",
        },
        Ok(Datagram::Token(t)) => match t.body {
            TokenBody::Form1(_) => "FORM1",
            TokenBody::Form2(_) => "FORM2",
            TokenBody::Regular(_) => "TOKEN",
        },
        Err(_) => "OTHER",
    }
}

const MEMBERSHIP: &[&str] = &["ALIVE", "JOIN", "REFER", "FORM1", "FORM2"];

/// What to compare: membership packets in `[from_us, to_us]`, and the first `tokens` tokens.
struct Window {
    from_us: u64,
    to_us: u64,
    tokens: usize,
    /// Compare ALIVE, JOIN and REFER byte for byte (else by kind and destination).
    bytes: bool,
}

/// A datagram a daemon sends itself takes this long over loopback (observed: 20–50 µs).
const LOOPBACK_US: u64 = 40;

/// Keeps the membership packets and the first `w.tokens` tokens of a list of (time, kind,
/// destination).
fn compared(sends: &[(u64, &'static str, String, Bytes)], w: &Window) -> Vec<String> {
    let mut tokens = 0;
    let mut v = Vec::new();
    for (t, k, dest, bytes) in sends {
        if *t < w.from_us || *t > w.to_us {
            continue;
        }
        let keep = if *k == "TOKEN" {
            tokens += 1;
            tokens <= w.tokens
        } else {
            MEMBERSHIP.contains(k)
        };
        // ALIVE, JOIN and REFER are compared byte for byte; FORM tokens carry ids with the
        // daemons' clocks and stale array tails, so by kind and destination only.
        if keep && w.bytes && matches!(*k, "ALIVE" | "JOIN" | "REFER") {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            v.push(format!("{k}->{dest} {hex}"));
        } else if keep {
            v.push(format!("{k}->{dest}"));
        }
    }
    v
}

/// Replays `file` for daemon `me` from its start; returns (ours, real), each a list of
/// "KIND->dest" in order.
fn replay(file: &str, me: &str, window: impl Fn(u64) -> Window) -> (Vec<String>, Vec<String>) {
    let cap = load(file);
    let names: Vec<(DaemonId, String, usize)> = cap
        .cfg
        .hosts()
        .map(|(id, h)| (DaemonId(h.vid), h.name.clone(), id.segment))
        .collect();
    let seg_letter = me.chars().next().unwrap();
    let bcast = if cap.cfg.segments.len() == 1 {
        "bcast".to_string()
    } else {
        format!("bcast_{seg_letter}")
    };
    let my_seg = names.iter().find(|n| n.1 == me).unwrap().2;
    // 5.0.1's scast sends nothing when the configured segment has only this daemon.
    let alone = names.iter().filter(|n| n.2 == my_seg).count() == 1;
    let rc = RingConfig::from_config(&cap.cfg, me).unwrap();
    let hash = rc.conf_hash;
    let me_id = rc.me;
    let name_of = |d: DaemonId| names.iter().find(|n| n.0 == d).unwrap().1.clone();
    let id_of = |s: &str| names.iter().find(|n| n.1 == s).map(|n| n.0);
    let mine: Vec<&Dgram> = cap.dgrams.iter().filter(|d| d.src == me).collect();
    // 5.0.1 arms Seg_timeout at start-up, a few ms before its first ALIVE goes out (and a
    // daemon alone in its segment sends none): when this daemon gathers, its first JOIN
    // (Seg_timeout after start) dates the start best.
    let first = mine.first().unwrap();
    let seg_us = u64::try_from(rc.seg_timeout.as_micros()).unwrap();
    let first_join = mine
        .iter()
        .take_while(|d| matches!(kind(hash, d.port, &d.bytes), "ALIVE" | "JOIN"))
        .find(|d| kind(hash, d.port, &d.bytes) == "JOIN");
    let start = first_join.map_or(first.t_us, |j| (j.t_us - seg_us).min(first.t_us));
    let w = window(start);
    // Align the engine's seconds clock with the capture's: the first FORM1 this daemon
    // created carries its clock (the ring's FORM2 and tokens then carry the same ids).
    let created = mine.iter().find_map(|d| {
        let Ok(Datagram::Token(t)) = Datagram::decode(hash, d.port == Port::Token, &d.bytes) else {
            return None;
        };
        let id = t.header.memb_id;
        match t.body {
            TokenBody::Form1(f) if id.leader == me_id && f.members.members.len() == 1 => {
                Some((d.t_us, id.time as u32))
            }
            _ => None,
        }
    });
    let clock = created.map_or(1_000, |(t, time)| {
        time.wrapping_sub(((t / 1_000_000) - (start / 1_000_000)) as u32)
    });
    // Inputs: what reached this daemon in the capture, plus (added as they happen) what
    // the engine sends itself. Ordered by (time, insertion).
    let mut queue: std::collections::BTreeMap<(u64, usize), (DaemonId, Port, Bytes)> = cap
        .dgrams
        .iter()
        .filter(|d| d.src != me && d.t_us >= start && d.t_us <= w.to_us)
        .filter(|d| d.dst == me || d.dst == bcast)
        .enumerate()
        .filter_map(|(i, d)| Some(((d.t_us, i), (id_of(&d.src)?, d.port, d.bytes.clone()))))
        .collect();
    let mut seq = queue.len();
    let mut e = Engine::new(rc, Instant(start), clock);
    let mut ours: Vec<(u64, &'static str, String, Bytes)> = Vec::new();
    let mut now = Instant(start);
    for _ in 0..1_000_000 {
        while let Some(o) = e.poll_output() {
            let Output::Send { to, port, bytes } = o else {
                continue;
            };
            let k = kind(hash, port, &bytes);
            match to {
                Dest::Segment | Dest::Broadcast if alone => {}
                Dest::Segment | Dest::Broadcast => {
                    ours.push((now.0, k, bcast.clone(), bytes.clone()));
                }
                Dest::Unicast(d) => ours.push((now.0, k, name_of(d), bytes.clone())),
            }
            if to == Dest::Unicast(me_id) {
                queue.insert((now.0 + LOOPBACK_US, seq), (me_id, port, bytes));
                seq += 1;
            }
        }
        let next_input = queue.first_key_value().map(|(k, _)| k.0);
        let next_timer = e.poll_timeout().map(|t| t.0);
        match (next_input, next_timer) {
            (_, Some(t)) if t <= w.to_us && next_input.is_none_or(|i| t <= i) => {
                now = Instant(t);
                e.handle_timeout(now);
            }
            (Some(i), _) if i <= w.to_us => {
                let Some(((_, _), (from, port, bytes))) = queue.pop_first() else {
                    break;
                };
                now = Instant(i);
                e.handle(now, Input::Packet { from, port, bytes });
            }
            _ => break,
        }
    }
    let real: Vec<(u64, &'static str, String, Bytes)> = mine
        .iter()
        .map(|d| {
            let k = kind(hash, d.port, &d.bytes);
            (d.t_us, k, d.dst.clone(), d.bytes.clone())
        })
        .collect();
    (compared(&ours, &w), compared(&real, &w))
}

fn secs(s: f64) -> u64 {
    ORIGIN_US + (s * 1e6) as u64
}

fn assert_same(file: &str, me: &str, window: impl Fn(u64) -> Window) {
    let (ours, real) = replay(file, me, window);
    if std::env::var_os("MBUS_REPLAY_DEBUG").is_some() {
        eprintln!("{file} {me}\n ours {ours:?}\n real {real:?}");
    }
    assert!(!real.is_empty(), "{file} {me}: nothing to compare");
    assert_eq!(ours, real, "{file} as {me}");
}

/// Membership packets over `[start, until_s]` and the first `tokens` tokens.
fn membership(until_s: f64, tokens: usize) -> impl Fn(u64) -> Window {
    move |start| Window {
        from_us: start,
        to_us: secs(until_s),
        tokens,
        bytes: true,
    }
}

/// [`membership`] by kind and destination only.
fn kinds(until_s: f64, tokens: usize) -> impl Fn(u64) -> Window {
    move |start| Window {
        bytes: false,
        ..membership(until_s, tokens)(start)
    }
}

#[test]
fn two_plus_two_formation_matches_5_0_1_at_every_daemon() {
    for me in ["e1", "e2", "w1", "w2"] {
        assert_same("n_multiseg22_form_data.hex", me, membership(3.6, 3));
    }
}

#[test]
fn two_plus_one_formation_matches_5_0_1() {
    // w1 is alone in its segment: no ALIVE, JOINs by unicast only.
    for me in ["e1", "e2", "w1"] {
        assert_same("n_multiseg_form.hex", me, membership(3.6, 3));
    }
}

#[test]
fn three_segments_formation_matches_5_0_1() {
    for me in ["e1", "e2", "w1", "s1"] {
        assert_same("n_multiseg3.hex", me, membership(3.6, 3));
    }
}

#[test]
fn lan_timers_with_wide_area_network_no() {
    for me in ["e1", "e2", "w1", "w2"] {
        assert_same("n_multiseg22_lan.hex", me, membership(2.35, 3));
    }
}

#[test]
fn first_configured_daemons_down_segments_meet_at_the_45_s_lookup() {
    // Each forms a singleton ring, then e2's lookup JOIN (45 s later, unicast to every
    // missing daemon) merges them.
    assert_same("n_multiseg22_first_down.hex", "e2", membership(56.5, 0));
    // w2's own lookup fell due within a millisecond of e2's JOIN arriving; the real w2 got
    // the JOIN first by timer slack, which a replay cannot reproduce: compare w2 up to then.
    assert_same("n_multiseg22_first_down.hex", "w2", membership(48.5, 0));
}

#[test]
fn joiner_of_a_running_multi_segment_ring() {
    // The file leaves out 9.85 .. 11.5 s: compare up to the gap.
    assert_same("n_multiseg22_join_kill.hex", "w2", membership(9.85, 0));
}

#[test]
fn single_segment_formations_match_5_0_1() {
    // a: alone; b: two together (d2 REPRESENTED, ALIVE per JOIN); l: three together.
    assert_same("a_single_daemon.hex", "d1", membership(3.0, 0));
    for me in ["d1", "d2"] {
        assert_same("b_two_daemons_form_ring.hex", me, membership(3.0, 2));
    }
    // In l the real d2 happened to read d1's first ALIVE before sending its own (so its
    // ALIVEs list the daemons in another order): startup timing, compared by kind.
    for me in ["d1", "d2", "d3"] {
        assert_same("l_three_start_services_packing.hex", me, kinds(3.0, 2));
    }
}

#[test]
fn single_segment_joiner_matches_5_0_1() {
    // c: d3 joins the running ring {d1,d2}.
    assert_same("c_third_daemon_joins.hex", "d3", membership(2.7, 1));
}

/// A FORM token with the unused tails of its fixed-size arrays zeroed: 5.0.1 sends its
/// members_info (and FORM1's reps_info) whole, stale ids of earlier attempts included.
fn used_bytes(b: &[u8], form1: bool) -> Vec<u8> {
    const HEADER: usize = 40;
    const MEMBERS: usize = 516;
    const REPS: usize = 204;
    let le16 = |at: usize| usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let mut v = b.to_vec();
    let counted = HEADER + 4 + 4 * (le16(HEADER) + le16(HEADER + 2));
    v[counted.min(HEADER + MEMBERS)..HEADER + MEMBERS].fill(0);
    if form1 {
        let reps = HEADER + MEMBERS;
        let counted = reps + 4 + 8 * le16(reps);
        v[counted.min(reps + REPS)..reps + REPS].fill(0);
    }
    v
}

#[test]
fn captured_form_tokens_re_encode_exactly() {
    // Every FORM1 and FORM2 of every capture decodes and re-encodes to the same bytes (but
    // for stale array tails): members, reps with segments, ring entries with holes and
    // commit sets, the new ring id (before the leader: the stale start of reps_info).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/daemon/");
    let (mut exact, mut differ) = (0, Vec::new());
    for f in std::fs::read_dir(dir).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".hex") || name.starts_with('h') || name.starts_with('k') {
            continue;
        }
        let cap = load(&name);
        for (i, d) in cap.dgrams.iter().enumerate() {
            let Some(tx) = cap.cfg.find_host(&d.src).map(|h| DaemonId(h.1.vid)) else {
                continue;
            };
            let hash = RingConfig::from_config(&cap.cfg, &d.src).unwrap().conf_hash;
            let Ok(Datagram::Token(t)) = Datagram::decode(hash, d.port == Port::Token, &d.bytes)
            else {
                continue;
            };
            let form1 = match t.body {
                TokenBody::Form1(_) => true,
                TokenBody::Form2(_) => false,
                TokenBody::Regular(_) => continue,
            };
            // What this engine sends for the same FORM (its own copy, re-encoded).
            let ours = super::own_form_copy(t, tx, hash).to_vec();
            if used_bytes(&ours, form1) == used_bytes(&d.bytes, form1) {
                exact += 1;
            } else {
                differ.push(format!("{name}#{i}"));
            }
        }
    }
    assert!(
        differ.is_empty() && exact > 200,
        "{exact} exact, differ: {differ:?}"
    );
}
