//! `rkos doctor`: what a bare-metal node needs before Longhorn (and its CSI driver) is
//! installed, checked on the running node, each requirement met or not with the reason
//! (docs/baremetal.md). The checks read files under a root given as a parameter, and ask
//! systemd through [`Units`], so they are tested against a temporary tree; `rkos doctor` runs
//! them on `/`. Also the owner of the node's iSCSI initiator name ([`iscsi`]).

mod checks;
pub mod data_disks;
pub mod iscsi;
pub mod mounts;
pub mod multipath;

use std::path::Path;

use serde::Serialize;

/// Whether a systemd unit is active (`systemctl is-active`); a trait so tests can fake it.
pub trait Units {
    fn is_active(&self, unit: &str) -> bool;
}

/// One requirement: met or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A short stable id (`iscsid`, `initiator-name`, ...).
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok,
            detail: detail.into(),
        }
    }
}

/// Every check, in the order they are printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every check passed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// Runs every check against the node at `root`.
pub fn run(root: &Path, units: &dyn Units) -> Report {
    let checks = checks::all(root, units);
    Report {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            writeln!(f, "{mark} {:<18} {}", c.name, c.detail)?;
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            write!(f, "all {} checks passed", self.checks.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}
