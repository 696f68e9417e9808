//! Carrying out the machine's actions, one small function each. Nothing here decides: what an
//! action found that matters (a node-side failure, the bytes downloaded, a refused eviction)
//! is reported back as an [`Outcome`] for `machine::after`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::api::{api_code, AgentError, Ctx};
use crate::crd::{
    NodeUpgrade, NodeUpgradeSpec, NodeUpgradeStatus, UpgradePlan, CORDON_ANNOTATION, PLAN_LABEL,
};
use crate::drain::{self, PodRef};
use crate::lease;
use crate::machine::{Action, Outcome, Release};
use crate::metrics::Metrics;
use crate::nodeops::NodeOps;
use crate::observe::Snapshot;

/// What carrying out one action did.
#[derive(Debug, PartialEq)]
pub enum Done {
    Changed,
    /// Nothing needed writing (the status was already so, no lease could be won).
    Unchanged,
    /// Done, and the machine decides what follows.
    Reported(Outcome),
}

/// Everything an action may need: the API, the node, the metrics, and the look it was
/// decided on.
pub struct Exec<'a, N: NodeOps> {
    pub ctx: &'a Ctx,
    pub ops: &'a N,
    pub metrics: &'a Metrics,
    pub snap: &'a Snapshot,
}

impl<N: NodeOps> Exec<'_, N> {
    pub async fn action(&self, action: &Action) -> Result<Done, AgentError> {
        match action {
            Action::CreateNodeUpgrade { plan, target } => {
                self.create_nodeupgrade(plan, target).await
            }
            Action::SetSpec { plan, target } => self.set_spec(plan, target).await,
            Action::DeleteNodeUpgrade => self.delete_nodeupgrade().await,
            Action::SetStatus(s) => self.set_status(s).await,
            Action::AcquireLease { plan, indices } => {
                let won = lease::acquire(self.ctx, &self.snap.leases, plan, indices).await?;
                if !won {
                    debug!(plan, "no lease won; waiting");
                }
                Ok(if won { Done::Changed } else { Done::Unchanged })
            }
            Action::RenewLease { plan } => {
                lease::renew(self.ctx, &self.snap.my_leases(plan)).await?;
                Ok(Done::Changed)
            }
            Action::ReleaseLease { plan } => {
                lease::release(self.ctx, &self.snap.my_leases(plan)).await?;
                Ok(Done::Changed)
            }
            Action::Cordon { plan } => self.set_cordon(Some(plan)).await,
            Action::Uncordon => self.set_cordon(None).await,
            Action::Evict(pods) => self.evict(pods).await,
            Action::Stage(release) => Ok(self.stage(release).await),
            Action::Flip(release) => Ok(self.flip(release).await),
            Action::Reboot => self.reboot().await,
            Action::MarkGood => {
                self.ops.mark_good().await?;
                info!("slot marked good");
                Ok(Done::Changed)
            }
        }
    }

    async fn create_nodeupgrade(&self, plan: &str, target: &str) -> Result<Done, AgentError> {
        let mut nu = NodeUpgrade::new(
            self.ctx.me(),
            NodeUpgradeSpec {
                plan: plan.to_string(),
                target_version: target.to_string(),
            },
        );
        nu.metadata.labels = Some(BTreeMap::from([(PLAN_LABEL.into(), plan.to_string())]));
        // Owned by the plan, so the garbage collector removes it with the plan even when this
        // node never comes back.
        if let Some(p) = &self.snap.plan {
            if let Some(uid) = p.uid() {
                nu.metadata.owner_references = Some(vec![OwnerReference {
                    api_version: UpgradePlan::api_version(&()).into(),
                    kind: UpgradePlan::kind(&()).into(),
                    name: p.name_any(),
                    uid,
                    ..Default::default()
                }]);
            }
        }
        match self.ctx.nus().create(&PostParams::default(), &nu).await {
            Ok(_) => info!(plan, target, "created NodeUpgrade"),
            Err(e) if api_code(&e) == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Done::Changed)
    }

    async fn set_spec(&self, plan: &str, target: &str) -> Result<Done, AgentError> {
        let patch = json!({
            "metadata": {"labels": {PLAN_LABEL: plan}},
            "spec": {"plan": plan, "targetVersion": target},
        });
        self.ctx
            .nus()
            .patch(self.ctx.me(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        info!(plan, target, "NodeUpgrade retargeted");
        Ok(Done::Changed)
    }

    async fn delete_nodeupgrade(&self) -> Result<Done, AgentError> {
        match self
            .ctx
            .nus()
            .delete(self.ctx.me(), &DeleteParams::default())
            .await
        {
            Ok(_) => info!("plan gone: NodeUpgrade deleted"),
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Done::Changed)
    }

    async fn set_status(&self, s: &NodeUpgradeStatus) -> Result<Done, AgentError> {
        let current = self.snap.nu.as_ref().and_then(|n| n.status.clone());
        if current.as_ref() == Some(s) {
            return Ok(Done::Unchanged);
        }
        let old = current.unwrap_or_default();
        self.ctx
            .nus()
            .patch_status(
                self.ctx.me(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status_patch(&old, s) })),
            )
            .await?;
        if s.phase != old.phase {
            info!(from = old.phase.as_str(), to = s.phase.as_str(), error = ?s.last_error, "phase");
            if s.phase.is_failure() {
                self.metrics.failed(s.phase);
            }
        }
        Ok(Done::Changed)
    }

    /// Cordons the node for `plan`, or (`None`) takes the agent's cordon back: the
    /// annotation and `spec.unschedulable` go together.
    async fn set_cordon(&self, plan: Option<&str>) -> Result<Done, AgentError> {
        let patch = json!({
            "metadata": {"annotations": {CORDON_ANNOTATION: plan}},
            "spec": {"unschedulable": plan.map(|_| true)},
        });
        self.ctx
            .nodes()
            .patch(self.ctx.me(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        match plan {
            Some(plan) => info!(plan, "node cordoned"),
            None => info!("node uncordoned"),
        }
        Ok(Done::Changed)
    }

    /// Evicts through the Eviction API; a 429 is a PodDisruptionBudget refusal, reported.
    async fn evict(&self, pods: &[PodRef]) -> Result<Done, AgentError> {
        let mut refused = None;
        for p in pods {
            match self
                .ctx
                .pods(&p.namespace)
                .evict(&p.name, &EvictParams::default())
                .await
            {
                Ok(_) => info!(pod = %p, "evicted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    let why = drain::refusal(p, &s);
                    debug!(pod = %p, why, "eviction refused");
                    refused = Some(why);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(match refused {
            Some(why) => Done::Reported(Outcome::EvictionRefused(why)),
            None => Done::Changed,
        })
    }

    async fn stage(&self, release: &Release) -> Done {
        info!(
            bundle_url = release.bundle_url,
            version = release.version,
            allow_downgrade = release.allow_downgrade,
            "staging"
        );
        match self.ops.stage(release).await {
            Ok(report) => {
                self.metrics.downloaded(report.bytes);
                Done::Reported(Outcome::Staged {
                    bytes: report.bytes,
                })
            }
            Err(e) => {
                warn!(error = %e, "staging failed");
                Done::Reported(Outcome::StageFailed(e.to_string()))
            }
        }
    }

    async fn flip(&self, release: &Release) -> Done {
        match self.ops.flip(release).await {
            Ok(()) => Done::Changed,
            Err(e) => {
                warn!(error = %e, "arming the trial boot failed");
                Done::Reported(Outcome::FlipFailed(e.to_string()))
            }
        }
    }

    async fn reboot(&self) -> Result<Done, AgentError> {
        info!("rebooting into the trial slot");
        self.ops.reboot().await?;
        // The node goes down; give it the time rather than asking again at once.
        tokio::time::sleep(self.ctx.cfg.reboot_wait).await;
        Ok(Done::Changed)
    }
}

/// A JSON merge patch turning status `old` into `new`: fields `new` leaves out are set to
/// null, since a merge patch otherwise keeps them (a cleared `lastError` must disappear).
pub fn status_patch(old: &NodeUpgradeStatus, new: &NodeUpgradeStatus) -> Value {
    let mut n = serde_json::to_value(new).expect("status serializes");
    let o = serde_json::to_value(old).expect("status serializes");
    if let (Some(n), Some(o)) = (n.as_object_mut(), o.as_object()) {
        for k in o.keys() {
            if !n.contains_key(k) {
                n.insert(k.clone(), Value::Null);
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Phase;

    #[test]
    fn status_patch_clears_removed_fields() {
        let old = NodeUpgradeStatus {
            last_error: Some("boom".into()),
            drain_blocker: Some("pdb".into()),
            ..Default::default()
        };
        let new = NodeUpgradeStatus {
            phase: Phase::Waiting,
            ..Default::default()
        };
        let p = status_patch(&old, &new);
        assert_eq!(p["lastError"], Value::Null);
        assert_eq!(p["drainBlocker"], Value::Null);
        assert_eq!(p["phase"], "Waiting");
    }
}
