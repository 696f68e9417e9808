//! The rollout leases and the plan's NodeUpgrades as the machine reads them: which leases this
//! node holds, which it may take, when it renews them, and how many nodes count as failed.

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
    /// that do not exist, have no holder, or have expired.
    pub(super) fn free_leases(&self, plan: &PlanView) -> Vec<u32> {
        (0..plan.concurrency)
            .filter(|&i| {
                let name = lease_name(&plan.name, i);
                match self.leases.iter().find(|l| l.name == name) {
                    None => true,
                    Some(l) => l.holder.is_none() || l.expired(self.now),
                }
            })
            .collect()
    }

    /// The plan's nodes that failed its current version (Failed or RolledBack): `maxFailures`
    /// of them stop the rollout.
    pub fn failures(&self, plan: &PlanView) -> u32 {
        self.peers
            .iter()
            .filter(|p| p.target == plan.version && p.phase.is_failure())
            .count() as u32
    }
}
