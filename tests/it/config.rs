//! The shipped sample configuration and configuration files as the daemon reads them.

use std::path::Path;

use spread::config::{Config, IfKinds};

fn example() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mbus.conf.example");
    match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn example_parses_with_two_segments_and_subclusters() {
    let c = example();
    assert_eq!(c.segments.len(), 2);
    assert_eq!(c.host_count(), 6);
    let names: Vec<&str> = c.subclusters.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["east", "west"]);
    let east = c.find_subcluster("east").unwrap();
    assert_eq!(east.manager.as_deref(), Some("east-mgr.example.com"));
    assert_eq!(east.segments, vec![0]);
    let west = c.find_subcluster("west").unwrap();
    assert_eq!(west.manager.as_deref(), Some("west-mgr.example.com"));
    assert_eq!(c.subcluster_of("west-mta1").unwrap().name, "west");
    assert_eq!(c.subcluster_of("east-mta2").unwrap().name, "east");
    // Several segments: wide-area timeouts and the original ring, as 5.0.1.
    assert!(c.wide_area());
    assert!(!c.accelerated_ring());
    let (_, mta2) = c.find_host("west-mta2").unwrap();
    assert_eq!(mta2.interfaces.len(), 2);
    assert_eq!(mta2.interfaces[1].kinds, IfKinds::CLIENT);
}

#[test]
fn example_round_trips_through_display() {
    let c = example();
    let again = Config::parse(&c.to_string(), "printed").unwrap();
    assert_eq!(again, c);
}

#[test]
fn load_names_the_file_in_errors() {
    let dir = super::spread_cli::TempDir::new("cfg-load");
    let path = dir.path().join("bad.conf");
    std::fs::write(
        &path,
        "Spread_Segment 10.0.0.255:4803 {\n\ta 10.0.0.1\n\ta 10.0.0.2\n}\n",
    )
    .unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:2: duplicate host 'a' (already defined at line 2)",
            path.display()
        )
    );
    std::fs::write(&path, b"Spread_Segment 10.0.0.255 {\n a\xff 10.0.0.1 }\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:2:3: configuration is not valid UTF-8", path.display())
    );
}

/// Configurations 5.0.1 and mbus must both accept (`true`) or both refuse (`false`).
const DIFFERENTIAL: &[(&str, bool)] = &[
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("Window=5 Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 b 10.255.0.1 }", false),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 { C 10.255.0.1 } }", false),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 { } }", false),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 { D 10.255.0.1 C } }", false),
    ("DebugFlags = { ALL !EXIT } Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("DebugFlags = { ALL ! EXIT } Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("EventTimeStamp Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("EventTimeStamp = \"%H:%M\" EventPreciseTimeStamp Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("PersonalWindow = 200 Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("AcceleratedRing = yes AcceleratedWindow = 21 Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("Spread_Segment 10.255.0.255:4803 { \"a b\" 10.255.0.1 }", true),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 VirtualID = 5 b 10.255.0.2 VirtualID = 5 }", false),
    ("Spread_Segment 10.255.0.255:4803 { 10.255.0.1 10.255.0.2 }", true),
    ("Spread_Segment 10.255.0.255:4803 10.255.1.255 { a 10.255.0.1 }", true),
    ("Spread_Segment [ff02::1]:4803 { a fd00::1 b fd00::2 }", true),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 ; b 10.255.0.2 ; }", true),
    ("AccessControlPolicy = DENY Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("ActiveIPVersion = IPv6 Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1", false),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 } Spread_Segment 10.255.1.255:4803 { }", true),
    ("Spread_Segment 10.255.0.255:4803 { }", false),
    ("Spread_Segment 10.255.0.255:70000 { a 10.255.0.1 }", false),
    ("Spread_Segment 10.255.0.300:4803 { a 10.255.0.1 }", false),
    ("EventPriority = pDEBUG Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("Spread_Segment 10.255.0.255:4803 { C 10.255.0.1 }", false),
    ("SocketPortReuse = yes Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("SocketPortReuse = AUTO Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("Spread_Segment 10.255.0.255:4803 { a 224.0.0.1 }", false),
    ("Spread_Segment 0.0.0.0:4803 { a 10.255.0.1 }", false),
    ("RuntimeDir = \"\" Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("AllowedAuthMethods = \"NULL IP\" RequiredAuthMethods = IP Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("WideAreaNetwork = no ExcludeSegAddrsFromHash = yes IgnoreMulticastJoinErrors = true Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", true),
    ("Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 { D C 10.255.0.1 M 0.0.0.0 } }", true),
    ("Window = 0 Spread_Segment 10.255.0.255:4803 { a 10.255.0.1 }", false),
    ("# comment\nSpread_Segment 10.255.0.255:4803 { # more\n a 10.255.0.1 # end\n }", true),
];

/// Runs each configuration through the real Spread 5.0.1 (`MBUS_TEST_SPREAD=/path/to/spread`)
/// and through ours, with `-n zz` so both stop right after parsing: "not in the
/// configuration" means the file was accepted.
#[test]
fn differential_against_real_spread() {
    let Some(real) = std::env::var_os("MBUS_TEST_SPREAD") else {
        println!("skipped: set MBUS_TEST_SPREAD to a Spread 5.0.1 daemon binary");
        return;
    };
    let ours = env!("CARGO_BIN_EXE_spread");
    let dir = super::spread_cli::TempDir::new("diff");
    let conf = dir.path().join("d.conf");
    let mut mismatches = Vec::new();
    for (text, want) in DIFFERENTIAL {
        std::fs::write(&conf, format!("{text}\n")).unwrap();
        // 5.0.1 aborts on a fatal error; unbuffered stdout keeps its last lines.
        let r = std::process::Command::new("timeout")
            .arg("10")
            .arg("stdbuf")
            .arg("-o0")
            .arg(&real)
            .args(["-n", "zz", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        let real_ok =
            String::from_utf8_lossy(&r.stdout).contains("My proc zz is not in configuration");
        let o = std::process::Command::new(ours)
            .args(["-n", "zz", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        let ours_ok = String::from_utf8_lossy(&o.stderr)
            == "spread: my name 'zz' is not in the configuration\n";
        if real_ok != *want || ours_ok != *want {
            mismatches.push(format!(
                "{text:?}: expected {want}, 5.0.1 {real_ok}, mbus {ours_ok}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
