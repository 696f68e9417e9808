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
