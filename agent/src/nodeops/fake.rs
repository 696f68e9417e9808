//! A simulated A/B node with GRUB's boot counting, for the state machine's tests and the
//! agent's tests against the API server stand-in. Never in the shipped binary: compiled for
//! tests, or with the `testing` feature (which `tests/` turn on).

use std::sync::{Arc, Mutex};

use super::{netboot, NodeFacts, NodeOps, NodeOpsError, StageReport};

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
    pub last_rolled_back: Option<String>,
    pub boots: u32,
    /// Versions whose trial boot never becomes healthy: GRUB falls back by itself.
    pub broken: Vec<String>,
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
            last_rolled_back: None,
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

    pub fn facts(&self) -> NodeFacts {
        if self.farm_serves.is_some() {
            let version = self.slots[self.active].clone().unwrap_or_default();
            let report = rkos_contract::InitReport::new(&version, rkos_contract::BootMode::Netboot);
            let boot_id = format!("boot-{}", self.boots);
            return netboot::facts(&report, &boot_id, self.netboot_marker.as_deref());
        }
        let name = |i: usize| if i == 0 { "A" } else { "B" };
        let other = 1 - self.active;
        NodeFacts {
            version: self.slots[self.active].clone().unwrap_or_default(),
            slot: name(self.active).into(),
            boot_id: format!("boot-{}", self.boots),
            staged: self.slots[other].clone(),
            trial_armed: self
                .trial
                .filter(|&t| t != self.active)
                .and_then(|t| self.slots[t].clone()),
            running_on_trial: self.running_on_trial,
            rolled_back: self.last_rolled_back.clone(),
        }
    }

    pub fn stage(&mut self, version: &str) -> Result<StageReport, NodeOpsError> {
        self.calls.push(format!("stage {version}"));
        self.stages += 1;
        if let Some(msg) = self.fail_stage.take() {
            return Err(NodeOpsError::Failed(msg));
        }
        if self.farm_serves.is_some() {
            let boot_id = format!("boot-{}", self.boots);
            self.netboot_marker = Some(netboot::armed_marker(version, &boot_id));
            return Ok(StageReport { bytes: 0 });
        }
        let other = 1 - self.active;
        self.slots[other] = Some(version.to_string());
        self.trial = Some(other);
        Ok(StageReport {
            bytes: self.stage_bytes,
        })
    }

    pub fn flip(&mut self, version: &str) -> Result<(), NodeOpsError> {
        self.calls.push(format!("flip {version}"));
        let other = 1 - self.active;
        if self.slots[other].as_deref() != Some(version) {
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
                self.last_rolled_back = Some(format!(
                    "slot {} ({v}) was never marked good; GRUB fell back to slot {}",
                    if t == 0 { "A" } else { "B" },
                    if self.active == 0 { "A" } else { "B" }
                ));
            } else {
                self.active = t;
                self.running_on_trial = true;
                self.last_rolled_back = None;
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
    async fn stage(&self, _bundle_url: &str, version: &str) -> Result<StageReport, NodeOpsError> {
        let delay = self.with(|n| n.stage_delay);
        tokio::time::sleep(delay).await;
        self.with(|n| n.stage(version))
    }
    async fn flip(&self, _bundle_url: &str, version: &str) -> Result<(), NodeOpsError> {
        self.with(|n| n.flip(version))
    }
    async fn reboot(&self) -> Result<(), NodeOpsError> {
        if self.with(|n| n.never_returns) {
            self.with(|n| n.calls.push("reboot (never returns)".into()));
            return std::future::pending().await;
        }
        self.with(|n| n.reboot());
        Ok(())
    }
    async fn healthy(&self) -> Result<bool, NodeOpsError> {
        Ok(self.with(|n| n.healthy))
    }
    async fn mark_good(&self) -> Result<(), NodeOpsError> {
        self.with(|n| n.mark_good());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_node_boot_counting() {
        let mut n = FakeNode::new("1");
        n.stage("2").unwrap();
        assert_eq!(n.facts().trial_armed.as_deref(), Some("2"));
        n.reboot();
        let f = n.facts();
        assert_eq!((f.version.as_str(), f.slot.as_str()), ("2", "B"));
        assert!(f.running_on_trial);
        n.mark_good();
        assert!(!n.facts().running_on_trial);

        let mut b = FakeNode::new("1");
        b.broken.push("2".into());
        b.stage("2").unwrap();
        b.reboot();
        let f = b.facts();
        assert_eq!(f.version, "1");
        assert!(f.rolled_back.is_some());
    }
}
