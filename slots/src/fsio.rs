//! Crash-safe file replacement: a reader (or GRUB, or a power cut) sees the old file or the
//! new one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes`: temp file in the same directory, fsync, rename over the
/// target, fsync the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the ext4 journal of the file system holding `dir` back to its final place.
///
/// GRUB reads ext4 without replaying the journal. After a rename that is committed to the
/// journal but not yet checkpointed, GRUB would still see the old directory entry (the old
/// `grubenv`, or no new kernel) until some later checkpoint; a power cut in between makes GRUB
/// act on stale state. `EXT4_IOC_CHECKPOINT` (Linux 5.13+) closes that window. Other file
/// systems (tmpfs in tests) do not support it, and without CAP_SYS_ADMIN it is refused:
/// both are reported and otherwise ignored, as the data itself is already durable.
pub fn checkpoint_journal(dir: &Path) {
    // _IOW('f', 43, __u32)
    const EXT4_IOC_CHECKPOINT: libc::c_ulong = 0x4004_662b;
    let f = match File::open(dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot open for journal checkpoint");
            return;
        }
    };
    let flags: u32 = 0;
    // SAFETY: the fd is valid for the call and the argument is the u32 the ioctl reads.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            EXT4_IOC_CHECKPOINT as _,
            &flags as *const u32,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        tracing::debug!(dir = %dir.display(), error = %e, "no ext4 journal checkpoint");
    }
}

/// Makes directory entries (creations, renames, removals) in `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no parent directory",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("f");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!p.exists());
    }
}
