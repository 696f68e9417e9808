//! `RKOS_STATE` is mounted read-only at boot (rkos-init); an upgrade or mark-good makes it
//! writable for the time of the edit and read-only again afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::StatVfsMountFlags;

use crate::error::{BundleError, IoContext, Result};

/// Puts the mount back to read-only when dropped.
pub struct RemountGuard {
    path: PathBuf,
}

impl Drop for RemountGuard {
    fn drop(&mut self) {
        if let Err(e) = remount(&self.path, "ro") {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remount read-only");
        }
    }
}

/// Whether the file system holding `path` is mounted read-only.
pub fn is_read_only(path: &Path) -> Result<bool> {
    let s = rustix::fs::statvfs(path)
        .map_err(std::io::Error::from)
        .ctx(|| format!("statvfs {}", path.display()))?;
    Ok(s.f_flag.contains(StatVfsMountFlags::RDONLY))
}

/// Remounts `mountpoint` read-write if it is read-only; the guard restores read-only.
/// `None` when it was writable already (nothing to restore).
pub fn ensure_writable(mountpoint: &Path) -> Result<Option<RemountGuard>> {
    if !is_read_only(mountpoint)? {
        return Ok(None);
    }
    remount(mountpoint, "rw")?;
    Ok(Some(RemountGuard {
        path: mountpoint.to_path_buf(),
    }))
}

fn remount(path: &Path, mode: &str) -> Result<()> {
    let st = Command::new("mount")
        .arg("-o")
        .arg(format!("remount,{mode}"))
        .arg(path)
        .status()
        .ctx(|| "running mount".to_string())?;
    if !st.success() {
        return Err(BundleError::Refused(format!(
            "mount -o remount,{mode} {} failed ({st})",
            path.display()
        )));
    }
    Ok(())
}
