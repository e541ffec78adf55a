//! Acceptance and error tests for the configuration parser (every error kind, exact text).

use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn parse(s: &str) -> Config {
    match Config::parse(s, "t.conf") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn err(s: &str) -> String {
    match Config::parse(s, "t.conf") {
        Ok(c) => panic!("parsed but should not:\n{c}"),
        Err(e) => e.to_string(),
    }
}

const THREE: &str = "Spread_Segment 10.98.0.255:4803 { d1 10.98.0.1  d2 10.98.0.2  d3 10.98.0.3 }";

#[test]
fn vids_match_5_0_1() {
    assert_eq!(vid_from_name("d1"), 0x5c8d_7aef);
    assert_eq!(vid_from_name("d2"), 0x14c5_65a0);
    assert_eq!(vid_from_name("d3"), 0xef46_226e);
    assert_eq!(vid_from_name("localhost"), 482_711_334);
}

#[test]
fn three_hosts_with_defaults() {
    let c = parse(THREE);
    assert_eq!(c.segments.len(), 1);
    let seg = &c.segments[0];
    assert_eq!(seg.port, 4803);
    assert_eq!(seg.addrs[0].ip, IpAddr::V4(Ipv4Addr::new(10, 98, 0, 255)));
    let names: Vec<&str> = seg.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["d1", "d2", "d3"]);
    assert_eq!(seg.hosts[1].vid, 0x14c5_65a0);
    assert!(!c.accelerated_ring());
    assert_eq!(c.options.accelerated_ring, None);
    assert!(!c.wide_area());
    assert_eq!(c.timeouts(), Timeouts::LAN);
    assert_eq!(c.window(), 160);
    assert_eq!(c.personal_window(), 20);
    assert_eq!(c.accelerated_window(), 15);
    assert_eq!(c.max_sessions(), 997);
    assert_eq!(c.max_session_messages(), 1000);
    assert_eq!(c.socket_port_reuse(), PortReuse::Auto);
    assert_eq!(c.runtime_dir(), "/var/run/spread");
    assert_eq!(c.daemon_user(), "spread");
    assert_eq!(c.find_host("d3").map(|(id, _)| id.index), Some(2));
    assert_eq!(c.subclusters.len(), 1);
    assert_eq!(c.subclusters[0].name, "default");
    assert_eq!(c.subclusters[0].manager, None);
    assert_eq!(
        c.subcluster_of("d2").map(|s| s.name.as_str()),
        Some("default")
    );
}

#[test]
fn embedded_default_is_localhost() {
    let c = Config::embedded_default();
    let (_, h) = c.find_host("localhost").unwrap();
    assert_eq!(h.addr.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.segments[0].port, 4803);
    assert_eq!(c.host_count(), 1);
}

#[test]
fn every_global_option() {
    let c = parse(&format!(
        "EventLogFile = /var/log/spread/%h.log\n\
         EventTimeStamp = \"[%a %d %b %Y %H:%M:%S]\"\n\
         EventPreciseTimeStamp\n\
         EventPriority = WARNING\n\
         DebugFlags = {{ ALL ! EXIT ! DATA_LINK }}\n\
         DangerousMonitor = true\n\
         SocketPortReuse = ON\n\
         RuntimeDir = /var/run/spread2\n\
         DaemonUser = ecspread\n\
         DaemonGroup = ecspread\n\
         RequiredAuthMethods = \"IP\"\n\
         AllowedAuthMethods = \"NULL IP\"\n\
         AccessControlPolicy = PERMIT\n\
         MaxSessionMessages = 5000\n\
         ActiveIPVersion = IPv4\n\
         Window = 200\n\
         PersonalWindow = 30\n\
         AcceleratedRing = yes\n\
         AcceleratedWindow = 25\n\
         TokenTimeout = 1000\nHurryTimeout = 400\nAliveTimeout = 200\nJoinTimeout = 200\n\
         RepTimeout = 500\nSegTimeout = 400\nGatherTimeout = 1000\nFormTimeout = 1000\n\
         LookupTimeout = 20000\n\
         WideAreaNetwork = no\n\
         ExcludeSegAddrsFromHash = Yes\n\
         IgnoreMulticastJoinErrors = false\n\
         MaxSessions = 2000\n{THREE}"
    ));
    assert_eq!(parse(&c.to_string()), c);
    let o = &c.options;
    assert_eq!(o.event_log_file.as_deref(), Some("/var/log/spread/%h.log"));
    assert_eq!(
        o.event_timestamp,
        Some(TimeStamp::Format("[%a %d %b %Y %H:%M:%S]".into()))
    );
    assert!(o.event_precise_timestamp);
    assert_eq!(c.event_priority(), Priority::Warning);
    assert_eq!(o.debug_flags, Some(0xffff_fffc));
    assert!(c.dangerous_monitor());
    assert_eq!(c.socket_port_reuse(), PortReuse::On);
    assert_eq!(c.runtime_dir(), "/var/run/spread2");
    assert_eq!(c.daemon_group(), "ecspread");
    assert_eq!(o.required_auth_methods, Some(vec!["IP".to_owned()]));
    assert_eq!(
        o.allowed_auth_methods,
        Some(vec!["NULL".to_owned(), "IP".to_owned()])
    );
    assert_eq!(o.access_control_policy.as_deref(), Some("PERMIT"));
    assert_eq!(c.max_session_messages(), 5000);
    assert_eq!(c.active_ip_version(), IpVersion::V4);
    assert_eq!(
        (c.window(), c.personal_window(), c.accelerated_window()),
        (200, 30, 25)
    );
    assert!(c.accelerated_ring());
    assert_eq!(c.timeouts().token_ms, 1000);
    assert_eq!(c.timeouts().lookup_ms, 20000);
    assert!(!c.wide_area());
    assert!(c.exclude_seg_addrs_from_hash());
    assert_eq!(o.ignore_multicast_join_errors, Some(false));
    assert_eq!(c.max_sessions(), 2000);
}

#[test]
fn host_forms_interfaces_and_vids() {
    let c = parse(
        "Spread_Segment 10.0.0.255 10.0.1.255 {\n\
           a 10.0.0.1 VirtualID = 7 { D 10.0.0.1 C M 10.0.1.1 } ;\n\
           10.0.0.2\n\
           b 10.0.0.3 ; c 10.0.0.4\n\
           d 10.0.0.5 { 0.0.0.0 }\n\
         }",
    );
    let seg = &c.segments[0];
    assert_eq!(seg.port, DEFAULT_PORT);
    assert_eq!(seg.addrs.len(), 2);
    let a = &seg.hosts[0];
    assert_eq!((a.vid, a.vid_explicit), (7, true));
    assert_eq!(a.interfaces.len(), 2);
    assert_eq!(a.interfaces[0].kinds, IfKinds::DAEMON);
    assert_eq!(a.interfaces[1].kinds, IfKinds(3));
    assert_eq!(seg.hosts[1].name, "10.0.0.2");
    assert_eq!(seg.hosts[2].name, "b");
    assert_eq!(seg.hosts[3].name, "c");
    assert_eq!(seg.hosts[4].interfaces[0].kinds, IfKinds::ALL);
    assert_eq!(seg.hosts[2].effective_interfaces()[0].kinds, IfKinds::ALL);
}

#[test]
fn name_only_hosts_use_the_resolver() {
    let mut r = |n: &str| {
        if n == "alpha" {
            vec![IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1))]
        } else {
            Vec::new()
        }
    };
    let p = Config::parse_full("Spread_Segment 10.1.1.255:5000 { alpha }", "t", &mut r).unwrap();
    assert_eq!(
        p.config.segments[0].hosts[0].addr.ip.to_string(),
        "10.1.1.1"
    );
    assert_eq!(
        err("Spread_Segment 10.1.1.255:5000 { alpha }"),
        "t.conf:1:34: cannot resolve host name 'alpha'; give its IP address after the name"
    );
}

#[test]
fn ipv6_forms() {
    let c = parse("Spread_Segment [ff02::1]:4803 { a fe80::1%eth0 b 2001:db8::2 }");
    let seg = &c.segments[0];
    assert_eq!(seg.port, 4803);
    assert_eq!(seg.hosts[0].addr.scope.as_deref(), Some("eth0"));
    assert_eq!(c.active_ip_version(), IpVersion::V6);
    let c2 = parse(&c.to_string());
    assert_eq!(c, c2);
}

#[test]
fn several_segments_are_wan_by_default() {
    let c = parse(
        "Spread_Segment 10.98.4.255:4803 { e1 10.98.4.1 e2 10.98.4.2 }\n\
         Spread_Segment 10.98.5.255:4803 { w1 10.98.5.1 }",
    );
    assert!(c.wide_area());
    assert_eq!(c.timeouts(), Timeouts::WAN);
    assert!(!c.accelerated_ring());
}

#[test]
fn subcluster_comments() {
    let c = parse(
        "# Subcluster: east = rh52mgr.vmnet24.example.com\n\
         Spread_Segment 10.0.0.255:4803 { rh52bare 10.0.0.1 rh52mgr 10.0.0.2 }\n\
         #Subcluster: west => rh52mgr.vmnet24.example.com\n\
         Spread_Segment 10.0.1.255:4803 { rh52bar2 10.0.1.1 }\n\
         # Subcluster: east => rh52mgr.vmnet24.example.com\n\
         Spread_Segment 10.0.2.255:4803 { e3 10.0.2.1 }\n",
    );
    assert_eq!(c.subclusters.len(), 2);
    assert_eq!(c.subclusters[0].segments, vec![0, 2]);
    assert_eq!(c.subcluster_of("rh52bar2").unwrap().name, "west");
    assert_eq!(
        c.find_subcluster("east").unwrap().manager.as_deref(),
        Some("rh52mgr.vmnet24.example.com")
    );
    assert_eq!(c.subclusters[1].manager_short(), Some("rh52mgr"));
    let managed: Vec<&str> = c
        .subclusters_managed_by("rh52mgr")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(managed, ["east", "west"]);
    assert_eq!(parse(&c.to_string()), c);
}

#[test]
fn subclusters_without_segments_keep_their_place() {
    let c = parse(
        "# Subcluster: a => m1\n# Subcluster: b => m2\n\
         Spread_Segment 10.0.0.255:4803 { h1 10.0.0.1 }\n\
         # Subcluster: c => m3\n# Subcluster: b => m2\n\
         Spread_Segment 10.0.1.255:4803 { h2 10.0.1.1 }\n# Subcluster: d => m4\n",
    );
    let names: Vec<&str> = c.subclusters.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert_eq!(c.subclusters[1].segments, vec![0, 1]);
    assert!(c.subclusters[0].segments.is_empty());
    assert_eq!(parse(&c.to_string()), c);
}

#[test]
fn repeated_option_warns_and_last_wins() {
    let text = format!("Window = 100\nWindow = 200\nWindow = 200\n{THREE}");
    let p = Config::parse_full(&text, "t", &mut |_| Vec::new()).unwrap();
    assert_eq!(p.config.window(), 200);
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        p.warnings[0].to_string(),
        "2:1: Window given again with another value; the last one counts"
    );
}

#[test]
fn warnings_5_0_1_prints() {
    let p = Config::parse_full(
        "Spread_Segment 127.0.0.255:4803 { a; 127.0.0.1 }",
        "t",
        &mut |_| vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
    )
    .unwrap();
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert!(w.iter().any(|m| m.contains("loopback")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("ends with ';'")), "{w:?}");
}

/// Every error kind, with its exact one-line text.
#[test]
fn error_texts() {
    let cases: &[(&str, &str)] = &[
        ("Foo = 1\n", "t.conf:1:1: unknown keyword 'Foo'"),
        ("Window=5\n", "t.conf:1:1: unknown keyword 'Window=5' (put spaces around '=')"),
        ("Window 5\n", "t.conf:1:8: expected '=', found '5'"),
        ("Window = x\n", "t.conf:1:10: expected a number, found 'x'"),
        ("Window = 0\n", "t.conf:1:10: bad value for Window: 0 (must be at least 1)"),
        ("MaxSessions = 70000\n", "t.conf:1:15: bad value for MaxSessions: 70000 (must be at most 65536)"),
        ("DangerousMonitor = maybe\n", "t.conf:1:20: expected true/yes or false/no, found 'maybe'"),
        ("SocketPortReuse = yes\n", "t.conf:1:19: expected on, off or auto, found 'yes'"),
        ("EventPriority = LOUD\n", "t.conf:1:17: expected a priority (pDEBUG INFO WARNING ERROR CRITICAL FATAL), found 'LOUD'"),
        ("DebugFlags = { EXIT LOUD }\n", "t.conf:1:21: expected a debug flag name or '}', found 'LOUD'"),
        ("DebugFlags = { EXIT\n", "t.conf:1:14: unterminated block: this '{' is never closed"),
        ("ActiveIPVersion = IPv5\n", "t.conf:1:19: bad value for ActiveIPVersion: 'IPv5' (must be IPv4 or IPv6)"),
        ("AccessControlPolicy = DENY\n", "t.conf:1:23: bad value for AccessControlPolicy: unknown policy 'DENY' (known: PERMIT)"),
        ("DaemonUser = abcdefghijabcdefghijabcdefghijabc\n", "t.conf:1:14: bad value for DaemonUser: longer than 32 characters"),
        ("RuntimeDir = 10.0.0.1\n", "t.conf:1:14: expected a string, found '10.0.0.1'"),
        ("Spread_Segment 10.0.0.255:4803 {\n a 10.0.0.1\n", "t.conf:1:32: unterminated block: this '{' is never closed"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 { D 10.0.0.1 }\n", "t.conf:1:32: unterminated block: this '{' is never closed"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 { D 10.0.0.1 ", "t.conf:1:45: unterminated block: this '{' is never closed"),
        ("Spread_Segment 10.0.0.256:4803 { a 10.0.0.1 }", "t.conf:1:16: bad address '10.0.0.256:4803'"),
        ("Spread_Segment 10.0.0.255:70000 { a 10.0.0.1 }", "t.conf:1:16: bad port in '10.0.0.255:70000' (must be 0..65535)"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.300 }", "t.conf:1:36: bad address '10.0.0.300'"),
        ("Spread_Segment 1:2:3:4:5:6:7::8:9 { a ::1 }", "t.conf:1:16: bad address '1:2:3:4:5:6:7::8:9'"),
        ("Spread_Segment 10.0.0.255:4803 { b 10.0.0.3; }", "t.conf:1:34: cannot resolve host name 'b'; give its IP address after the name"),
        ("Spread_Segment host:4803 { a 10.0.0.1 }", "t.conf:1:16: expected a segment address (IP or IP:port), found 'host:4803'"),
        ("Spread_Segment 10.0.0.255:4803 a 10.0.0.1 }", "t.conf:1:32: expected '{' after the segment address, found 'a'"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 [x] }", "t.conf:1:45: unexpected character '['"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 b 10.0.0.2 a 10.0.0.3 }", "t.conf:1:56: duplicate host 'a' (already defined at line 1)"),
        ("Spread_Segment 10.0.0.255:4803 {\n a 10.0.0.1\n b 10.0.0.1 }", "t.conf:3:2: duplicate host address 10.0.0.1:4803 ('b' and 'a')"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 VirtualID = 9 b 10.0.0.2 VirtualID = 9 }", "t.conf:1:59: virtual id 9 of 'b' is already used by 'a'"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 VirtualID = 0 }", "t.conf:1:57: bad value for VirtualID: 0 (must be at least 1)"),
        ("Spread_Segment 10.0.0.255:4803 { abcdefghijklmnopqrst 10.0.0.1 }", "t.conf:1:34: host name 'abcdefghijklmnopqrst' is too long (20 characters; at most 19)"),
        ("Spread_Segment 10.0.0.255:4803 { \"\" 10.0.0.1 }", "t.conf:1:34: empty host name"),
        ("Spread_Segment 10.0.0.255:4803 { \"a 10.0.0.1 }", "t.conf:1:34: unterminated quoted string"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1:4803 }", "t.conf:1:36: address 10.0.0.1 not allowed here: a host address must not specify a port"),
        ("Spread_Segment 10.0.0.255:4803 { a 0.0.0.0 }", "t.conf:1:34: address 0.0.0.0 not allowed here: a host address must not be the unspecified address"),
        ("Spread_Segment 10.0.0.255:4803 { a 224.0.0.1 }", "t.conf:1:34: address 224.0.0.1 not allowed here: a host address must not be a multicast address"),
        ("Spread_Segment 0.0.0.0:4803 { a 10.0.0.1 }", "t.conf:1:16: address 0.0.0.0 not allowed here: a segment address must not be the unspecified address"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 b ::1 }", "t.conf:1:45: address ::1 not allowed here: an IPv6 address in an IPv4 configuration (see ActiveIPVersion)"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 { } }", "t.conf:1:45: interface block of 'a' lists no interface"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 { C 10.0.0.1 } }", "t.conf:1:45: interface block of 'a' has no D interface for its address 10.0.0.1"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 { C } }", "t.conf:1:49: expected an interface (M, C, D, then an IP address) or '}', found '}'"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 }\nPersonalWindow = 200\n", "t.conf:2:1: bad value for PersonalWindow: 200 is larger than Window (160)"),
        ("AcceleratedRing = yes\nAcceleratedWindow = 21\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }\n", "t.conf:2:1: bad value for AcceleratedWindow: 21 is larger than PersonalWindow (20)"),
        ("TokenTimeout = 100\nHurryTimeout = 50\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }\n", "t.conf:1:1: bad value for TokenTimeout..LookupTimeout: only some membership timeouts are given; give all nine or none (missing AliveTimeout JoinTimeout RepTimeout SegTimeout GatherTimeout FormTimeout LookupTimeout)"),
        ("# Subcluster: two words = m\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }", "t.conf:1:1: bad subcluster comment: bad subcluster name 'two words' (letters, digits, '_' and '-', at most 25 characters)"),
        ("# Subcluster: east\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }", "t.conf:1:1: bad subcluster comment: expected 'Subcluster: NAME = manager' or 'Subcluster: NAME => manager'"),
        ("# Subcluster: east =>\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }", "t.conf:1:1: bad subcluster comment: missing manager host for subcluster 'east'"),
        ("# Subcluster: east => a b\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }", "t.conf:1:1: bad subcluster comment: bad manager host name 'a b'"),
        ("# Subcluster: east => m1\nSpread_Segment 10.0.0.255:4803 { a 10.0.0.1 }\n# Subcluster: east => m2\n", "t.conf:3:1: bad subcluster comment: subcluster 'east' declared again with another manager ('m2', was 'm1')"),
        ("Window = 100\n", "t.conf:2:1: no Spread_Segment in configuration"),
        ("Spread_Segment 10.0.0.255:4803 { }\n", "t.conf:2:1: no host in any Spread_Segment"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 }\n VirtualID = 3", "t.conf:2:2: expected an option or Spread_Segment, found 'VirtualID'"),
        ("Spread_Segment 10.0.0.255:4803 10.0.1.255 10.0.2.255 10.0.3.255 10.0.4.255 10.0.5.255 { a 10.0.0.1 }", "t.conf:1:76: too many segment addresses (at most 5)"),
        ("Spread_Segment 10.0.0.255:4803 { a 10.0.0.1 { D 1.1.1.1 D 1.1.1.2 D 1.1.1.3 D 1.1.1.4 D 1.1.1.5 D 1.1.1.6 D 1.1.1.7 D 1.1.1.8 D 1.1.1.9 D 1.1.1.10 D 1.1.1.11 } }", "t.conf:1:150: too many interfaces (at most 10)"),
    ];
    let bad: Vec<String> = cases
        .iter()
        .filter(|(text, want)| err(text) != *want)
        .map(|(text, want)| format!("input {text:?}\n  got  {}\n  want {want}", err(text)))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn too_many_segments_and_hosts() {
    let segs: String = (0..21)
        .map(|i| format!("Spread_Segment 10.{i}.0.255:4803 {{ h{i} 10.{i}.0.1 }}\n"))
        .collect();
    assert_eq!(err(&segs), "t.conf:21:1: too many segments (at most 20)");
    let hosts: String = (0..129)
        .map(|i| format!("h{i} 10.0.{}.{}\n", i / 200, i % 200 + 1))
        .collect();
    let text = format!("Spread_Segment 10.0.0.255:4803 {{\n{hosts}}}");
    assert_eq!(err(&text), "t.conf:130:1: too many hosts (at most 128)");
}

#[test]
fn load_reports_io_and_utf8_errors() {
    let e = Config::load(std::path::Path::new("/nonexistent/spread.conf")).unwrap_err();
    assert_eq!(e.pos, Pos::START);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/spread.conf:1:1: cannot read configuration: "));
    assert_eq!(e.to_string().lines().count(), 1);
    let e = Config::load(std::path::Path::new("/dev/zero")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/dev/zero:1:1: configuration file larger than 1048576 bytes"
    );
}
