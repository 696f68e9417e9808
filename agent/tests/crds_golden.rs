//! `manifests/crds.yaml` is generated from the Rust types; this pins it. After changing
//! `src/crd.rs` on purpose, regenerate with `UPDATE_GOLDEN=1 cargo test -p rkos-agent --test
//! crds_golden` (or `rkos-agent crds > agent/manifests/crds.yaml`) and review the diff.

use std::path::PathBuf;

#[test]
fn crds_yaml_matches_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/crds.yaml");
    let want = rkos_agent::crd::crds_yaml();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: regenerate it with `rkos-agent crds` (see this test's header) and review \
         the schema change",
        path.display()
    );
}

#[test]
fn crds_yaml_is_two_valid_crd_documents() {
    let text = rkos_agent::crd::crds_yaml();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "upgradeplans.upgrade.rkos.io",
            "nodeupgrades.upgrade.rkos.io"
        ]
    );
    for d in &docs {
        assert_eq!(
            d["kind"],
            serde_yaml::Value::from("CustomResourceDefinition")
        );
        assert_eq!(
            d["apiVersion"],
            serde_yaml::Value::from("apiextensions.k8s.io/v1")
        );
    }
}
