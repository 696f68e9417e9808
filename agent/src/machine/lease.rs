//! The rollout leases and the plan's NodeUpgrades as the machine reads them: which leases this
//! node holds, which it may take, when it renews them, and how many nodes count as failed.
//!
//! A lease bounds the nodes in flight only while it is live. So a node past its drain
//! (staging, rebooting, verifying) whose lease lapsed counts as failed — by itself when it
//! looks again, and by every other node meanwhile, which stops the rollout at `maxFailures`
//! — and the lease of a node that is rebooting or verifying is never taken over, even
//! expired: a node that never comes back keeps its place, and the rollout waits for a
//! person instead of taking down node after node. The lease duration outlasts the worst-case
//! trial (`lease::DEFAULT_LEASE_SECONDS`), so a slow fallback is not a lapse.

use super::{Action, Observed, PlanView};
use crate::crd::Phase;
use crate::lease::lease_name;

/// One rollout lease (`coordination.k8s.io/v1` Lease) of the agent's namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseView {
    pub name: String,
    /// The plan it belongs to (its plan label).
    pub plan: String,
    /// The node holding it; `None` when nobody does.
    pub holder: Option<String>,
    /// Unix seconds of its last renewal (or of its acquisition).
    pub renewed: i64,
    pub duration_seconds: i64,
}

impl LeaseView {
    pub fn expired(&self, now: i64) -> bool {
        self.renewed + self.duration_seconds < now
    }
}

/// A NodeUpgrade of the plan, seen from any node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerView {
    pub node: String,
    pub phase: Phase,
    pub target: String,
}

/// The phases past the drain: the node's slot or boot is being changed, and its lease must
/// stay live until it is done.
pub(super) fn on_trial_path(phase: Phase) -> bool {
    matches!(phase, Phase::Staging | Phase::Rebooting | Phase::Verifying)
}

impl Observed {
    fn mine(&self) -> impl Iterator<Item = &LeaseView> {
        self.leases
            .iter()
            .filter(|l| l.holder.as_deref() == Some(self.node.name.as_str()))
    }

    /// The plans of which this node holds a lease, once each.
    pub(super) fn held_plans(&self) -> Vec<String> {
        let mut plans: Vec<String> = Vec::new();
        for l in self.mine() {
            if !plans.contains(&l.plan) {
                plans.push(l.plan.clone());
            }
        }
        plans
    }

    /// This node holds a lease of `plan` (expired or not: while nobody took it, it is ours).
    pub(super) fn holds(&self, plan: &str) -> bool {
        self.mine().any(|l| l.plan == plan)
    }

    /// `node` holds a lease of `plan` that has not expired.
    fn holds_live(&self, plan: &str, node: &str) -> bool {
        self.leases
            .iter()
            .any(|l| l.plan == plan && l.holder.as_deref() == Some(node) && !l.expired(self.now))
    }

    /// This node is past its drain without a live lease: another node may have started.
    pub(super) fn lapsed(&self, plan: &str, phase: Phase) -> bool {
        on_trial_path(phase) && !self.holds_live(plan, &self.node.name)
    }

    /// Renew the leases of `plan` once a third of their duration has passed since the last
    /// renewal, so that two missed passes still leave time.
    pub(super) fn renew(&self, plan: &str) -> Option<Action> {
        let due = self.lease_seconds / 3;
        self.mine()
            .any(|l| l.plan == plan && self.now - l.renewed >= due)
            .then(|| Action::RenewLease {
                plan: plan.to_string(),
            })
    }

    /// The indices of the plan's `concurrency` leases this node may take, in order: those
    /// that do not exist, have no holder, or have expired while their holder is not
    /// rebooting or verifying.
    pub(super) fn free_leases(&self, plan: &PlanView) -> Vec<u32> {
        (0..plan.concurrency)
            .filter(|&i| {
                let name = lease_name(&plan.name, i);
                let Some(l) = self.leases.iter().find(|l| l.name == name) else {
                    return true;
                };
                let Some(holder) = &l.holder else {
                    return true;
                };
                let rebooting = self.peers.iter().any(|p| {
                    p.node == *holder && matches!(p.phase, Phase::Rebooting | Phase::Verifying)
                });
                l.expired(self.now) && !rebooting
            })
            .collect()
    }

    /// A node of the plan as the rollout counts it: past its drain with its lease lapsed, it
    /// counts as `Failed` (its own NodeUpgrade says so once it looks again).
    pub fn counted_phase(&self, plan: &str, peer: &PeerView) -> Phase {
        if on_trial_path(peer.phase) && !self.holds_live(plan, &peer.node) {
            Phase::Failed
        } else {
            peer.phase
        }
    }

    /// The plan's nodes that failed its current version (Failed, RolledBack, or lapsed in
    /// flight): `maxFailures` of them stop the rollout.
    pub fn failures(&self, plan: &PlanView) -> u32 {
        self.peers
            .iter()
            .filter(|p| {
                p.target == plan.release.version && self.counted_phase(&plan.name, p).is_failure()
            })
            .count() as u32
    }
}
