//! rkos-slots: the A/B slot layout, the GRUB environment block and boot counting.
//!
//! Pure logic ([`grubenv`], [`boot`], [`manifest`], [`status`] formatting, [`version`] order)
//! is separate from the few file operations ([`state`], [`journal`], the rollback floor in
//! [`floor`]), which all take the `RKOS_STATE` root as a path; the atomic writes themselves
//! are rkos-io's.
//!
//! It also owns the node↔agent contract, because both sides link it and its types are built
//! from the boot state's: what `rkos status --json` prints ([`NodeStatus`]), what
//! `rkos upgrade --json` prints ([`UpgradeReport`]), and when a node counts as healthy
//! ([`health`]). The `rkos` command serializes them; the upgrade agent deserializes the same
//! types.

pub mod boot;
pub mod floor;
pub mod grubenv;
pub mod health;
pub mod journal;
pub mod manifest;
pub mod size;
pub mod state;
pub mod status;
pub mod upgrade;
pub mod version;

pub use boot::{BootError, BootState, Outcome, Trial, DEFAULT_TRIES, MAX_TRIES};
pub use floor::MinVersion;
pub use grubenv::GrubEnv;
pub use manifest::{FileEntry, Manifest};
/// The slot type is the contract's: `rkos.slot=`, `slots/<X>/` and `init.json` name it too.
pub use rkos_contract::Slot;
pub use size::human_size;
pub use state::{StateDir, StateError};
pub use status::{NodeStatus, SlotInfo, Status};
pub use upgrade::UpgradeReport;
pub use version::compare_versions;

/// The `grub.cfg` installed on `RKOS_STATE:/grub/grub.cfg`: implements [`boot`]'s model.
pub const GRUB_CFG: &str = include_str!("../grub/grub.cfg");
