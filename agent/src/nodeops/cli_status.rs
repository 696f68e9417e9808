//! `rkos status --json`: rkos-slots' [`NodeStatus`], as printed by the node, turned into the
//! [`NodeFacts`] the state machine reads.

use rkos_slots::{NodeStatus, Outcome, Status};

use super::{NodeFacts, NodeOpsError};

/// Reads `rkos status --json` output. Every field is required, `null` included (rkos-slots'
/// `Status` says why), so a rename on either side is an error naming the field.
pub fn facts_from_status_json(json: &str, boot_id: &str) -> Result<NodeFacts, NodeOpsError> {
    let status: NodeStatus =
        serde_json::from_str(json).map_err(|e| NodeOpsError::Status(e.to_string()))?;
    facts_from_status(&status, boot_id)
}

/// The facts in a node's status. Pure, so it is unit-tested; the simulated node of the tests
/// reports through it too.
pub fn facts_from_status(status: &NodeStatus, boot_id: &str) -> Result<NodeFacts, NodeOpsError> {
    let s: &Status = match status {
        NodeStatus::Installed(s) => s,
        NodeStatus::NotInstalled => {
            return Err(NodeOpsError::Status(
                "this node is not installed (live or netboot): it has no A/B slots to upgrade"
                    .into(),
            ))
        }
    };
    let active = s.active.unwrap_or(s.default);
    let version = s
        .version_of(active)
        .ok_or_else(|| NodeOpsError::Status(format!("the running slot {active} has no version")))?;
    let trial_armed = s
        .trial
        .filter(|t| t.slot != active)
        .and_then(|t| s.version_of(t.slot));
    let rolled_back = match s.last_outcome {
        Some(Outcome::RolledBack(slot)) => Some(format!(
            "slot {slot} ({}) was never marked good; GRUB fell back to slot {active}",
            s.version_of(slot).unwrap_or("no version")
        )),
        Some(Outcome::Good(_)) | None => None,
    };
    Ok(NodeFacts {
        version: version.to_string(),
        slot: active,
        boot_id: boot_id.trim().to_string(),
        staged: s.version_of(active.other()).map(String::from),
        trial_armed: trial_armed.map(String::from),
        running_on_trial: s.running_on_trial,
        rolled_back,
    })
}

#[cfg(test)]
mod tests {
    use rkos_slots::Slot;

    use super::*;

    fn facts(json: &str) -> NodeFacts {
        facts_from_status_json(json, "boot-7\n").unwrap()
    }

    #[test]
    fn fresh() {
        let f = facts(fixture!("status/fresh.json"));
        assert_eq!(
            f,
            NodeFacts {
                version: "1".into(),
                slot: Slot::A,
                boot_id: "boot-7".into(),
                staged: None,
                trial_armed: None,
                running_on_trial: false,
                rolled_back: None,
            }
        );
    }

    #[test]
    fn trial_armed() {
        let f = facts(fixture!("status/trial-armed.json"));
        assert_eq!((f.version.as_str(), f.slot), ("1", Slot::A));
        assert_eq!(f.staged.as_deref(), Some("2"));
        assert_eq!(f.trial_armed.as_deref(), Some("2"));
        assert!(!f.running_on_trial);
    }

    #[test]
    fn on_trial() {
        let f = facts(fixture!("status/on-trial.json"));
        assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B));
        assert!(f.running_on_trial);
        assert_eq!(f.trial_armed, None, "the trial is the running slot");
        assert_eq!(f.staged.as_deref(), Some("1"));
    }

    #[test]
    fn marked_good() {
        let f = facts(fixture!("status/marked-good.json"));
        assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B));
        assert!(!f.running_on_trial);
        assert_eq!((f.trial_armed, f.rolled_back), (None, None));
    }

    #[test]
    fn rolled_back() {
        let f = facts(fixture!("status/rolled-back.json"));
        assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B));
        assert_eq!(
            f.rolled_back.as_deref(),
            Some("slot A (3) was never marked good; GRUB fell back to slot B")
        );
        assert_eq!(f.trial_armed, None);
    }

    #[test]
    fn not_installed() {
        let e = facts_from_status_json(fixture!("status/not-installed.json"), "x").unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
    }

    #[test]
    fn bad_status_json_is_a_clear_error() {
        let e = facts_from_status_json("not json", "x").unwrap_err();
        assert!(e.to_string().contains("rkos status --json"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(fixture!("status/fresh.json")).unwrap();
        v["slots"][0]["version"] = serde_json::Value::Null;
        let e = facts_from_status_json(&v.to_string(), "x").unwrap_err();
        assert!(
            e.to_string().contains("the running slot A has no version"),
            "{e}"
        );
        // A field gone (renamed on one side) is an error naming it, never "no trial".
        v.as_object_mut().unwrap().remove("trial");
        let e = facts_from_status_json(&v.to_string(), "x").unwrap_err();
        assert!(e.to_string().contains("missing field `trial`"), "{e}");
    }
}
