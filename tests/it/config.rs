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
