//! rkos-install: installs rkos onto a disk (or a disk image), with no UI. The wizard
//! (`os-config`) and `rkos install` gather the answers and call [`run`] with one
//! [`InstallRequest`]; progress comes back through [`Progress`].
//!
//! - [`layout`]: the partition table: the contract's partitions and labels
//!   ([`rkos_contract::partition`], [`rkos_contract::label`]) with their file systems, the
//!   sizes, and the tool command lines.
//! - [`target`]: a whole disk or an image file on a loop device, checked before anything is
//!   written.
//! - [`disks`]: which disks may be offered (sysfs under a given root), the boot medium never.
//! - [`run`]: partitions, file systems, slot A (copied with sha256 on the way), GRUB for the
//!   image's arch ([`GrubPlatforms`]: BIOS and UEFI on amd64, UEFI on arm64), the boot state
//!   and the node's config on `RKOS_DATA`.
//! - [`grow`]: first boot on a bigger disk: `RKOS_DATA` grows to its end.
//! - [`unattended`]: the settings of an install without questions (k3OS's silent install).
//! - [`cmd`]: the tools run in a process group of their own, so Ctrl-C never stops one
//!   half-way.
//!
//! Layout and command lines are computed by pure functions; the install runs them with the
//! real tools (sgdisk, partx, mkfs.vfat, mkfs.ext4, mount, grub-install), so the result is
//! exactly what an operator would get by hand.

use std::io;
use std::path::{Path, PathBuf};

pub mod cmd;
pub mod disks;
pub mod grow;
mod grub;
mod install;
pub mod layout;
mod source;
pub mod target;
pub mod unattended;

pub use grub::{GrubPlatforms, BASE_CMDLINE};
pub use install::run;
pub use layout::Layout;
pub use source::{Source, HOST_GRUB_LIB};
pub use target::Target;

/// Everything an install needs; nothing in it is asked or looked up during [`run`].
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Where to install; erased.
    pub target: Target,
    /// The OS files for slot A.
    pub source: Source,
    /// The node's config, written to `RKOS_DATA:/var/lib/rkos/config.yaml` (0600).
    pub config_yaml: String,
    /// Extra kernel arguments kept in GRUB's environment (`rkos_cmdline`), e.g. a console.
    pub extra_cmdline: Option<String>,
}

/// What the install did, for the report and the tests.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The disk or image installed to (as the request named it).
    pub target: PathBuf,
    pub manifest: rkos_slots::Manifest,
    pub layout: Layout,
    pub disk_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Source(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] cmd::CommandError),
    #[error("{0}")]
    Target(String),
    #[error(transparent)]
    Slots(#[from] rkos_slots::StateError),
}

impl InstallError {
    pub(crate) fn io(p: &Path, e: io::Error) -> Self {
        InstallError::Io {
            path: p.to_path_buf(),
            source: e,
        }
    }
}

/// Progress of the long steps; the wizard shows it with a bar, the unattended path logs it.
pub trait Progress {
    fn step(&mut self, what: &str);
    /// Bytes copied in the current step, out of `total`.
    fn bytes(&mut self, done: u64, total: u64);
}

/// A [`Progress`] that logs each step through tracing.
pub struct LogProgress;

impl Progress for LogProgress {
    fn step(&mut self, what: &str) {
        tracing::info!("install: {what}");
    }
    fn bytes(&mut self, _: u64, _: u64) {}
}
