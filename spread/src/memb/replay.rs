//! Replays real 5.0.1 multi-segment captures (`tests/data/daemon/n_*.hex`) against one
//! engine: every datagram the capture shows reaching daemon X (unicast to X, or X's segment
//! broadcast) is fed to an engine configured as X, at the captured time; the engine's own
//! timers run on the same clock and its unicasts to itself loop back. The membership packets
//! the engine sends (kind and destination, in order) must be the ones the real X sent.

use bytes::Bytes;

use crate::config::Config;
use crate::ring::codec;
use crate::ring::packet::Packet;
use crate::ring::{DaemonId, Dest, Engine, Input, Output, Port, RingConfig};
use crate::time::Instant;

/// One captured datagram.
struct Dgram {
    t_us: u64,
    src: String,
    dst: String,
    port: Port,
    bytes: Bytes,
}

struct Capture {
    cfg: Config,
    dgrams: Vec<Dgram>,
}

/// Capture times are seconds from capture start; the engine's clock is offset by this much
/// so that times before the capture are still positive.
const ORIGIN_US: u64 = 10_000_000;

fn load(file: &str) -> Capture {
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
fn kind(hash: u32, port: Port, bytes: &[u8]) -> &'static str {
    match codec::decode(hash, port == Port::Token, bytes) {
        Ok((_, Packet::Alive(_))) => "ALIVE",
        Ok((_, Packet::Join(_))) => "JOIN",
        Ok((_, Packet::Refer { .. })) => "REFER",
        Ok((_, Packet::Form1(_))) => "FORM1",
        Ok((_, Packet::Form2(_))) => "FORM2",
        Ok((_, Packet::Token(_))) => "TOKEN",
        Ok((_, Packet::Hurry)) => "HURRY",
        Ok((_, Packet::Data(_))) => "DATA",
        Err(_) => "OTHER",
    }
}

/// How long a real daemon takes at most to answer a datagram (its sends are compared as if
/// made this much earlier, ours are stamped with the input's time).
const ANSWER_US: u64 = 60;

const MEMBERSHIP: &[&str] = &["ALIVE", "JOIN", "REFER", "FORM1", "FORM2"];

/// What to compare: membership packets always, tokens up to `tokens_until_us`.
struct Window {
    from_us: u64,
    to_us: u64,
    tokens_until_us: u64,
}

fn wanted(k: &str, t_us: u64, w: &Window) -> bool {
    t_us >= w.from_us
        && t_us <= w.to_us
        && (MEMBERSHIP.contains(&k) || (k == "TOKEN" && t_us <= w.tokens_until_us))
}

/// Replays `file` for daemon `me` from its first datagram; returns (ours, real), each a list
/// of "KIND->dest" in order.
fn replay(file: &str, me: &str, window: impl Fn(u64) -> Window) -> (Vec<String>, Vec<String>) {
    let cap = load(file);
    let names: Vec<(DaemonId, String, usize)> = cap
        .cfg
        .hosts()
        .map(|(id, h)| (DaemonId(h.vid), h.name.clone(), id.segment))
        .collect();
    let seg_letter = me.chars().next().unwrap();
    let bcast = format!("bcast_{seg_letter}");
    let rc = RingConfig::from_config(&cap.cfg, me).unwrap();
    let hash = rc.conf_hash;
    let me_id = rc.me;
    let name_of = |d: DaemonId| names.iter().find(|n| n.0 == d).unwrap().1.clone();
    let id_of = |s: &str| names.iter().find(|n| n.1 == s).map(|n| n.0);
    let mine: Vec<&Dgram> = cap.dgrams.iter().filter(|d| d.src == me).collect();
    let start = mine.first().unwrap().t_us;
    let w = window(start);
    // Align the engine's seconds clock with the capture's: the first FORM1 this daemon
    // created carries its clock (the rest of the ring's FORM/tokens then match).
    let created =
        mine.iter().find_map(
            |d| match codec::decode(hash, d.port == Port::Token, &d.bytes) {
                Ok((_, Packet::Form1(f))) if f.form_id.leader == me_id && f.members.len() == 1 => {
                    Some((d.t_us, f.form_id.time))
                }
                _ => None,
            },
        );
    let clock = created.map_or(1_000, |(t, time)| {
        time.wrapping_sub(((t / 1_000_000) - (start / 1_000_000)) as u32)
    });
    let inputs: Vec<&Dgram> = cap
        .dgrams
        .iter()
        .filter(|d| d.src != me && d.t_us >= start)
        .filter(|d| d.dst == me || d.dst == bcast)
        .collect();
    let mut e = Engine::new(rc, Instant(start), clock);
    let mut ours = Vec::new();
    let drain = |e: &mut Engine, now: Instant, ours: &mut Vec<String>| {
        let mut rounds = 0;
        while let Some(o) = e.poll_output() {
            rounds += 1;
            assert!(rounds < 10_000, "output storm");
            if let Output::Send { to, port, bytes } = o {
                let k = kind(hash, port, &bytes);
                let dest = match to {
                    Dest::Segment | Dest::Broadcast => bcast.clone(),
                    Dest::Unicast(d) => name_of(d),
                };
                if wanted(k, now.0, &w) {
                    ours.push(format!("{k}->{dest}"));
                }
                if to == Dest::Unicast(me_id) {
                    e.handle(
                        now,
                        Input::Packet {
                            from: me_id,
                            port,
                            bytes,
                        },
                    );
                }
            }
        }
    };
    drain(&mut e, Instant(start), &mut ours);
    for d in inputs.iter().filter(|d| d.t_us <= w.to_us) {
        while let Some(t) = e.poll_timeout().filter(|t| t.0 <= d.t_us) {
            e.handle_timeout(t);
            drain(&mut e, t, &mut ours);
        }
        let Some(from) = id_of(&d.src) else { continue };
        let now = Instant(d.t_us);
        e.handle(
            now,
            Input::Packet {
                from,
                port: d.port,
                bytes: d.bytes.clone(),
            },
        );
        drain(&mut e, now, &mut ours);
    }
    while let Some(t) = e.poll_timeout().filter(|t| t.0 <= w.to_us) {
        e.handle_timeout(t);
        drain(&mut e, t, &mut ours);
    }
    let real: Vec<String> = mine
        .iter()
        .filter_map(|d| {
            let k = kind(hash, d.port, &d.bytes);
            // A real daemon answers an input within a few hundred µs; ours at the input's time.
            let t = d.t_us.saturating_sub(ANSWER_US).max(w.from_us);
            wanted(k, t, &w).then(|| format!("{k}->{}", d.dst))
        })
        .collect();
    (ours, real)
}

fn secs(s: f64) -> u64 {
    ORIGIN_US + (s * 1e6) as u64
}

fn assert_same(file: &str, me: &str, window: impl Fn(u64) -> Window) {
    let (ours, real) = replay(file, me, window);
    assert!(!real.is_empty(), "{file} {me}: nothing to compare");
    assert_eq!(ours, real, "{file} as {me}");
}

/// Formation of a ring from scratch: everything up to the first tokens.
fn formation(until_s: f64) -> impl Fn(u64) -> Window {
    move |start| Window {
        from_us: start,
        to_us: secs(until_s),
        tokens_until_us: secs(until_s),
    }
}

#[test]
fn two_plus_two_formation_matches_5_0_1_at_every_daemon() {
    for me in ["e1", "e2", "w1", "w2"] {
        assert_same("n_multiseg22_form_data.hex", me, formation(3.5253));
    }
}
