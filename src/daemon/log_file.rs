//! `EventLogFile` as a log destination that can be reopened (`SIGUSR1`, for logrotate).
//!
//! The file's directory is opened once, at start-up, before the daemon chroots into
//! `RuntimeDir`; a reopen creates or opens the file by name relative to that directory handle,
//! so it keeps working inside the chroot and after the switch to `DaemonUser` (the user then
//! needs write access to the file, or to the directory to create it: logrotate's
//! `create 0640 USER GROUP` provides the file).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use parking_lot::{Mutex, MutexGuard};

/// An append-only log file that [`LogFile::reopen`] replaces by the file now at its path.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    dir: OwnedFd,
    name: OsString,
    file: Mutex<File>,
}

impl LogFile {
    /// Opens (creating if needed, appending) `path`, and keeps its directory open for
    /// reopening.
    pub fn open(path: &Path) -> io::Result<Arc<Self>> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
            .to_owned();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir: OwnedFd = File::open(parent)?.into();
        let file = open_in(&dir, &name)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            dir,
            name,
            file: Mutex::new(file),
        }))
    }

    /// The path given at start-up.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file and opens (creating if needed) the one now at the same name in the
    /// same directory. On error the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_in(&self.dir, &self.name)?;
        let mut f = self.file.lock();
        let _ = f.flush();
        *f = new;
        Ok(())
    }

    /// A `tracing_subscriber` writer on this file.
    pub fn writer(self: &Arc<Self>) -> LogWriter {
        LogWriter(self.clone())
    }
}

fn open_in(dir: &OwnedFd, name: &OsString) -> io::Result<File> {
    let fd = openat(
        dir,
        name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(io::Error::from)?;
    Ok(File::from(fd))
}

/// [`tracing_subscriber::fmt::MakeWriter`] for a [`LogFile`].
#[derive(Debug, Clone)]
pub struct LogWriter(Arc<LogFile>);

/// One log line's access to the file (locked while it is written).
#[derive(Debug)]
pub struct LogGuard<'a>(MutexGuard<'a, File>);

impl Write for LogGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogGuard<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogGuard(self.0.file.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spread.log");
        let log = LogFile::open(&path).expect("open");
        {
            use tracing_subscriber::fmt::MakeWriter as _;
            let w = log.writer();
            w.make_writer().write_all(b"before\n").expect("write");
            std::fs::rename(&path, dir.path().join("spread.log.1")).expect("rotate");
            w.make_writer().write_all(b"still old\n").expect("write");
            log.reopen().expect("reopen");
            w.make_writer().write_all(b"after\n").expect("write");
        }
        let old = std::fs::read_to_string(dir.path().join("spread.log.1")).expect("old");
        assert_eq!(old, "before\nstill old\n");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "after\n");
    }
}
