//! The state machine against a simulated node and cluster: every action is applied to the
//! simulation, and an agent "restart" drops the rest of an action list at any point.

use std::collections::BTreeSet;

use super::*;
use crate::nodeops::FakeNode;

const NODE: &str = "n1";

/// One node, its plan, a pool of leases shared with other (simulated) holders.
struct World {
    now: i64,
    plan: Option<PlanView>,
    nu: Option<NuView>,
    cordoned_by: Option<String>,
    /// Lease holders per index.
    leases: Vec<Option<String>>,
    pods: Vec<PodRef>,
    /// Pods whose eviction a PDB refuses.
    pdb_blocked: BTreeSet<String>,
    refused: Vec<String>,
    failures: u32,
    ready: bool,
    node: FakeNode,
    phases_seen: BTreeSet<&'static str>,
    actions_done: usize,
    /// Set by tests that take a lease away behind the agent's back (expiry).
    lease_stolen: bool,
}

fn plan(version: &str) -> PlanView {
    PlanView {
        name: "p".into(),
        version: version.into(),
        bundle_url: "http://127.0.0.1/b".into(),
        concurrency: 2,
        drain_timeout_seconds: 60,
        max_failures: 1,
        paused: false,
        window: None,
    }
}

fn pod(name: &str) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: name.into(),
    }
}

impl World {
    fn new() -> Self {
        World {
            now: 1_704_067_200,
            plan: Some(plan("2")),
            nu: None,
            cordoned_by: None,
            leases: vec![None, None],
            pods: vec![pod("web-1"), pod("db-0")],
            pdb_blocked: BTreeSet::new(),
            refused: Vec::new(),
            failures: 0,
            ready: true,
            node: FakeNode::new("1"),
            phases_seen: BTreeSet::new(),
            actions_done: 0,
            lease_stolen: false,
        }
    }

    fn observe(&self) -> Observed {
        let plan_name = self.plan.as_ref().map(|p| p.name.clone());
        Observed {
            now: self.now,
            plan: self.plan.clone(),
            nu: self.nu.clone(),
            node: NodeView {
                ready: self.ready,
                cordoned_by: self.cordoned_by.clone(),
            },
            leases_held: if self.leases.iter().any(|l| l.as_deref() == Some(NODE)) {
                vec![plan_name.unwrap_or_else(|| "p".into())]
            } else {
                vec![]
            },
            failures: self.failures,
            drain: DrainView {
                evict: self.pods.clone(),
                waiting: vec![],
                refused: self.refused.clone(),
            },
            facts: self.node.facts(),
            healthy: true,
            verify_timeout_seconds: DEFAULT_VERIFY_TIMEOUT,
        }
    }

    fn holds(&self) -> bool {
        self.leases.iter().any(|l| l.as_deref() == Some(NODE))
    }

    fn phase(&self) -> Phase {
        self.nu.as_ref().map(|n| n.status.phase).unwrap_or_default()
    }

    fn fail(&mut self, msg: String) {
        let nu = self.nu.as_mut().unwrap();
        nu.status.phase = Phase::Failed;
        nu.status.last_error = Some(msg);
    }

    /// Applies one action; false means "stop executing this list" (no lease free).
    fn apply(&mut self, a: &Action) -> bool {
        self.actions_done += 1;
        match a {
            Action::CreateNodeUpgrade { plan, target } => {
                self.nu = Some(NuView {
                    plan: plan.clone(),
                    target: target.clone(),
                    status: Default::default(),
                })
            }
            Action::SetSpec { plan, target } => {
                let nu = self.nu.as_mut().unwrap();
                nu.plan = plan.clone();
                nu.target = target.clone();
            }
            Action::DeleteNodeUpgrade => self.nu = None,
            Action::SetStatus(s) => {
                self.phases_seen.insert(s.phase.as_str());
                self.nu.as_mut().unwrap().status = s.clone();
            }
            Action::AcquireLease { concurrency, .. } => {
                if self.holds() {
                    return true;
                }
                let n = (*concurrency as usize).min(self.leases.len());
                match self.leases[..n].iter_mut().find(|l| l.is_none()) {
                    Some(l) => *l = Some(NODE.into()),
                    None => return false,
                }
            }
            Action::RenewLease { .. } => {}
            Action::ReleaseLease { .. } => {
                for l in &mut self.leases {
                    if l.as_deref() == Some(NODE) {
                        *l = None;
                    }
                }
            }
            Action::Cordon { plan } => self.cordoned_by = Some(plan.clone()),
            Action::Uncordon => self.cordoned_by = None,
            Action::Evict(pods) => {
                for p in pods {
                    if self.pdb_blocked.contains(&p.name) {
                        self.nu.as_mut().unwrap().status.drain_blocker = Some(format!(
                            "eviction of pod {p} refused: PodDisruptionBudget {}-pdb",
                            p.name
                        ));
                    } else {
                        self.pods.retain(|q| q != p);
                    }
                }
            }
            Action::Stage { version, .. } => {
                if let Err(e) = self.node.stage(version) {
                    self.fail(e.to_string());
                }
            }
            Action::Flip { version, .. } => {
                if let Err(e) = self.node.flip(version) {
                    self.fail(e.to_string());
                }
            }
            Action::Reboot => self.node.reboot(),
            Action::MarkGood => self.node.mark_good(),
        }
        self.check_invariants();
        true
    }

    fn check_invariants(&self) {
        if self.phase().in_flight() && !self.lease_stolen {
            assert!(
                self.holds(),
                "phase {:?} without a lease (after {} actions)",
                self.phase(),
                self.actions_done
            );
        }
    }

    /// Runs passes until nothing is left to do. `crash_at`: the global action index at which
    /// the agent dies; the rest of that pass is lost and the next pass starts from scratch.
    fn run(&mut self, crash_at: Option<usize>, max_passes: usize) {
        for _ in 0..max_passes {
            let actions = decide(&self.observe());
            let effective: Vec<&Action> = actions
                .iter()
                .filter(|a| match a {
                    Action::SetStatus(s) => Some(s) != self.nu.as_ref().map(|n| &n.status),
                    Action::RenewLease { .. } => false,
                    _ => true,
                })
                .collect();
            if effective.is_empty() {
                if self.phase().in_flight() {
                    // Waiting on time (a timeout) or on the node: let time pass.
                    self.now += 5;
                    continue;
                }
                return;
            }
            for a in effective {
                if Some(self.actions_done) == crash_at {
                    // The agent died before this action; a new one starts with the next pass.
                    self.actions_done += 1;
                    break;
                }
                if !self.apply(a) {
                    break;
                }
            }
            self.now += 5;
        }
        panic!("no fixed point after {max_passes} passes");
    }

    fn status(&self) -> &NodeUpgradeStatus {
        &self.nu.as_ref().unwrap().status
    }
}

#[test]
fn happy_path_visits_every_phase() {
    let mut w = World::new();
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.node.facts().version, "2");
    assert!(!w.node.running_on_trial, "slot marked good");
    assert_eq!(w.cordoned_by, None);
    assert!(!w.holds());
    assert!(w.pods.is_empty());
    assert_eq!((w.node.stages, w.node.reboots), (1, 1));
    let st = w.status();
    assert_eq!(st.attempts, 1);
    assert_eq!(st.current_version.as_deref(), Some("2"));
    assert_eq!(st.slot.as_deref(), Some("B"));
    assert_eq!(st.last_error, None);
    for p in [
        "Waiting",
        "Draining",
        "Staging",
        "Rebooting",
        "Verifying",
        "Succeeded",
    ] {
        assert!(
            w.phases_seen.contains(p),
            "never saw {p}: {:?}",
            w.phases_seen
        );
    }
}

#[test]
fn agent_restart_at_every_point_still_converges() {
    let mut total = World::new();
    total.run(None, 100);
    let n = total.actions_done;
    assert!(n > 10);
    for crash in 0..=n {
        let mut w = World::new();
        w.run(Some(crash), 100);
        assert_eq!(w.phase(), Phase::Succeeded, "crash at {crash}");
        assert_eq!(w.node.facts().version, "2", "crash at {crash}");
        assert!(
            !w.node.running_on_trial,
            "crash at {crash}: never marked good"
        );
        assert_eq!(w.cordoned_by, None, "crash at {crash}: left cordoned");
        assert!(!w.holds(), "crash at {crash}: lease kept");
        assert_eq!(w.node.stages, 1, "crash at {crash}: staged twice");
        assert_eq!(w.node.reboots, 1, "crash at {crash}: rebooted twice");
        assert_eq!(w.status().attempts, 1, "crash at {crash}");
    }
}

#[test]
fn restart_in_each_phase_resumes_from_status_and_facts() {
    // Stop the world in each phase, then resume with a fresh decide() (no memory at all).
    for stop in ["Draining", "Staging", "Rebooting", "Verifying"] {
        let mut w = World::new();
        for _ in 0..100 {
            if w.phase().as_str() == stop {
                break;
            }
            for a in decide(&w.observe()) {
                if !w.apply(&a) {
                    break;
                }
            }
            w.now += 5;
        }
        assert_eq!(w.phase().as_str(), stop);
        // A new agent: same observations, nothing else.
        w.run(None, 100);
        assert_eq!(w.phase(), Phase::Succeeded, "resumed from {stop}");
        assert_eq!(
            (w.node.stages, w.node.reboots),
            (1, 1),
            "resumed from {stop}"
        );
    }
}

#[test]
fn pdb_blocked_drain_fails_cleanly_after_timeout() {
    let mut w = World::new();
    w.pdb_blocked.insert("db-0".into());
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Failed);
    let err = w.status().last_error.clone().unwrap();
    assert!(err.contains("drain timed out after 60s"), "{err}");
    assert!(err.contains("default/db-0"), "{err}");
    assert!(err.contains("PodDisruptionBudget db-0-pdb"), "{err}");
    assert_eq!(w.cordoned_by, None, "uncordoned");
    assert!(!w.holds(), "lease released");
    assert_eq!(w.node.stages, 0, "nothing staged");
    assert_eq!(w.node.facts().version, "1");
}

#[test]
fn unevictable_pod_fails_at_once() {
    let mut w = World::new();
    w.refused
        .push("pod default/bare is not managed by a controller".into());
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Failed);
    assert!(w
        .status()
        .last_error
        .as_ref()
        .unwrap()
        .contains("drain refused"));
    assert_eq!(w.cordoned_by, None);
    assert!(!w.holds());
}

#[test]
fn broken_version_rolls_back_with_reason_at_every_crash_point() {
    let mut total = World::new();
    total.node.broken.push("2".into());
    total.run(None, 100);
    for crash in 0..=total.actions_done {
        let mut w = World::new();
        w.node.broken.push("2".into());
        w.run(Some(crash), 100);
        assert_eq!(w.phase(), Phase::RolledBack, "crash at {crash}");
        let err = w.status().last_error.clone().unwrap();
        assert!(err.contains("never marked good"), "{err}");
        assert_eq!(w.node.facts().version, "1");
        assert_eq!(w.cordoned_by, None, "crash at {crash}");
        assert!(!w.holds(), "crash at {crash}");
        assert_eq!(w.node.reboots, 1, "crash at {crash}");
    }
}

#[test]
fn stage_failure_fails_and_releases() {
    let mut w = World::new();
    w.node.fail_stage = Some("signature verification failed: wrong key".into());
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Failed);
    assert!(w
        .status()
        .last_error
        .as_ref()
        .unwrap()
        .contains("wrong key"));
    assert_eq!(w.cordoned_by, None);
    assert!(!w.holds());
    assert_eq!(w.node.facts().version, "1");
}

#[test]
fn no_free_lease_means_waiting_uncordoned() {
    let mut w = World::new();
    w.leases = vec![Some("other-a".into()), Some("other-b".into())];
    for _ in 0..10 {
        for a in decide(&w.observe()) {
            if !w.apply(&a) {
                break;
            }
        }
    }
    assert_eq!(w.phase(), Phase::Waiting);
    assert_eq!(w.cordoned_by, None);
    assert_eq!(w.node.stages, 0);
    // A lease frees up: the node goes.
    w.leases[1] = None;
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn max_failures_paused_and_window_hold_the_node() {
    let mut w = World::new();
    w.failures = 1;
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Waiting);
    let c = &w.status().conditions[0];
    assert_eq!(
        (c.type_.as_str(), c.reason.as_str()),
        ("Waiting", "RolloutStopped")
    );
    assert!(!w.holds());

    let mut w = World::new();
    w.plan.as_mut().unwrap().paused = true;
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Waiting);
    assert_eq!(w.status().conditions[0].reason, "Paused");

    let mut w = World::new();
    // 2024-01-01 00:00 UTC is a Monday; the window is on Tuesdays.
    w.plan.as_mut().unwrap().window = Some(WindowSpec {
        days: vec!["tue".into()],
        start_time: "01:00".into(),
        end_time: "03:00".into(),
        time_zone: "UTC".into(),
    });
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Waiting);
    assert_eq!(w.status().conditions[0].reason, "OutsideWindow");
    w.now += 25 * 3600;
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert!(w.status().conditions.is_empty());
}

#[test]
fn plan_deleted_in_any_phase_releases_everything() {
    for stop in ["Waiting", "Draining", "Staging", "Rebooting", "Verifying"] {
        let mut w = World::new();
        for _ in 0..100 {
            if w.phase().as_str() == stop {
                break;
            }
            for a in decide(&w.observe()) {
                if !w.apply(&a) {
                    break;
                }
            }
            w.now += 5;
        }
        assert_eq!(w.phase().as_str(), stop);
        w.plan = None;
        w.run(None, 10);
        assert_eq!(w.cordoned_by, None, "deleted in {stop}");
        assert!(!w.holds(), "deleted in {stop}");
        assert!(w.nu.is_none(), "deleted in {stop}");
    }
}

#[test]
fn lost_lease_while_draining_goes_back_to_waiting() {
    let mut w = World::new();
    w.pdb_blocked.insert("db-0".into());
    for _ in 0..4 {
        for a in decide(&w.observe()) {
            w.apply(&a);
        }
    }
    assert_eq!(w.phase(), Phase::Draining);
    // The lease expired and another node took it.
    for l in &mut w.leases {
        if l.as_deref() == Some(NODE) {
            *l = Some("thief".into());
        }
    }
    w.leases[1] = Some("thief2".into());
    w.lease_stolen = true;
    let acts = decide(&w.observe());
    assert!(acts.contains(&Action::Uncordon), "{acts:?}");
    for a in &acts {
        w.apply(a);
    }
    assert_eq!(w.phase(), Phase::Waiting);
    assert_eq!(w.cordoned_by, None);
}

#[test]
fn already_at_target_succeeds_without_a_lease_or_cordon() {
    let mut w = World::new();
    w.node = FakeNode::new("2");
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.actions_done, 2, "create + one status write");
    assert_eq!(w.node.stages, 0);
}

#[test]
fn new_plan_version_starts_again_and_admin_cordon_is_left_alone() {
    let mut w = World::new();
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
    w.plan = Some(plan("3"));
    w.pods = vec![pod("web-2")];
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.node.facts().version, "3");
    assert_eq!(w.status().attempts, 1, "attempts count per target");
    // A node an operator cordoned by hand carries no annotation: nothing uncordons it.
    let o = Observed {
        node: NodeView {
            ready: true,
            cordoned_by: None,
        },
        ..w.observe()
    };
    assert!(!decide(&o).contains(&Action::Uncordon));
}

#[test]
fn unhealthy_after_reboot_fails_after_the_verify_timeout() {
    let mut w = World::new();
    w.ready = false;
    w.run(None, 200);
    assert_eq!(w.phase(), Phase::Failed);
    let e = w.status().last_error.clone().unwrap();
    assert!(e.contains("not healthy within 600s"), "{e}");
    assert!(w.node.running_on_trial, "never marked good");
    assert_eq!(w.cordoned_by, None);
    assert!(!w.holds());
}

#[test]
fn version_bump_mid_drain_restarts_but_not_mid_reboot() {
    let mut w = World::new();
    w.pdb_blocked.insert("db-0".into());
    for _ in 0..4 {
        for a in decide(&w.observe()) {
            w.apply(&a);
        }
    }
    assert_eq!(w.phase(), Phase::Draining);
    w.plan = Some(plan("3"));
    for a in decide(&w.observe()) {
        w.apply(&a);
    }
    assert_eq!(w.phase(), Phase::Pending);
    assert_eq!(w.nu.as_ref().unwrap().target, "3");
    assert_eq!(w.cordoned_by, None);

    let mut w = World::new();
    for _ in 0..100 {
        if w.phase() == Phase::Verifying {
            break;
        }
        for a in decide(&w.observe()) {
            w.apply(&a);
        }
    }
    w.plan = Some(plan("3"));
    let acts = decide(&w.observe());
    assert!(
        !acts.iter().any(|a| matches!(a, Action::SetSpec { .. })),
        "{acts:?}"
    );
}

#[test]
fn retry_after_rollback_arms_the_slot_already_staged() {
    let mut w = World::new();
    w.node.broken.push("2".into());
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::RolledBack);
    assert_eq!(w.node.facts().staged.as_deref(), Some("2"));
    assert_eq!(w.node.facts().trial_armed, None);
    // The cause is fixed and the operator deletes the NodeUpgrade to try again.
    w.node.broken.clear();
    w.nu = None;
    w.pods = vec![pod("web-3")];
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.node.facts().version, "2");
    assert_eq!(w.node.stages, 1, "the staged slot was reused");
    assert!(w.node.calls.contains(&"flip 2".to_string()));
    assert_eq!(w.node.reboots, 2);
}

#[test]
fn staging_a_node_already_on_target_succeeds_instead_of_staging_forever() {
    let mut w = World::new();
    // Run up to Staging, then the node gets the target by other means (an operator's
    // `rkos upgrade` and reboot) before the agent's next pass.
    while w.phase() != Phase::Staging {
        let actions = decide(&w.observe());
        for a in &actions {
            if !w.apply(a) {
                break;
            }
        }
        w.now += 5;
    }
    w.node.slots = [Some("1".into()), Some("2".into())];
    w.node.active = 1;
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.node.stages, 0);
    assert_eq!(w.cordoned_by, None);
    assert!(!w.holds());
}
