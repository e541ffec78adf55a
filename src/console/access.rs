//! Who may do what on a control listener (fact sheet §4.5, §7.5): which listeners ask for a
//! password, the role → allowed-command policy, the failed-login limiter and the accounting
//! sink. Everything that decides is pure (times are passed in); the server only asks.
//!
//! ```text
//! Control_Listener {
//!   Enable_Authentication = true        # TCP sessions must log in (Unix sockets: peer uid)
//!   Enable_Authorization  = true        # every command is checked against the roles
//!   Password_File = "/etc/mbus/console.passwd"   # user:roles:argon2-hash (mbus-passwd)
//!   Acct_Log = "/var/log/eccluster/acctlog"      # one line per command attempt and login
//!   Listen "/tmp/2025" { }
//!   Listen "127.0.0.1:2025" { }
//! }
//! Authorization {
//!   Role "admin"  { allow = ( ".*" ) }
//!   Role "viewer" { allow = ( "^retrieve " "^version$" ) }
//! }
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use regex::Regex;

use super::auth::PasswordStore;
use crate::ecconf::{Config, Scope, Seg, Value};

/// Reply to a command on a session that must log in first (§7.2).
pub const AUTH_REQUIRED: &str = "Authorization required for console session";
/// Reply to a command the session's roles do not allow (§7.5).
pub const NOT_AUTHORIZED: &str = "Not Authorized for this command";
/// Reply to a wrong user name or password.
pub const AUTH_FAILED: &str = "Authentication failed.";

/// Role name → allowed-command regexes, from `Authorization { Role "…" { allow = (…) } }`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: BTreeMap<String, Vec<Regex>>,
}

impl Policy {
    /// Reads the `Authorization` scope (top level, or inside `Control_Listener`). A regex
    /// that does not compile is reported and left out (it then allows nothing).
    pub fn from_config(cfg: &Config) -> (Self, Vec<String>) {
        let mut roles: BTreeMap<String, Vec<Regex>> = BTreeMap::new();
        let mut errors = Vec::new();
        let scopes = [
            cfg.root.child("Authorization", None),
            cfg.root
                .child("Control_Listener", None)
                .and_then(|c| c.child("Authorization", None)),
        ];
        for auth in scopes.into_iter().flatten() {
            for role in auth.children_named("Role") {
                let name = role.instance.clone().unwrap_or_default().to_lowercase();
                let list = roles.entry(name.clone()).or_default();
                for pat in allow_patterns(role) {
                    match Regex::new(&pat) {
                        Ok(r) => list.push(r),
                        Err(e) => errors.push(format!(
                            "Authorization Role '{name}': bad allow regex '{pat}': {}",
                            e.to_string().lines().last().unwrap_or("")
                        )),
                    }
                }
            }
        }
        (Self { roles }, errors)
    }

    /// True if one of `roles` has an `allow` regex matching the command line (trimmed).
    pub fn allows(&self, roles: &[String], line: &str) -> bool {
        let line = line.trim();
        roles.iter().any(|r| {
            self.roles
                .get(&r.to_lowercase())
                .is_some_and(|rs| rs.iter().any(|re| re.is_match(line)))
        })
    }
}

fn allow_patterns(role: &Scope) -> Vec<String> {
    match role.get("allow").map(|o| &o.value) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(v) => v.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
        None => Vec::new(),
    }
}

/// What one listener demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerRules {
    /// TCP sessions must log in with a password before any command.
    pub password: bool,
    /// Every command is checked against the session's roles.
    pub authorize: bool,
}

/// Failed logins tolerated from one address before it is locked out.
pub const MAX_FAILURES: u32 = 5;
/// Lock-out after [`MAX_FAILURES`], milliseconds.
pub const LOCKOUT_MS: u64 = 60_000;
/// A failure older than this no longer counts, milliseconds.
pub const FAILURE_WINDOW_MS: u64 = 300_000;
/// Delay before answering the first failed login, milliseconds (doubles per failure).
pub const FIRST_DELAY_MS: u64 = 250;
/// Most addresses the limiter remembers (the oldest is forgotten first).
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: u64,
    locked_until_ms: u64,
}

/// Rate limit of wrong passwords per client address (sans-IO: times in milliseconds).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    by_ip: BTreeMap<IpAddr, Failures>,
}

impl LoginLimiter {
    /// `Err(ms)` while `ip` is locked out (for `ms` more milliseconds).
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        match self.by_ip.get(&ip) {
            Some(f) if f.locked_until_ms > now_ms => Err(f.locked_until_ms - now_ms),
            _ => Ok(()),
        }
    }

    /// Records a failed login; returns how long to wait before answering it.
    pub fn failure(&mut self, ip: IpAddr, now_ms: u64) -> u64 {
        if self.by_ip.len() >= MAX_TRACKED && !self.by_ip.contains_key(&ip) {
            let oldest = self
                .by_ip
                .iter()
                .min_by_key(|(_, f)| f.last_ms)
                .map(|(ip, _)| *ip);
            if let Some(o) = oldest {
                self.by_ip.remove(&o);
            }
        }
        let f = self.by_ip.entry(ip).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
            locked_until_ms: 0,
        });
        if now_ms.saturating_sub(f.last_ms) > FAILURE_WINDOW_MS {
            f.count = 0;
        }
        f.count += 1;
        f.last_ms = now_ms;
        if f.count >= MAX_FAILURES {
            f.locked_until_ms = now_ms + LOCKOUT_MS;
            f.count = 0;
        }
        FIRST_DELAY_MS << (f.count.max(1) - 1).min(5)
    }

    /// Forgets the failures of `ip` after a good login.
    pub fn success(&mut self, ip: IpAddr) {
        self.by_ip.remove(&ip);
    }
}

/// Access settings of all control listeners, read once from the configuration.
#[derive(Debug, Default)]
pub struct Access {
    default: ListenerRules,
    listen: Vec<(String, ListenerRules)>,
    /// The password store (empty when none is configured or it failed to load: no password
    /// login succeeds — fail closed).
    pub store: PasswordStore,
    /// The role policy.
    pub policy: Policy,
    /// Accounting file (`Control_Listener { Acct_Log }`), if any.
    pub acct_log: Option<PathBuf>,
    /// Failed-login limiter shared by all listeners.
    pub limiter: parking_lot::Mutex<LoginLimiter>,
}

fn flag(s: Option<&Scope>, name: &str) -> Option<bool> {
    s.and_then(|s| s.get(name)).and_then(|o| o.value.as_bool())
}

impl Access {
    /// Reads `Control_Listener` and `Authorization`; loads `Password_File`. Problems are
    /// returned as one-line warnings (the listener still starts, failing closed).
    pub fn from_config(cfg: &Config) -> (Self, Vec<String>) {
        let cl = cfg.root.child("Control_Listener", None);
        let default = ListenerRules {
            password: flag(cl, "Enable_Authentication").unwrap_or(false),
            authorize: flag(cl, "Enable_Authorization").unwrap_or(false),
        };
        let listen = cl
            .map(|c| {
                c.children_named("Listen")
                    .filter_map(|l| {
                        let rules = ListenerRules {
                            password: flag(Some(l), "Enable_Authentication")
                                .unwrap_or(default.password),
                            authorize: flag(Some(l), "Enable_Authorization")
                                .unwrap_or(default.authorize),
                        };
                        l.instance.clone().map(|i| (i, rules))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (policy, mut warnings) = Policy::from_config(cfg);
        let path: Vec<Seg> = vec![("Control_Listener".into(), None)];
        let store = match cfg
            .eval(&path, "Password_File")
            .and_then(|o| o.value.as_str())
        {
            None => PasswordStore::default(),
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => PasswordStore::parse(p, &text).unwrap_or_else(|e| {
                    warnings.push(format!("password store not loaded: {e}"));
                    PasswordStore::default()
                }),
                Err(e) => {
                    warnings.push(format!("password store {p} not loaded: {e}"));
                    PasswordStore::default()
                }
            },
        };
        let acct_log = cfg
            .eval(&path, "Acct_Log")
            .and_then(|o| o.value.as_str())
            .map(PathBuf::from);
        let access = Self {
            default,
            listen,
            store,
            policy,
            acct_log,
            limiter: parking_lot::Mutex::new(LoginLimiter::default()),
        };
        (access, warnings)
    }

    /// Rebuilt from a changed configuration, keeping the failed-login record.
    pub fn refreshed(&self, cfg: &Config) -> (Self, Vec<String>) {
        let (new, warnings) = Self::from_config(cfg);
        *new.limiter.lock() = std::mem::take(&mut *self.limiter.lock());
        (new, warnings)
    }

    /// Rules for a Unix socket at `path` (never asks for a password: the peer's uid is the
    /// identity).
    pub fn for_unix(&self, path: &str) -> ListenerRules {
        let r = self
            .listen
            .iter()
            .find(|(a, _)| a == path)
            .map_or(self.default, |(_, r)| *r);
        ListenerRules {
            password: false,
            ..r
        }
    }

    /// Rules for a TCP listener bound to `local`: the `Listen` whose port (and address, if
    /// it names one) matches, else the `Control_Listener` settings.
    pub fn for_tcp(&self, local: SocketAddr) -> ListenerRules {
        self.listen
            .iter()
            .find(|(a, _)| tcp_matches(a, local))
            .map_or(self.default, |(_, r)| *r)
    }

    /// Writes one accounting line (also as a tracing event, target `acctlog`).
    pub fn account(&self, line: &str) {
        tracing::info!(target: "acctlog", "{line}");
        let Some(p) = &self.acct_log else { return };
        let stamped = format!("{} {line}\n", chrono::Local::now().format("%F %T"));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .and_then(|mut f| f.write_all(stamped.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("cannot write the accounting log {}: {e}", p.display());
        }
    }
}

fn tcp_matches(listen: &str, local: SocketAddr) -> bool {
    if listen.starts_with('/') {
        return false;
    }
    let (host, port) = match listen.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None => return false,
    };
    if port.parse::<u16>().ok() != Some(local.port()) {
        return false;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_unspecified() || ip == local.ip(),
        Err(_) => true, // "", "*", a host name: the port decides
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::from_str("e.conf", text, Path::new(".")).unwrap()
    }

    #[test]
    fn roles_allow_commands_by_regex() {
        let c = cfg(r#"Authorization {
  Role "admin" { allow = ( ".*" ) }
  Role "Viewer" { allow = ( "^retrieve " "^version$" ) }
  Role "broken" { allow = ( "(" ) }
}"#);
        let (p, errs) = Policy::from_config(&c);
        assert_eq!(errs.len(), 1, "{errs:?}");
        let viewer = vec!["viewer".to_string()];
        assert!(p.allows(&viewer, "retrieve version"));
        assert!(p.allows(&viewer, "version "));
        assert!(!p.allows(&viewer, "broadcast shutdown"));
        assert!(!p.allows(&viewer, "version x"));
        assert!(p.allows(&["admin".into()], "shutdown"));
        assert!(!p.allows(&[], "version"));
        assert!(!p.allows(&["broken".into()], "("));
    }

    #[test]
    fn listen_scopes_override_the_control_listener() {
        let c = cfg(r#"Control_Listener {
  Enable_Authentication = true
  Enable_Authorization = true
  Listen "/tmp/2025" { Enable_Authorization = false }
  Listen "127.0.0.1:2025" { }
  Listen ":2026" { Enable_Authentication = false }
}"#);
        let (a, _) = Access::from_config(&c);
        let both = ListenerRules {
            password: true,
            authorize: true,
        };
        assert_eq!(a.for_tcp("127.0.0.1:2025".parse().unwrap()), both);
        assert_eq!(
            a.for_tcp("10.0.0.1:2026".parse().unwrap()),
            ListenerRules {
                password: false,
                authorize: true
            }
        );
        assert_eq!(a.for_tcp("127.0.0.1:9999".parse().unwrap()), both);
        assert_eq!(a.for_unix("/tmp/2025"), ListenerRules::default());
        assert!(!a.for_unix("/tmp/other").password);
        assert_eq!(
            Access::from_config(&Config::default()).0.default,
            ListenerRules::default()
        );
    }

    #[test]
    fn wrong_passwords_slow_down_then_lock_out() {
        let mut l = LoginLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(l.check(ip, 0), Ok(()));
        let delays: Vec<u64> = (0..4).map(|i| l.failure(ip, i)).collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000]);
        assert_eq!(l.check(ip, 10), Ok(()));
        l.failure(ip, 10);
        assert_eq!(l.check(ip, 11), Err(LOCKOUT_MS - 1));
        assert_eq!(l.check(ip, 10 + LOCKOUT_MS), Ok(()));
        l.failure(ip, 20 + LOCKOUT_MS);
        l.success(ip);
        assert_eq!(l.failure(ip, 30 + LOCKOUT_MS), FIRST_DELAY_MS);
        // Old failures expire.
        let other: IpAddr = "::1".parse().unwrap();
        l.failure(other, 0);
        assert_eq!(l.failure(other, FAILURE_WINDOW_MS + 1), FIRST_DELAY_MS);
    }
}
