//! What GRUB needs beyond an atomic rename (rkos-io's `write_atomic`): the rename must be
//! in the ext4 file system proper, not only in its journal.

use std::fs::File;
use std::io;
use std::path::Path;

/// Writes the ext4 journal of the file system holding `dir` back to its final place.
///
/// GRUB reads ext4 without replaying the journal. After a rename that is committed to the
/// journal but not yet checkpointed, GRUB would still see the old directory entry (the old
/// `grubenv`, or no new kernel) until some later checkpoint; a power cut in between makes GRUB
/// act on stale state. `EXT4_IOC_CHECKPOINT` (Linux 5.13+) closes that window. Other file
/// systems (tmpfs in tests) have no journal to checkpoint: noted at debug level. On ext4 a
/// refusal (no CAP_SYS_ADMIN, a kernel before 5.13, an I/O error) is a warning: the data is
/// durable, but GRUB may act on the old state after a power cut.
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
        if failure_level(is_ext4(&f)) == tracing::Level::WARN {
            tracing::warn!(dir = %dir.display(), error = %e,
                "ext4 journal checkpoint failed: GRUB may read the previous boot state until the journal is written back");
        } else {
            tracing::debug!(dir = %dir.display(), error = %e, "no ext4 journal checkpoint (not ext4)");
        }
    }
}

/// How loud a failed checkpoint is: only ext4 has a journal GRUB cannot read; anything else
/// (tmpfs in tests), or a file system that cannot be told, is no news.
fn failure_level(ext4: Option<bool>) -> tracing::Level {
    if ext4 == Some(true) {
        tracing::Level::WARN
    } else {
        tracing::Level::DEBUG
    }
}

// f_type's integer type differs between C libraries and arches (i64 here, u32 or i32 on
// others): the cast is needed there.
#[allow(clippy::unnecessary_cast)]
fn is_ext4(f: &File) -> Option<bool> {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the fd is valid and `st` is a statfs the call fills.
    let rc = unsafe { libc::fstatfs(std::os::fd::AsRawFd::as_raw_fd(f), st.as_mut_ptr()) };
    // SAFETY: filled by a successful fstatfs.
    (rc == 0).then(|| unsafe { st.assume_init() }.f_type as i64 == EXT4_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16, item 18: a failed checkpoint on ext4 was logged only at debug level.
    #[test]
    fn a_failed_checkpoint_warns_only_on_ext4() {
        assert_eq!(failure_level(Some(true)), tracing::Level::WARN);
        assert_eq!(failure_level(Some(false)), tracing::Level::DEBUG);
        assert_eq!(failure_level(None), tracing::Level::DEBUG);
        // Whatever the test directory's file system is, it is told.
        let d = tempfile::tempdir().unwrap();
        assert!(is_ext4(&File::open(d.path()).unwrap()).is_some());
        checkpoint_journal(d.path());
    }
}
