//! Dropping root privileges after the sockets are open, as 5.0.1 does: when running as root,
//! `chdir` + `chroot` into `RuntimeDir`, then `setgroups`/`setgid`/`setuid` to `DaemonGroup`
//! and `DaemonUser` (defaults `/var/run/spread`, `spread`, `spread`).
//!
//! 5.0.1 aborts when any step fails. We do the same when the configuration names a
//! `DaemonUser` or `DaemonGroup`; when it names neither (the defaults) and the default user,
//! group or directory does not exist, we keep running as root with a warning, so the embedded
//! default configuration works as root on a machine without a `spread` account.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use nix::unistd::{self, Group, User};
use spread::config::Config;

/// What [`drop_privileges`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not running as root: nothing to drop (5.0.1 warns "won't chroot").
    NotRoot,
    /// Chrooted into `dir` and running as `user`/`group`.
    Dropped {
        /// The `DaemonUser`.
        user: String,
        /// The `DaemonGroup`.
        group: String,
        /// The `RuntimeDir` now serving as `/`.
        dir: PathBuf,
    },
    /// Root with only default settings whose user, group or directory does not exist here:
    /// still root (the reason says what was missing).
    KeptRoot {
        /// Why.
        reason: String,
    },
}

/// Why privileges could not be dropped (5.0.1: "FAILED privilege drop" / "FAILED chroot").
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The user or group does not exist, or `setgroups`/`setgid`/`setuid` failed.
    #[error(
        "FAILED privilege drop to user/group '{user}/{group}' (defined in spread.conf): {why}"
    )]
    Drop {
        /// `DaemonUser`.
        user: String,
        /// `DaemonGroup`.
        group: String,
        /// What failed.
        why: String,
    },
    /// `chdir`/`chroot` into `RuntimeDir` failed.
    #[error("FAILED chroot to '{dir}': {err}")]
    Chroot {
        /// `RuntimeDir`.
        dir: String,
        /// The OS error.
        err: io::Error,
    },
}

/// Drops root privileges as described in the module documentation. Call it once, after every
/// socket is bound and before serving.
pub fn drop_privileges(config: &Config) -> Result<Outcome, PrivilegeError> {
    if !unistd::geteuid().is_root() {
        return Ok(Outcome::NotRoot);
    }
    let o = &config.options;
    let strict = o.daemon_user.is_some() || o.daemon_group.is_some();
    let user_name = config.daemon_user().to_owned();
    let group_name = config.daemon_group().to_owned();
    let dir = config.runtime_dir().to_owned();
    let drop_err = |why: String| PrivilegeError::Drop {
        user: user_name.clone(),
        group: group_name.clone(),
        why,
    };
    let lookup = || -> Result<(User, Group), String> {
        let group = Group::from_name(&group_name)
            .map_err(|e| format!("group lookup: {e}"))?
            .ok_or_else(|| format!("no group '{group_name}'"))?;
        let user = User::from_name(&user_name)
            .map_err(|e| format!("user lookup: {e}"))?
            .ok_or_else(|| format!("no user '{user_name}'"))?;
        Ok((user, group))
    };
    let (user, group) = match lookup() {
        Ok(v) => v,
        Err(why) if !strict => return Ok(Outcome::KeptRoot { reason: why }),
        Err(why) => return Err(drop_err(why)),
    };
    if !strict && !std::path::Path::new(&dir).is_dir() {
        return Ok(Outcome::KeptRoot {
            reason: format!("no RuntimeDir '{dir}'"),
        });
    }
    let chroot_err = |err: io::Error| PrivilegeError::Chroot {
        dir: dir.clone(),
        err,
    };
    std::env::set_current_dir(&dir).map_err(chroot_err)?;
    std::os::unix::fs::chroot(".").map_err(chroot_err)?;
    std::env::set_current_dir("/").map_err(chroot_err)?;
    unistd::setgroups(&[group.gid]).map_err(|e| drop_err(format!("setgroups: {e}")))?;
    unistd::setgid(group.gid).map_err(|e| drop_err(format!("setgid: {e}")))?;
    unistd::setuid(user.uid).map_err(|e| drop_err(format!("setuid: {e}")))?;
    Ok(Outcome::Dropped {
        user: user_name,
        group: group_name,
        dir: PathBuf::from(OsString::from(dir)),
    })
}
