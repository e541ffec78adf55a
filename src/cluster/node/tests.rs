//! Unit tests of the node core.

use super::cmds::mapped;
use super::*;
use std::path::Path;

#[test]
fn view_from_config_and_mapping() {
    let cfg = Config::from_str(
        "n.conf",
        r#"
Binding "b1" { Bind_Address = 10.0.0.1 Enable_Duravip = true Duravip_Preference = "n2" }
Binding "b2" { Bind_Address = 10.0.0.2 Enable_Duravip = false }
ESMTP_Listener { Listen "10.0.0.9:25" { Duravip_Follow = "b1" } Listen "10.0.0.1:587" { Enable_Duravip = on } }
cluster {
  Topology "10.0.0.0/24" { interface = eth1 cidrmask = 24 }
  Command "sieve:s1 flush cache" { Program = "/bin/echo" Args = ( "flushed" ) Timeout = 2 }
}
"#,
        Path::new("."),
    )
    .unwrap();
    let v = local_view(&cfg.root);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].names, vec!["10.0.0.1:587", "b1"]);
    assert_eq!(v[0].preference.as_deref(), Some("n2"));
    assert_eq!(v[1].follow.as_deref(), Some("b1"));
    assert_eq!(topology(&cfg.root, "10.0.0.1"), (24, "eth1".into()));
    assert_eq!(topology(&cfg.root, "192.168.0.1"), (32, "eth0".into()));
    let m = mapped(&cfg.root, "SIEVE:s1 flush cache now").unwrap();
    assert_eq!(m.args, vec!["flushed", "now"]);
    assert_eq!(m.timeout_ms, 2000);
    assert!(mapped(&cfg.root, "sieve:s2 flush cache").is_none());
}

#[test]
fn joiner_waits_for_silent_members_then_settles() {
    let cfg = Config::from_str(
        "n.conf",
        "Binding \"b1\" { Bind_Address = 10.0.0.1 Enable_Duravip = true }",
        Path::new("."),
    )
    .unwrap();
    let me = "#ec0-00001#n1";
    let mut n = NodeCore::new(NodeIdentity::new("n1", "default"), me, "d", cfg, None);
    n.start();
    let members = vec!["#spuser#d".to_string(), me.to_string()];
    n.on_bus(
        100,
        BusEvent::Membership {
            group: "ec_cluster".into(),
            members,
        },
    );
    // Deliver our own announcements back (they were queued as outputs).
    let mine: Vec<BusEvent> = std::iter::from_fn(|| n.poll())
        .filter_map(|o| match o {
            NodeOutput::Bus(BusAction::Multicast {
                msg_type, payload, ..
            }) => Some(BusEvent::Message {
                sender: me.into(),
                groups: vec![],
                msg_type,
                payload,
            }),
            _ => None,
        })
        .collect();
    for ev in mine {
        n.on_bus(100, ev);
    }
    assert!(!n.is_synced());
    assert!(n.plumbed().is_empty(), "no plumbing before settling");
    n.tick(104);
    assert!(!n.is_synced());
    n.tick(105);
    assert!(n.is_synced());
    assert!(n.plumbed().contains("10.0.0.1"));
}
