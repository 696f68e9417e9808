//! Volume labels: how rkos-init, the installer and the tests find each volume.

/// The live medium (the ISO's iso9660 volume id, or a USB stick written from it).
pub const LIVE: &str = "RKOS_LIVE";
/// The installed disk's EFI system partition (vfat).
pub const EFI: &str = "RKOS_EFI";
/// The installed disk's ext4 volume with GRUB and the A/B slots.
pub const STATE: &str = "RKOS_STATE";
/// The installed disk's ext4 volume with the persistent paths.
pub const DATA: &str = "RKOS_DATA";
/// A cloud-init NoCloud seed. Matched without regard to case: `cidata` is as common.
pub const CIDATA: &str = "CIDATA";
