//! The rollout leases: `concurrency` Leases per plan, named `rkos-upgrade-<plan>-<i>` in the
//! agent's namespace, holder identity = node name. Taking one creates it, or replaces it at the
//! version observed; releasing one deletes it at the version observed. So every write loses
//! (409) when another agent wrote first, and nobody ever releases a lease taken over from it.
//! Which lease to take and when to renew is the machine's decision (`machine::lease`).

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::api::{api_code, now_secs, AgentError, Ctx, MANAGED_BY};
use crate::crd::PLAN_LABEL;
use crate::machine::LeaseView;

/// What one boot of a node may take, from the reboot request to its agent running again
/// (firmware, kernel, rkos-init, k3s, the agent's pod).
pub const BOOT_SECONDS: i32 = 300;
/// How long `rkos-mark-good.service` waits for a trial boot to become healthy before it
/// restarts the node (`rkos mark-good --timeout`'s default; `tests/real_rkos.rs` checks it).
pub const MARK_GOOD_TIMEOUT_SECONDS: i32 = 900;
/// The longest a trial may keep a node away: each of the trial slot's tries (`rkos upgrade`
/// gives it rkos-slots' `DEFAULT_TRIES`) boots and waits for health until mark-good gives
/// up, then GRUB falls back and the old slot boots once more.
pub const WORST_CASE_TRIAL_SECONDS: i32 =
    rkos_slots::DEFAULT_TRIES as i32 * (BOOT_SECONDS + MARK_GOOD_TIMEOUT_SECONDS) + BOOT_SECONDS;

/// `--lease-seconds`' default. The lease is renewed right before the reboot and must outlast
/// the worst-case trial (with one boot to spare): a lease that lapses while its node is in
/// flight counts that node as failed. A node that crashes while draining or staging frees
/// its place after this long; one that never comes back from its reboot keeps it (see
/// `machine::lease`).
pub const DEFAULT_LEASE_SECONDS: i32 = WORST_CASE_TRIAL_SECONDS + BOOT_SECONDS;
const _: () = assert!(DEFAULT_LEASE_SECONDS > WORST_CASE_TRIAL_SECONDS);

/// Longest object name Kubernetes accepts (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Hex digits of the plan name's sha256 that stand for its cut-off tail.
const HASH_DIGITS: usize = 10;

/// `rkos-upgrade-<plan>-<i>`; when that is longer than a name may be (a plan name may itself
/// be 253 characters), the plan's name is cut and a hash of the whole name takes the place of
/// the rest: `rkos-upgrade-<start of plan>-<hash>-<i>`. Every agent computes the same name.
pub fn lease_name(plan: &str, index: u32) -> String {
    let name = format!("rkos-upgrade-{plan}-{index}");
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let digest = Sha256::digest(plan.as_bytes());
    let hash: String = hex::encode(digest).chars().take(HASH_DIGITS).collect();
    let tail = format!("-{hash}-{index}");
    let room = MAX_NAME_LEN - "rkos-upgrade-".len() - tail.len();
    // Plan names are DNS subdomains (ASCII), so any byte is a character boundary; a name
    // part must end in an alphanumeric.
    let head = plan[..room.min(plan.len())].trim_end_matches(['-', '.']);
    format!("rkos-upgrade-{head}{tail}")
}

/// The lease as the machine reads it.
pub fn view(l: &Lease) -> LeaseView {
    let spec = l.spec.clone().unwrap_or_default();
    LeaseView {
        name: l.name_any(),
        plan: l.labels().get(PLAN_LABEL).cloned().unwrap_or_default(),
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        renewed: spec
            .renew_time
            .as_ref()
            .or(spec.acquire_time.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(0),
        duration_seconds: i64::from(spec.lease_duration_seconds.unwrap_or(0)),
    }
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::from_second(now_secs()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn held_spec(ctx: &Ctx, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(ctx.me().to_string()),
        lease_duration_seconds: Some(ctx.cfg.lease_seconds),
        acquire_time: Some(micro_now()),
        renew_time: Some(micro_now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// Takes the first of the plan's leases `indices` that can be won: one that does not exist
/// is created, one in `observed` is replaced at the version observed. True if one was won.
pub async fn acquire(
    ctx: &Ctx,
    observed: &[Lease],
    plan: &str,
    indices: &[u32],
) -> Result<bool, AgentError> {
    for &i in indices {
        let name = lease_name(plan, i);
        let result = match observed.iter().find(|l| l.name_any() == name) {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ctx.cfg.namespace.clone()),
                        labels: Some(BTreeMap::from([
                            (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
                            (PLAN_LABEL.into(), plan.into()),
                        ])),
                        ..Default::default()
                    },
                    spec: Some(held_spec(ctx, 0)),
                };
                ctx.leases().create(&PostParams::default(), &lease).await
            }
            Some(current) => {
                let mut lease = current.clone();
                let transitions = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0);
                lease.spec = Some(held_spec(ctx, transitions + 1));
                ctx.leases()
                    .replace(&name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => {
                info!(lease = name, "lease acquired");
                return Ok(true);
            }
            Err(e) if api_code(&e) == Some(409) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Renews `leases` (this node's, as observed). A conflict is left to the next pass, which
/// renews from a fresh read or finds the lease taken over and acts on that.
pub async fn renew(ctx: &Ctx, leases: &[&Lease]) -> Result<(), AgentError> {
    for l in leases {
        let mut lease = (*l).clone();
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.renew_time = Some(micro_now());
        spec.lease_duration_seconds = Some(ctx.cfg.lease_seconds);
        lease.spec = Some(spec);
        match ctx
            .leases()
            .replace(&l.name_any(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes `leases` (this node's, as observed) at the version observed: one that is gone, or
/// was taken over after it expired (a newer version), is not ours to release.
pub async fn release(ctx: &Ctx, leases: &[&Lease]) -> Result<(), AgentError> {
    for l in leases {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: l.resource_version(),
                uid: None,
            }),
            ..Default::default()
        };
        match ctx.leases().delete(&l.name_any(), &dp).await {
            Ok(_) => info!(lease = l.name_any(), "lease released"),
            Err(e) if matches!(api_code(&e), Some(404) | Some(409)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_view_and_expiry() {
        let lease = |spec: LeaseSpec| Lease {
            metadata: ObjectMeta {
                name: Some(lease_name("p", 1)),
                labels: Some(BTreeMap::from([(PLAN_LABEL.into(), "p".into())])),
                ..Default::default()
            },
            spec: Some(spec),
        };
        let at = |s| Some(MicroTime(Timestamp::from_second(s).unwrap()));
        let v = view(&lease(LeaseSpec {
            holder_identity: Some("n1".into()),
            acquire_time: at(900),
            renew_time: at(1000),
            lease_duration_seconds: Some(60),
            ..Default::default()
        }));
        assert_eq!(v.name, "rkos-upgrade-p-1");
        assert_eq!((v.plan.as_str(), v.holder.as_deref()), ("p", Some("n1")));
        assert!(!v.expired(1060));
        assert!(v.expired(1061));
        // Never renewed: the acquisition counts; nothing at all: long expired.
        let v = view(&lease(LeaseSpec {
            holder_identity: Some(String::new()),
            acquire_time: at(900),
            lease_duration_seconds: Some(60),
            ..Default::default()
        }));
        assert_eq!((v.renewed, v.holder), (900, None));
        assert!(view(&lease(LeaseSpec::default())).expired(1));
    }

    /// Issue 16, item 18: a long plan name gave lease names Kubernetes refuses.
    #[test]
    fn lease_names_are_valid_for_any_plan_name() {
        let valid = |n: &str| {
            n.len() <= MAX_NAME_LEN
                && n.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
        };
        assert_eq!(lease_name("p", 3), "rkos-upgrade-p-3");
        // The longest plan name there can be, and names that cut right before a '-' or '.'.
        let longest = "a".repeat(253);
        let dashed = format!("{}-{}", "b".repeat(226), "c".repeat(40));
        let dotted = format!("{}.{}", "d".repeat(226), "e".repeat(20));
        for plan in [longest.as_str(), dashed.as_str(), dotted.as_str()] {
            for i in [0, 9, 10, u32::MAX] {
                let n = lease_name(plan, i);
                assert!(valid(&n), "{n} ({} characters)", n.len());
                assert!(n.ends_with(&format!("-{i}")), "{n}");
                assert_eq!(n, lease_name(plan, i), "the same for every agent");
            }
        }
        // Two long names that share their start still get leases of their own.
        let other = format!("{longest}x");
        assert_ne!(lease_name(&longest, 0), lease_name(&other[1..], 0));
        assert_ne!(
            lease_name(&dashed, 1),
            lease_name(&format!("{}-{}", "b".repeat(226), "f".repeat(40)), 1)
        );
        // Each index of one plan still names a lease of its own.
        assert_ne!(lease_name(&longest, 1), lease_name(&longest, 11));
    }
}
