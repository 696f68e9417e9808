//! rkos-contract: the names the parts of rkos agree on, defined once.
//!
//! - [`label`], [`partition`], [`files`], [`paths`]: the volumes, the installed disk's GPT
//!   layout, the OS files in a slot and on the live medium, and the well-known paths
//!   (`/run/rkos/...` left by rkos-init for the real root, `/var/lib/rkos`, `/usr/lib/rkos`);
//! - [`arch`]: the architecture name manifests and bundles carry ([`arch_name`]: the known ones);
//! - [`BootMode`] and [`Slot`]: `rkos.mode=` and `rkos.slot=`;
//! - [`cmdline`]: the only kernel command-line splitter, and the boot parameters' keys;
//! - [`InitReport`]: what rkos-init records in `/run/rkos/init.json`, read back by the same type.
//!
//! A crate of its own because its two most demanding users cannot take a heavier one:
//! `rkos-config` is pure and does not depend on `rkos-slots`, and `rkos-init` is a small
//! static binary. Everything here is data and pure functions.

pub mod cmdline;
pub mod files;
pub mod label;
mod mode;
pub mod partition;
pub mod paths;
pub mod report;
mod slot;

pub use cmdline::Cmdline;
pub use mode::{BootMode, BootModeError};
pub use report::{FsType, InitReport, StageTime, Volume};
pub use slot::{Slot, SlotError};

/// Debian's names of the architectures rkos is built for: what [`arch`] returns on them, and
/// what code that depends on the platform (the installer's GRUB targets) matches on.
pub mod arch_name {
    pub const AMD64: &str = "amd64";
    pub const ARM64: &str = "arm64";
}

/// Debian's name for the architecture this was built for ([`arch_name`]; another target
/// keeps Rust's name): what slot manifests and bundles record, and what a node compares a
/// bundle against.
pub const fn arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        arch_name::AMD64
    } else if cfg!(target_arch = "aarch64") {
        arch_name::ARM64
    } else {
        std::env::consts::ARCH
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arch_uses_debians_names() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(super::arch(), "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(super::arch(), "arm64");
        assert_ne!(super::arch(), "x86_64");
        assert_ne!(super::arch(), "aarch64");
    }
}
