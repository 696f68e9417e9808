//! The state machine's tests: `transitions` checks each transition on its own, `leases` the
//! lease rules, `outcomes` what follows an action's outcome, and `scenarios` runs whole
//! rollouts against the simulated node and cluster below, where every action is applied to
//! the simulation and an agent "restart" drops the rest of a pass at any point.

use std::collections::BTreeSet;

use super::*;
use crate::lease::{lease_name, DEFAULT_LEASE_SECONDS, WORST_CASE_TRIAL_SECONDS};
use crate::nodeops::FakeNode;
use rkos_slots::health::Seen;
use rkos_slots::Slot;

mod leases;
mod outcomes;
mod scenarios;
mod transitions;

const NODE: &str = "n1";

/// One node, its plan, a pool of leases shared with other (simulated) holders.
struct World {
    now: i64,
    plan: Option<PlanView>,
    nu: Option<NuView>,
    cordoned_by: Option<String>,
    /// Lease holders per index, and when each was last renewed.
    leases: Vec<Option<String>>,
    renewed: Vec<i64>,
    /// The plan's other NodeUpgrades.
    others: Vec<PeerView>,
    pods: Vec<PodRef>,
    /// Pods whose eviction a PDB refuses.
    pdb_blocked: BTreeSet<String>,
    refused: Vec<String>,
    ready: bool,
    node: FakeNode,
    phases_seen: BTreeSet<&'static str>,
    actions_done: usize,
    /// Set by tests that take a lease away behind the agent's back (expiry).
    lease_stolen: bool,
    /// How long the node is away after a reboot request (its agent with it).
    reboot_takes: i64,
}

fn plan(version: &str) -> PlanView {
    PlanView {
        name: "p".into(),
        release: Release {
            bundle_url: "http://127.0.0.1/b".into(),
            version: version.into(),
            allow_downgrade: false,
        },
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

fn peer(node: &str, phase: Phase, target: &str) -> PeerView {
    PeerView {
        node: node.into(),
        phase,
        target: target.into(),
    }
}

impl World {
    fn new() -> Self {
        let now = 1_704_067_200;
        World {
            now,
            plan: Some(plan("2")),
            nu: None,
            cordoned_by: None,
            leases: vec![None, None],
            renewed: vec![now, now],
            others: Vec::new(),
            pods: vec![pod("web-1"), pod("db-0")],
            pdb_blocked: BTreeSet::new(),
            refused: Vec::new(),
            ready: true,
            node: FakeNode::new("1"),
            phases_seen: BTreeSet::new(),
            actions_done: 0,
            lease_stolen: false,
            reboot_takes: 0,
        }
    }

    fn observe(&self) -> Observed {
        let lease_seconds = i64::from(DEFAULT_LEASE_SECONDS);
        let leases = self
            .leases
            .iter()
            .zip(&self.renewed)
            .enumerate()
            .filter(|(_, (holder, _))| holder.is_some())
            .map(|(i, (holder, renewed))| LeaseView {
                name: lease_name("p", i as u32),
                plan: "p".into(),
                holder: holder.clone(),
                renewed: *renewed,
                duration_seconds: lease_seconds,
            })
            .collect();
        let mut peers = self.others.clone();
        if let Some(nu) = &self.nu {
            peers.push(peer(NODE, nu.status.phase, &nu.target));
        }
        Observed {
            now: self.now,
            plan: self.plan.clone(),
            nu: self.nu.clone(),
            node: NodeView {
                name: NODE.into(),
                ready: self.ready,
                unschedulable: self.cordoned_by.is_some(),
                cordoned_by: self.cordoned_by.clone(),
            },
            leases,
            peers,
            drain: DrainView {
                evict: self.pods.clone(),
                waiting: vec![],
                refused: self.refused.clone(),
            },
            facts: self.node.facts(),
            node_health: HealthFacts {
                k3s_unit: Seen::Holds,
                ..HealthFacts::default()
            },
            verify_timeout_seconds: DEFAULT_VERIFY_TIMEOUT,
            lease_seconds,
        }
    }

    fn holds(&self) -> bool {
        self.leases.iter().any(|l| l.as_deref() == Some(NODE))
    }

    fn phase(&self) -> Phase {
        self.nu.as_ref().map(|n| n.status.phase).unwrap_or_default()
    }

    /// Applies one action, as the executor would; what it reports goes to `after`.
    fn apply(&mut self, a: &Action) -> Option<Outcome> {
        self.actions_done += 1;
        let mut outcome = None;
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
            Action::AcquireLease { indices, .. } => {
                if let Some(&i) = indices.iter().find(|&&i| {
                    self.leases.get(i as usize).is_some_and(|l| {
                        l.is_none()
                            || self.renewed[i as usize] + i64::from(DEFAULT_LEASE_SECONDS)
                                < self.now
                    })
                }) {
                    self.leases[i as usize] = Some(NODE.into());
                    self.renewed[i as usize] = self.now;
                }
            }
            Action::RenewLease { .. } => {
                for (l, r) in self.leases.iter().zip(&mut self.renewed) {
                    if l.as_deref() == Some(NODE) {
                        *r = self.now;
                    }
                }
            }
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
                        outcome = Some(Outcome::EvictionRefused(format!(
                            "eviction of pod {p} refused: PodDisruptionBudget {}-pdb",
                            p.name
                        )));
                    } else {
                        self.pods.retain(|q| q != p);
                    }
                }
            }
            Action::Stage(release) => {
                outcome = Some(match self.node.stage(release) {
                    Ok(r) => Outcome::Staged { bytes: r.bytes },
                    Err(e) => Outcome::StageFailed(e.to_string()),
                })
            }
            Action::Flip(release) => {
                if let Err(e) = self.node.flip(release) {
                    outcome = Some(Outcome::FlipFailed(e.to_string()));
                }
            }
            Action::Reboot => {
                self.node.reboot();
                self.now += self.reboot_takes;
            }
            Action::MarkGood => self.node.mark_good(),
        }
        self.check_invariants();
        outcome
    }

    /// One pass as the agent makes it: decide, apply in order, an outcome's follow-ups
    /// instead of the rest. Applies only the actions that change something; `crash_at`: the
    /// global action index at which the agent dies (the rest of the pass is lost). Returns
    /// how many actions were applied.
    fn pass(&mut self, crash_at: Option<usize>) -> usize {
        let o = self.observe();
        let actions = decide(&o);
        // What ends a pass (a lease taken, a node action, an eviction) is always its last.
        for a in &actions[..actions.len().saturating_sub(1)] {
            assert!(
                !matches!(
                    a,
                    Action::AcquireLease { .. }
                        | Action::Stage(_)
                        | Action::Flip(_)
                        | Action::Evict(_)
                ),
                "{a:?} is not last in {actions:?}"
            );
        }
        let mut queue: Vec<Action> = actions;
        let mut applied = 0;
        let mut i = 0;
        while i < queue.len() {
            let a = queue[i].clone();
            i += 1;
            if let Action::SetStatus(s) = &a {
                if Some(s) == self.nu.as_ref().map(|n| &n.status) {
                    continue;
                }
            }
            if Some(self.actions_done) == crash_at {
                // The agent died before this action; a new one starts with the next pass.
                self.actions_done += 1;
                return applied + 1;
            }
            applied += 1;
            if let Some(outcome) = self.apply(&a) {
                queue = after(&o, &outcome);
                i = 0;
            }
        }
        applied
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

    /// Runs passes until nothing is left to do, time passing 5 s a pass.
    fn run(&mut self, crash_at: Option<usize>, max_passes: usize) {
        for _ in 0..max_passes {
            let applied = self.pass(crash_at);
            self.now += 5;
            // In flight with nothing to do: waiting on time (a timeout) or on the node.
            if applied == 0 && !self.phase().in_flight() {
                return;
            }
        }
        panic!("no fixed point after {max_passes} passes");
    }

    /// Passes (time passing) until the node is in `phase`.
    fn run_until(&mut self, phase: &str) {
        for _ in 0..100 {
            if self.phase().as_str() == phase {
                return;
            }
            self.pass(None);
            self.now += 5;
        }
        panic!("never reached {phase}");
    }

    fn status(&self) -> &NodeUpgradeStatus {
        &self.nu.as_ref().unwrap().status
    }

    /// The attempt ended in `phase` with an error saying each of `says`, the node uncordoned
    /// and its lease released; returns the error.
    fn ended(&self, phase: Phase, says: &[&str]) -> String {
        assert_eq!(self.phase(), phase, "{:?}", self.status().last_error);
        let err = self.status().last_error.clone().expect("an error");
        for s in says {
            assert!(err.contains(s), "{err:?} lacks {s:?}");
        }
        assert_eq!(self.cordoned_by, None, "left cordoned");
        assert!(!self.holds(), "lease kept");
        err
    }
}
