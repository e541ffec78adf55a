//! Targets for the new console input paths: login frames and the password store
//! (`crate::console::{frame, auth}`), and configuration transactions
//! (`crate::ecconf::txn`).

use bytes::BytesMut;

use crate::console::auth::PasswordStore;
use crate::console::frame::{decode_client, encode_auth, encode_request, ClientFrame};
use crate::ecconf::{Config, Transactions};

/// Most frames taken from one input.
const MAX_FRAMES: usize = 64;
/// Most script lines run from one input.
const MAX_LINES: usize = 256;

/// A control-socket client stream (commands and logins), and the same bytes as a password
/// store file.
///
/// Checks: every frame consumes at most the bytes left and re-encodes to exactly the bytes it
/// came from; a login's `Debug` never shows the password; a store either loads or fails with
/// one line naming the file.
pub fn console_login(data: &[u8]) {
    let mut rest = data;
    for _ in 0..MAX_FRAMES {
        let (frame, used) = match decode_client(rest) {
            Ok(Some(d)) => d,
            Ok(None) | Err(_) => break,
        };
        assert!(used <= rest.len() && used >= 4);
        let mut again = BytesMut::new();
        match &frame {
            ClientFrame::Command(c) => encode_request(c, &mut again).expect("fits"),
            ClientFrame::Auth { user, password } => {
                encode_auth(user, password, &mut again).expect("decoded logins re-encode");
                if !password.is_empty() && !user.contains(password.as_str()) {
                    assert!(!format!("{frame:?}").contains(&format!("{password:?}")));
                }
            }
        }
        assert_eq!(&again[..], &rest[..used], "re-encoding changed the frame");
        rest = &rest[used..];
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = PasswordStore::parse("fuzz.passwd", text) {
            let s = e.to_string();
            assert!(s.starts_with("fuzz.passwd:") && !s.contains('\n'), "{s}");
        }
    }
}

/// A sample configuration the transaction scripts run against.
const SAMPLE: &str = "Message_Expiration = 86400\nLogs { Control_Cache_Max_Entries = 5 }\n";

/// A transaction script: lines `<session digit> <config sub-command and args>`, e.g.
/// `1 begin`, `2 set Logs X 3`, `1 commit`.
///
/// Checks: outside `commit` (and sessions without a transaction) the live configuration is
/// never changed by a session that has a transaction open; replies to `begin`, `commit`,
/// `rollback` are one line; nothing panics.
pub fn config_txn(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut live) = Config::from_str("t.conf", SAMPLE, std::path::Path::new(".")) else {
        return;
    };
    let mut txns = Transactions::default();
    for line in text.lines().take(MAX_LINES) {
        let (session, cmd) = line.split_at(line.len().min(1));
        let cmd = cmd.trim();
        let (sub, args) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let sub = sub.to_ascii_lowercase();
        if sub == "reload" || sub == "locate" {
            continue; // file system / regex cost: not this target's subject
        }
        let open = txns.is_open(session);
        let before = live.root.clone();
        match txns.console(&mut live, session, &sub, args) {
            Some(out) => {
                if sub != "commit" {
                    assert_eq!(live.root, before, "'{line}' changed the live configuration");
                }
                if matches!(sub.as_str(), "begin" | "commit" | "rollback") {
                    assert!(!out.contains('\n'), "{out}");
                }
                if sub == "commit" && out.starts_with("Commit failed") {
                    assert_eq!(live.root, before);
                    assert!(txns.is_open(session));
                }
            }
            None => {
                assert!(!open || matches!(sub.as_str(), "reload"));
                let _ = live.console(&sub, args);
            }
        }
    }
}
