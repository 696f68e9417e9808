//! Each transition of [`decide`] on its own: one observation, the actions it gives.

use super::*;

/// Node n1 of plan p (version 2, concurrency 2, maxFailures 1) with its NodeUpgrade in
/// `phase` since now, running 1 on slot A, nothing to drain; in flight it holds lease 0
/// (renewed now) and is cordoned by p.
pub(super) fn at(phase: Phase) -> Observed {
    let mut w = World::new();
    w.pods.clear();
    w.nu = Some(NuView {
        plan: "p".into(),
        target: "2".into(),
        status: NodeUpgradeStatus {
            phase,
            target_version: Some("2".into()),
            current_version: Some("1".into()),
            slot: Some("A".into()),
            phase_since: Some(ts(w.now).to_string()),
            ..Default::default()
        },
    });
    if phase.in_flight() {
        w.leases[0] = Some(NODE.into());
        w.cordoned_by = Some("p".into());
    }
    w.observe()
}

/// The status the actions write (the last one).
pub(super) fn written(actions: &[Action]) -> &NodeUpgradeStatus {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::SetStatus(s) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no status written: {actions:?}"))
}

/// Lease `i` of plan p held by `holder`, renewed now.
pub(super) fn held(o: &Observed, i: u32, holder: &str) -> LeaseView {
    LeaseView {
        name: lease_name("p", i),
        plan: "p".into(),
        holder: Some(holder.into()),
        renewed: o.now,
        duration_seconds: o.lease_seconds,
    }
}

pub(super) fn release() -> Action {
    Action::ReleaseLease { plan: "p".into() }
}

/// The actions that finish an attempt in `phase`, in their order.
pub(super) fn assert_finished(actions: &[Action], phase: Phase, error: Option<&str>) {
    assert_eq!(actions.first(), Some(&Action::Uncordon), "{actions:?}");
    assert_eq!(actions.last(), Some(&release()), "{actions:?}");
    let s = written(actions);
    assert_eq!(s.phase, phase);
    match error {
        Some(e) => assert!(
            s.last_error.as_deref().is_some_and(|l| l.contains(e)),
            "{:?} lacks {e:?}",
            s.last_error
        ),
        None => assert_eq!(s.last_error, None),
    }
}

/// The release the test plan asks for (`plan("2")`).
pub(super) fn release_2() -> Release {
    Release {
        bundle_url: "http://127.0.0.1/b".into(),
        version: "2".into(),
        allow_downgrade: false,
    }
}

pub(super) fn stage() -> Action {
    Action::Stage(release_2())
}

#[test]
fn no_plan_gives_back_cordon_nodeupgrade_and_leases_in_that_order() {
    let mut o = at(Phase::Staging);
    o.plan = None;
    assert_eq!(
        decide(&o),
        [Action::Uncordon, Action::DeleteNodeUpgrade, release()]
    );
}

#[test]
fn no_nodeupgrade_creates_one_after_giving_back_other_plans_leases() {
    let mut o = at(Phase::Pending);
    o.nu = None;
    o.leases = vec![LeaseView {
        plan: "old".into(),
        ..held(&o, 0, NODE)
    }];
    assert_eq!(
        decide(&o),
        [
            Action::ReleaseLease { plan: "old".into() },
            Action::CreateNodeUpgrade {
                plan: "p".into(),
                target: "2".into()
            }
        ]
    );
}

#[test]
fn another_plan_or_version_starts_over_from_pending() {
    for phase in [
        Phase::Waiting,
        Phase::Draining,
        Phase::Staging,
        Phase::Failed,
    ] {
        let mut o = at(phase);
        o.plan.as_mut().unwrap().release.version = "3".into();
        let acts = decide(&o);
        let from = usize::from(phase.in_flight());
        assert_eq!(acts[0] == Action::Uncordon, phase.in_flight(), "{phase:?}");
        assert_eq!(
            acts[from],
            Action::SetSpec {
                plan: "p".into(),
                target: "3".into()
            }
        );
        let s = written(&acts);
        assert_eq!(
            (s.phase, s.target_version.as_deref()),
            (Phase::Pending, Some("3"))
        );
        assert_eq!(s.attempts, 0, "attempts count per target");
    }
    let mut o = at(Phase::Waiting);
    o.nu.as_mut().unwrap().plan = "other".into();
    assert!(decide(&o)
        .iter()
        .any(|a| matches!(a, Action::SetSpec { .. })));
}

#[test]
fn a_new_version_waits_until_the_reboot_in_progress_is_over() {
    for phase in [Phase::Rebooting, Phase::Verifying] {
        let mut o = at(phase);
        o.plan.as_mut().unwrap().release.version = "3".into();
        let acts = decide(&o);
        assert!(
            !acts.iter().any(|a| matches!(a, Action::SetSpec { .. })),
            "{phase:?}: {acts:?}"
        );
    }
}

#[test]
fn pending_goes_to_waiting_or_straight_to_succeeded() {
    let acts = decide(&at(Phase::Pending));
    assert_eq!(acts.len(), 1);
    assert_eq!(written(&acts).phase, Phase::Waiting);
    let mut o = at(Phase::Pending);
    o.facts.version = "2".into();
    let s = written(&decide(&o)).clone();
    assert_eq!(
        (s.phase, s.current_version.as_deref()),
        (Phase::Succeeded, Some("2"))
    );
}

#[test]
fn succeeded_running_another_version_again_goes_back_to_pending() {
    let mut o = at(Phase::Succeeded);
    o.facts.version = "2".into();
    assert_eq!(written(&decide(&o)).phase, Phase::Succeeded);
    o.facts.version = "1".into();
    assert_eq!(written(&decide(&o)).phase, Phase::Pending);
}

#[test]
fn at_rest_a_lease_or_cordon_left_by_a_crash_is_given_back() {
    for phase in [
        Phase::Pending,
        Phase::Succeeded,
        Phase::Failed,
        Phase::RolledBack,
    ] {
        let mut o = at(Phase::Draining);
        o.nu.as_mut().unwrap().status.phase = phase;
        let acts = decide(&o);
        assert_eq!(acts[..2], [Action::Uncordon, release()], "{phase:?}");
        if phase.is_failure() {
            assert_eq!(written(&acts).phase, phase, "final");
        }
    }
}

#[test]
fn waiting_on_the_target_already_succeeds() {
    let mut o = at(Phase::Waiting);
    o.facts.version = "2".into();
    let acts = decide(&o);
    assert_eq!(acts.len(), 1, "no lease, no cordon: {acts:?}");
    assert_eq!(written(&acts).phase, Phase::Succeeded);
}

#[test]
fn waiting_blocked_says_why_and_gives_back_a_lease_taken_meanwhile() {
    fn window(days: &[&str], zone: &str) -> WindowSpec {
        WindowSpec {
            days: days.iter().map(|d| d.to_string()).collect(),
            start_time: "01:00".into(),
            end_time: "03:00".into(),
            time_zone: zone.into(),
        }
    }
    // 2024-01-01 00:00 UTC is a Monday.
    type Block = fn(&mut Observed);
    let cases: [(&str, Block); 4] = [
        ("Paused", |o| o.plan.as_mut().unwrap().paused = true),
        ("RolloutStopped", |o| {
            o.peers.push(peer("n2", Phase::Failed, "2"))
        }),
        ("OutsideWindow", |o| {
            o.plan.as_mut().unwrap().window = Some(window(&["tue"], "UTC"))
        }),
        ("BadWindow", |o| {
            o.plan.as_mut().unwrap().window = Some(window(&[], "Europe/Paris"))
        }),
    ];
    for (reason, block) in cases {
        let mut o = at(Phase::Waiting);
        block(&mut o);
        let acts = decide(&o);
        assert_eq!(acts.len(), 1, "{reason}: {acts:?}");
        let s = written(&acts);
        assert_eq!(
            (s.phase, s.conditions[0].reason.as_str()),
            (Phase::Waiting, reason)
        );
        // The same again writes the same condition (its time kept): nothing changes.
        let mut again = o.clone();
        again.nu.as_mut().unwrap().status = s.clone();
        again.now += 60;
        assert_eq!(written(&decide(&again)), s, "{reason}");
        // Holding a lease (taken before the block was seen): given back, cordon first.
        let mut held = o.clone();
        held.leases = vec![self::held(&held, 0, NODE)];
        held.node.cordoned_by = Some("p".into());
        let acts = decide(&held);
        assert_eq!(acts[..2], [Action::Uncordon, release()], "{reason}");
    }
}

#[test]
fn a_lease_taken_as_the_rollout_stopped_is_given_back_on_the_next_look() {
    // The previous holder wrote RolledBack, then released the lease this node just took: the
    // pass after AcquireLease sees the failure and gives the lease back without cordoning.
    let mut o = at(Phase::Waiting);
    o.leases = vec![held(&o, 0, NODE)];
    o.peers.push(peer("n2", Phase::RolledBack, "2"));
    let acts = decide(&o);
    assert_eq!(acts[0], release());
    assert!(!acts.iter().any(|a| matches!(a, Action::Cordon { .. })));
    assert_eq!(written(&acts).phase, Phase::Waiting);
}

#[test]
fn waiting_without_a_lease_asks_for_the_free_ones_and_nothing_more() {
    let mut o = at(Phase::Waiting);
    o.leases = vec![held(&o, 0, "n2")];
    assert_eq!(
        decide(&o),
        [Action::AcquireLease {
            plan: "p".into(),
            indices: vec![1]
        }]
    );
    // None free: nothing to do but wait.
    o.leases.push(held(&o, 1, "n3"));
    assert_eq!(decide(&o), []);
}

#[test]
fn waiting_with_a_lease_cordons_and_starts_draining() {
    let mut o = at(Phase::Waiting);
    o.leases = vec![held(&o, 0, NODE)];
    let st = &mut o.nu.as_mut().unwrap().status;
    st.attempts = 1;
    st.last_error = Some("lost the rollout lease while draining; waiting again".into());
    st.drain_blocker = Some("old".into());
    let acts = decide(&o);
    assert_eq!(acts[0], Action::Cordon { plan: "p".into() });
    let s = written(&acts);
    assert_eq!((s.phase, s.attempts), (Phase::Draining, 2));
    assert_eq!(s.from_version.as_deref(), Some("1"));
    assert_eq!((&s.last_error, &s.drain_blocker), (&None, &None));
}

#[test]
fn a_node_someone_else_cordoned_is_never_cordoned_or_uncordoned() {
    let mut o = at(Phase::Waiting);
    o.leases = vec![held(&o, 0, NODE)];
    o.node.unschedulable = true;
    let acts = decide(&o);
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(written(&acts).phase, Phase::Draining);
    let mut o = at(Phase::Verifying);
    o.node.cordoned_by = None;
    o.facts.version = "2".into();
    assert!(!decide(&o).contains(&Action::Uncordon));
    // A cordon of another plan is the agent's: taken back, then made for this plan.
    let mut o = at(Phase::Draining);
    o.node.cordoned_by = Some("old".into());
    let acts = decide(&o);
    assert_eq!(
        acts[..2],
        [Action::Uncordon, Action::Cordon { plan: "p".into() }]
    );
}

#[test]
fn draining_without_the_lease_goes_back_to_waiting_uncordoned() {
    let mut o = at(Phase::Draining);
    o.leases = vec![held(&o, 0, "n2")];
    let acts = decide(&o);
    assert_eq!(acts[0], Action::Uncordon);
    let s = written(&acts);
    assert_eq!(s.phase, Phase::Waiting);
    assert!(s
        .last_error
        .as_ref()
        .unwrap()
        .contains("lost the rollout lease"));
}

#[test]
fn draining_an_unevictable_pod_fails_at_once() {
    let mut o = at(Phase::Draining);
    o.drain.refused = vec!["pod default/bare is not managed by a controller".into()];
    o.drain.evict = vec![pod("web-1")];
    assert_finished(
        &decide(&o),
        Phase::Failed,
        Some("drain refused: pod default/bare"),
    );
}

#[test]
fn draining_done_goes_to_staging() {
    let acts = decide(&at(Phase::Draining));
    assert_eq!(acts.len(), 1);
    assert_eq!(written(&acts).phase, Phase::Staging);
}

#[test]
fn draining_evicts_what_is_left_until_the_timeout() {
    let mut o = at(Phase::Draining);
    o.drain.evict = vec![pod("web-1")];
    o.drain.waiting = vec![pod("dying")];
    o.now += 60;
    assert_eq!(decide(&o), [Action::Evict(vec![pod("web-1")])]);
    // Strictly past the timeout: failed, naming the pods (or the last refusal).
    o.now += 1;
    assert_finished(
        &decide(&o),
        Phase::Failed,
        Some("drain timed out after 60s: pods still on the node: default/web-1, default/dying"),
    );
    o.nu.as_mut().unwrap().status.drain_blocker = Some("eviction of pod x refused".into());
    assert_finished(
        &decide(&o),
        Phase::Failed,
        Some("60s: eviction of pod x refused"),
    );
}

#[test]
fn staging_on_the_target_already_succeeds() {
    let mut o = at(Phase::Staging);
    o.facts.version = "2".into();
    assert_finished(&decide(&o), Phase::Succeeded, None);
}

#[test]
fn staging_stages_flips_or_moves_on_to_rebooting() {
    assert_eq!(decide(&at(Phase::Staging)), [stage()]);
    let mut o = at(Phase::Staging);
    o.facts.staged = Some("2".into());
    assert_eq!(decide(&o), [Action::Flip(release_2())]);
    // The plan's allowDowngrade goes with the release, to staging and arming alike.
    let mut allowing = o.clone();
    allowing.plan.as_mut().unwrap().release.allow_downgrade = true;
    let allowed = Release {
        allow_downgrade: true,
        ..release_2()
    };
    assert_eq!(decide(&allowing), [Action::Flip(allowed.clone())]);
    allowing.facts.staged = None;
    assert_eq!(decide(&allowing), [Action::Stage(allowed)]);
    o.facts.trial_armed = Some("2".into());
    o.facts.boot_id = "boot-1".into();
    let acts = decide(&o);
    let s = written(&acts);
    assert_eq!(
        (s.phase, s.boot_id.as_deref()),
        (Phase::Rebooting, Some("boot-1"))
    );
}

/// In Rebooting after the reboot was asked for in boot `boot-1`.
pub(super) fn rebooting() -> Observed {
    let mut o = at(Phase::Rebooting);
    o.nu.as_mut().unwrap().status.boot_id = Some("boot-1".into());
    o.facts.boot_id = "boot-1".into();
    o.facts.staged = Some("2".into());
    o.facts.trial_armed = Some("2".into());
    o
}

#[test]
fn rebooting_in_the_same_boot_with_the_trial_armed_reboots() {
    let acts = decide(&rebooting());
    assert_eq!(acts.last(), Some(&Action::Reboot));
}

#[test]
fn rebooting_in_the_same_boot_on_the_target_verifies() {
    // E.g. booted into the target by hand, and the boot id unrecorded.
    let mut o = rebooting();
    o.nu.as_mut().unwrap().status.boot_id = None;
    o.facts.trial_armed = None;
    o.facts.version = "2".into();
    assert_eq!(written(&decide(&o)).phase, Phase::Verifying);
}

#[test]
fn rebooting_in_the_same_boot_with_the_trial_gone_fails() {
    let mut o = rebooting();
    o.facts.trial_armed = None;
    assert_finished(&decide(&o), Phase::Failed, Some("no longer armed"));
}

#[test]
fn rebooting_into_the_target_verifies_with_the_new_slot() {
    let mut o = rebooting();
    o.facts = NodeFacts {
        version: "2".into(),
        slot: Slot::B.into(),
        boot_id: "boot-2".into(),
        staged: None,
        trial_armed: None,
        running_on_trial: true,
        rolled_back: None,
    };
    let s = written(&decide(&o)).clone();
    assert_eq!(s.phase, Phase::Verifying);
    assert_eq!(
        (s.current_version.as_deref(), s.slot.as_deref()),
        (Some("2"), Some("B"))
    );
}

#[test]
fn rebooting_back_on_the_old_version_rolled_back_with_grubs_reason() {
    let mut o = rebooting();
    o.facts.boot_id = "boot-4".into();
    o.facts.trial_armed = None;
    o.facts.rolled_back = Some("slot B (2) was never marked good".into());
    assert_finished(&decide(&o), Phase::RolledBack, Some("never marked good"));
    o.facts.rolled_back = None;
    assert_finished(
        &decide(&o),
        Phase::RolledBack,
        Some("rebooted into 2 but came back on 1 (slot A)"),
    );
}

/// Verifying on the target, on trial, node Ready and k3s up.
pub(super) fn verifying() -> Observed {
    let mut o = at(Phase::Verifying);
    o.facts.version = "2".into();
    o.facts.slot = Slot::B.into();
    o.facts.running_on_trial = true;
    o
}

#[test]
fn verifying_back_on_another_version_rolled_back() {
    let mut o = verifying();
    o.facts.version = "1".into();
    assert_finished(&decide(&o), Phase::RolledBack, Some("came back on 1"));
}

#[test]
fn verifying_healthy_on_trial_marks_the_slot_good() {
    assert_eq!(decide(&verifying()), [Action::MarkGood]);
}

#[test]
fn verifying_healthy_and_marked_good_succeeds() {
    let mut o = verifying();
    o.facts.running_on_trial = false;
    assert_finished(&decide(&o), Phase::Succeeded, None);
}

#[test]
fn verifying_waits_for_health_until_the_timeout_then_fails() {
    for (unhealthy, why) in [
        (
            (|o: &mut Observed| {
                o.node_health.k3s_unit = Seen::Fails("k3s.service is not active".into())
            }) as fn(&mut Observed),
            "not healthy within 600s (k3s.service is not active)",
        ),
        (
            |o| o.node.ready = false,
            "not healthy within 600s (the Node is not Ready)",
        ),
    ] {
        let mut o = verifying();
        unhealthy(&mut o);
        o.now += 600;
        o.leases[0].renewed = o.now;
        assert_eq!(decide(&o), []);
        o.now += 1;
        assert_finished(&decide(&o), Phase::Failed, Some(why));
    }
}
