//! The leases in the machine: which may be taken, when they are renewed, and what a lease
//! that lapsed in flight means (for the node itself and for the rollout's failure count).

use super::transitions::{assert_finished, at, held, rebooting, release, verifying, written};
use super::*;

#[test]
fn free_leases_are_missing_holderless_or_expired_within_concurrency() {
    let mut o = at(Phase::Waiting);
    o.plan.as_mut().unwrap().concurrency = 4;
    let lease = |i: u32, holder: Option<&str>, renewed: i64| LeaseView {
        name: lease_name("p", i),
        plan: "p".into(),
        holder: holder.map(String::from),
        renewed,
        duration_seconds: 60,
    };
    o.leases = vec![
        lease(0, Some("n2"), o.now - 60),
        lease(1, Some("n3"), o.now - 61),
        lease(2, None, o.now),
        lease(5, None, o.now),
    ];
    assert_eq!(
        decide(&o),
        [Action::AcquireLease {
            plan: "p".into(),
            indices: vec![1, 2, 3]
        }]
    );
}

#[test]
fn leases_are_renewed_once_a_third_of_their_duration_passed() {
    let renew = Action::RenewLease { plan: "p".into() };
    let mut unhealthy = verifying();
    unhealthy.node_health.k3s_unit = Seen::Fails("k3s.service is not active".into());
    unhealthy.verify_timeout_seconds = 3600;
    for mut o in [at(Phase::Draining), at(Phase::Staging), unhealthy] {
        let phase = o.nu.as_ref().unwrap().status.phase;
        o.now += o.lease_seconds / 3 - 1;
        assert!(!decide(&o).contains(&renew), "{phase:?}");
        o.now += 1;
        assert_eq!(decide(&o).first(), Some(&renew), "{phase:?}");
    }
    // Not in a pass that gives the lease back: the release is made at the version observed.
    let mut o = verifying();
    o.facts.running_on_trial = false;
    o.now += o.lease_seconds;
    let acts = decide(&o);
    assert!(!acts.contains(&renew), "{acts:?}");
    assert_finished(&acts, Phase::Succeeded, None);
}

#[test]
fn failures_count_failed_and_rolled_back_nodes_of_the_current_version() {
    let mut o = at(Phase::Waiting);
    o.peers = vec![
        peer("a", Phase::Failed, "2"),
        peer("b", Phase::RolledBack, "2"),
        peer("c", Phase::Failed, "1"),
        peer("d", Phase::Succeeded, "2"),
        peer("e", Phase::Staging, "2"),
        peer("f", Phase::Draining, "2"),
    ];
    o.leases = vec![held(&o, 0, "e")];
    assert_eq!(o.failures(o.plan.as_ref().unwrap()), 2);
}

#[test]
fn a_node_past_its_drain_whose_lease_lapsed_counts_as_failed() {
    let mut o = at(Phase::Waiting);
    o.peers = vec![peer("e", Phase::Rebooting, "2")];
    let plan = o.plan.clone().unwrap();
    o.leases = vec![held(&o, 0, "e")];
    assert_eq!(o.failures(&plan), 0);
    assert_eq!(o.counted_phase("p", &o.peers[0]), Phase::Rebooting);
    // Not renewed for longer than its duration (a node that never came back).
    o.now += o.lease_seconds + 1;
    assert_eq!(o.counted_phase("p", &o.peers[0]), Phase::Failed);
    assert_eq!(o.failures(&plan), 1);
    for phase in [Phase::Staging, Phase::Verifying] {
        o.peers[0].phase = phase;
        assert_eq!(o.failures(&plan), 1, "{phase:?}");
    }
    // Draining: nothing was touched yet, the node only goes back to waiting.
    o.peers[0].phase = Phase::Draining;
    assert_eq!(o.failures(&plan), 0);
    // An old target does not count against the current version.
    o.peers[0] = peer("e", Phase::Rebooting, "1");
    assert_eq!(o.failures(&plan), 0);
}

#[test]
fn the_lease_of_a_rebooting_or_verifying_node_is_never_taken_over() {
    let mut o = at(Phase::Waiting);
    o.plan.as_mut().unwrap().concurrency = 1;
    o.plan.as_mut().unwrap().max_failures = 5;
    o.leases = vec![held(&o, 0, "e")];
    o.now += o.lease_seconds + 1;
    for (phase, free) in [
        (Phase::Rebooting, false),
        (Phase::Verifying, false),
        (Phase::Staging, true),
        (Phase::Draining, true),
    ] {
        o.peers = vec![peer("e", phase, "2")];
        let acquire = decide(&o)
            .iter()
            .any(|a| matches!(a, Action::AcquireLease { .. }));
        assert_eq!(acquire, free, "holder {phase:?}");
    }
    // A holder with no NodeUpgrade of the plan any more (deleted by an operator): free.
    o.peers.clear();
    assert_eq!(
        decide(&o),
        [Action::AcquireLease {
            plan: "p".into(),
            indices: vec![0]
        }]
    );
}

/// `o` with its own lease expired, or taken over by n2 after it expired.
fn without_a_live_lease(o: &Observed) -> [Observed; 2] {
    let mut expired = o.clone();
    expired.leases[0].renewed -= o.lease_seconds + 1;
    let mut taken = o.clone();
    taken.leases = vec![held(o, 0, "n2")];
    [expired, taken]
}

#[test]
fn staging_rebooting_or_verifying_without_a_live_lease_fails() {
    let mut unhealthy = verifying();
    unhealthy.node_health.k3s_unit = Seen::Fails("k3s.service is not active".into());
    for o in [at(Phase::Staging), rebooting(), verifying(), unhealthy] {
        let phase = o.nu.as_ref().unwrap().status.phase;
        for o in without_a_live_lease(&o) {
            let acts = decide(&o);
            assert!(
                !acts
                    .iter()
                    .any(|a| matches!(a, Action::Stage(_) | Action::Reboot | Action::MarkGood)),
                "{phase:?}: {acts:?}"
            );
            assert_eq!(acts[0], Action::Uncordon, "{phase:?}");
            let s = written(&acts);
            assert_eq!(s.phase, Phase::Failed, "{phase:?}");
            let lost = format!(
                "lost the rollout lease while {}",
                phase.as_str().to_lowercase()
            );
            assert!(
                s.last_error.as_ref().unwrap().contains(&lost),
                "{:?}",
                s.last_error
            );
            // Given back only if still its own (released at the version observed).
            let own = o.leases[0].holder.as_deref() == Some(NODE);
            assert_eq!(acts.last() == Some(&release()), own, "{phase:?}");
        }
    }
    // On trial, the message says what becomes of the slot.
    let [o, _] = without_a_live_lease(&verifying());
    let s = written(&decide(&o)).clone();
    assert!(s.last_error.unwrap().contains("the slot stays on trial"));
}

#[test]
fn a_rollback_is_reported_as_such_even_with_the_lease_lapsed() {
    let mut back = rebooting();
    back.facts.boot_id = "boot-4".into();
    back.facts.trial_armed = None;
    let mut old = verifying();
    old.facts.version = "1".into();
    for o in [back, old] {
        for o in without_a_live_lease(&o) {
            assert_eq!(written(&decide(&o)).phase, Phase::RolledBack);
        }
    }
}

#[test]
fn draining_with_its_lease_expired_but_still_its_own_renews_it() {
    let mut o = at(Phase::Draining);
    o.drain.evict = vec![pod("web-1")];
    let [expired, _] = without_a_live_lease(&o);
    assert_eq!(
        decide(&expired),
        [
            Action::RenewLease { plan: "p".into() },
            Action::Evict(vec![pod("web-1")])
        ]
    );
}

#[test]
fn every_reboot_request_renews_the_lease_first() {
    // Even when not due: the whole lease then covers the trial.
    let o = rebooting();
    assert!(o.now - o.leases[0].renewed < o.lease_seconds / 3);
    assert_eq!(
        decide(&o),
        [Action::RenewLease { plan: "p".into() }, Action::Reboot]
    );
}
