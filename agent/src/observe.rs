//! Building the machine's input: one look at the cluster (this Node, the plans, this node's
//! NodeUpgrade and its plan's others, the rollout leases, the pods while draining) and at the
//! node (its slot and boot facts, its health while verifying).

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::ResourceExt;

use crate::api::{now_secs, AgentError, Ctx, MANAGED_BY};
use crate::crd::{NodeUpgrade, Phase, UpgradePlan, CORDON_ANNOTATION, PLAN_LABEL};
use crate::drain::{self, DrainView};
use crate::lease;
use crate::machine::{NodeView, NuView, Observed, PeerView, PlanView, Release};
use crate::nodeops::{NodeFacts, NodeOps};
use crate::select;
use rkos_slots::health::HealthFacts;

/// What one look saw: the machine's input, and the objects the executor writes back at the
/// versions read.
pub struct Snapshot {
    pub obs: Observed,
    pub plan: Option<UpgradePlan>,
    pub nu: Option<NodeUpgrade>,
    /// The rollout leases of every plan and holder.
    pub leases: Vec<Lease>,
}

impl Snapshot {
    /// This node's leases of `plan`, as observed.
    pub fn my_leases(&self, plan: &str) -> Vec<&Lease> {
        self.leases
            .iter()
            .filter(|l| {
                let v = lease::view(l);
                v.plan == plan && v.holder.as_deref() == Some(self.obs.node.name.as_str())
            })
            .collect()
    }
}

/// Looks at the cluster and the node. `facts`: the node facts to use instead of asking the
/// node (while a node action runs, the node is busy with it and its facts are those from
/// before).
pub async fn observe<N: NodeOps>(
    ctx: &Ctx,
    ops: &N,
    facts: Option<NodeFacts>,
) -> Result<Snapshot, AgentError> {
    let now = now_secs();
    let me = ctx.me();
    let node = ctx
        .nodes()
        .get_opt(me)
        .await?
        .ok_or_else(|| AgentError::NoNode(me.to_string()))?;
    let labels: BTreeMap<String, String> = node.labels().clone();
    let plans = ctx.plans().list(&ListParams::default()).await?.items;
    let nu = ctx.nus().get_opt(me).await?;
    let phase = nu
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .map(|s| s.phase)
        .unwrap_or_default();
    let plan = select::choose_plan(
        &plans,
        &labels,
        nu.as_ref().map(|n| n.spec.plan.as_str()),
        phase.in_flight(),
    )
    .cloned();
    // Before the plan's NodeUpgrades: a node writes its terminal status before it gives its
    // lease back, so a NodeUpgrade read later never looks in flight without the lease it had.
    let leases = ctx
        .leases()
        .list(&ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)))
        .await?
        .items;
    let facts = match facts {
        Some(f) => f,
        None => ops.facts().await?,
    };
    let mut peers = Vec::new();
    let mut drain_view = DrainView::default();
    if let Some(p) = &plan {
        peers = plan_peers(ctx, &p.name_any()).await?;
        if phase == Phase::Draining {
            let list = ctx
                .all_pods()
                .list(&ListParams::default().fields(&format!("spec.nodeName={me}")))
                .await?
                .items;
            drain_view = drain::plan(&list, &p.spec.drain, ctx.cfg.own_pod.as_ref());
        }
    }
    let node_health = if phase == Phase::Verifying {
        ops.health().await?
    } else {
        HealthFacts::default()
    };
    let obs = Observed {
        now,
        plan: plan.as_ref().map(plan_view),
        nu: nu.as_ref().map(|n| NuView {
            plan: n.spec.plan.clone(),
            target: n.spec.target_version.clone(),
            status: n.status.clone().unwrap_or_default(),
        }),
        node: node_view(me, &node),
        leases: leases.iter().map(lease::view).collect(),
        peers,
        drain: drain_view,
        facts,
        node_health,
        verify_timeout_seconds: ctx.cfg.verify_timeout_seconds,
        lease_seconds: i64::from(ctx.cfg.lease_seconds),
    };
    Ok(Snapshot {
        obs,
        plan,
        nu,
        leases,
    })
}

fn plan_view(p: &UpgradePlan) -> PlanView {
    PlanView {
        name: p.name_any(),
        release: Release {
            bundle_url: p.spec.bundle_url.clone(),
            version: p.spec.version.clone(),
            allow_downgrade: p.spec.allow_downgrade,
        },
        concurrency: p.spec.concurrency.max(1),
        drain_timeout_seconds: p.spec.drain.timeout_seconds,
        max_failures: p.spec.max_failures.max(1),
        paused: p.spec.paused,
        window: p.spec.window.clone(),
    }
}

fn node_view(name: &str, node: &Node) -> NodeView {
    NodeView {
        name: name.to_string(),
        ready: node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True"),
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        cordoned_by: node.annotations().get(CORDON_ANNOTATION).cloned(),
    }
}

/// The NodeUpgrades of `plan` (by its label), this node's included.
pub async fn plan_peers(ctx: &Ctx, plan: &str) -> Result<Vec<PeerView>, AgentError> {
    let list = ctx
        .nus()
        .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={plan}")))
        .await?;
    Ok(list
        .items
        .iter()
        .map(|n| PeerView {
            node: n.name_any(),
            phase: n.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            target: n.spec.target_version.clone(),
        })
        .collect())
}
