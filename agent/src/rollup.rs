//! The plan's status, computed from its NodeUpgrades. Pure. There is no central controller:
//! every agent computes the same roll-up after it changes its own NodeUpgrade and writes it
//! when it differs, so the plan reads right as long as one agent runs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{Phase, UpgradePlanStatus};

/// `nodes`: (phase, target version) of each NodeUpgrade of the plan.
pub fn plan_status(
    version: &str,
    max_failures: u32,
    paused: bool,
    nodes: &[(Phase, String)],
    old: Option<&UpgradePlanStatus>,
    now: i64,
) -> UpgradePlanStatus {
    let mut s = UpgradePlanStatus {
        nodes: nodes.len() as u32,
        ..Default::default()
    };
    for (phase, target) in nodes {
        let current = target == version;
        match phase {
            Phase::Succeeded if current => s.succeeded += 1,
            p if p.is_failure() && current => s.failed += 1,
            p if p.in_flight() => s.in_progress += 1,
            _ => s.pending += 1,
        }
    }
    let stopped = s.failed >= max_failures;
    let (reason, message) = if stopped {
        (
            "MaxFailuresReached",
            format!(
                "rollout stopped: {} node(s) failed (maxFailures {max_failures}); \
                 fix the cause, then delete their NodeUpgrades or raise maxFailures",
                s.failed
            ),
        )
    } else if paused {
        ("Paused", "paused: no new node starts".to_string())
    } else if s.nodes > 0 && s.succeeded == s.nodes {
        ("Complete", format!("all {} node(s) run {version}", s.nodes))
    } else {
        (
            "Progressing",
            format!(
                "{} of {} node(s) on {version}, {} in progress, {} failed",
                s.succeeded, s.nodes, s.in_progress, s.failed
            ),
        )
    };
    s.message = Some(message.clone());
    let status = if stopped { "True" } else { "False" };
    let since = old
        .and_then(|o| o.conditions.iter().find(|c| c.type_ == "RolloutStopped"))
        .filter(|c| c.status == status && c.reason == reason)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH)));
    s.conditions.push(Condition {
        type_: "RolloutStopped".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: None,
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: Phase, v: &str) -> (Phase, String) {
        (p, v.to_string())
    }

    #[test]
    fn counts_and_stop() {
        let nodes = [
            n(Phase::Succeeded, "2"),
            n(Phase::Draining, "2"),
            n(Phase::Failed, "2"),
            n(Phase::Failed, "1"),
            n(Phase::Waiting, "2"),
        ];
        let s = plan_status("2", 2, false, &nodes, None, 0);
        assert_eq!(
            (s.nodes, s.succeeded, s.in_progress, s.failed, s.pending),
            (5, 1, 1, 1, 2)
        );
        assert_eq!(s.conditions[0].status, "False");
        let s = plan_status("2", 1, false, &nodes, None, 0);
        assert_eq!(s.conditions[0].reason, "MaxFailuresReached");
        assert!(s.message.unwrap().contains("rollout stopped"));
    }

    #[test]
    fn transition_time_kept_while_unchanged() {
        let nodes = [n(Phase::Succeeded, "2")];
        let a = plan_status("2", 1, false, &nodes, None, 100);
        let b = plan_status("2", 1, false, &nodes, Some(&a), 200);
        assert_eq!(a, b);
        assert_eq!(b.conditions[0].reason, "Complete");
    }
}
