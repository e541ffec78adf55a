//! Console authentication: the password store (fact sheet §4.5, §7.5, §8 item 12).
//!
//! The store is a text file, one user per line:
//!
//! ```text
//! # user:roles:hash
//! alice:admin:$argon2id$v=19$m=19456,t=2,p=1$…
//! bob:viewer,ops:$argon2id$v=19$…
//! root:admin:*
//! ```
//!
//! `roles` is a comma-separated list (may be empty); `hash` is a salted Argon2id PHC string
//! made by [`hash_password`] (`mbus-passwd` writes these lines), or `*` for an account that
//! may not log in with a password (a Unix-socket user, identified by peer credentials, still
//! gets its roles). Plain-text passwords are never stored or accepted.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use password_hash::rand_core::OsRng;

/// Longest accepted user name in bytes.
pub const MAX_USER: usize = 64;
/// Longest accepted password in bytes (bounds the hashing work per attempt).
pub const MAX_PASSWORD: usize = 1024;
/// Most users a store may hold.
pub const MAX_USERS: usize = 10_000;

/// A bad store line or a hashing failure, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A store line is malformed; the store is not loaded.
    #[error("{file}:{line}: {msg}")]
    BadLine {
        /// File name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The password could not be hashed (nothing written).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// A user name is empty, too long or contains `:`, white space or control characters.
    #[error("invalid user name '{0}': use 1-64 characters without ':', spaces or controls")]
    BadUser(String),
}

/// Hashes `password` with Argon2id (default parameters) and a fresh random salt; returns the
/// PHC string to store.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks `password` against a stored PHC string (any Argon2 variant and parameters).
/// A malformed hash, `*`, or an over-long password never verifies.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// True if `user` is acceptable as a store user name.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER
        && !user
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
}

/// One store entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Roles, as written (matched case-insensitively against `Authorization { Role … }`).
    pub roles: Vec<String>,
    /// PHC hash, or `None` for `*` (no password login).
    pub hash: Option<String>,
}

/// The loaded password store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordStore {
    users: BTreeMap<String, UserEntry>,
}

impl PasswordStore {
    /// Parses store text (`file` names it in errors). Any bad line rejects the whole store,
    /// so a typo never silently opens or closes an account.
    pub fn parse(file: &str, text: &str) -> Result<Self, AuthError> {
        let mut users = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |msg: &str| AuthError::BadLine {
                file: file.into(),
                line: i + 1,
                msg: msg.into(),
            };
            let mut parts = line.splitn(3, ':');
            let (Some(user), Some(roles), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected user:roles:hash"));
            };
            if !valid_user(user) {
                return Err(bad("invalid user name"));
            }
            let hash = match hash {
                "*" => None,
                h if PasswordHash::new(h).is_ok() => Some(h.to_string()),
                _ => return Err(bad("hash is not a PHC string (make one with mbus-passwd)")),
            };
            let roles = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            if users.len() >= MAX_USERS {
                return Err(bad("too many users"));
            }
            if users
                .insert(user.to_string(), UserEntry { roles, hash })
                .is_some()
            {
                return Err(bad("user listed twice"));
            }
        }
        Ok(Self { users })
    }

    /// The entry of `user`.
    pub fn get(&self, user: &str) -> Option<&UserEntry> {
        self.users.get(user)
    }

    /// Roles of `user` (empty for an unknown user).
    pub fn roles(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .map(|e| e.roles.clone())
            .unwrap_or_default()
    }

    /// Checks a password login; on success returns the user's roles. Unknown users cost the
    /// same hashing work as known ones (no timing hint about which names exist).
    pub fn verify(&self, user: &str, password: &str) -> Option<Vec<String>> {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match self.users.get(user) {
            Some(UserEntry {
                hash: Some(h),
                roles,
            }) => verify_password(h, password).then(|| roles.clone()),
            _ => {
                let dummy = DUMMY.get_or_init(|| hash_password("x").unwrap_or_default());
                let _ = verify_password(dummy, password);
                None
            }
        }
    }
}

/// Returns `text` with the line of `user` replaced (or appended) by `user:roles:hash`;
/// comments and other users are kept as they are.
pub fn upsert_line(text: &str, user: &str, roles: &[String], hash: &str) -> String {
    let new = format!("{user}:{}:{hash}", roles.join(","));
    let mut out = Vec::new();
    let mut done = false;
    for l in text.lines() {
        if l.trim().split(':').next() == Some(user) && !l.trim_start().starts_with('#') {
            if !done {
                out.push(new.clone());
                done = true;
            }
        } else {
            out.push(l.to_string());
        }
    }
    if !done {
        out.push(new);
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify_only_the_right_password() {
        let a = hash_password("s3cret").unwrap();
        let b = hash_password("s3cret").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "two hashes of one password differ by salt");
        assert!(verify_password(&a, "s3cret"));
        assert!(!verify_password(&a, "s3cret "));
        assert!(!verify_password("*", "s3cret"));
        assert!(
            !verify_password("s3cret", "s3cret"),
            "plain text never verifies"
        );
    }

    #[test]
    fn store_lines_give_roles_and_bad_lines_reject_the_store() {
        let h = hash_password("pw").unwrap();
        let text = format!("# comment\nalice:admin:{h}\nbob:viewer, ops:{h}\nroot:admin:*\n");
        let s = PasswordStore::parse("pw.db", &text).unwrap();
        assert_eq!(s.verify("alice", "pw"), Some(vec!["admin".to_string()]));
        assert_eq!(s.verify("alice", "nope"), None);
        assert_eq!(s.verify("carol", "pw"), None);
        assert_eq!(s.verify("root", ""), None, "'*' accounts cannot log in");
        assert_eq!(s.roles("bob"), vec!["viewer", "ops"]);
        assert_eq!(s.roles("root"), vec!["admin"]);
        let e = PasswordStore::parse("pw.db", "alice:admin:plaintext\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "pw.db:1: hash is not a PHC string (make one with mbus-passwd)"
        );
        assert!(PasswordStore::parse("pw.db", "alice\n").is_err());
        assert!(PasswordStore::parse("pw.db", "a b:x:*\n").is_err());
        assert!(PasswordStore::parse("pw.db", "a::*\na::*\n").is_err());
    }

    #[test]
    fn upsert_replaces_one_user_and_keeps_the_rest() {
        let t = "# users\nalice:admin:*\nbob::*\n";
        let t2 = upsert_line(t, "alice", &["viewer".into()], "HASH");
        assert_eq!(t2, "# users\nalice:viewer:HASH\nbob::*\n");
        let t3 = upsert_line(&t2, "carol", &[], "H2");
        assert!(t3.ends_with("carol::H2\n"));
    }
}
