//! rkos-bundle: upgrade bundles: signed manifests, verified streaming download, staging.
//!
//! A bundle is a directory (local or served over http(s)) holding `manifest.json`
//! (see [`rkos_slots::Manifest`]), its minisign (ed25519) signature `manifest.json.minisig`,
//! and the files the manifest lists. The node trusts only keys it holds itself
//! ([`keys::TrustedKeys`]). [`stage`] writes the inactive slot; [`flip`] puts it on trial.
//!
//! The network code is blocking (rkos-http, ureq); async callers (the agent) run
//! [`stage`] inside `tokio::task::spawn_blocking`.

pub mod error;
pub mod keys;
pub mod lock;
pub mod pace;
pub mod progress;
pub mod remount;
#[cfg(feature = "sign")]
pub mod sign;
pub mod source;
pub mod stage;
pub mod verified;

pub use error::{BundleError, Result};
pub use keys::TrustedKeys;
pub use lock::UpgradeLock;
pub use pace::{Limits, MinRate};
#[cfg(feature = "progress-bar")]
pub use progress::ConsoleProgress;
pub use progress::{NoProgress, Progress};
pub use source::Source;
pub use stage::{
    fetch_into, flip, stage, stage_verified, verify_file, verify_slot, StageOptions, Staged,
};
pub use verified::{Verified, VersionPolicy};
