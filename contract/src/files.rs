//! The OS files: their names in a slot (`RKOS_STATE:/slots/<X>/`) and in a bundle, and where
//! the live medium keeps them.

/// The kernel.
pub const VMLINUZ: &str = "vmlinuz";
/// The initramfs (rkos-init).
pub const INITRD: &str = "initrd";
/// The root file system image.
pub const ROOTFS: &str = "rootfs.squashfs";
/// The signed list of a slot's files (name, size, sha256), and its minisign signature.
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.json.minisig";

/// The files every slot and bundle holds, as the manifest names them.
pub const SLOT_FILES: [&str; 3] = [VMLINUZ, INITRD, ROOTFS];

/// On the live medium, relative to its root: the kernel and initramfs GRUB boots, the image,
/// and the medium's optional config.
pub const MEDIUM_VMLINUZ: &str = "boot/vmlinuz";
pub const MEDIUM_INITRD: &str = "boot/initrd";
pub const MEDIUM_ROOTFS: &str = ROOTFS;
pub const MEDIUM_CONFIG: &str = "rkos/config.yaml";

/// The files of a NoCloud seed rkos-init copies; `user-data` is the config, the rest are
/// kept for tools.
pub const CIDATA_FILES: [&str; 4] = ["user-data", "meta-data", "network-config", "vendor-data"];
