//! The transitions of each phase, once the plan, the NodeUpgrade and its target are known.

use super::{
    cordon, elapsed, enter, finish, waiting_condition, Action, Observed, PlanView, Release,
};
use crate::crd::{NodeUpgradeStatus, Phase};
use crate::window;
use rkos_slots::health::{self, HealthFacts, Seen};

/// Pending, Succeeded, Failed, RolledBack: nothing to do but give back a lease or a cordon a
/// crash left behind, keep the versions current, and move on from Pending (or from Succeeded
/// when the node runs something else again).
pub(super) fn at_rest(
    o: &Observed,
    plan: &PlanView,
    st: &NodeUpgradeStatus,
    target: &str,
) -> Vec<Action> {
    let mut out = Vec::new();
    if o.node.cordoned_by.is_some() {
        out.push(Action::Uncordon);
    }
    if o.holds(&plan.name) {
        out.push(Action::ReleaseLease {
            plan: plan.name.clone(),
        });
    }
    let mut s = st.clone();
    s.current_version = Some(o.facts.version.clone());
    s.slot = Some(o.facts.slot.to_string());
    s.target_version = Some(target.to_string());
    match st.phase {
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
    out
}

/// Why a waiting node may not start now, if it may not.
fn blocked(o: &Observed, plan: &PlanView) -> Option<(&'static str, String)> {
    if plan.paused {
        return Some(("Paused", format!("plan {} is paused", plan.name)));
    }
    let failures = o.failures(plan);
    if failures >= plan.max_failures {
        return Some((
            "RolloutStopped",
            format!(
                "rollout stopped: {failures} node(s) failed (maxFailures {})",
                plan.max_failures
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

pub(super) fn waiting(o: &Observed, plan: &PlanView, st: &NodeUpgradeStatus) -> Vec<Action> {
    let holds = o.holds(&plan.name);
    let mut out = Vec::new();
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
        // No lease free: stay Waiting (a lease is given back within its duration at most).
        let indices = o.free_leases(plan);
        if !indices.is_empty() {
            out.push(Action::AcquireLease {
                plan: plan.name.clone(),
                indices,
            });
        }
        return out;
    }
    out.extend(cordon(o, &plan.name));
    let mut s = enter(st, Phase::Draining, o.now);
    s.attempts += 1;
    s.from_version = Some(o.facts.version.clone());
    s.last_error = None;
    s.drain_blocker = None;
    s.boot_id = None;
    out.push(Action::SetStatus(s));
    out
}

pub(super) fn draining(o: &Observed, plan: &PlanView, st: &NodeUpgradeStatus) -> Vec<Action> {
    let mut out = Vec::new();
    if !o.holds(&plan.name) {
        // The lease expired and another node took it: stop before touching the slot.
        if o.node.cordoned_by.is_some() {
            out.push(Action::Uncordon);
        }
        let mut s = enter(st, Phase::Waiting, o.now);
        s.last_error = Some("lost the rollout lease while draining; waiting again".into());
        out.push(Action::SetStatus(s));
        return out;
    }
    out.extend(cordon(o, &plan.name));
    if !o.drain.refused.is_empty() {
        let msg = format!("drain refused: {}", o.drain.refused.join("; "));
        out.extend(finish(o, &plan.name, st, Phase::Failed, Some(msg)));
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
        out.extend(finish(o, &plan.name, st, Phase::Failed, Some(msg)));
        return out;
    }
    if !o.drain.evict.is_empty() {
        out.push(Action::Evict(o.drain.evict.clone()));
    }
    out
}

pub(super) fn staging(
    o: &Observed,
    plan: &PlanView,
    st: &NodeUpgradeStatus,
    target: &str,
) -> Vec<Action> {
    if o.lapsed(&plan.name, st.phase) {
        return lapsed(o, plan, st);
    }
    let mut out = Vec::new();
    if o.facts.trial_armed.as_deref() == Some(target) {
        let mut s = enter(st, Phase::Rebooting, o.now);
        s.boot_id = Some(o.facts.boot_id.clone());
        out.push(Action::SetStatus(s));
    } else {
        // The NodeUpgrade's target: the plan's version (a plan whose version moved on
        // retargets the node before it gets here).
        let release = Release {
            version: target.to_string(),
            ..plan.release.clone()
        };
        out.push(if o.facts.staged.as_deref() == Some(target) {
            Action::Flip(release)
        } else {
            Action::Stage(release)
        });
    }
    out
}

pub(super) fn rebooting(
    o: &Observed,
    plan: &PlanView,
    st: &NodeUpgradeStatus,
    target: &str,
) -> Vec<Action> {
    let same_boot = st.boot_id.as_deref().is_none_or(|b| b == o.facts.boot_id);
    if !same_boot && o.facts.version != target {
        return rolled_back(o, plan, st, target);
    }
    if o.lapsed(&plan.name, st.phase) {
        return lapsed(o, plan, st);
    }
    let mut out = Vec::new();
    if same_boot {
        if o.facts.trial_armed.as_deref() == Some(target) {
            // Renewed right before going down, so the whole lease covers the trial.
            out.push(Action::RenewLease {
                plan: plan.name.clone(),
            });
            out.push(Action::Reboot);
        } else if o.facts.version == target {
            out.push(Action::SetStatus(enter(st, Phase::Verifying, o.now)));
        } else {
            let msg = format!(
                "the trial boot of {target} is no longer armed and the node did not reboot"
            );
            out.extend(finish(o, &plan.name, st, Phase::Failed, Some(msg)));
        }
    } else {
        let mut s = enter(st, Phase::Verifying, o.now);
        s.current_version = Some(o.facts.version.clone());
        s.slot = Some(o.facts.slot.to_string());
        out.push(Action::SetStatus(s));
    }
    out
}

pub(super) fn verifying(
    o: &Observed,
    plan: &PlanView,
    st: &NodeUpgradeStatus,
    target: &str,
) -> Vec<Action> {
    if o.facts.version != target {
        return rolled_back(o, plan, st, target);
    }
    if o.lapsed(&plan.name, st.phase) {
        return lapsed(o, plan, st);
    }
    let mut out = Vec::new();
    let facts = HealthFacts {
        node_ready: Seen::check(o.node.ready, || "the Node is not Ready".into()),
        ..o.node_health.clone()
    };
    match health::verdict(&facts) {
        Ok(()) if o.facts.running_on_trial => out.push(Action::MarkGood),
        Ok(()) => out.extend(finish(o, &plan.name, st, Phase::Succeeded, None)),
        Err(why) if elapsed(st.phase_since.as_deref(), o.now) > o.verify_timeout_seconds as i64 => {
            let msg = format!(
                "{target} booted but the node was not healthy within {}s ({why}); \
                 the slot stays on trial and GRUB falls back at the next reboot",
                o.verify_timeout_seconds
            );
            out.extend(finish(o, &plan.name, st, Phase::Failed, Some(msg)));
        }
        Err(_) => {}
    }
    out
}

fn rolled_back(o: &Observed, plan: &PlanView, st: &NodeUpgradeStatus, target: &str) -> Vec<Action> {
    let reason = o.facts.rolled_back.clone().unwrap_or_else(|| {
        format!(
            "rebooted into {target} but came back on {} (slot {})",
            o.facts.version, o.facts.slot
        )
    });
    finish(o, &plan.name, st, Phase::RolledBack, Some(reason))
}

/// Past the drain without a live lease: the attempt counts as failed (another node may have
/// started meanwhile), and nothing more is done to the slot or the boot.
fn lapsed(o: &Observed, plan: &PlanView, st: &NodeUpgradeStatus) -> Vec<Action> {
    let mut msg = format!(
        "lost the rollout lease while {} (it lapsed, or was taken over after it expired); \
         counted as failed, since another node may have started meanwhile",
        st.phase.as_str().to_lowercase()
    );
    if o.facts.running_on_trial {
        msg.push_str("; the slot stays on trial and GRUB falls back at the next reboot");
    }
    finish(o, &plan.name, st, Phase::Failed, Some(msg))
}
