//! The node side of an upgrade, as seen by the agent: a trait, the real implementation that
//! runs the `rkos` command on the host ([`host`]), and a simulated node for tests ([`fake`],
//! compiled only for tests or with the `testing` feature, so the shipped binary lacks it).
//!
//! What the node prints is read in one module per command (`cli_status` for
//! `rkos status --json`, `cli_upgrade` for `rkos upgrade --json`, `cli_error` for the error
//! report of any of them), so a change of a command's output touches one file. The JSON is
//! rkos-slots' own types (`NodeStatus`, `UpgradeReport`), which `rkos` serializes: the agent
//! never reads the commands' human text. Recorded outputs of each state are the unit tests'
//! fixtures (`tests/fixtures/`); `tests/real_rkos.rs` checks them against the real command.
//!
//! Boundary. The agent never writes slots or the GRUB environment itself: that code lives in
//! rkos-slots / rkos-bundle behind the `rkos` command, the same code an operator runs by hand.
//! The agent (in a privileged DaemonSet pod with the host's `/` mounted at `host_root`)
//! runs, chrooted into the host:
//! - `rkos status --json`: the booted slot, both slots' versions, the trial armed in the GRUB
//!   environment, whether the running slot is on trial, the last boot outcome;
//! - `rkos upgrade --bundle URL --expect-version V --json` (with `--allow-downgrade` when the
//!   plan sets `allowDowngrade`): checks space, verifies the signed manifest with the node's
//!   own trusted keys (and that it is version V, and not lower than the running one unless
//!   allowed), streams the files into the inactive slot and arms a trial boot of it;
//! - `systemctl reboot`;
//! - `systemctl is-active k3s.service`: the node-side half of health (`rkos_slots::health`);
//! - `rkos mark-good`: turns the trial slot into the default once the node is healthy.
//!
//! The boot id comes from `/proc/sys/kernel/random/boot_id` (the pod shares the host
//! kernel), so the agent can tell whether the reboot it asked for has happened.
//!
//! A node booted from the network (`/run/rkos/init.json` says `netboot`) has no slots:
//! [`netboot`] gives its facts, and staging only records the version the reboot is for.

use std::future::Future;
use std::path::PathBuf;

use rkos_slots::health::HealthFacts;
use rkos_slots::Slot;

use crate::machine::Release;

/// A recorded output of `rkos` (`tests/fixtures/NAME`), which `tests/real_rkos.rs` checks
/// against what the current binary prints.
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}

mod cli_error;
mod cli_status;
mod cli_upgrade;
#[cfg(any(test, feature = "testing"))]
mod fake;
mod host;
mod netboot;

pub use cli_error::{error_line, error_text};
pub use cli_status::{facts_from_status, facts_from_status_json};
pub use cli_upgrade::{stage_outcome, upgrade_report};
#[cfg(any(test, feature = "testing"))]
pub use fake::{FakeNode, FakeNodeOps};
pub use host::HostNodeOps;

#[derive(Debug, thiserror::Error)]
pub enum NodeOpsError {
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A command that failed; `error` is its error report on one line.
    #[error("{cmd} failed ({status}): {error}")]
    Command {
        cmd: String,
        status: String,
        error: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`rkos status --json` printed something unexpected: {0}")]
    Status(String),
    #[error("`rkos upgrade --json` printed something unexpected: {0}")]
    Upgrade(String),
    #[error("{0}")]
    Failed(String),
}

/// What the node says about itself. Everything the state machine needs to resume after an
/// agent restart that is not in the NodeUpgrade status.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    /// The version the node runs (the booted slot's manifest, or the booted netboot image's).
    pub version: String,
    /// The booted slot, or the network.
    pub slot: Booted,
    /// The kernel's boot id; changes on every boot.
    pub boot_id: String,
    /// The complete version in the slot not running, if any.
    pub staged: Option<String>,
    /// The version a trial boot is armed for (the next reboot boots it), if any.
    pub trial_armed: Option<String>,
    /// The running slot is on trial and not yet marked good.
    pub running_on_trial: bool,
    /// The last boot outcome was a fallback, e.g. `slot B was never marked good`.
    pub rolled_back: Option<String>,
}

/// Where the running system came from: a slot of the disk, or the network (no slots at all).
/// Shown as `A`, `B` or `netboot` (`NodeUpgrade.status.slot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Booted {
    Slot(Slot),
    Netboot,
}

impl From<Slot> for Booted {
    fn from(s: Slot) -> Self {
        Booted::Slot(s)
    }
}

impl std::fmt::Display for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Booted::Slot(s) => s.fmt(f),
            Booted::Netboot => f.write_str("netboot"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageReport {
    pub bytes: u64,
}

/// The node-side operations. Every method is idempotent, because a restarted agent may
/// repeat the last one.
pub trait NodeOps: Send + Sync + 'static {
    fn facts(&self) -> impl Future<Output = Result<NodeFacts, NodeOpsError>> + Send;
    /// Download, verify and write the release's bundle into the inactive slot and arm a
    /// trial boot. The node refuses a bundle of another version than the release's, and one
    /// lower than it runs unless the release allows a downgrade.
    fn stage(
        &self,
        release: &Release,
    ) -> impl Future<Output = Result<StageReport, NodeOpsError>> + Send;
    /// Make sure the next boot is a trial of the release, already complete in the inactive
    /// slot (it came from the release's bundle); the same checks as `stage`.
    fn flip(&self, release: &Release) -> impl Future<Output = Result<(), NodeOpsError>> + Send;
    /// Ask the init system to reboot. Returns once the request is accepted.
    fn reboot(&self) -> impl Future<Output = Result<(), NodeOpsError>> + Send;
    /// What the agent can see of the node's health on the node itself (k3s's unit); the
    /// machine adds the Node's Ready condition and decides with `rkos_slots::health`.
    fn health(&self) -> impl Future<Output = Result<HealthFacts, NodeOpsError>> + Send;
    fn mark_good(&self) -> impl Future<Output = Result<(), NodeOpsError>> + Send;
}
