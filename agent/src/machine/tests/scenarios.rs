//! Whole rollouts of one node against the simulated cluster, with agent restarts.

use super::*;

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
        w.run_until(stop);
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
    w.ended(
        Phase::Failed,
        &[
            "drain timed out after 60s",
            "default/db-0",
            "PodDisruptionBudget db-0-pdb",
        ],
    );
    assert_eq!(w.node.stages, 0, "nothing staged");
    assert_eq!(w.node.facts().version, "1");
}

#[test]
fn unevictable_pod_fails_at_once() {
    let mut w = World::new();
    w.refused
        .push("pod default/bare is not managed by a controller".into());
    w.run(None, 100);
    w.ended(Phase::Failed, &["drain refused"]);
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
        w.ended(Phase::RolledBack, &["never marked good"]);
        assert_eq!(w.node.facts().version, "1");
        assert_eq!(w.node.reboots, 1, "crash at {crash}");
    }
}

/// A node on 2 and a plan back to 1: the node refuses the downgrade itself, the attempt
/// fails with its message before anything is written; the plan's allowDowngrade lifts it.
#[test]
fn a_downgrade_fails_on_the_node_unless_the_plan_allows_it() {
    let back_to_1 = || {
        let mut w = World::new();
        w.node = FakeNode::new("2");
        w.plan = Some(plan("1"));
        w
    };
    let mut w = back_to_1();
    w.run(None, 100);
    w.ended(
        Phase::Failed,
        &[
            "staging 1 failed",
            "the bundle's version 1 is lower than the running 2",
            "refusing a downgrade",
            "allowDowngrade in the upgrade plan",
        ],
    );
    assert_eq!(w.node.slots, [Some("2".into()), None], "nothing written");
    assert_eq!((w.node.stages, w.node.reboots), (1, 0));
    assert_eq!(w.node.facts().trial_armed, None);

    let mut w = back_to_1();
    w.plan.as_mut().unwrap().release.allow_downgrade = true;
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded, "{:?}", w.status().last_error);
    assert_eq!(w.node.facts().version, "1");
    assert!(!w.node.running_on_trial, "slot marked good");
    assert_eq!((w.node.stages, w.node.reboots), (1, 1));
}

#[test]
fn stage_failure_fails_and_releases() {
    let mut w = World::new();
    w.node.fail_stage = Some("signature verification failed: wrong key".into());
    w.run(None, 100);
    w.ended(Phase::Failed, &["staging 2 failed", "wrong key"]);
    assert_eq!(w.node.facts().version, "1");
}

#[test]
fn no_free_lease_means_waiting_uncordoned() {
    let mut w = World::new();
    w.leases = vec![Some("other-a".into()), Some("other-b".into())];
    for _ in 0..10 {
        w.pass(None);
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
    w.others.push(peer("n2", Phase::RolledBack, "2"));
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
        w.run_until(stop);
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
    w.run_until("Draining");
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
    w.pass(None);
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
    let mut o = w.observe();
    o.node.unschedulable = true;
    o.node.cordoned_by = None;
    assert!(!decide(&o).contains(&Action::Uncordon));
}

#[test]
fn unhealthy_after_reboot_fails_after_the_verify_timeout() {
    let mut w = World::new();
    w.ready = false;
    w.run(None, 200);
    w.ended(Phase::Failed, &["not healthy within 600s"]);
    assert!(w.node.running_on_trial, "never marked good");
}

#[test]
fn version_bump_mid_drain_restarts_but_not_mid_reboot() {
    let mut w = World::new();
    w.pdb_blocked.insert("db-0".into());
    w.run_until("Draining");
    w.plan = Some(plan("3"));
    w.pass(None);
    assert_eq!(w.phase(), Phase::Pending);
    assert_eq!(w.nu.as_ref().unwrap().target, "3");
    assert_eq!(w.cordoned_by, None);

    let mut w = World::new();
    w.run_until("Verifying");
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
    w.run_until("Staging");
    w.node.slots = [Some("1".into()), Some("2".into())];
    w.node.active = 1;
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.node.stages, 0);
    assert_eq!(w.cordoned_by, None);
    assert!(!w.holds());
}

#[test]
fn a_trial_as_slow_as_the_worst_case_keeps_its_lease() {
    for broken in [false, true] {
        let mut w = World::new();
        w.reboot_takes = i64::from(WORST_CASE_TRIAL_SECONDS);
        if broken {
            w.node.broken.push("2".into());
        }
        w.run(None, 100);
        let want = if broken {
            Phase::RolledBack
        } else {
            Phase::Succeeded
        };
        assert_eq!(w.phase(), want, "{:?}", w.status().last_error);
        assert!(!w.holds() && w.cordoned_by.is_none());
    }
}

#[test]
fn a_node_back_after_its_lease_lapsed_fails_without_marking_the_slot_good() {
    let mut w = World::new();
    w.reboot_takes = i64::from(DEFAULT_LEASE_SECONDS) + 1;
    w.run(None, 100);
    w.ended(Phase::Failed, &["lost the rollout lease while rebooting"]);
    assert!(w.node.running_on_trial, "never marked good");
}

#[test]
fn a_node_that_never_returns_stops_the_rollout() {
    // n2 took the only lease, asked for its reboot and was never seen again.
    let mut w = World::new();
    w.plan.as_mut().unwrap().concurrency = 1;
    w.leases = vec![Some("n2".into())];
    w.renewed = vec![w.now];
    w.others.push(peer("n2", Phase::Rebooting, "2"));
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Waiting);
    assert!(
        w.status().conditions.is_empty(),
        "just waiting for the lease"
    );
    // Its lease lapses: n2 counts as failed, and its place is not taken.
    w.now += i64::from(DEFAULT_LEASE_SECONDS) + 1;
    w.run(None, 10);
    assert_eq!(w.phase(), Phase::Waiting);
    let c = &w.status().conditions[0];
    assert_eq!(c.reason, "RolloutStopped", "{}", c.message);
    assert_eq!(w.leases, [Some("n2".to_string())]);
    assert_eq!(w.node.stages, 0);
    // An operator gives up on n2 and deletes its NodeUpgrade: the rollout goes on.
    w.others.clear();
    w.run(None, 100);
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn a_netboot_node_reboots_onto_what_the_farm_serves_at_every_crash_point() {
    let mut total = World::new();
    total.node = FakeNode::netbooted("1", "2");
    total.run(None, 100);
    let n = total.actions_done;
    for crash in 0..=n {
        let mut w = World::new();
        w.node = FakeNode::netbooted("1", "2");
        w.run(Some(crash), 100);
        assert_eq!(w.phase(), Phase::Succeeded, "crash at {crash}");
        assert_eq!(w.node.facts().version, "2", "crash at {crash}");
        assert_eq!(w.node.reboots, 1, "crash at {crash}: rebooted twice");
        assert!(
            !w.node
                .calls
                .iter()
                .any(|c| c.starts_with("flip") || c == "mark-good"),
            "crash at {crash}: slot commands on a netboot node: {:?}",
            w.node.calls
        );
        assert_eq!(w.cordoned_by, None, "crash at {crash}: left cordoned");
        assert!(!w.holds(), "crash at {crash}: lease kept");
        assert_eq!(w.status().slot.as_deref(), Some("netboot"));
    }
}

#[test]
fn a_farm_still_serving_the_old_build_rolls_the_netboot_node_back() {
    let mut w = World::new();
    w.node = FakeNode::netbooted("1", "1");
    w.run(None, 100);
    w.ended(
        Phase::RolledBack,
        &["rebooted into 2 but came back on 1", "netboot"],
    );
    assert_eq!((w.node.stages, w.node.reboots), (1, 1));
    assert_eq!(w.status().attempts, 1);
}
