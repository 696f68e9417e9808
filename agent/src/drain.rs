//! Which pods a drain evicts, skips, waits for or refuses, and how a refused eviction reads.
//! Pure: the Eviction API calls are in `execute.rs`.
//!
//! The rules follow `kubectl drain`: mirror (static) pods are skipped, DaemonSet pods are
//! skipped only with `ignoreDaemonSets`, pods using emptyDir need `deleteEmptyDirData`, pods no
//! controller manages need `force`. Pods already terminating are waited for, not evicted again.
//! Finished pods (Succeeded/Failed) hold nothing and are evicted like any other.

use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use crate::crd::DrainSpec;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PodRef {
    pub fn of(pod: &Pod) -> Self {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    Skip,
    Evict,
    /// Already terminating: wait for it to go.
    Wait,
    /// Cannot be evicted under this policy; the drain fails at once with this reason.
    Refuse(String),
}

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub fn classify(pod: &Pod, policy: &DrainSpec, own: Option<&PodRef>) -> Disposition {
    let me = PodRef::of(pod);
    if own == Some(&me) {
        return Disposition::Skip;
    }
    let meta = &pod.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return Disposition::Skip;
    }
    if meta.deletion_timestamp.is_some() {
        return Disposition::Wait;
    }
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if let Some(c) = controller {
        if c.kind == "DaemonSet" {
            return if policy.ignore_daemon_sets {
                Disposition::Skip
            } else {
                Disposition::Refuse(format!(
                    "pod {me} is managed by DaemonSet {} (set drain.ignoreDaemonSets)",
                    c.name
                ))
            };
        }
    } else if !policy.force {
        return Disposition::Refuse(format!(
            "pod {me} is not managed by a controller and would be lost (set drain.force)"
        ));
    }
    let uses_empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    if uses_empty_dir && !policy.delete_empty_dir_data {
        return Disposition::Refuse(format!(
            "pod {me} uses emptyDir data that eviction deletes (set drain.deleteEmptyDirData)"
        ));
    }
    Disposition::Evict
}

/// What is left to do to drain a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrainView {
    pub evict: Vec<PodRef>,
    pub waiting: Vec<PodRef>,
    pub refused: Vec<String>,
}

impl DrainView {
    pub fn done(&self) -> bool {
        self.evict.is_empty() && self.waiting.is_empty() && self.refused.is_empty()
    }
}

pub fn plan(pods: &[Pod], policy: &DrainSpec, own: Option<&PodRef>) -> DrainView {
    let mut view = DrainView::default();
    for pod in pods {
        match classify(pod, policy, own) {
            Disposition::Skip => {}
            Disposition::Evict => view.evict.push(PodRef::of(pod)),
            Disposition::Wait => view.waiting.push(PodRef::of(pod)),
            Disposition::Refuse(r) => view.refused.push(r),
        }
    }
    view.evict.sort();
    view.waiting.sort();
    view
}

/// What the NodeUpgrade says about an eviction the API refused (429: a PodDisruptionBudget):
/// the pod, and the budget's own words when the answer carries them.
pub fn refusal(pod: &PodRef, answer: &kube::core::Status) -> String {
    let causes: Vec<&str> = answer
        .details
        .iter()
        .flat_map(|d| d.causes.iter().map(|c| c.message.as_str()))
        .filter(|m| !m.is_empty())
        .collect();
    let why = if causes.is_empty() {
        answer.message.clone()
    } else {
        causes.join("; ")
    };
    format!("eviction of pod {pod} refused: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn owned(name: &str, kind: &str) -> Pod {
        pod(
            json!({"metadata":{"name":name,"namespace":"ns","ownerReferences":[
            {"apiVersion":"apps/v1","kind":kind,"name":"owner","uid":"u","controller":true}]}}),
        )
    }

    #[test]
    fn rules() {
        let p = DrainSpec::default();
        assert_eq!(
            classify(&owned("a", "ReplicaSet"), &p, None),
            Disposition::Evict
        );
        assert_eq!(
            classify(&owned("d", "DaemonSet"), &p, None),
            Disposition::Skip
        );
        let strict = DrainSpec {
            ignore_daemon_sets: false,
            ..DrainSpec::default()
        };
        assert!(matches!(
            classify(&owned("d", "DaemonSet"), &strict, None),
            Disposition::Refuse(r) if r.contains("ns/d") && r.contains("ignoreDaemonSets")
        ));
        let bare = pod(json!({"metadata":{"name":"bare","namespace":"ns"}}));
        assert!(matches!(classify(&bare, &p, None), Disposition::Refuse(r) if r.contains("force")));
        let force = DrainSpec {
            force: true,
            ..DrainSpec::default()
        };
        assert_eq!(classify(&bare, &force, None), Disposition::Evict);
        let mirror = pod(json!({"metadata":{"name":"m","namespace":"kube-system",
            "annotations":{"kubernetes.io/config.mirror":"x"}}}));
        assert_eq!(classify(&mirror, &p, None), Disposition::Skip);
        let mut dying = owned("t", "ReplicaSet");
        dying.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2024-01-01T00:00:00Z")).unwrap());
        assert_eq!(classify(&dying, &p, None), Disposition::Wait);
    }

    #[test]
    fn empty_dir_needs_permission() {
        let mut p = owned("e", "ReplicaSet");
        p.spec = Some(
            serde_json::from_value(json!({"containers":[],"volumes":[{"name":"s","emptyDir":{}}]}))
                .unwrap(),
        );
        assert!(matches!(
            classify(&p, &DrainSpec::default(), None),
            Disposition::Refuse(r) if r.contains("deleteEmptyDirData")
        ));
        let ok = DrainSpec {
            delete_empty_dir_data: true,
            ..DrainSpec::default()
        };
        assert_eq!(classify(&p, &ok, None), Disposition::Evict);
    }

    #[test]
    fn own_pod_is_never_evicted_and_plan_sorts() {
        let me = PodRef {
            namespace: "ns".into(),
            name: "agent".into(),
        };
        let pods = vec![
            owned("b", "ReplicaSet"),
            owned("agent", "ReplicaSet"),
            owned("a", "StatefulSet"),
        ];
        let v = plan(&pods, &DrainSpec::default(), Some(&me));
        let names: Vec<_> = v.evict.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(!v.done());
        assert!(plan(&[], &DrainSpec::default(), None).done());
    }

    #[test]
    fn refusal_names_the_pod_and_the_budget() {
        let p = PodRef {
            namespace: "default".into(),
            name: "db-0".into(),
        };
        let answer = |v| serde_json::from_value::<kube::core::Status>(v).unwrap();
        let plain = answer(json!({"code": 429, "message": "Cannot evict pod"}));
        assert_eq!(
            refusal(&p, &plain),
            "eviction of pod default/db-0 refused: Cannot evict pod"
        );
        let detailed = answer(json!({"code": 429, "message": "Cannot evict pod",
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget db-pdb needs 1 healthy pods"}, {"message": ""}]}}));
        assert_eq!(
            refusal(&p, &detailed),
            "eviction of pod default/db-0 refused: The disruption budget db-pdb needs 1 healthy pods"
        );
    }
}
