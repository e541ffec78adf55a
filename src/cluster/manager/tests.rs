//! Unit tests of [`super`].

use super::*;

#[test]
fn config_reload_discards_console_changes_and_applies_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eccluster.conf");
    std::fs::write(
        &path,
        "Logs { Control_Cache_Max_Entries = 5 }\ninclude extra.conf\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("extra.conf"),
        "Message_Expiration = 86400\n",
    )
    .unwrap();
    let mut cfg = Config::load(&path, &[]).unwrap();
    register_defaults(&mut cfg);
    let settings = ManagerSettings {
        cache: cache_limits(&cfg),
        ..ManagerSettings::default()
    };
    assert_eq!(settings.cache.max_entries, 5);
    let mut m = ManagerCore::new(settings, "mgr", cfg, Some(path.clone()));
    assert_eq!(
        m.console(1, "config set Message_Expiration 10").text,
        "Message_Expiration = 10"
    );
    assert_eq!(
        m.console(1, "config reload").text,
        "Configuration reloaded."
    );
    assert_eq!(
        m.console(1, "config get message_expiration").text,
        "Message_Expiration = 86400"
    );
    std::fs::write(&path, "Logs {\n  Control_Cache_Max_Entries = \n}\n").unwrap();
    let r = m.console(1, "config reload").text;
    assert!(
        r.starts_with("Reload failed: ")
            && r.contains("eccluster.conf:2:3: option 'Control_Cache_Max_Entries' has no value"),
        "{r}"
    );
    // The live configuration is unchanged by a failed reload.
    assert_eq!(
        m.console(1, "config get message_expiration").text,
        "Message_Expiration = 86400"
    );
}

#[test]
fn commands_need_the_bus_and_name_targets() {
    let mut m = ManagerCore::new(
        ManagerSettings::default(),
        "a-very-long-host.example.com",
        Config::default(),
        None,
    );
    assert_eq!(manager_private_name(m.host()), "a-very-lon");
    assert!(m
        .console(1, "broadcast version")
        .text
        .starts_with("Not connected to the bus"));
    assert_eq!(
        m.console(1, "info").text.lines().next(),
        Some("Daemon: (not connected)")
    );
    m.connected("#a-very-lon#d", "d");
    assert_eq!(m.poll(), Some(BusAction::Join("ec_cluster".into())));
    assert_eq!(
        m.console(1, "unicast n9 version").text,
        "Unknown node 'n9' (known nodes: )"
    );
    assert_eq!(
        m.console(1, "retrieve version").text,
        "No responses stored for 'version'"
    );
    assert_eq!(
        m.console(1, "retrieve_node n1 version").text,
        "No response stored from 'n1' for 'version'"
    );
    assert!(m.console(1, "help").text.lines().count() >= 12);
    assert!(m.console(1, "shutdown").shutdown);
}
