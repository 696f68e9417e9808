//! When a node counts as healthy, so that its trial slot may be marked good: the one rule for
//! `rkos mark-good --wait-healthy` (on the node, `rkos-mark-good.service`) and the upgrade
//! agent's Verifying phase (in a pod). Each observer fills in the facts it can see and leaves
//! the others [`Seen::Unseen`]; [`verdict`] decides.
//!
//! - `rkos mark-good` sees the k3s unit (`systemctl is-active`) and the kubelet's healthz on
//!   the node's loopback; it has no access to the API server.
//! - The agent sees the k3s unit (the same `systemctl is-active`, chrooted into the host) and
//!   the Node's Ready condition; its pod has a network namespace of its own, so it cannot
//!   reach the kubelet's loopback endpoint. Ready is the API server's view of the same
//!   kubelet: the kubelet reports it only while its own checks pass.

/// The systemd unit that runs k3s, on servers and agents alike.
pub const K3S_UNIT: &str = "k3s.service";
/// The kubelet's health endpoint: k3s serves it on servers and agents alike, on loopback,
/// without credentials.
pub const KUBELET_HEALTHZ: &str = "http://127.0.0.1:10248/healthz";

/// One fact about the node, as one observer saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seen {
    /// Out of this observer's reach.
    #[default]
    Unseen,
    Holds,
    /// It does not hold: what was seen instead.
    Fails(String),
}

impl Seen {
    /// `Holds` when `ok`, else `Fails(why())`.
    pub fn check(ok: bool, why: impl FnOnce() -> String) -> Seen {
        if ok {
            Seen::Holds
        } else {
            Seen::Fails(why())
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthFacts {
    /// k3s's systemd unit is active.
    pub k3s_unit: Seen,
    /// The kubelet's healthz answered `ok` (test images whose k3s is a stand-in use a marker
    /// file instead: `rkos mark-good --health-file`).
    pub kubelet_healthz: Seen,
    /// The Node's Ready condition is True.
    pub node_ready: Seen,
}

/// Why a node is not healthy: every fact that failed, or what was missing to decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Unhealthy(pub Vec<String>);

/// Healthy when no fact seen fails and the kubelet was seen healthy one way or the other
/// (its healthz, or the Node Ready): k3s's unit being active alone says nothing about
/// whether the node runs workloads.
pub fn verdict(facts: &HealthFacts) -> Result<(), Unhealthy> {
    let mut why: Vec<String> = [&facts.k3s_unit, &facts.kubelet_healthz, &facts.node_ready]
        .into_iter()
        .filter_map(|s| match s {
            Seen::Fails(w) => Some(w.clone()),
            Seen::Holds | Seen::Unseen => None,
        })
        .collect();
    let kubelet_seen = [&facts.kubelet_healthz, &facts.node_ready]
        .iter()
        .any(|s| **s != Seen::Unseen);
    if why.is_empty() && !kubelet_seen {
        why.push("the kubelet's health was not seen (neither its healthz nor the Node)".into());
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(Unhealthy(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(w: &str) -> Seen {
        Seen::Fails(w.into())
    }

    fn seen(k3s_unit: Seen, kubelet_healthz: Seen, node_ready: Seen) -> HealthFacts {
        HealthFacts {
            k3s_unit,
            kubelet_healthz,
            node_ready,
        }
    }

    #[test]
    fn on_the_node_unit_and_healthz() {
        // What `rkos mark-good` sees.
        let mut f = seen(Seen::Holds, Seen::Holds, Seen::Unseen);
        assert_eq!(verdict(&f), Ok(()));
        f.kubelet_healthz = fails("connection refused");
        assert_eq!(
            verdict(&f),
            Err(Unhealthy(vec!["connection refused".into()]))
        );
        f.k3s_unit = fails("k3s.service is not active");
        assert_eq!(
            verdict(&f).unwrap_err().to_string(),
            "k3s.service is not active; connection refused"
        );
    }

    #[test]
    fn in_the_cluster_unit_and_node_ready() {
        // What the agent sees.
        let mut f = seen(Seen::Holds, Seen::Unseen, Seen::Holds);
        assert_eq!(verdict(&f), Ok(()));
        f.node_ready = fails("the Node is not Ready");
        assert!(verdict(&f).is_err());
        f.node_ready = Seen::Holds;
        f.k3s_unit = fails("k3s.service is not active");
        assert!(verdict(&f).is_err());
    }

    #[test]
    fn the_kubelet_must_be_seen_one_way() {
        let unit_only = seen(Seen::Holds, Seen::Unseen, Seen::Unseen);
        let e = verdict(&unit_only).unwrap_err();
        assert!(e.to_string().contains("not seen"), "{e}");
        assert!(verdict(&HealthFacts::default()).is_err());
        // Without a unit to check (`rkos mark-good --unit ''`), the kubelet decides.
        let kubelet_only = seen(Seen::Unseen, Seen::Holds, Seen::Unseen);
        assert_eq!(verdict(&kubelet_only), Ok(()));
    }

    #[test]
    fn check_builds_the_reason_only_on_failure() {
        assert_eq!(Seen::check(true, || unreachable!()), Seen::Holds);
        assert_eq!(Seen::check(false, || "down".into()), fails("down"));
    }
}
