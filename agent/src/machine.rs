//! The rollout state machine of one node. Pure: it takes what the agent observed (the plan,
//! the node's own NodeUpgrade, its Node, the leases it holds, the pods to drain, the node-side
//! facts) and returns the actions to take, in order.
//!
//! It keeps no memory: the state lives in the NodeUpgrade status, the Node's cordon annotation,
//! the Leases and the node's slot/boot facts. A restarted agent observes the same things and
//! picks up where the last one stopped, whatever the phase. Every action is idempotent, and
//! the sequences are ordered so that a crash between any two actions is safe:
//! - start: lease acquired -> node cordoned -> status `Draining`. So every node past
//!   `Waiting` holds a lease, and `concurrency` leases bound the rollout.
//! - finish: node uncordoned -> terminal status -> lease released. A terminal or `Pending`
//!   node that still holds a lease or a cordon it made has them released on the next pass.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{NodeUpgradeStatus, Phase, WindowSpec};
use crate::drain::{DrainView, PodRef};
use crate::nodeops::NodeFacts;
use crate::window;

/// The plan governing this node, as the machine needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanView {
    pub name: String,
    pub version: String,
    pub bundle_url: String,
    pub concurrency: u32,
    pub drain_timeout_seconds: u64,
    pub max_failures: u32,
    pub paused: bool,
    pub window: Option<WindowSpec>,
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
    pub ready: bool,
    /// The plan named by the agent's cordon annotation, if the agent cordoned the node.
    pub cordoned_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Unix seconds.
    pub now: i64,
    /// The plan that applies to this node; `None` when none does (no plan selects it, or its
    /// plan was deleted).
    pub plan: Option<PlanView>,
    pub nu: Option<NuView>,
    pub node: NodeView,
    /// Plans for which this node holds a lease (holder identity = node name).
    pub leases_held: Vec<String>,
    /// Failed + RolledBack NodeUpgrades of the plan for its current version.
    pub failures: u32,
    /// Pods on the node, classified; only looked at while draining.
    pub drain: DrainView,
    pub facts: NodeFacts,
    /// The node-side health check (k3s up).
    pub healthy: bool,
    /// How long a rebooted node may take to become healthy.
    pub verify_timeout_seconds: u64,
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
    /// Take one of the plan's `concurrency` leases. If none is free, the executor stops
    /// executing the actions after this one.
    AcquireLease {
        plan: String,
        concurrency: u32,
    },
    /// Refresh the lease's renew time while working.
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
    /// Undo a cordon the agent made (only if the annotation is there).
    Uncordon,
    /// Ask the Eviction API to evict these pods; PDB refusals are recorded in the status.
    Evict(Vec<PodRef>),
    /// Node side; a failure fails the upgrade (the executor writes `Failed`).
    Stage {
        bundle_url: String,
        version: String,
    },
    /// The target is complete in the inactive slot but no trial boot is armed (e.g. a retry
    /// after a rollback): arm it.
    Flip {
        bundle_url: String,
        version: String,
    },
    Reboot,
    MarkGood,
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
    st: NodeUpgradeStatus,
    phase: Phase,
    error: Option<String>,
) -> Vec<Action> {
    let mut s = enter(&st, phase, o.now);
    s.last_error = error;
    s.current_version = Some(o.facts.version.clone());
    s.slot = Some(o.facts.slot.clone());
    let mut out = Vec::new();
    if o.node.cordoned_by.is_some() {
        out.push(Action::Uncordon);
    }
    out.push(Action::SetStatus(s));
    if o.leases_held.iter().any(|l| l == plan) {
        out.push(Action::ReleaseLease {
            plan: plan.to_string(),
        });
    }
    out
}

/// Why a waiting node may not start now, if it may not.
fn blocked(o: &Observed, plan: &PlanView) -> Option<(&'static str, String)> {
    if plan.paused {
        return Some(("Paused", format!("plan {} is paused", plan.name)));
    }
    if o.failures >= plan.max_failures {
        return Some((
            "RolloutStopped",
            format!(
                "rollout stopped: {} node(s) failed (maxFailures {})",
                o.failures, plan.max_failures
            ),
        ));
    }
    if let Some(w) = &plan.window {
        match window::is_open(w, o.now) {
            Ok(true) => {}
            Ok(false) => {
                return Some((
                    "OutsideWindow",
                    format!(
                        "outside the maintenance window ({}-{} {} {})",
                        w.start_time,
                        w.end_time,
                        w.time_zone,
                        if w.days.is_empty() {
                            "every day".to_string()
                        } else {
                            w.days.join(",")
                        }
                    ),
                ))
            }
            Err(e) => return Some(("BadWindow", e.to_string())),
        }
    }
    None
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
        for l in &o.leases_held {
            out.push(Action::ReleaseLease { plan: l.clone() });
        }
        return out;
    };
    let release_others: Vec<Action> = o
        .leases_held
        .iter()
        .filter(|l| **l != plan.name)
        .map(|l| Action::ReleaseLease { plan: l.clone() })
        .collect();
    let Some(nu) = &o.nu else {
        out.extend(release_others);
        out.push(Action::CreateNodeUpgrade {
            plan: plan.name.clone(),
            target: plan.version.clone(),
        });
        return out;
    };
    let st = &nu.status;
    let phase = st.phase;
    let holds = o.leases_held.contains(&plan.name);
    let cordoned_by_other = o.node.cordoned_by.as_ref().is_some_and(|c| *c != plan.name);

    // The node follows another plan, or the plan's version moved on: start over, unless the
    // node is already rebooting into the old target (that attempt has to finish first).
    let retarget = nu.plan != plan.name
        || (nu.target != plan.version && !matches!(phase, Phase::Rebooting | Phase::Verifying));
    if retarget {
        if o.node.cordoned_by.is_some() {
            out.push(Action::Uncordon);
        }
        out.push(Action::SetSpec {
            plan: plan.name.clone(),
            target: plan.version.clone(),
        });
        out.push(Action::SetStatus(NodeUpgradeStatus {
            phase: Phase::Pending,
            current_version: Some(o.facts.version.clone()),
            target_version: Some(plan.version.clone()),
            slot: Some(o.facts.slot.clone()),
            phase_since: Some(ts(o.now).to_string()),
            ..Default::default()
        }));
        out.extend(release_others);
        return out;
    }
    out.extend(release_others);
    let target = nu.target.clone();

    // Outside the phases that may hold them, a lease or a cordon left by a crash is given back.
    let may_hold = phase.in_flight() || phase == Phase::Waiting;
    if !may_hold || cordoned_by_other {
        if o.node.cordoned_by.is_some() {
            out.push(Action::Uncordon);
        }
        if holds && !may_hold {
            out.push(Action::ReleaseLease {
                plan: plan.name.clone(),
            });
        }
        if !may_hold {
            // Keep versions current; nothing else to do in these phases but the checks below.
            let mut s = st.clone();
            s.current_version = Some(o.facts.version.clone());
            s.slot = Some(o.facts.slot.clone());
            s.target_version = Some(target.clone());
            match phase {
                Phase::Pending => {
                    let mut s = enter(&s, Phase::Waiting, o.now);
                    if o.facts.version == target {
                        s = enter(&s, Phase::Succeeded, o.now);
                    }
                    out.push(Action::SetStatus(s));
                }
                Phase::Succeeded if o.facts.version != target => {
                    // Running something else again (a manual rollback): re-evaluate.
                    out.push(Action::SetStatus(enter(&s, Phase::Pending, o.now)));
                }
                _ => out.push(Action::SetStatus(s)),
            }
            return out;
        }
    }

    match phase {
        Phase::Waiting => {
            if o.facts.version == target {
                out.extend(finish(o, &plan.name, st.clone(), Phase::Succeeded, None));
                return out;
            }
            if let Some((reason, message)) = blocked(o, plan) {
                if holds {
                    if o.node.cordoned_by.is_some() {
                        out.push(Action::Uncordon);
                    }
                    out.push(Action::ReleaseLease {
                        plan: plan.name.clone(),
                    });
                }
                let mut s = st.clone();
                waiting_condition(&mut s, reason, &message, o.now);
                out.push(Action::SetStatus(s));
                return out;
            }
            if !holds {
                out.push(Action::AcquireLease {
                    plan: plan.name.clone(),
                    concurrency: plan.concurrency,
                });
            }
            if o.node.cordoned_by.as_deref() != Some(&plan.name) {
                out.push(Action::Cordon {
                    plan: plan.name.clone(),
                });
            }
            let mut s = enter(st, Phase::Draining, o.now);
            s.attempts += 1;
            s.from_version = Some(o.facts.version.clone());
            s.last_error = None;
            s.drain_blocker = None;
            s.boot_id = None;
            out.push(Action::SetStatus(s));
        }
        Phase::Draining => {
            if !holds {
                // The lease expired and another node took it: stop before touching the slot.
                if o.node.cordoned_by.is_some() {
                    out.push(Action::Uncordon);
                }
                let mut s = enter(st, Phase::Waiting, o.now);
                s.last_error = Some("lost the rollout lease while draining; waiting again".into());
                out.push(Action::SetStatus(s));
                return out;
            }
            out.push(Action::RenewLease {
                plan: plan.name.clone(),
            });
            if o.node.cordoned_by.as_deref() != Some(&plan.name) {
                out.push(Action::Cordon {
                    plan: plan.name.clone(),
                });
            }
            if !o.drain.refused.is_empty() {
                let msg = format!("drain refused: {}", o.drain.refused.join("; "));
                out.extend(finish(o, &plan.name, st.clone(), Phase::Failed, Some(msg)));
                return out;
            }
            if o.drain.evict.is_empty() && o.drain.waiting.is_empty() {
                out.push(Action::SetStatus(enter(st, Phase::Staging, o.now)));
                return out;
            }
            let waited = elapsed(st.phase_since.as_deref(), o.now);
            // Strictly more: phaseSince has whole seconds, so this never fires early.
            if waited > plan.drain_timeout_seconds as i64 {
                let why = match &st.drain_blocker {
                    Some(b) => b.clone(),
                    None => {
                        let left: Vec<String> = o
                            .drain
                            .evict
                            .iter()
                            .chain(&o.drain.waiting)
                            .map(|p| p.to_string())
                            .collect();
                        format!("pods still on the node: {}", left.join(", "))
                    }
                };
                let msg = format!(
                    "drain timed out after {}s: {why}",
                    plan.drain_timeout_seconds
                );
                out.extend(finish(o, &plan.name, st.clone(), Phase::Failed, Some(msg)));
                return out;
            }
            if !o.drain.evict.is_empty() {
                out.push(Action::Evict(o.drain.evict.clone()));
            }
        }
        Phase::Staging => {
            if o.facts.version == target {
                // Already running the target (upgraded by other means meanwhile): `rkos
                // upgrade` would only say so and arm nothing, so staging would never end.
                out.extend(finish(o, &plan.name, st.clone(), Phase::Succeeded, None));
                return out;
            }
            out.push(Action::RenewLease {
                plan: plan.name.clone(),
            });
            if o.facts.trial_armed.as_deref() == Some(target.as_str()) {
                let mut s = enter(st, Phase::Rebooting, o.now);
                s.boot_id = Some(o.facts.boot_id.clone());
                out.push(Action::SetStatus(s));
            } else if o.facts.staged.as_deref() == Some(target.as_str()) {
                out.push(Action::Flip {
                    bundle_url: plan.bundle_url.clone(),
                    version: target.clone(),
                });
            } else {
                out.push(Action::Stage {
                    bundle_url: plan.bundle_url.clone(),
                    version: target.clone(),
                });
            }
        }
        Phase::Rebooting => {
            out.push(Action::RenewLease {
                plan: plan.name.clone(),
            });
            let same_boot = st.boot_id.as_deref().is_none_or(|b| b == o.facts.boot_id);
            if same_boot {
                if o.facts.trial_armed.as_deref() == Some(target.as_str()) {
                    out.push(Action::Reboot);
                } else if o.facts.version == target {
                    out.push(Action::SetStatus(enter(st, Phase::Verifying, o.now)));
                } else {
                    let msg = format!(
                        "the trial boot of {target} is no longer armed and the node did not reboot"
                    );
                    out.extend(finish(o, &plan.name, st.clone(), Phase::Failed, Some(msg)));
                }
            } else if o.facts.version == target {
                let mut s = enter(st, Phase::Verifying, o.now);
                s.current_version = Some(o.facts.version.clone());
                s.slot = Some(o.facts.slot.clone());
                out.push(Action::SetStatus(s));
            } else {
                out.extend(rolled_back(o, &plan.name, st, &target));
            }
        }
        Phase::Verifying => {
            out.push(Action::RenewLease {
                plan: plan.name.clone(),
            });
            if o.facts.version != target {
                out.extend(rolled_back(o, &plan.name, st, &target));
            } else if o.node.ready && o.healthy {
                if o.facts.running_on_trial {
                    out.push(Action::MarkGood);
                } else {
                    out.extend(finish(o, &plan.name, st.clone(), Phase::Succeeded, None));
                }
            } else if elapsed(st.phase_since.as_deref(), o.now) > o.verify_timeout_seconds as i64 {
                let msg = format!(
                    "{target} booted but the node was not healthy within {}s (node Ready: {}, k3s up: {}); \
                     the slot stays on trial and GRUB falls back at the next reboot",
                    o.verify_timeout_seconds, o.node.ready, o.healthy
                );
                out.extend(finish(o, &plan.name, st.clone(), Phase::Failed, Some(msg)));
            }
        }
        Phase::Pending | Phase::Succeeded | Phase::Failed | Phase::RolledBack => {}
    }
    out
}

fn rolled_back(o: &Observed, plan: &str, st: &NodeUpgradeStatus, target: &str) -> Vec<Action> {
    let reason = o.facts.rolled_back.clone().unwrap_or_else(|| {
        format!(
            "rebooted into {target} but came back on {} (slot {})",
            o.facts.version, o.facts.slot
        )
    });
    finish(o, plan, st.clone(), Phase::RolledBack, Some(reason))
}

#[cfg(test)]
mod tests;
