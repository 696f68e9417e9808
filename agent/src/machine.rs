//! The rollout state machine of one node. Pure: it takes what the agent observed (the plan,
//! the node's own NodeUpgrade and those of its peers, its Node, the rollout leases, the pods
//! to drain, the node-side facts) and returns the actions to take, in order.
//!
//! Every decision is taken here; the agent's I/O only carries actions out. What an action
//! found that the machine must react to (a node-side failure, the bytes a download took, an
//! eviction a PodDisruptionBudget refused) comes back as an [`Outcome`], and [`after`] says
//! what follows. A long node action runs only as long as [`while_running`] still asks for it.
//!
//! It keeps no memory: the state lives in the NodeUpgrade status, the Node's cordon annotation,
//! the Leases and the node's slot/boot facts. A restarted agent observes the same things and
//! picks up where the last one stopped, whatever the phase. Every action is idempotent, and
//! the sequences are ordered so that a crash between any two actions is safe:
//! - start: lease acquired (the last action of its pass) -> the next pass, a fresh look ->
//!   node cordoned -> status `Draining`. So every node past `Waiting` holds a lease, and
//!   `concurrency` leases bound the rollout.
//! - finish: node uncordoned -> terminal status -> lease released. A terminal or `Pending`
//!   node that still holds a lease or a cordon it made has them released on the next pass.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{NodeUpgradeStatus, Phase, WindowSpec};
use crate::drain::{DrainView, PodRef};
use crate::nodeops::NodeFacts;
use rkos_slots::health::HealthFacts;

mod lease;
mod phases;
#[cfg(test)]
mod tests;

pub use lease::{LeaseView, PeerView};

/// The plan governing this node, as the machine needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanView {
    pub name: String,
    /// What the plan asks every node to run.
    pub release: Release,
    pub concurrency: u32,
    pub drain_timeout_seconds: u64,
    pub max_failures: u32,
    pub paused: bool,
    pub window: Option<WindowSpec>,
}

/// The release a plan asks for, as the node side is told to stage or arm it: one value, so
/// whatever the plan says about it reaches `rkos upgrade` together.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// Where the signed bundle is served.
    pub bundle_url: String,
    /// The version the bundle must hold (`rkos upgrade --expect-version`).
    pub version: String,
    /// The plan's `allowDowngrade`: `rkos upgrade --allow-downgrade`. Without it the node
    /// refuses a version lower than the one it runs, and the attempt fails with its message.
    pub allow_downgrade: bool,
}

/// The node's own NodeUpgrade.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NuView {
    pub plan: String,
    pub target: String,
    pub status: NodeUpgradeStatus,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    /// The node's name: its NodeUpgrade's name and its identity as a lease holder.
    pub name: String,
    pub ready: bool,
    /// `spec.unschedulable`: cordoned, by the agent or by someone else.
    pub unschedulable: bool,
    /// The plan named by the agent's cordon annotation, if the agent cordoned the node.
    pub cordoned_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Unix seconds.
    pub now: i64,
    /// The plan that applies to this node; `None` when none does (no plan selects it, or its
    /// plan was deleted).
    pub plan: Option<PlanView>,
    pub nu: Option<NuView>,
    pub node: NodeView,
    /// The rollout leases in the agent's namespace, of every plan and holder.
    pub leases: Vec<LeaseView>,
    /// The NodeUpgrades of the plan, this node's included; empty without a plan.
    pub peers: Vec<PeerView>,
    /// Pods on the node, classified; only looked at while draining.
    pub drain: DrainView,
    pub facts: NodeFacts,
    /// What the node side shows of its health (k3s's unit); [`phases`] adds the Node's Ready
    /// condition and decides with `rkos_slots::health::verdict`, the rule `rkos mark-good`
    /// follows too.
    pub node_health: HealthFacts,
    /// How long a rebooted node may take to become healthy.
    pub verify_timeout_seconds: u64,
    /// The duration this agent gives its leases when it takes or renews them.
    pub lease_seconds: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the NodeUpgrade (named as the node) for a plan.
    CreateNodeUpgrade {
        plan: String,
        target: String,
    },
    /// Point the existing NodeUpgrade at a plan and version (its spec).
    SetSpec {
        plan: String,
        target: String,
    },
    DeleteNodeUpgrade,
    /// Write the whole status (the executor skips the write when nothing changed).
    SetStatus(NodeUpgradeStatus),
    /// Take the first of these leases of the plan (by index) that can still be won: create
    /// it, or replace it at the version observed (another agent's write makes that fail, and
    /// the next one is tried). Always the last action of its pass: the pass after it looks at
    /// the cluster again, and only that fresh look counts a failure that the lease's previous
    /// holder wrote just before giving the lease back.
    AcquireLease {
        plan: String,
        indices: Vec<u32>,
    },
    /// Renew this node's leases of the plan.
    RenewLease {
        plan: String,
    },
    ReleaseLease {
        plan: String,
    },
    /// Mark the node unschedulable and annotate it with the plan.
    Cordon {
        plan: String,
    },
    /// Undo the cordon the agent made.
    Uncordon,
    /// Ask the Eviction API to evict these pods; a refusal comes back as an [`Outcome`].
    Evict(Vec<PodRef>),
    /// Node side: download, verify, write the inactive slot, arm a trial boot of it.
    Stage(Release),
    /// The target is complete in the inactive slot but no trial boot is armed (e.g. a retry
    /// after a rollback): arm it.
    Flip(Release),
    Reboot,
    MarkGood,
}

/// What carrying out an action found, for [`after`] to decide on. The actions that report
/// one (`Stage`, `Flip`, `Evict`) are always the last of their list, so what follows is
/// decided on the status the list started from.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `Stage` finished; it downloaded this many bytes.
    Staged { bytes: u64 },
    /// `Stage` failed with the node side's error.
    StageFailed(String),
    /// `Flip` failed with the node side's error.
    FlipFailed(String),
    /// The Eviction API refused an eviction (a PodDisruptionBudget): which pod, and why.
    EvictionRefused(String),
}

pub const DEFAULT_VERIFY_TIMEOUT: u64 = 600;

fn ts(now: i64) -> Timestamp {
    Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Seconds since the RFC 3339 time `since`; a missing or unreadable time counts as "just now"
/// so that a damaged status delays a timeout rather than firing it at once.
fn elapsed(since: Option<&str>, now: i64) -> i64 {
    since
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|t| now - t.as_second())
        .unwrap_or(0)
}

fn enter(st: &NodeUpgradeStatus, phase: Phase, now: i64) -> NodeUpgradeStatus {
    let mut s = st.clone();
    s.phase = phase;
    s.phase_since = Some(ts(now).to_string());
    s.conditions.retain(|c| c.type_ != "Waiting");
    s
}

/// The `Waiting` condition says why a node is not starting; it keeps its transition time
/// while the reason stays the same, so repeated passes write nothing.
fn waiting_condition(st: &mut NodeUpgradeStatus, reason: &str, message: &str, now: i64) {
    if let Some(c) = st.conditions.iter().find(|c| c.type_ == "Waiting") {
        if c.reason == reason && c.message == message {
            return;
        }
    }
    st.conditions.retain(|c| c.type_ != "Waiting");
    st.conditions.push(Condition {
        type_: "Waiting".into(),
        status: "True".into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(ts(now)),
        observed_generation: None,
    });
}

/// Finish an attempt: uncordon, write the terminal status, release the lease (in that order).
fn finish(
    o: &Observed,
    plan: &str,
    st: &NodeUpgradeStatus,
    phase: Phase,
    error: Option<String>,
) -> Vec<Action> {
    let mut s = enter(st, phase, o.now);
    s.last_error = error;
    s.current_version = Some(o.facts.version.clone());
    s.slot = Some(o.facts.slot.to_string());
    let mut out = Vec::new();
    if o.node.cordoned_by.is_some() {
        out.push(Action::Uncordon);
    }
    out.push(Action::SetStatus(s));
    if o.holds(plan) {
        out.push(Action::ReleaseLease {
            plan: plan.to_string(),
        });
    }
    out
}

/// Cordon the node for `plan`, unless it already is; a node someone else cordoned (no
/// annotation) is left alone, so their cordon and its removal stay theirs.
fn cordon(o: &Observed, plan: &str) -> Option<Action> {
    let by_someone_else = o.node.unschedulable && o.node.cordoned_by.is_none();
    (o.node.cordoned_by.as_deref() != Some(plan) && !by_someone_else).then(|| Action::Cordon {
        plan: plan.to_string(),
    })
}

pub fn decide(o: &Observed) -> Vec<Action> {
    let mut out = Vec::new();
    let Some(plan) = &o.plan else {
        // No plan applies (deleted, or this node is no longer selected): give back everything.
        // Reacting to the deletion instead of holding the plan with a finalizer means deleting
        // a plan is never blocked by a node that is down; that node cleans up when it is back.
        // The lease goes last so that a node past `Waiting` always holds one.
        if o.node.cordoned_by.is_some() {
            out.push(Action::Uncordon);
        }
        if o.nu.is_some() {
            out.push(Action::DeleteNodeUpgrade);
        }
        for l in o.held_plans() {
            out.push(Action::ReleaseLease { plan: l });
        }
        return out;
    };
    let release_others: Vec<Action> = o
        .held_plans()
        .into_iter()
        .filter(|l| *l != plan.name)
        .map(|l| Action::ReleaseLease { plan: l })
        .collect();
    let Some(nu) = &o.nu else {
        out.extend(release_others);
        out.push(Action::CreateNodeUpgrade {
            plan: plan.name.clone(),
            target: plan.release.version.clone(),
        });
        return out;
    };
    let st = &nu.status;
    let phase = st.phase;

    // The node follows another plan, or the plan's version moved on: start over, unless the
    // node is already rebooting into the old target (that attempt has to finish first).
    let retarget = nu.plan != plan.name
        || (nu.target != plan.release.version
            && !matches!(phase, Phase::Rebooting | Phase::Verifying));
    if retarget {
        if o.node.cordoned_by.is_some() {
            out.push(Action::Uncordon);
        }
        out.push(Action::SetSpec {
            plan: plan.name.clone(),
            target: plan.release.version.clone(),
        });
        out.push(Action::SetStatus(NodeUpgradeStatus {
            phase: Phase::Pending,
            current_version: Some(o.facts.version.clone()),
            target_version: Some(plan.release.version.clone()),
            slot: Some(o.facts.slot.to_string()),
            phase_since: Some(ts(o.now).to_string()),
            ..Default::default()
        }));
        out.extend(release_others);
        return out;
    }
    out.extend(release_others);
    let target = nu.target.as_str();
    let cordoned_by_other = o.node.cordoned_by.as_ref().is_some_and(|c| *c != plan.name);

    // Outside the phases that may hold them, a lease or a cordon left by a crash is given back.
    let may_hold = phase.in_flight() || phase == Phase::Waiting;
    if !may_hold {
        out.extend(phases::at_rest(o, plan, st, target));
        return out;
    }
    if cordoned_by_other {
        out.push(Action::Uncordon);
    }
    let next = match phase {
        // Already running the target (nothing to do, or upgraded by other means meanwhile):
        // done. While staging this matters: `rkos upgrade` would only say so and arm
        // nothing, so staging would never end.
        Phase::Waiting | Phase::Staging if o.facts.version == target => {
            finish(o, &plan.name, st, Phase::Succeeded, None)
        }
        Phase::Waiting => phases::waiting(o, plan, st),
        Phase::Draining => phases::draining(o, plan, st),
        Phase::Staging => phases::staging(o, plan, st, target),
        Phase::Rebooting => phases::rebooting(o, plan, st, target),
        Phase::Verifying => phases::verifying(o, plan, st, target),
        Phase::Pending | Phase::Succeeded | Phase::Failed | Phase::RolledBack => Vec::new(),
    };
    // In flight the lease is renewed first when due, except in a pass that gives it back:
    // the release is made at the version observed, which a renewal would change (the release
    // would then fail and wait for the next pass).
    let lease_handled = next
        .iter()
        .any(|a| matches!(a, Action::ReleaseLease { .. } | Action::RenewLease { .. }));
    if phase.in_flight() && !lease_handled {
        out.extend(o.renew(&plan.name));
    }
    out.extend(next);
    out
}

/// What follows an action's [`Outcome`]; it takes the place of whatever the list still held.
pub fn after(o: &Observed, outcome: &Outcome) -> Vec<Action> {
    let (Some(plan), Some(nu)) = (&o.plan, &o.nu) else {
        return Vec::new();
    };
    let st = &nu.status;
    let target = &nu.target;
    match outcome {
        Outcome::Staged { bytes } => {
            let mut s = st.clone();
            s.bytes_downloaded += bytes;
            vec![Action::SetStatus(s)]
        }
        Outcome::StageFailed(e) => finish(
            o,
            &plan.name,
            st,
            Phase::Failed,
            Some(format!("staging {target} failed: {e}")),
        ),
        Outcome::FlipFailed(e) => finish(
            o,
            &plan.name,
            st,
            Phase::Failed,
            Some(format!("arming the trial boot of {target} failed: {e}")),
        ),
        // The drain timeout names the last refusal; the next pass evicts again.
        Outcome::EvictionRefused(why) if st.drain_blocker.as_deref() != Some(why) => {
            let mut s = st.clone();
            s.drain_blocker = Some(why.clone());
            vec![Action::SetStatus(s)]
        }
        Outcome::EvictionRefused(_) => Vec::new(),
    }
}

/// Asked every tick while a long node action (`Stage`, `Flip`) runs, with a fresh look at
/// the cluster (the node facts are those from before the action: the node is busy with it).
/// `None`: the machine no longer asks for `running` (the plan was deleted, its version
/// moved on, the lease was lost...) and it is cancelled. `Some`: it goes on, after the
/// other actions the machine asks for meanwhile (lease renewals).
pub fn while_running(o: &Observed, running: &Action) -> Option<Vec<Action>> {
    let next = decide(o);
    next.contains(running)
        .then(|| next.into_iter().filter(|a| a != running).collect())
}
