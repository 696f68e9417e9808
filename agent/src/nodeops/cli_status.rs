//! `rkos status --json`: rkos-slots' `Status` as printed by the node, turned into the
//! [`NodeFacts`] the state machine reads.

use serde::Deserialize;

use super::{NodeFacts, NodeOpsError};
/// The subset of `rkos status --json` (rkos-slots' `Status`) the agent reads. Every field is
/// required, `null` included (`Option::deserialize` turns off serde's "missing means None"):
/// a field renamed on either side must fail loudly here, not read as "no trial" or "not on
/// trial", which would make the agent stage forever or never mark the slot good.
#[derive(Deserialize)]
struct StatusJson {
    #[serde(deserialize_with = "Option::deserialize")]
    active: Option<String>,
    default: String,
    #[serde(deserialize_with = "Option::deserialize")]
    trial: Option<TrialJson>,
    running_on_trial: bool,
    #[serde(deserialize_with = "Option::deserialize")]
    last_outcome: Option<OutcomeJson>,
    slots: Vec<SlotJson>,
}

#[derive(Deserialize)]
struct TrialJson {
    slot: String,
}

#[derive(Deserialize)]
struct OutcomeJson {
    outcome: String,
    slot: String,
}

#[derive(Deserialize)]
struct SlotJson {
    slot: String,
    #[serde(deserialize_with = "Option::deserialize")]
    version: Option<String>,
}

/// Turns `rkos status --json` output into facts. Pure, so it is unit-tested.
pub fn facts_from_status_json(json: &str, boot_id: &str) -> Result<NodeFacts, NodeOpsError> {
    let installed = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("installed").and_then(serde_json::Value::as_bool));
    if installed == Some(false) {
        return Err(NodeOpsError::Status(
            "this node is not installed (live or netboot): it has no A/B slots to upgrade".into(),
        ));
    }
    let s: StatusJson =
        serde_json::from_str(json).map_err(|e| NodeOpsError::Status(e.to_string()))?;
    let active = s.active.clone().unwrap_or_else(|| s.default.clone());
    let version_of = |slot: &str| {
        s.slots
            .iter()
            .find(|x| x.slot == slot)
            .and_then(|x| x.version.clone())
    };
    let version = version_of(&active)
        .ok_or_else(|| NodeOpsError::Status(format!("the running slot {active} has no version")))?;
    let other = s.slots.iter().find(|x| x.slot != active);
    let trial_armed = s
        .trial
        .as_ref()
        .filter(|t| t.slot != active)
        .and_then(|t| version_of(&t.slot));
    let rolled_back = s
        .last_outcome
        .as_ref()
        .filter(|o| o.outcome == "rolled-back")
        .map(|o| {
            format!(
                "slot {} ({}) was never marked good; GRUB fell back to slot {active}",
                o.slot,
                version_of(&o.slot).unwrap_or_else(|| "no version".into())
            )
        });
    Ok(NodeFacts {
        version,
        slot: active,
        boot_id: boot_id.trim().to_string(),
        staged: other.and_then(|o| o.version.clone()),
        trial_armed,
        running_on_trial: s.running_on_trial,
        rolled_back,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const STATUS_TRIAL_ARMED: &str = r#"{"active":"A","default":"A","fallback":null,
        "trial":{"slot":"B","tries_left":3},"running_on_trial":false,"last_outcome":null,
        "slots":[{"slot":"A","version":"1","arch":"amd64","error":null},
                 {"slot":"B","version":"2","arch":"amd64","error":null}]}"#;

    #[test]
    fn status_json_with_trial_armed() {
        let f = facts_from_status_json(STATUS_TRIAL_ARMED, "abc\n").unwrap();
        assert_eq!(f.version, "1");
        assert_eq!(f.slot, "A");
        assert_eq!(f.boot_id, "abc");
        assert_eq!(f.staged.as_deref(), Some("2"));
        assert_eq!(f.trial_armed.as_deref(), Some("2"));
        assert!(!f.running_on_trial);
        assert_eq!(f.rolled_back, None);
    }

    #[test]
    fn status_json_after_fallback_and_on_trial() {
        let rolled = r#"{"active":"A","default":"A","trial":null,"running_on_trial":false,
            "last_outcome":{"outcome":"rolled-back","slot":"B"},
            "slots":[{"slot":"A","version":"1"},{"slot":"B","version":"2"}]}"#;
        let f = facts_from_status_json(rolled, "x").unwrap();
        assert_eq!(f.version, "1");
        assert!(f
            .rolled_back
            .unwrap()
            .contains("slot B (2) was never marked good"));
        let trial = r#"{"active":"B","default":"A","trial":{"slot":"B","tries_left":2},
            "running_on_trial":true,"last_outcome":null,
            "slots":[{"slot":"A","version":"1"},{"slot":"B","version":"2"}]}"#;
        let f = facts_from_status_json(trial, "x").unwrap();
        assert_eq!(f.version, "2");
        assert_eq!(f.slot, "B");
        assert!(f.running_on_trial);
        assert_eq!(f.trial_armed, None);
    }

    #[test]
    fn live_node_is_reported_as_not_installed() {
        let e = facts_from_status_json(r#"{"installed":false}"#, "x").unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
    }

    #[test]
    fn bad_status_json_is_a_clear_error() {
        let e = facts_from_status_json("not json", "x").unwrap_err();
        assert!(e.to_string().contains("rkos status --json"), "{e}");
        let empty = r#"{"active":"A","default":"A","trial":null,"last_outcome":null,
            "running_on_trial":false,
            "slots":[{"slot":"A","version":null},{"slot":"B","version":null}]}"#;
        let e = facts_from_status_json(empty, "x").unwrap_err();
        assert!(e.to_string().contains("no version"), "{e}");
    }

    #[test]
    fn every_field_read_from_the_status_is_required() {
        // Dropping any one field the agent reads must be an error naming it, never a silent
        // default (null is a value, absence is a renamed field).
        let full: serde_json::Value = serde_json::from_str(STATUS_TRIAL_ARMED).unwrap();
        facts_from_status_json(&full.to_string(), "x").unwrap();
        for (pointer, field) in [
            ("", "active"),
            ("", "default"),
            ("", "trial"),
            ("", "running_on_trial"),
            ("", "last_outcome"),
            ("", "slots"),
            ("/trial", "slot"),
            ("/slots/0", "slot"),
            ("/slots/0", "version"),
        ] {
            let mut v = full.clone();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(field)
                .unwrap();
            let e = facts_from_status_json(&v.to_string(), "x").unwrap_err();
            assert!(e.to_string().contains(field), "{pointer}/{field}: {e}");
        }
        let mut v = full.clone();
        v["last_outcome"] = serde_json::json!({"outcome": "rolled-back", "slot": "B"});
        facts_from_status_json(&v.to_string(), "x").unwrap();
        for field in ["outcome", "slot"] {
            let mut w = v.clone();
            w["last_outcome"].as_object_mut().unwrap().remove(field);
            let e = facts_from_status_json(&w.to_string(), "x").unwrap_err();
            assert!(e.to_string().contains(field), "last_outcome/{field}: {e}");
        }
    }
}
