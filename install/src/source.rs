//! The OS files an install puts into slot A.

use std::fs;
use std::path::{Path, PathBuf};

use rkos_contract::files;

use crate::InstallError;

/// Where the OS files come from: the live medium (`/run/rkos/medium` on the ISO: its
/// `boot/vmlinuz`, `boot/initrd`, `rootfs.squashfs`, [`files`]`::MEDIUM_*`) or any directory
/// laid out the same way.
#[derive(Debug, Clone)]
pub struct Source {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub rootfs: PathBuf,
    pub version: String,
    pub arch: String,
    /// Where GRUB's platform directories (`arm64-efi/`, `x86_64-efi/`, `i386-pc/`) are:
    /// [`HOST_GRUB_LIB`], the running system's, unless the image is for another arch (a
    /// disk image built on a host of another arch takes them from the image's root
    /// filesystem).
    pub grub_lib: PathBuf,
}

/// The running system's GRUB modules (Debian's `grub-*-bin` packages).
pub const HOST_GRUB_LIB: &str = "/usr/lib/grub";

impl Source {
    /// The ISO layout under `dir`; also accepts a slot layout (`vmlinuz`, `initrd` at top).
    pub fn from_dir(dir: &Path, version: &str, arch: &str) -> Result<Source, InstallError> {
        let pick = |a: &str, b: &str| -> Result<PathBuf, InstallError> {
            [dir.join(a), dir.join(b)]
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| InstallError::Source(format!("no {a} or {b} in {}", dir.display())))
        };
        Ok(Source {
            vmlinuz: pick(files::MEDIUM_VMLINUZ, files::VMLINUZ)?,
            initrd: pick(files::MEDIUM_INITRD, files::INITRD)?,
            rootfs: pick(files::MEDIUM_ROOTFS, files::ROOTFS)?,
            version: version.to_string(),
            arch: arch.to_string(),
            grub_lib: PathBuf::from(HOST_GRUB_LIB),
        })
    }

    /// GRUB's modules from `dir` instead of [`HOST_GRUB_LIB`].
    pub fn with_grub_lib(mut self, dir: PathBuf) -> Source {
        self.grub_lib = dir;
        self
    }

    /// Each file with its name in the slot.
    pub(crate) fn files(&self) -> [(&'static str, &Path); 3] {
        [
            (files::VMLINUZ, self.vmlinuz.as_path()),
            (files::INITRD, self.initrd.as_path()),
            (files::ROOTFS, self.rootfs.as_path()),
        ]
    }

    pub fn total_bytes(&self) -> Result<u64, InstallError> {
        let mut total = 0;
        for (_, p) in self.files() {
            total += fs::metadata(p).map_err(|e| InstallError::io(p, e))?.len();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_from_iso_layout_or_slot_layout() {
        let t = tempfile::tempdir().unwrap();
        assert!(Source::from_dir(t.path(), "1", "amd64")
            .unwrap_err()
            .to_string()
            .contains("no boot/vmlinuz"));
        fs::create_dir_all(t.path().join("boot")).unwrap();
        fs::write(t.path().join("boot/vmlinuz"), b"k").unwrap();
        fs::write(t.path().join("initrd"), b"ii").unwrap();
        fs::write(t.path().join("rootfs.squashfs"), b"rrr").unwrap();
        let src = Source::from_dir(t.path(), "1", "amd64").unwrap();
        assert_eq!(src.total_bytes().unwrap(), 6);
        assert!(src.initrd.ends_with("initrd"));
    }
}
