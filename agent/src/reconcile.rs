//! The agent's loop: observe, ask [`machine::decide`], carry the actions out, and keep the
//! plan's status rolled up. Woken by watch events on the plans, this node's NodeUpgrade and
//! this Node, and at least every `tick`.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::api::{api_code, now_secs, AgentConfig, AgentError, Ctx};
use crate::crd::{Phase, UpgradePlan};
use crate::execute::{Done, Exec};
use crate::machine::{self, Action, Observed};
use crate::metrics::Metrics;
use crate::nodeops::NodeOps;
use crate::observe::{self, Snapshot};
use crate::rollup;

pub struct Agent<N: NodeOps> {
    ctx: Ctx,
    ops: N,
    metrics: Arc<Metrics>,
}

impl<N: NodeOps> Agent<N> {
    pub fn new(client: Client, cfg: AgentConfig, ops: N, metrics: Arc<Metrics>) -> Self {
        Agent {
            ctx: Ctx { client, cfg },
            ops,
            metrics,
        }
    }

    /// Reconciles on every change of the plans, this node's NodeUpgrade or this Node, and at
    /// least every `tick`. Runs until the future is dropped.
    pub async fn run(&self) {
        let notify = Notify::new();
        let name_field = format!("metadata.name={}", self.ctx.me());
        let wake_on = |events: BoxStream<'static, ()>| {
            let notify = &notify;
            async move {
                let mut events = events;
                while events.next().await.is_some() {
                    notify.notify_one();
                }
            }
        };
        let mine = || watcher::Config::default().fields(&name_field);
        let watches = futures::future::join3(
            wake_on(changes(self.ctx.plans(), watcher::Config::default())),
            wake_on(changes(self.ctx.nus(), mine())),
            wake_on(changes(self.ctx.nodes(), mine())),
        );
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
                    _ = tokio::time::sleep(self.ctx.cfg.tick) => {}
                }
            }
        };
        tokio::select! {
            _ = watches => {}
            _ = work => {}
        }
    }

    fn exec<'a>(&'a self, snap: &'a Snapshot) -> Exec<'a, N> {
        Exec {
            ctx: &self.ctx,
            ops: &self.ops,
            metrics: &self.metrics,
            snap,
        }
    }

    /// One observe-decide-execute pass. Returns the actions that changed something.
    pub async fn reconcile_once(&self) -> Result<Vec<Action>, AgentError> {
        let snap = observe::observe(&self.ctx, &self.ops, None).await?;
        if let Some(p) = &snap.obs.plan {
            self.metrics.plan_failures(&p.name, snap.obs.failures(p));
        }
        let exec = self.exec(&snap);
        let mut queue: VecDeque<Action> = machine::decide(&snap.obs).into();
        let mut done = Vec::new();
        while let Some(a) = queue.pop_front() {
            let result = match &a {
                Action::Stage(_) | Action::Flip(_) => {
                    self.while_running(&snap, &a, exec.action(&a)).await?
                }
                _ => Some(exec.action(&a).await?),
            };
            match result {
                Some(Done::Changed) => done.push(a),
                Some(Done::Unchanged) => {}
                Some(Done::Reported(outcome)) => {
                    queue = machine::after(&snap.obs, &outcome).into();
                    done.push(a);
                }
                // Cancelled: the next pass carries out what the machine decided instead.
                None => break,
            }
        }
        self.report(&snap, &done).await?;
        Ok(done)
    }

    /// Runs a long node action while looking at the cluster every tick, for as long as the
    /// machine still asks for it (`machine::while_running`); `None` when it was cancelled.
    async fn while_running(
        &self,
        snap: &Snapshot,
        running: &Action,
        work: impl Future<Output = Result<Done, AgentError>>,
    ) -> Result<Option<Done>, AgentError> {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(self.ctx.cfg.tick);
        tick.tick().await;
        loop {
            tokio::select! {
                r = &mut work => return r.map(Some),
                _ = tick.tick() => {
                    let facts = Some(snap.obs.facts.clone());
                    let fresh = match observe::observe(&self.ctx, &self.ops, facts).await {
                        Ok(fresh) => fresh,
                        Err(e) => {
                            warn!(error = %e, "looking at the cluster during a node action");
                            continue;
                        }
                    };
                    let Some(meanwhile) = machine::while_running(&fresh.obs, running) else {
                        info!(action = ?running, "no longer wanted; cancelled");
                        return Ok(None);
                    };
                    for a in &meanwhile {
                        if let Err(e) = self.exec(&fresh).action(a).await {
                            warn!(error = %e, action = ?a, "during a node action");
                        }
                    }
                }
            }
        }
    }

    /// Metrics, and the plan's status when this pass changed this node's NodeUpgrade.
    async fn report(&self, snap: &Snapshot, done: &[Action]) -> Result<(), AgentError> {
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
            let changed = done.iter().any(|a| {
                matches!(
                    a,
                    Action::SetStatus(_)
                        | Action::CreateNodeUpgrade { .. }
                        | Action::SetSpec { .. }
                )
            });
            if changed || plan.status.is_none() {
                self.update_plan_status(&snap.obs, plan).await?;
            }
        }
        Ok(())
    }

    /// Rolls the plan's NodeUpgrades up (read again: this pass changed this node's), each
    /// counted as the machine counts it (a node whose lease lapsed in flight as failed).
    async fn update_plan_status(
        &self,
        obs: &Observed,
        plan: &UpgradePlan,
    ) -> Result<(), AgentError> {
        let name = plan.name_any();
        let peers = observe::plan_peers(&self.ctx, &name).await?;
        let nodes: Vec<(Phase, String)> = peers
            .iter()
            .map(|p| (obs.counted_phase(&name, p), p.target.clone()))
            .collect();
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
                .ctx
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
}

/// One item per event of a watch on `api` (list, then watch, with kube's backoff).
fn changes<K>(api: Api<K>, config: watcher::Config) -> BoxStream<'static, ()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).default_backoff().map(|_| ()).boxed()
}
