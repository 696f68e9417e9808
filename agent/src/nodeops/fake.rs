//! A simulated A/B node with GRUB's boot counting, for the state machine's tests and the
//! agent's tests against the API server stand-in. Never in the shipped binary: compiled for
//! tests, or with the `testing` feature (which `tests/` turn on).

use std::sync::{Arc, Mutex};

use rkos_slots::health::{self, HealthFacts, Seen};
use rkos_slots::status::SlotInfo;
use rkos_slots::{BootState, NodeStatus, Outcome, Slot, Status, Trial};

use rkos_bundle::VersionPolicy;

use super::cli_status::facts_from_status;
use super::{netboot, NodeFacts, NodeOps, NodeOpsError, StageReport};
use crate::machine::Release;

/// State of a simulated node. Reboots are applied at once (the new boot id, the trial slot
/// booted, or a fallback when the version is in `broken`).
#[derive(Clone, Debug)]
pub struct FakeNode {
    pub slots: [Option<String>; 2],
    /// Index of the booted slot.
    pub active: usize,
    /// Index of the slot armed for a trial boot.
    pub trial: Option<usize>,
    pub running_on_trial: bool,
    /// Index of the slot whose trial GRUB gave up on, last time.
    pub rolled_back: Option<usize>,
    pub boots: u32,
    /// Versions whose trial boot never becomes healthy: GRUB falls back by itself.
    pub broken: Vec<String>,
    /// k3s's unit is active (the node-side half of health).
    pub healthy: bool,
    /// Make the next `stage` fail with this message.
    pub fail_stage: Option<String>,
    pub stage_bytes: u64,
    /// How long a stage takes (lets tests kill an agent mid-stage).
    pub stage_delay: std::time::Duration,
    pub stages: u32,
    pub reboots: u32,
    /// A reboot request never returns (the node went down and never came back): the agent
    /// asking for it is gone with it.
    pub never_returns: bool,
    pub calls: Vec<String>,
    /// Booted from the network: the version the farm serves (what every boot runs). Its
    /// facts and staging are the real netboot node's ([`netboot`]), slot A its running image.
    pub farm_serves: Option<String>,
    /// What `stage` wrote in the netboot node's `/run` (gone at the reboot).
    pub netboot_marker: Option<String>,
}

impl FakeNode {
    pub fn new(version: &str) -> Self {
        FakeNode {
            slots: [Some(version.to_string()), None],
            active: 0,
            trial: None,
            running_on_trial: false,
            rolled_back: None,
            boots: 1,
            broken: Vec::new(),
            healthy: true,
            fail_stage: None,
            stage_bytes: 1 << 20,
            stage_delay: std::time::Duration::ZERO,
            stages: 0,
            reboots: 0,
            never_returns: false,
            calls: Vec::new(),
            farm_serves: None,
            netboot_marker: None,
        }
    }

    /// A node that booted `version` from a farm that now serves `farm_serves`.
    pub fn netbooted(version: &str, farm_serves: &str) -> Self {
        FakeNode {
            farm_serves: Some(farm_serves.to_string()),
            ..FakeNode::new(version)
        }
    }

    /// What `rkos status --json` would say on this node.
    pub fn status(&self) -> Status {
        let default = if self.running_on_trial {
            1 - self.active
        } else {
            self.active
        };
        let boot = BootState {
            default: Slot::ALL[default],
            trial: self.trial.map(|t| Trial {
                slot: Slot::ALL[t],
                tries_left: rkos_slots::DEFAULT_TRIES,
            }),
            last: self.rolled_back.map(|i| Outcome::RolledBack(Slot::ALL[i])),
        };
        let slots = Slot::ALL
            .iter()
            .zip(&self.slots)
            .map(|(&slot, version)| SlotInfo {
                slot,
                version: version.clone(),
                arch: version.as_ref().map(|_| rkos_contract::arch().to_string()),
                error: None,
            })
            .collect();
        Status::from_parts(Some(Slot::ALL[self.active]), &boot, slots)
    }

    /// The facts, read from [`FakeNode::status`] as the agent reads a real node's (a netboot
    /// node's from its boot report).
    pub fn facts(&self) -> NodeFacts {
        let boot_id = format!("boot-{}", self.boots);
        if self.farm_serves.is_some() {
            let version = self.slots[self.active].clone().unwrap_or_default();
            let report = rkos_contract::InitReport::new(&version, rkos_contract::BootMode::Netboot);
            return netboot::facts(&report, &boot_id, self.netboot_marker.as_deref());
        }
        facts_from_status(&NodeStatus::Installed(self.status()), &boot_id)
            .expect("the booted slot of a fake node holds a version")
    }

    /// What `rkos upgrade` checks before it writes anything, beside the signature: the
    /// node's own rule (rkos-bundle's `VersionPolicy`, the same code and message) refuses a
    /// version lower than the running one unless the release allows a downgrade.
    fn check_version(&self, release: &Release) -> Result<(), NodeOpsError> {
        // The fake has no bundle that could hold another version than asked for, and no
        // rollback floor (no release it runs sets one).
        let policy = VersionPolicy {
            expect: None,
            allow_downgrade: release.allow_downgrade,
        };
        policy
            .check(&release.version, self.slots[self.active].as_deref(), None)
            .map_err(|e| NodeOpsError::Failed(e.to_string()))
    }

    pub fn stage(&mut self, release: &Release) -> Result<StageReport, NodeOpsError> {
        let version = &release.version;
        self.calls.push(format!("stage {version}"));
        self.stages += 1;
        if let Some(msg) = self.fail_stage.take() {
            return Err(NodeOpsError::Failed(msg));
        }
        if self.farm_serves.is_some() {
            // Nothing is downloaded, so nothing is checked: the farm decides what boots.
            let boot_id = format!("boot-{}", self.boots);
            self.netboot_marker = Some(netboot::armed_marker(version, &boot_id));
            return Ok(StageReport { bytes: 0 });
        }
        self.check_version(release)?;
        let other = 1 - self.active;
        self.slots[other] = Some(version.to_string());
        self.trial = Some(other);
        Ok(StageReport {
            bytes: self.stage_bytes,
        })
    }

    /// Arming goes through `rkos upgrade` too, so the same checks apply.
    pub fn flip(&mut self, release: &Release) -> Result<(), NodeOpsError> {
        let version = &release.version;
        self.calls.push(format!("flip {version}"));
        self.check_version(release)?;
        let other = 1 - self.active;
        if self.slots[other].as_deref() != Some(version.as_str()) {
            return Err(NodeOpsError::Failed(format!("{version} is not staged")));
        }
        self.trial = Some(other);
        Ok(())
    }

    /// A reboot, with GRUB's boot counting: a trial of a broken version never gets marked
    /// good, so its tries run out and the old default boots again.
    pub fn reboot(&mut self) {
        self.calls.push("reboot".into());
        self.reboots += 1;
        self.boots += 1;
        if let Some(served) = &self.farm_serves {
            self.slots[self.active] = Some(served.clone());
            self.netboot_marker = None;
            return;
        }
        if let Some(t) = self.trial.filter(|&t| t != self.active) {
            let v = self.slots[t].clone().unwrap_or_default();
            if self.broken.contains(&v) {
                self.boots += 2; // the failed trial boots
                self.trial = None;
                self.running_on_trial = false;
                self.rolled_back = Some(t);
            } else {
                self.active = t;
                self.running_on_trial = true;
                self.rolled_back = None;
            }
        }
    }

    pub fn mark_good(&mut self) {
        self.calls.push("mark-good".into());
        if self.running_on_trial {
            self.running_on_trial = false;
            self.trial = None;
        }
    }
}

/// A shared handle on a [`FakeNode`], so a test can inspect and change it while an agent
/// runs.
#[derive(Clone, Debug)]
pub struct FakeNodeOps(pub Arc<Mutex<FakeNode>>);

impl FakeNodeOps {
    pub fn new(version: &str) -> Self {
        FakeNodeOps(Arc::new(Mutex::new(FakeNode::new(version))))
    }
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeNode) -> R) -> R {
        f(&mut self.0.lock().expect("fake node lock"))
    }
}

impl NodeOps for FakeNodeOps {
    async fn facts(&self) -> Result<NodeFacts, NodeOpsError> {
        Ok(self.with(|n| n.facts()))
    }
    async fn stage(&self, release: &Release) -> Result<StageReport, NodeOpsError> {
        let delay = self.with(|n| n.stage_delay);
        tokio::time::sleep(delay).await;
        self.with(|n| n.stage(release))
    }
    async fn flip(&self, release: &Release) -> Result<(), NodeOpsError> {
        self.with(|n| n.flip(release))
    }
    async fn reboot(&self) -> Result<(), NodeOpsError> {
        if self.with(|n| n.never_returns) {
            self.with(|n| n.calls.push("reboot (never returns)".into()));
            return std::future::pending().await;
        }
        self.with(|n| n.reboot());
        Ok(())
    }
    async fn health(&self) -> Result<HealthFacts, NodeOpsError> {
        let healthy = self.with(|n| n.healthy);
        Ok(HealthFacts {
            k3s_unit: Seen::check(healthy, || format!("{} is not active", health::K3S_UNIT)),
            ..HealthFacts::default()
        })
    }
    async fn mark_good(&self) -> Result<(), NodeOpsError> {
        self.with(|n| n.mark_good());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, allow_downgrade: bool) -> Release {
        Release {
            bundle_url: "http://bundles/b".into(),
            version: version.into(),
            allow_downgrade,
        }
    }

    #[test]
    fn fake_node_boot_counting() {
        let mut n = FakeNode::new("1");
        n.stage(&release("2", false)).unwrap();
        assert_eq!(n.facts().trial_armed.as_deref(), Some("2"));
        n.reboot();
        let f = n.facts();
        assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B.into()));
        assert!(f.running_on_trial);
        n.mark_good();
        assert!(!n.facts().running_on_trial);

        let mut b = FakeNode::new("1");
        b.broken.push("2".into());
        b.stage(&release("2", false)).unwrap();
        b.reboot();
        let f = b.facts();
        assert_eq!(f.version, "1");
        assert_eq!(
            f.rolled_back.as_deref(),
            Some("slot B (2) was never marked good; GRUB fell back to slot A")
        );
    }

    #[test]
    fn fake_node_refuses_a_downgrade_unless_allowed() {
        let mut n = FakeNode::new("1.5");
        let e = n.stage(&release("1.0", false)).unwrap_err().to_string();
        assert!(e.contains("lower than the running 1.5"), "{e}");
        assert!(e.contains("refusing a downgrade"), "{e}");
        assert_eq!(n.slots, [Some("1.5".into()), None], "nothing written");
        assert_eq!(n.trial, None);
        n.stage(&release("1.0", true)).unwrap();
        assert_eq!(n.facts().trial_armed.as_deref(), Some("1.0"));
        // Arming is checked the same way.
        n.trial = None;
        assert!(n.flip(&release("1.0", false)).is_err());
        n.flip(&release("1.0", true)).unwrap();
        // Upgrades need nothing.
        let mut u = FakeNode::new("1.5");
        u.stage(&release("2", false)).unwrap();
    }
}
