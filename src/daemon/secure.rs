//! The secure ring in the shell (mbus extension, docs/security.md): reading the key file
//! named by `--link-key FILE` or `MBUS_LINK_KEY`, drawing this run's boot id, refusing a
//! configuration that would mix sealed and plain datagrams, and watching the key file so a key
//! rollover needs no restart. Sealing, opening and replay windows are the core's
//! ([`spread::daemon::link`]).
//!
//! The key file's directory is opened at start-up, before the daemon chroots into
//! `RuntimeDir`, and the file is looked up by name in that directory handle: rollover steps
//! keep working inside the chroot and as `DaemonUser` (who then needs read access to the
//! file: `640 root:DaemonGroup`), as `EventLogFile`'s reopen does.

use std::ffi::OsString;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use spread::config::Config;
use spread::daemon::link::{BootId, Keyring, LinkSettings};
use tracing::{info, warn};

use super::CoreHandle;

/// How often the key file is looked at for a rollover step.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(1);
/// A changed key file is read once it has not changed for this long.
const SETTLE: Duration = Duration::from_millis(100);

/// The secure ring's keys and where they came from.
#[derive(Debug, Clone)]
pub struct SecureRing {
    /// The key file (watched for rollover steps); `None` for keys given in code.
    pub path: Option<PathBuf>,
    /// The keys read from it.
    pub keys: Keyring,
    /// The key file's directory, opened at start-up (so the file can be read again after the
    /// chroot).
    dir: Option<KeyDir>,
}

/// A key file as a name in a directory handle opened before the chroot.
#[derive(Debug, Clone)]
struct KeyDir {
    dir: Arc<OwnedFd>,
    name: OsString,
}

impl KeyDir {
    fn open(path: &Path) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?
            .to_owned();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir: OwnedFd = std::fs::File::open(parent)?.into();
        Ok(Self {
            dir: Arc::new(dir),
            name,
        })
    }

    fn file(&self) -> std::io::Result<std::fs::File> {
        let fd = openat(
            &*self.dir,
            self.name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)?;
        Ok(std::fs::File::from(fd))
    }

    /// What identifies the version of the file now at the name.
    fn stamp(&self) -> Option<(SystemTime, u64, u64)> {
        use std::os::unix::fs::MetadataExt as _;
        let m = self.file().ok()?.metadata().ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    fn read(&self) -> std::io::Result<String> {
        let mut text = String::new();
        self.file()?.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// Why the secure ring cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The key file could not be read.
    #[error("link key file {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// The key file does not parse.
    #[error("link key file {path}: {err}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        err: spread::daemon::link::KeyFileError,
    },
    /// The command line and the environment name different key files.
    #[error(
        "--link-key {cli} and MBUS_LINK_KEY={env} name different key files: give one (a ring \
         is either secure with one key file or plain)"
    )]
    TwoKeyFiles {
        /// From `--link-key`.
        cli: PathBuf,
        /// From `MBUS_LINK_KEY`.
        env: PathBuf,
    },
    /// The configuration asks for plain datagrams a secure daemon refuses.
    #[error(
        "the secure ring (--link-key) cannot be combined with DangerousMonitor = true in the \
         configuration: spmonitor's plain datagrams would be refused; remove one of them"
    )]
    PlainMonitor,
}

impl SecureRing {
    /// Reads and parses the key file `path`.
    pub fn load(path: &Path) -> Result<Self, SecureError> {
        let read_err = |err| SecureError::Read {
            path: path.to_owned(),
            err,
        };
        let dir = KeyDir::open(path).map_err(read_err)?;
        let keys = parse(path, &dir.read().map_err(read_err)?)?;
        Ok(Self {
            path: Some(path.to_owned()),
            keys,
            dir: Some(dir),
        })
    }

    /// Keys given in code (an embedded daemon, tests): no file to watch.
    pub fn from_keys(keys: Keyring) -> Self {
        Self {
            path: None,
            keys,
            dir: None,
        }
    }

    /// The key file to watch for rollover steps, if the keys came from one.
    pub(crate) fn watched(&self) -> Option<WatchedKeyFile> {
        Some(WatchedKeyFile {
            path: self.path.clone()?,
            dir: self.dir.clone()?,
        })
    }

    /// The core's settings for a run starting now.
    pub fn settings(&self) -> LinkSettings {
        LinkSettings {
            keys: self.keys.clone(),
            boot: boot_id(),
        }
    }
}

/// The key file to use: `--link-key` (`cli`) or `MBUS_LINK_KEY` (`env`); both naming
/// different files is refused. An empty `env` counts as unset.
pub fn choose_key_file(
    cli: Option<&Path>,
    env: Option<&std::ffi::OsStr>,
) -> Result<Option<PathBuf>, SecureError> {
    let env = env.filter(|e| !e.is_empty()).map(PathBuf::from);
    match (cli, env) {
        (Some(c), Some(e)) if c != e => Err(SecureError::TwoKeyFiles {
            cli: c.to_owned(),
            env: e,
        }),
        (Some(c), _) => Ok(Some(c.to_owned())),
        (None, e) => Ok(e),
    }
}

/// Refuses a configuration that would mix the secure ring with plain datagrams: 5.0.1's
/// monitor (`DangerousMonitor = true`: `spmonitor` sends plain datagrams to the ring ports).
pub fn check_config(config: &Config) -> Result<(), SecureError> {
    if config.dangerous_monitor() {
        return Err(SecureError::PlainMonitor);
    }
    Ok(())
}

/// This run's boot id: the wall clock in microseconds and 64 random bits from the operating
/// system (a run never reuses a nonce of an earlier one).
pub fn boot_id() -> BootId {
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut r = [0u8; 8];
    if let Err(e) = getrandom::getrandom(&mut r) {
        // Without the random word the epoch alone still differs between runs.
        warn!(error = %e, "no random bytes for the secure ring's boot id");
    }
    BootId {
        epoch,
        random: u64::from_be_bytes(r),
    }
}

fn parse(path: &Path, text: &str) -> Result<Keyring, SecureError> {
    Keyring::parse(text).map_err(|err| SecureError::Parse {
        path: path.to_owned(),
        err,
    })
}

/// A key file being watched: its path (for the log) and its directory handle.
#[derive(Debug)]
pub(crate) struct WatchedKeyFile {
    path: PathBuf,
    dir: KeyDir,
}

/// Watches the key file: when it changes and parses, the core gets the new keys (a rollover
/// step); when it does not parse, the keys in use stay and the reason is logged once per
/// version of the file. Ends when `stop` fires or the core stops.
pub(crate) async fn watch(
    file: WatchedKeyFile,
    core: CoreHandle,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    let WatchedKeyFile { path, dir } = file;
    let mut seen = dir.stamp();
    let mut unreadable = false;
    if seen.is_none() {
        // DaemonUser may not read it (it needs `640 root:DaemonGroup`).
        warn!(
            "secure ring: cannot read link key file {} any more (as DaemonUser: give it mode \
             640 and group DaemonGroup); key changes take a restart until it can",
            path.display()
        );
        unreadable = true;
    }
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            () = tokio::time::sleep(KEY_FILE_POLL) => {}
        }
        let now = dir.stamp();
        if now == seen {
            continue;
        }
        // A file being written in place is read once it has stopped changing.
        tokio::time::sleep(SETTLE).await;
        if dir.stamp() != now {
            continue;
        }
        seen = now;
        let read = dir.read().map_err(|err| SecureError::Read {
            path: path.clone(),
            err,
        });
        match read.and_then(|text| parse(&path, &text)) {
            Ok(keys) => {
                unreadable = false;
                if core.set_link_keys(keys).await.is_err() {
                    return;
                }
                info!(path = %path.display(), "secure ring: key file changed; keys replaced");
            }
            Err(e) if !unreadable => {
                unreadable = matches!(e, SecureError::Read { .. });
                warn!("{e}; keeping the keys in use");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_file_from_the_command_line_or_the_environment() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(choose_key_file(Some(&p("a")), None).unwrap(), Some(p("a")));
        assert_eq!(
            choose_key_file(None, Some("b".as_ref())).unwrap(),
            Some(p("b"))
        );
        assert_eq!(
            choose_key_file(Some(&p("a")), Some("a".as_ref())).unwrap(),
            Some(p("a"))
        );
        assert_eq!(choose_key_file(None, Some("".as_ref())).unwrap(), None);
        let e = choose_key_file(Some(&p("a")), Some("b".as_ref())).unwrap_err();
        assert!(e.to_string().contains("different key files"), "{e}");
    }

    #[test]
    fn the_secure_ring_refuses_the_plain_monitor() {
        let c = Config::parse(
            "DangerousMonitor = true\nSpread_Segment 127.0.0.255:4803 {\n a 127.0.0.1\n}\n",
            "x.conf",
        )
        .unwrap();
        let e = check_config(&c).unwrap_err().to_string();
        assert!(e.contains("DangerousMonitor"), "{e}");
        let plain =
            Config::parse("Spread_Segment 127.0.0.255:4803 {\n a 127.0.0.1\n}\n", "y").unwrap();
        assert!(check_config(&plain).is_ok());
    }

    #[test]
    fn boot_ids_of_two_runs_differ() {
        assert_ne!(boot_id(), boot_id());
    }
}
