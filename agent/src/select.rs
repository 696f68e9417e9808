//! Label selector matching and the choice of the plan that governs a node. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::UpgradePlan;

/// Does `selector` select an object with these labels? `None` or an empty selector selects
/// everything, as in the Kubernetes API. An unknown operator selects nothing: a typo must not
/// widen a rollout to the whole cluster.
pub fn matches(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else { return true };
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for expr in sel.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or(&[]);
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The plan this node follows: the one its NodeUpgrade already names, if that plan still
/// exists, is not being deleted, and still selects the node (or the node is mid-upgrade:
/// relabelling a node must not abandon it cordoned); otherwise the first (by name) plan that
/// selects the node. Choosing by name keeps every restart of the agent on the same choice.
pub fn choose_plan<'a>(
    plans: &'a [UpgradePlan],
    node_labels: &BTreeMap<String, String>,
    current: Option<&str>,
    in_flight: bool,
) -> Option<&'a UpgradePlan> {
    let live = |p: &&UpgradePlan| p.metadata.deletion_timestamp.is_none();
    if let Some(name) = current {
        if let Some(p) = plans
            .iter()
            .filter(live)
            .find(|p| p.metadata.name.as_deref() == Some(name))
        {
            if in_flight || matches(p.spec.node_selector.as_ref(), node_labels) {
                return Some(p);
            }
        }
    }
    let mut candidates: Vec<&UpgradePlan> = plans
        .iter()
        .filter(live)
        .filter(|p| matches(p.spec.node_selector.as_ref(), node_labels))
        .collect();
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    candidates.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn empty_selects_all() {
        assert!(matches(None, &labels(&[])));
        assert!(matches(
            Some(&LabelSelector::default()),
            &labels(&[("a", "b")])
        ));
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("pool", "edge")])),
            match_expressions: Some(vec![
                expr("zone", "In", &["a", "b"]),
                expr("gpu", "DoesNotExist", &[]),
            ]),
        };
        assert!(matches(
            Some(&sel),
            &labels(&[("pool", "edge"), ("zone", "a")])
        ));
        assert!(!matches(
            Some(&sel),
            &labels(&[("pool", "edge"), ("zone", "c")])
        ));
        assert!(!matches(
            Some(&sel),
            &labels(&[("pool", "core"), ("zone", "a")])
        ));
        assert!(!matches(
            Some(&sel),
            &labels(&[("pool", "edge"), ("zone", "a"), ("gpu", "1")])
        ));
    }

    #[test]
    fn not_in_and_exists_and_unknown_operator() {
        let not_in = LabelSelector {
            match_expressions: Some(vec![expr("tier", "NotIn", &["db"])]),
            ..Default::default()
        };
        assert!(matches(Some(&not_in), &labels(&[])));
        assert!(matches(Some(&not_in), &labels(&[("tier", "web")])));
        assert!(!matches(Some(&not_in), &labels(&[("tier", "db")])));
        let exists = LabelSelector {
            match_expressions: Some(vec![expr("tier", "Exists", &[])]),
            ..Default::default()
        };
        assert!(!matches(Some(&exists), &labels(&[])));
        let typo = LabelSelector {
            match_expressions: Some(vec![expr("tier", "Inn", &["db"])]),
            ..Default::default()
        };
        assert!(!matches(Some(&typo), &labels(&[("tier", "db")])));
    }

    fn plan(name: &str, sel: Option<LabelSelector>) -> UpgradePlan {
        let mut p = UpgradePlan::new(
            name,
            serde_json::from_value(serde_json::json!({"version":"2","bundleUrl":"u"})).unwrap(),
        );
        p.spec.node_selector = sel;
        p
    }

    #[test]
    fn choose_keeps_current_then_first_by_name() {
        let edge = LabelSelector {
            match_labels: Some(labels(&[("pool", "edge")])),
            ..Default::default()
        };
        let plans = vec![plan("zeta", None), plan("alpha", Some(edge))];
        let core = labels(&[("pool", "core")]);
        assert_eq!(
            choose_plan(&plans, &core, None, false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("zeta")
        );
        let edge_node = labels(&[("pool", "edge")]);
        assert_eq!(
            choose_plan(&plans, &edge_node, None, false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("alpha")
        );
        assert_eq!(
            choose_plan(&plans, &edge_node, Some("zeta"), false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("zeta")
        );
        assert!(choose_plan(&[], &edge_node, Some("zeta"), false).is_none());
        // A node relabelled out of its plan leaves it, unless it is mid-upgrade.
        assert_eq!(
            choose_plan(&plans, &core, Some("alpha"), false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("zeta")
        );
        assert_eq!(
            choose_plan(&plans, &core, Some("alpha"), true)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("alpha")
        );
    }
}
