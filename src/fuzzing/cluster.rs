//! Targets for the cluster manager: bus messages (`crate::cluster::proto`), the persisted
//! control cache (`crate::cluster::cache`) and the subcluster table of `mbus.conf`
//! (`crate::cluster::subcluster`).

use crate::cluster::cache::{CacheLimits, ControlCache};
use crate::cluster::proto::{Msg, MT_COMMAND, MT_DESCRIBE, MT_MOVE, MT_RESPONSE, MT_VIEW};
use crate::cluster::subcluster::Subclusters;

/// Fixed clock for the control cache (seconds).
const NOW: u64 = 1_000_000;

/// One bus message between `eccmgr` and node agents. Input: a selector byte (`% 6`: the five
/// message types in order COMMAND, RESPONSE, DESCRIBE, VIEW, MOVE; 5 = the next two bytes are a
/// raw big-endian `mess_type`), then the body.
///
/// Checks: decode → encode gives exactly the body bytes (the format is canonical) and decodes
/// to the same message with the same `mess_type`.
pub fn cluster_message(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (msg_type, body) = match sel % 6 {
        0 => (MT_COMMAND, rest),
        1 => (MT_RESPONSE, rest),
        2 => (MT_DESCRIBE, rest),
        3 => (MT_VIEW, rest),
        4 => (MT_MOVE, rest),
        _ => match rest {
            [a, b, body @ ..] => (i16::from_be_bytes([*a, *b]), body),
            _ => return,
        },
    };
    let Ok(m) = Msg::decode(msg_type, body) else {
        return;
    };
    assert_eq!(m.msg_type(), msg_type);
    let enc = m.encode();
    assert_eq!(
        &enc[..],
        body,
        "bus message does not re-encode to its bytes"
    );
    assert_eq!(Msg::decode(msg_type, &enc), Ok(m));
}

/// The persisted control cache (input: the file's text, UTF-8). Checks: loading stays within
/// the default limits, and load → save is stable (saving what a saved file loads to gives the
/// same text).
pub fn control_cache(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = CacheLimits::default();
    let mut cache = ControlCache::new(limits);
    if cache.decode(NOW, text).is_err() {
        return;
    }
    assert!(
        cache.len() <= limits.max_entries,
        "{} entries loaded",
        cache.len()
    );
    assert!(
        cache.bytes() <= limits.max_bytes,
        "{} bytes loaded",
        cache.bytes()
    );
    let saved = cache.encode();
    let mut again = ControlCache::new(limits);
    again.decode(NOW, &saved).expect("a saved cache loads");
    assert_eq!(
        again.encode(),
        saved,
        "control cache save/load is not stable"
    );
}

/// `mbus.conf` text read for its `# Subcluster:` comments (input: UTF-8 text). Checks: every
/// host and manager name comes from the text, hosts are unique within a subcluster, manager
/// names are short (no `.`), and the result does not depend on the line ending style.
pub fn mbus_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let s = Subclusters::from_mbus_conf(text);
    for (name, sc) in &s.by_name {
        assert!(text.contains(name.as_str()) || name == "default");
        for (i, h) in sc.hosts.iter().enumerate() {
            assert!(!h.is_empty() && text.contains(h.as_str()));
            assert!(
                !sc.hosts.iter().skip(i + 1).any(|x| x == h),
                "duplicate host {h}"
            );
            assert!(s.of_host(h).is_some());
        }
        if let Some(m) = &sc.manager {
            assert!(!m.contains('.') && text.contains(m.as_str()));
        }
    }
    if !text.contains('\r') {
        assert_eq!(Subclusters::from_mbus_conf(&text.replace('\n', "\r\n")), s);
    }
}
