//! The agent's I/O: observe the cluster and the node, ask [`machine::decide`] what to do, and
//! do it through the Kubernetes API (leases, cordon, Eviction API, status patches) and
//! [`NodeOps`].
//!
//! Resources used (and so the RBAC in `manifests/agent.yaml`): nodes get/list/watch/patch;
//! pods list (all namespaces, by `spec.nodeName`); pods/eviction create; leases in the agent's
//! namespace get/list/create/update/delete; upgradeplans get/list/watch and status patch;
//! nodeupgrades get/list/watch/create/patch/delete and status patch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::crd::{
    NodeUpgrade, NodeUpgradeSpec, NodeUpgradeStatus, Phase, UpgradePlan, CORDON_ANNOTATION,
    PLAN_LABEL,
};
use crate::drain::{self, DrainView, PodRef};
use crate::machine::{self, Action, NodeView, NuView, Observed, PlanView};
use crate::metrics::Metrics;
use crate::nodeops::{NodeOps, NodeOpsError};
use crate::rollup;
use crate::select;

pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "rkos-agent");

/// The cluster-wide permissions the calls in this module need: (API group, resource, verbs).
/// `manifests/agent.yaml` grants exactly these (checked by `tests/manifests.rs`).
pub const CLUSTER_RBAC: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["get", "list", "watch", "patch"]),
    ("", "pods", &["list"]),
    ("", "pods/eviction", &["create"]),
    ("upgrade.rkos.io", "upgradeplans", &["get", "list", "watch"]),
    ("upgrade.rkos.io", "upgradeplans/status", &["patch"]),
    (
        "upgrade.rkos.io",
        "nodeupgrades",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("upgrade.rkos.io", "nodeupgrades/status", &["patch"]),
];

/// The permissions on leases, in the agent's namespace only.
pub const LEASE_RBAC: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "list", "create", "update", "delete"],
)];

/// The image the DaemonSet runs, as `build/agent-image.sh` names it.
pub const IMAGE: &str = concat!("rkos.local/rkos-agent:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("node: {0}")]
    Node(#[from] NodeOpsError),
    #[error("node {0} not found in the API")]
    NoNode(String),
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name (the Node object, the NodeUpgrade, the lease holder identity).
    pub node_name: String,
    /// Namespace of the leases (the agent's own).
    pub namespace: String,
    /// The agent's own pod, never evicted.
    pub own_pod: Option<PodRef>,
    pub lease_seconds: i32,
    /// Reconcile at least this often, events or not (timeouts and node facts need it).
    pub tick: Duration,
    pub verify_timeout_seconds: u64,
    /// After asking for a reboot, how long to wait before asking again (the node normally
    /// goes down well before).
    pub reboot_wait: Duration,
}

impl AgentConfig {
    pub fn new(node_name: &str, namespace: &str) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            namespace: namespace.into(),
            own_pod: None,
            lease_seconds: 900,
            tick: Duration::from_secs(10),
            verify_timeout_seconds: machine::DEFAULT_VERIFY_TIMEOUT,
            reboot_wait: Duration::from_secs(60),
        }
    }
}

/// The agent's API client. kube's default retry layer is turned off: it retries 429 answers
/// for minutes, and a 429 from the Eviction API is a PodDisruptionBudget refusal that the
/// agent must see at once, to name the blocking pod and to keep its own drain timeout. Every
/// call the agent makes is retried by the next reconcile pass anyway.
pub fn client(mut config: kube::Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Client::try_from(config)
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::from_second(now_secs()).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn lease_name(plan: &str, index: u32) -> String {
    format!("rkos-upgrade-{plan}-{index}")
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// What one pass saw, kept for the executor (resource versions, the objects).
struct Snapshot {
    obs: Observed,
    node: Node,
    plan: Option<UpgradePlan>,
    nu: Option<NodeUpgrade>,
    my_leases: Vec<Lease>,
}

pub struct Agent<N: NodeOps> {
    client: Client,
    cfg: AgentConfig,
    ops: N,
    metrics: Arc<Metrics>,
}

impl<N: NodeOps> Agent<N> {
    pub fn new(client: Client, cfg: AgentConfig, ops: N, metrics: Arc<Metrics>) -> Self {
        Agent {
            client,
            cfg,
            ops,
            metrics,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
    fn plans(&self) -> Api<UpgradePlan> {
        Api::all(self.client.clone())
    }
    fn nus(&self) -> Api<NodeUpgrade> {
        Api::all(self.client.clone())
    }
    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }
    fn me(&self) -> &str {
        &self.cfg.node_name
    }

    /// Reconciles on every change of the plans, this node's NodeUpgrade or this Node, and at
    /// least every `tick`. Runs until the future is dropped.
    pub async fn run(&self) {
        let notify = Notify::new();
        let name_field = format!("metadata.name={}", self.me());
        let trigger = |s: futures::stream::BoxStream<'static, ()>| {
            let notify = &notify;
            async move {
                let mut s = s;
                while s.next().await.is_some() {
                    notify.notify_one();
                }
            }
        };
        let plans = watcher(self.plans(), watcher::Config::default())
            .default_backoff()
            .map(|_| ())
            .boxed();
        let nus = watcher(self.nus(), watcher::Config::default().fields(&name_field))
            .default_backoff()
            .map(|_| ())
            .boxed();
        let node = watcher(self.nodes(), watcher::Config::default().fields(&name_field))
            .default_backoff()
            .map(|_| ())
            .boxed();
        let watches = futures::future::join3(trigger(plans), trigger(nus), trigger(node));
        let work = async {
            loop {
                match self.reconcile_once().await {
                    Ok(actions) if !actions.is_empty() => {
                        debug!(?actions, "pass done");
                        // Something changed: look again soon rather than waiting for a tick.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reconcile failed; retrying"),
                }
                tokio::select! {
                    _ = notify.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
                    _ = tokio::time::sleep(self.cfg.tick) => {}
                }
            }
        };
        tokio::select! {
            _ = watches => {}
            _ = work => {}
        }
    }

    async fn observe(&self) -> Result<Snapshot, AgentError> {
        let now = now_secs();
        let node = self
            .nodes()
            .get_opt(self.me())
            .await?
            .ok_or_else(|| AgentError::NoNode(self.me().to_string()))?;
        let labels: BTreeMap<String, String> = node.labels().clone();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let cordoned_by = node.annotations().get(CORDON_ANNOTATION).cloned();
        let plans = self.plans().list(&ListParams::default()).await?.items;
        let nu = self.nus().get_opt(self.me()).await?;
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
        let leases = self
            .leases()
            .list(&ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)))
            .await?
            .items;
        let my_leases: Vec<Lease> = leases
            .into_iter()
            .filter(|l| {
                l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.me())
            })
            .collect();
        let leases_held = my_leases
            .iter()
            .filter_map(|l| l.labels().get(PLAN_LABEL).cloned())
            .collect();
        let facts = self.ops.facts().await?;
        let mut failures = 0;
        let mut drain_view = DrainView::default();
        if let Some(p) = &plan {
            failures = self
                .plan_nodeupgrades(p)
                .await?
                .iter()
                .filter(|(ph, t)| ph.is_failure() && *t == p.spec.version)
                .count() as u32;
            self.metrics.plan_failures(&p.name_any(), failures);
            if phase == Phase::Draining {
                let pods: Api<Pod> = Api::all(self.client.clone());
                let list = pods
                    .list(&ListParams::default().fields(&format!("spec.nodeName={}", self.me())))
                    .await?
                    .items;
                drain_view = drain::plan(&list, &p.spec.drain, self.cfg.own_pod.as_ref());
            }
        }
        let healthy = if phase == Phase::Verifying {
            self.ops.healthy().await?
        } else {
            false
        };
        let obs = Observed {
            now,
            plan: plan.as_ref().map(|p| PlanView {
                name: p.name_any(),
                version: p.spec.version.clone(),
                bundle_url: p.spec.bundle_url.clone(),
                concurrency: p.spec.concurrency.max(1),
                drain_timeout_seconds: p.spec.drain.timeout_seconds,
                max_failures: p.spec.max_failures.max(1),
                paused: p.spec.paused,
                window: p.spec.window.clone(),
            }),
            nu: nu.as_ref().map(|n| NuView {
                plan: n.spec.plan.clone(),
                target: n.spec.target_version.clone(),
                status: n.status.clone().unwrap_or_default(),
            }),
            node: NodeView { ready, cordoned_by },
            leases_held,
            failures,
            drain: drain_view,
            facts,
            healthy,
            verify_timeout_seconds: self.cfg.verify_timeout_seconds,
        };
        Ok(Snapshot {
            obs,
            node,
            plan,
            nu,
            my_leases,
        })
    }

    async fn plan_nodeupgrades(
        &self,
        plan: &UpgradePlan,
    ) -> Result<Vec<(Phase, String)>, AgentError> {
        let list = self
            .nus()
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={}", plan.name_any())))
            .await?;
        Ok(list
            .items
            .iter()
            .map(|n| {
                let phase = n.status.as_ref().map(|s| s.phase).unwrap_or_default();
                (phase, n.spec.target_version.clone())
            })
            .collect())
    }

    /// One observe-decide-execute pass. Returns the actions that changed something.
    pub async fn reconcile_once(&self) -> Result<Vec<Action>, AgentError> {
        let snap = self.observe().await?;
        let actions = machine::decide(&snap.obs);
        let mut done = Vec::new();
        for a in &actions {
            match self.execute(&snap, a).await? {
                Step::Changed => done.push(a.clone()),
                Step::Unchanged => {}
                Step::Stop => break,
            }
        }
        let current = snap.obs.facts.version.clone();
        let (phase, target, attempts) = match &snap.nu {
            Some(n) => {
                let s = n.status.clone().unwrap_or_default();
                (s.phase, n.spec.target_version.clone(), s.attempts)
            }
            None => (Phase::Pending, current.clone(), 0),
        };
        let phase = done
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::SetStatus(s) => Some(s.phase),
                _ => None,
            })
            .unwrap_or(phase);
        self.metrics.observe(phase, &current, &target, attempts);
        if let Some(plan) = &snap.plan {
            if done.iter().any(|a| {
                matches!(
                    a,
                    Action::SetStatus(_)
                        | Action::CreateNodeUpgrade { .. }
                        | Action::SetSpec { .. }
                )
            }) || plan.status.is_none()
            {
                self.update_plan_status(plan).await?;
            }
        }
        Ok(done)
    }

    async fn update_plan_status(&self, plan: &UpgradePlan) -> Result<(), AgentError> {
        let nodes = self.plan_nodeupgrades(plan).await?;
        let new = rollup::plan_status(
            &plan.spec.version,
            plan.spec.max_failures.max(1),
            plan.spec.paused,
            &nodes,
            plan.status.as_ref(),
            now_secs(),
        );
        if plan.status.as_ref() != Some(&new) {
            let r = self
                .plans()
                .patch_status(
                    &plan.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": new })),
                )
                .await;
            match r {
                Ok(_) => {}
                Err(e) if api_code(&e) == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn execute(&self, snap: &Snapshot, action: &Action) -> Result<Step, AgentError> {
        let me = self.me();
        match action {
            Action::CreateNodeUpgrade { plan, target } => {
                let mut nu = NodeUpgrade::new(
                    me,
                    NodeUpgradeSpec {
                        plan: plan.clone(),
                        target_version: target.clone(),
                    },
                );
                nu.metadata.labels = Some(BTreeMap::from([(PLAN_LABEL.into(), plan.clone())]));
                // Owned by the plan, so the garbage collector removes it with the plan even
                // when this node never comes back.
                if let Some(p) = &snap.plan {
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
                match self.nus().create(&PostParams::default(), &nu).await {
                    Ok(_) => info!(plan, target, "created NodeUpgrade"),
                    Err(e) if api_code(&e) == Some(409) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::SetSpec { plan, target } => {
                let patch = json!({
                    "metadata": {"labels": {PLAN_LABEL: plan}},
                    "spec": {"plan": plan, "targetVersion": target},
                });
                self.nus()
                    .patch(me, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                info!(plan, target, "NodeUpgrade retargeted");
            }
            Action::DeleteNodeUpgrade => {
                match self.nus().delete(me, &DeleteParams::default()).await {
                    Ok(_) => info!("plan gone: NodeUpgrade deleted"),
                    Err(e) if api_code(&e) == Some(404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::SetStatus(s) => {
                let old = snap
                    .nu
                    .as_ref()
                    .and_then(|n| n.status.clone())
                    .unwrap_or_default();
                let had_status = snap.nu.as_ref().is_some_and(|n| n.status.is_some());
                if had_status && old == *s {
                    return Ok(Step::Unchanged);
                }
                self.nus()
                    .patch_status(
                        me,
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
            }
            Action::AcquireLease { plan, concurrency } => {
                if !self.acquire_lease(plan, *concurrency).await? {
                    debug!(plan, "no free lease; waiting");
                    return Ok(Step::Stop);
                }
                // The failure count this pass decided on may be stale: the node whose lease
                // this was wrote its Failed/RolledBack status before releasing it, so a fresh
                // count now sees that failure. Without this second look a broken release
                // would reach one node too many.
                if let Some(p) = &snap.plan {
                    let failures = self
                        .plan_nodeupgrades(p)
                        .await?
                        .iter()
                        .filter(|(ph, t)| ph.is_failure() && *t == p.spec.version)
                        .count() as u32;
                    if failures >= p.spec.max_failures.max(1) {
                        info!(
                            plan,
                            failures, "rollout stopped meanwhile; lease given back"
                        );
                        self.release_fresh(plan).await?;
                        return Ok(Step::Stop);
                    }
                }
            }
            Action::RenewLease { plan } => {
                if !self.renew_lease(snap, plan).await? {
                    return Ok(Step::Unchanged);
                }
            }
            Action::ReleaseLease { plan } => {
                for l in snap
                    .my_leases
                    .iter()
                    .filter(|l| l.labels().get(PLAN_LABEL) == Some(plan))
                {
                    if self.delete_lease(l).await? {
                        info!(lease = l.name_any(), "lease released");
                    }
                }
            }
            Action::Cordon { plan } => {
                let unschedulable = snap
                    .node
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false);
                let ours = snap.node.annotations().contains_key(CORDON_ANNOTATION);
                if unschedulable && !ours {
                    // Cordoned by someone else: leave their cordon (and its removal) to them.
                    return Ok(Step::Unchanged);
                }
                let patch = json!({
                    "metadata": {"annotations": {CORDON_ANNOTATION: plan}},
                    "spec": {"unschedulable": true},
                });
                self.nodes()
                    .patch(me, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                info!(plan, "node cordoned");
            }
            Action::Uncordon => {
                if !snap.node.annotations().contains_key(CORDON_ANNOTATION) {
                    return Ok(Step::Unchanged);
                }
                let patch = json!({
                    "metadata": {"annotations": {CORDON_ANNOTATION: null}},
                    "spec": {"unschedulable": null},
                });
                self.nodes()
                    .patch(me, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                info!("node uncordoned");
            }
            Action::Evict(pods) => self.evict(snap, pods).await?,
            Action::Stage {
                bundle_url,
                version,
            } => {
                info!(bundle_url, version, "staging");
                let plan = snap.obs.plan.as_ref().map(|p| p.name.clone());
                let result = {
                    let stage = self.ops.stage(bundle_url, version);
                    tokio::pin!(stage);
                    let renew_every =
                        Duration::from_secs((self.cfg.lease_seconds.max(3) / 3) as u64);
                    let mut last_renew = tokio::time::Instant::now();
                    let mut tick = tokio::time::interval(self.cfg.tick);
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            r = &mut stage => break Some(r),
                            _ = tick.tick() => {
                                let Some(p) = &plan else { continue };
                                // A deleted plan cancels the download; the next pass gives
                                // back the lease and the cordon.
                                match self.plans().get_opt(p).await {
                                    Ok(Some(pl)) if pl.metadata.deletion_timestamp.is_none() => {}
                                    Ok(_) => {
                                        info!(plan = p, "plan deleted while staging; stopping");
                                        break None;
                                    }
                                    Err(e) => warn!(error = %e, "checking the plan while staging"),
                                }
                                if last_renew.elapsed() >= renew_every {
                                    last_renew = tokio::time::Instant::now();
                                    if let Err(e) = self.renew_fresh(p).await {
                                        warn!(error = %e, "renewing the lease while staging");
                                    }
                                }
                            }
                        }
                    }
                };
                let Some(result) = result else {
                    return Ok(Step::Stop);
                };
                match result {
                    Ok(report) => {
                        self.metrics.downloaded(report.bytes);
                        let total = snap
                            .obs
                            .nu
                            .as_ref()
                            .map(|n| n.status.bytes_downloaded)
                            .unwrap_or(0)
                            + report.bytes;
                        self.nus()
                            .patch_status(
                                me,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"status": {"bytesDownloaded": total}})),
                            )
                            .await?;
                    }
                    Err(e) => {
                        self.fail(format!("staging {version} failed: {e}")).await?;
                        return Ok(Step::Stop);
                    }
                }
            }
            Action::Flip {
                bundle_url,
                version,
            } => {
                if let Err(e) = self.ops.flip(bundle_url, version).await {
                    self.fail(format!("arming the trial boot of {version} failed: {e}"))
                        .await?;
                    return Ok(Step::Stop);
                }
            }
            Action::Reboot => {
                info!("rebooting into the trial slot");
                self.ops.reboot().await?;
                // The node goes down; give it the time rather than asking again at once.
                tokio::time::sleep(self.cfg.reboot_wait).await;
            }
            Action::MarkGood => {
                self.ops.mark_good().await?;
                info!("slot marked good");
            }
        }
        Ok(Step::Changed)
    }

    async fn fail(&self, msg: String) -> Result<(), AgentError> {
        warn!(error = %msg, "upgrade failed");
        self.metrics.failed(Phase::Failed);
        let ts = Timestamp::from_second(now_secs())
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_string();
        self.nus()
            .patch_status(
                self.me(),
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"phase": "Failed", "lastError": msg, "phaseSince": ts}}),
                ),
            )
            .await?;
        Ok(())
    }

    async fn evict(&self, snap: &Snapshot, pods: &[PodRef]) -> Result<(), AgentError> {
        let mut blocker = None;
        for p in pods {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &p.namespace);
            match api.evict(&p.name, &EvictParams::default()).await {
                Ok(_) => info!(pod = %p, "evicted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    let causes: Vec<String> = s
                        .details
                        .iter()
                        .flat_map(|d| d.causes.iter().map(|c| c.message.clone()))
                        .filter(|m| !m.is_empty())
                        .collect();
                    let why = if causes.is_empty() {
                        s.message.clone()
                    } else {
                        causes.join("; ")
                    };
                    debug!(pod = %p, why, "eviction refused");
                    blocker = Some(format!("eviction of pod {p} refused: {why}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let old = snap
            .nu
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.drain_blocker.clone());
        if blocker.is_some() && blocker != old {
            self.nus()
                .patch_status(
                    self.me(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"drainBlocker": blocker}})),
                )
                .await?;
        }
        Ok(())
    }

    fn lease_spec(&self, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.me().to_string()),
            lease_duration_seconds: Some(self.cfg.lease_seconds),
            acquire_time: Some(micro_now()),
            renew_time: Some(micro_now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes a free or expired lease among the plan's `concurrency`; true if this node holds
    /// one afterwards. Conflicts (409) mean another agent won that lease: try the next.
    async fn acquire_lease(&self, plan: &str, concurrency: u32) -> Result<bool, AgentError> {
        let now = now_secs();
        // One list instead of a get per slot: waiting nodes ask on every pass.
        let existing = self
            .leases()
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={plan}")))
            .await?
            .items;
        for i in 0..concurrency {
            let name = lease_name(plan, i);
            let current = existing
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
                .cloned();
            match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.cfg.namespace.clone()),
                            labels: Some(BTreeMap::from([
                                (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
                                (PLAN_LABEL.into(), plan.into()),
                            ])),
                            ..Default::default()
                        },
                        spec: Some(self.lease_spec(0)),
                    };
                    match self.leases().create(&PostParams::default(), &lease).await {
                        Ok(_) => {
                            info!(lease = name, "lease acquired");
                            return Ok(true);
                        }
                        Err(e) if api_code(&e) == Some(409) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(mut lease) => {
                    let spec = lease.spec.clone().unwrap_or_default();
                    let holder = spec.holder_identity.clone().unwrap_or_default();
                    if holder == self.me() {
                        return Ok(true);
                    }
                    if !holder.is_empty() && !expired(&spec, now) {
                        continue;
                    }
                    lease.spec = Some(self.lease_spec(spec.lease_transitions.unwrap_or(0) + 1));
                    match self
                        .leases()
                        .replace(&name, &PostParams::default(), &lease)
                        .await
                    {
                        Ok(_) => {
                            info!(lease = name, previous = holder, "expired lease taken over");
                            return Ok(true);
                        }
                        Err(e) if api_code(&e) == Some(409) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(false)
    }

    /// Renews this node's lease of `plan` when a third of its duration has passed.
    async fn renew_lease(&self, snap: &Snapshot, plan: &str) -> Result<bool, AgentError> {
        let now = now_secs();
        for l in snap
            .my_leases
            .iter()
            .filter(|l| l.labels().get(PLAN_LABEL).map(String::as_str) == Some(plan))
        {
            let spec = l.spec.clone().unwrap_or_default();
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            if now - renewed < i64::from(self.cfg.lease_seconds / 3) {
                continue;
            }
            let mut lease = l.clone();
            let mut spec = spec;
            spec.renew_time = Some(micro_now());
            spec.lease_duration_seconds = Some(self.cfg.lease_seconds);
            lease.spec = Some(spec);
            match self
                .leases()
                .replace(&l.name_any(), &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if api_code(&e) == Some(409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Release this node's leases of `plan` from a fresh read.
    async fn release_fresh(&self, plan: &str) -> Result<(), AgentError> {
        let leases = self
            .leases()
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={plan}")))
            .await?
            .items;
        for l in leases {
            if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.me()) {
                continue;
            }
            self.delete_lease(&l).await?;
        }
        Ok(())
    }

    /// Deletes `lease` at the version read; false when it is gone, or was taken over after it
    /// expired (a newer version): then it is not ours to release.
    async fn delete_lease(&self, lease: &Lease) -> Result<bool, AgentError> {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.resource_version(),
                uid: None,
            }),
            ..Default::default()
        };
        match self.leases().delete(&lease.name_any(), &dp).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(api_code(&e), Some(404) | Some(409)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renew during a long node operation, from a fresh read of the leases.
    async fn renew_fresh(&self, plan: &str) -> Result<(), AgentError> {
        let leases = self
            .leases()
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={plan}")))
            .await?
            .items;
        for mut l in leases {
            let mut spec = l.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.me()) {
                continue;
            }
            spec.renew_time = Some(micro_now());
            l.spec = Some(spec);
            let name = l.name_any();
            match self
                .leases()
                .replace(&name, &PostParams::default(), &l)
                .await
            {
                // A conflict or a refusal: the next pass renews from a fresh read (or
                // finds the lease taken over and acts on that).
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

enum Step {
    Changed,
    Unchanged,
    /// Do not run the rest of this pass's actions.
    Stop,
}

fn expired(spec: &LeaseSpec, now: i64) -> bool {
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    last + duration < now
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

    #[test]
    fn lease_expiry() {
        let spec = LeaseSpec {
            renew_time: Some(MicroTime(Timestamp::from_second(1000).unwrap())),
            lease_duration_seconds: Some(60),
            ..Default::default()
        };
        assert!(!expired(&spec, 1060));
        assert!(expired(&spec, 1061));
        assert!(expired(&LeaseSpec::default(), 1));
        assert_eq!(lease_name("p", 1), "rkos-upgrade-p-1");
    }
}
