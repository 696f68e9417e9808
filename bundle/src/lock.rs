//! The lock that keeps two `rkos upgrade` runs apart (`rkos_contract::paths::UPGRADE_LOCK`).
//! Two runs at once would rewrite the same inactive slot and flip `grubenv` over each
//! other's half-written files. An advisory `flock`, so the kernel drops it when the holder
//! dies, however it dies: there is no stale lock to clean up after a crash or a power cut
//! (the file lives on a tmpfs, `/run`).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::{BundleError, IoContext, Result};

/// Held while alive; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct UpgradeLock {
    _file: File,
    path: PathBuf,
}

impl UpgradeLock {
    /// Takes the lock at `path` without waiting: [`BundleError::Busy`] when another process
    /// holds it.
    pub fn acquire(path: &Path) -> Result<UpgradeLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(BundleError::Busy {
                    lock: path.display().to_string(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(e) => {
                return Err(std::io::Error::from(e)).ctx(|| format!("locking {}", path.display()))
            }
        }
        // Only for messages: who holds it.
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        Ok(UpgradeLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("run/rkos/upgrade.lock");
        let first = UpgradeLock::acquire(&path).unwrap();
        // flock locks belong to an open file: a second open conflicts even in one process,
        // as it does between two processes.
        let err = UpgradeLock::acquire(&path).unwrap_err();
        assert!(matches!(err, BundleError::Busy { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        let again = UpgradeLock::acquire(&path).unwrap();
        assert_eq!(again.path(), path);
    }
}
