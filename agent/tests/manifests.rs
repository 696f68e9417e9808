//! `manifests/agent.yaml`: least-privilege RBAC that matches what the agent calls, and a
//! DaemonSet wired to it.

use std::collections::BTreeSet;

use rkos_agent::api::{CLUSTER_RBAC, IMAGE, LEASE_RBAC};
use serde_yaml::Value;

fn docs() -> Vec<Value> {
    let text = include_str!("../manifests/agent.yaml");
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

type Grants = BTreeSet<(String, String, String)>;

fn grants(role: &Value) -> Grants {
    let mut out = Grants::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let strs = |k: &str| -> Vec<String> {
            rule[k]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                for v in strs("verbs") {
                    assert!(g != "*" && r != "*" && v != "*", "wildcard in {rule:?}");
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn wanted(table: &[(&str, &str, &[&str])]) -> Grants {
    table
        .iter()
        .flat_map(|(g, r, vs)| {
            vs.iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_what_the_agent_uses() {
    let d = docs();
    assert_eq!(
        grants(find(&d, "ClusterRole", "rkos-agent")),
        wanted(CLUSTER_RBAC)
    );
    let role = find(&d, "Role", "rkos-agent-leases");
    assert_eq!(role["metadata"]["namespace"], Value::from("rkos-system"));
    assert_eq!(grants(role), wanted(LEASE_RBAC));
    for (kind, name, role_kind, role_name) in [
        (
            "ClusterRoleBinding",
            "rkos-agent",
            "ClusterRole",
            "rkos-agent",
        ),
        (
            "RoleBinding",
            "rkos-agent-leases",
            "Role",
            "rkos-agent-leases",
        ),
    ] {
        let b = find(&d, kind, name);
        assert_eq!(b["roleRef"]["kind"], Value::from(role_kind));
        assert_eq!(b["roleRef"]["name"], Value::from(role_name));
        assert_eq!(b["subjects"][0]["name"], Value::from("rkos-agent"));
        assert_eq!(b["subjects"][0]["namespace"], Value::from("rkos-system"));
    }
}

#[test]
fn daemonset_runs_the_imported_image_with_its_identity() {
    let d = docs();
    find(&d, "ServiceAccount", "rkos-agent");
    let ds = find(&d, "DaemonSet", "rkos-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], Value::from("rkos-agent"));
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"],
        Value::from(IMAGE),
        "image tag follows the crate version"
    );
    assert_eq!(c["imagePullPolicy"], Value::from("Never"), "no registry");
    let env: Vec<&str> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for want in ["NODE_NAME", "POD_NAME", "POD_NAMESPACE"] {
        assert!(env.contains(&want), "{want} missing");
    }
    assert_eq!(pod["tolerations"][0]["operator"], Value::from("Exists"));
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], Value::from("/"));
    assert_eq!(c["volumeMounts"][0]["mountPath"], Value::from("/host"));
}
