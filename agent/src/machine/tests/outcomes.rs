//! What follows an action's outcome ([`after`]), and whether a running node action goes on
//! ([`while_running`]).

use super::transitions::{assert_finished, at, release_2, stage, written};
use super::*;

#[test]
fn a_finished_download_adds_its_bytes_to_the_status() {
    let mut o = at(Phase::Staging);
    o.nu.as_mut().unwrap().status.bytes_downloaded = 100;
    let acts = after(&o, &Outcome::Staged { bytes: 23 });
    assert_eq!(acts.len(), 1);
    let s = written(&acts);
    assert_eq!((s.phase, s.bytes_downloaded), (Phase::Staging, 123));
}

#[test]
fn a_failed_stage_or_flip_finishes_the_attempt_failed() {
    let o = at(Phase::Staging);
    let acts = after(&o, &Outcome::StageFailed("wrong key".into()));
    assert_finished(&acts, Phase::Failed, Some("staging 2 failed: wrong key"));
    let s = written(&acts);
    assert_eq!(
        (s.current_version.as_deref(), s.slot.as_deref()),
        (Some("1"), Some("A"))
    );
    let acts = after(&o, &Outcome::FlipFailed("slot B is damaged".into()));
    assert_finished(
        &acts,
        Phase::Failed,
        Some("arming the trial boot of 2 failed: slot B is damaged"),
    );
}

#[test]
fn an_eviction_refusal_is_recorded_once() {
    let mut o = at(Phase::Draining);
    let why = Outcome::EvictionRefused("eviction of pod default/db-0 refused: pdb".into());
    let acts = after(&o, &why);
    let s = written(&acts).clone();
    assert_eq!(s.phase, Phase::Draining);
    assert_eq!(
        s.drain_blocker.as_deref(),
        Some("eviction of pod default/db-0 refused: pdb")
    );
    o.nu.as_mut().unwrap().status = s;
    assert_eq!(after(&o, &why), []);
}

#[test]
fn outcomes_without_a_plan_or_nodeupgrade_do_nothing() {
    let mut o = at(Phase::Staging);
    o.plan = None;
    assert_eq!(after(&o, &Outcome::StageFailed("x".into())), []);
    let mut o = at(Phase::Staging);
    o.nu = None;
    assert_eq!(after(&o, &Outcome::Staged { bytes: 1 }), []);
}

#[test]
fn a_stage_goes_on_while_asked_for_renewing_the_lease_meanwhile() {
    let mut o = at(Phase::Staging);
    assert_eq!(while_running(&o, &stage()), Some(vec![]));
    o.now += o.lease_seconds / 3;
    assert_eq!(
        while_running(&o, &stage()),
        Some(vec![Action::RenewLease { plan: "p".into() }])
    );
}

#[test]
fn a_stage_is_cancelled_when_the_plan_goes_or_moves_on() {
    let mut gone = at(Phase::Staging);
    gone.plan = None;
    assert_eq!(while_running(&gone, &stage()), None);
    let mut moved = at(Phase::Staging);
    moved.plan.as_mut().unwrap().release.version = "3".into();
    assert_eq!(while_running(&moved, &stage()), None);
    let mut elsewhere = at(Phase::Staging);
    elsewhere.plan.as_mut().unwrap().release.bundle_url = "http://127.0.0.1/other".into();
    assert_eq!(while_running(&elsewhere, &stage()), None);
    // The plan stopped allowing what the running stage was allowed to do.
    let mut allowing = at(Phase::Staging);
    allowing.plan.as_mut().unwrap().release.allow_downgrade = true;
    let allowed = Action::Stage(Release {
        allow_downgrade: true,
        ..release_2()
    });
    assert!(while_running(&allowing, &allowed).is_some());
    assert_eq!(while_running(&at(Phase::Staging), &allowed), None);
}
