//! Property tests of `spread::config`: printing a generated configuration and parsing it
//! again gives the same configuration (and the same text), and the parser never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use spread::config::{
    Config, Host, IfKinds, Interface, IpVersion, Options, PortReuse, Priority, ScopedIp, Segment,
    Subcluster, TimeStamp, Timeouts, DEFAULT_SUBCLUSTER,
};

/// Host-name stems: plain names and names that need quoting.
fn stem() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_.-]{0,8}",
        "[a-zA-Z][a-zA-Z0-9 =;!#{}\"-]{0,6}",
        Just("10.0.0.1".to_owned()),
        Just("yes".to_owned()),
        Just("Window".to_owned()),
    ]
}

/// Option strings: anything printable without a single quote.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/_. %\"#{}=-]{1,20}"
}

#[derive(Debug, Clone)]
struct HostSpec {
    stem: String,
    vid: bool,
    ifaces: Vec<u8>,
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (stem(), any::<bool>(), prop::collection::vec(0u8..8, 0..3))
        .prop_map(|(stem, vid, ifaces)| HostSpec { stem, vid, ifaces })
}

#[derive(Debug, Clone)]
struct SegSpec {
    port: u16,
    extra_addrs: usize,
    hosts: Vec<HostSpec>,
    /// Index into SUBCLUSTERS, or None (only honoured before the first named one).
    sub: Option<usize>,
}

const SUBCLUSTERS: [&str; 3] = ["east", "west", "north-2"];

fn seg_spec() -> impl Strategy<Value = SegSpec> {
    (
        prop_oneof![Just(4803u16), 1024u16..60000],
        0usize..4,
        prop::collection::vec(host_spec(), 1..5),
        prop::option::of(0usize..3),
    )
        .prop_map(|(port, extra_addrs, hosts, sub)| SegSpec {
            port,
            extra_addrs,
            hosts,
            sub,
        })
}

fn ip(v6: bool, s: usize, h: usize, k: usize) -> IpAddr {
    let (s, h, k) = (s as u8, h as u8, k as u8);
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            u16::from(s),
            0,
            0,
            u16::from(h),
            u16::from(k) + 1,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, s, h, k + 1))
    }
}

fn seg_addr(v6: bool, s: usize, k: usize) -> IpAddr {
    let (s, k) = (s as u8, k as u8);
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            0,
            u16::from(s),
            u16::from(k) + 1,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, s, 200 + k, 255))
    }
}

fn scoped(ip: IpAddr) -> ScopedIp {
    ScopedIp { ip, scope: None }
}

fn build(v6: bool, specs: &[SegSpec], options: Options) -> Config {
    let mut segments = Vec::new();
    let mut subclusters: Vec<Subcluster> = Vec::new();
    let mut named_seen = false;
    let mut n = 0usize;
    for (s, spec) in specs.iter().enumerate() {
        let hosts =
            spec.hosts
                .iter()
                .enumerate()
                .map(|(h, hs)| {
                    n += 1;
                    let name: String = format!("{}{n}", hs.stem)
                        .chars()
                        .rev()
                        .take(19)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    let addr = ip(v6, s, h, 0);
                    let interfaces = if hs.ifaces.is_empty() {
                        Vec::new()
                    } else {
                        let mut v = vec![Interface {
                            kinds: IfKinds(hs.ifaces[0] | 4),
                            addr: scoped(addr),
                        }];
                        v.extend(hs.ifaces.iter().enumerate().skip(1).map(|(k, kinds)| {
                            Interface {
                                kinds: if *kinds == 0 {
                                    IfKinds::ALL
                                } else {
                                    IfKinds(*kinds)
                                },
                                addr: scoped(ip(v6, s, h, k)),
                            }
                        }));
                        v
                    };
                    Host {
                        vid: if hs.vid {
                            u32::try_from(n).unwrap_or(1)
                        } else {
                            spread::config::vid_from_name(&name)
                        },
                        vid_explicit: hs.vid,
                        name,
                        addr: scoped(addr),
                        interfaces,
                    }
                })
                .collect();
        let addrs = (0..=spec.extra_addrs)
            .map(|k| scoped(seg_addr(v6, s, k)))
            .collect();
        segments.push(Segment {
            port: spec.port,
            addrs,
            hosts,
        });
        let (name, manager) = match spec.sub {
            Some(i) => {
                named_seen = true;
                (
                    SUBCLUSTERS[i].to_owned(),
                    Some(format!("mgr.{}.example.com", SUBCLUSTERS[i])),
                )
            }
            None if !named_seen => (DEFAULT_SUBCLUSTER.to_owned(), None),
            None => {
                let last = subclusters
                    .iter()
                    .find(|sc| sc.segments.contains(&(s - 1)))
                    .map(|sc| (sc.name.clone(), sc.manager.clone()));
                last.unwrap_or_default()
            }
        };
        match subclusters.iter_mut().find(|sc| sc.name == name) {
            Some(sc) => sc.segments.push(s),
            None => subclusters.push(Subcluster {
                name,
                manager,
                segments: vec![s],
            }),
        }
    }
    Config {
        segments,
        options,
        subclusters,
    }
}

fn options(v6: bool) -> impl Strategy<Value = Options> {
    let a = (
        prop::option::of(prop_oneof![
            prop::collection::vec(0usize..18, 0..4).prop_map(|bits| (false, bits)),
            prop::collection::vec(0usize..18, 0..4).prop_map(|bits| (true, bits)),
        ]),
        prop::option::of(1u8..7),
        prop::option::of(text()),
        prop::option::of(prop::option::of("[a-zA-Z%: \\[\\]-]{1,30}")),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop::option::of(0u8..3),
        prop::option::of(text()),
        prop::option::of("[a-z_]{1,32}"),
        prop::option::of("[a-z_]{1,32}"),
    );
    let b = (
        prop::option::of(prop::collection::vec(
            prop_oneof![Just("NULL"), Just("IP"), Just("PWORD")],
            0..3,
        )),
        prop::option::of(prop::collection::vec(
            prop_oneof![Just("NULL"), Just("IP")],
            1..3,
        )),
        any::<bool>(),
        prop::option::of(0u32..100_000),
        any::<bool>(),
        (1u32..1000, 1u32..1000, 0u32..1000),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of(prop::array::uniform9(1u32..100_000)),
        prop::option::of(any::<bool>()),
        (
            prop::option::of(any::<bool>()),
            prop::option::of(1u32..65_536),
        ),
    );
    (a, b).prop_map(move |(a, b)| {
        let named: Vec<u32> = [
            1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000,
            0x20_0000, 0x40_0000, 0x80_0000,
        ]
        .to_vec();
        let debug_flags = a.0.map(|(all, bits)| {
            let sel = bits
                .iter()
                .filter_map(|b| named.get(*b))
                .fold(0, |m, b| m | b);
            if all {
                !sel
            } else {
                sel
            }
        });
        let priority = a.1.map(|p| match p {
            1 => Priority::Debug,
            2 => Priority::Info,
            3 => Priority::Warning,
            4 => Priority::Error,
            5 => Priority::Critical,
            _ => Priority::Fatal,
        });
        let (w1, w2, w3) = b.5;
        // Valid by construction whichever of the three are given (defaults 160 / 20 / 15).
        let window = w1.max(w2).max(20);
        let personal = w1.min(w2).min(160);
        let accel_on = b.6 .0;
        let accel = w3.min(personal).min(20);
        Options {
            debug_flags,
            event_priority: priority,
            event_log_file: a.2,
            event_timestamp: a.3.map(|f| f.map_or(TimeStamp::Default, TimeStamp::Format)),
            event_precise_timestamp: a.4,
            dangerous_monitor: a.5,
            socket_port_reuse: a.6.map(|r| match r {
                0 => PortReuse::Off,
                1 => PortReuse::On,
                _ => PortReuse::Auto,
            }),
            runtime_dir: a.7,
            daemon_user: a.8,
            daemon_group: a.9,
            required_auth_methods: b.0.map(|v| v.into_iter().map(str::to_owned).collect()),
            allowed_auth_methods: b.1.map(|v| v.into_iter().map(str::to_owned).collect()),
            access_control_policy: b.2.then(|| "PERMIT".to_owned()),
            max_session_messages: b.3,
            active_ip_version: b
                .4
                .then_some(if v6 { IpVersion::V6 } else { IpVersion::V4 }),
            window: b.6 .1.then_some(window),
            personal_window: b.6 .2.then_some(personal),
            accelerated_ring: if accel_on {
                Some(true)
            } else {
                b.8.filter(|x| !x)
            },
            accelerated_window: Some(accel),
            timeouts: b.7.map(|t| Timeouts {
                token_ms: t[0],
                hurry_ms: t[1],
                alive_ms: t[2],
                join_ms: t[3],
                rep_ms: t[4],
                seg_ms: t[5],
                gather_ms: t[6],
                form_ms: t[7],
                lookup_ms: t[8],
            }),
            wide_area_network: b.8,
            exclude_seg_addrs_from_hash: b.9 .0,
            ignore_multicast_join_errors: b.8.map(|x| !x),
            max_sessions: b.9 .1,
        }
    })
}

fn config() -> impl Strategy<Value = Config> {
    any::<bool>().prop_flat_map(|v6| {
        (prop::collection::vec(seg_spec(), 1..5), options(v6))
            .prop_map(move |(segs, opts)| build(v6, &segs, opts))
    })
}

/// Windows must stay consistent when only some are given.
fn windows_valid(c: &Config) -> bool {
    c.personal_window() <= c.window()
        && (!c.accelerated_ring() || c.accelerated_window() <= c.personal_window())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn print_parse_round_trip(c in config()) {
        prop_assume!(windows_valid(&c));
        let text = c.to_string();
        let back = Config::parse(&text, "gen.conf");
        prop_assert!(back.is_ok(), "{}\n---\n{text}", back.err().map(|e| e.to_string()).unwrap_or_default());
        let back = back.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(&back, &c, "text was:\n{}", text);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn parser_never_panics_and_errors_are_one_line(s in "[ -~\n\t{}#\"']{0,200}") {
        if let Err(e) = Config::parse(&s, "fuzz.conf") {
            let line = e.to_string();
            prop_assert_eq!(line.lines().count(), 1);
            prop_assert!(line.starts_with("fuzz.conf:"));
        }
    }

    #[test]
    fn mutated_valid_configs_never_panic(c in config(), cut in any::<prop::sample::Index>(), junk in "[ -~\n]{0,8}") {
        let text = c.to_string();
        let at = cut.index(text.len() + 1);
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let mutated = format!("{}{junk}{}", &text[..at], &text[at..]);
        match Config::parse(&mutated, "m.conf") {
            Err(e) => prop_assert_eq!(e.to_string().lines().count(), 1),
            // Whatever parses prints back to an equal configuration.
            Ok(c) => {
                let printed = c.to_string();
                let back = Config::parse(&printed, "printed.conf");
                prop_assert_eq!(back.as_ref().ok(), Some(&c), "input:\n{}\nprinted:\n{}", mutated, printed);
            }
        }
    }
}
