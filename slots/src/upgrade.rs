//! What `rkos upgrade --json` prints once it is done, and what the upgrade agent reads back
//! (part of the node↔agent contract, with [`crate::status::NodeStatus`]): one object, tagged
//! by `result`. Its [`Display`](fmt::Display) is the command's human summary.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::boot::Trial;
use rkos_contract::Slot;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum UpgradeReport {
    /// The bundle was verified and written into the inactive slot, and a trial boot of it
    /// armed.
    Staged {
        version: String,
        slot: Slot,
        /// Id of the trusted key that signed the manifest.
        key_id: String,
        /// Bytes fetched from the bundle in this run.
        downloaded_bytes: u64,
        /// Bytes reused from the partial files of an earlier, interrupted run.
        reused_bytes: u64,
        /// The trial armed: the next boot starts `armed.slot`, which gets `armed.tries_left`
        /// boots to be marked good before GRUB goes back to the other slot by itself.
        armed: Trial,
    },
    /// The node already runs the bundle's version: nothing was written.
    AlreadyRunning { version: String },
    /// Refused or failed: the error, then each of its causes (outermost first).
    Failed { error: Vec<String> },
}

impl fmt::Display for UpgradeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeReport::Staged {
                version,
                slot,
                key_id,
                downloaded_bytes,
                reused_bytes,
                armed,
            } => {
                writeln!(
                    f,
                    "staged version {version} in slot {slot} (signed by key {key_id}; \
                     {downloaded_bytes} bytes downloaded, {reused_bytes} resumed)"
                )?;
                writeln!(
                    f,
                    "next boot: slot {} on trial ({} tries), falling back to slot {} unless \
                     marked good",
                    armed.slot,
                    armed.tries_left,
                    armed.slot.other()
                )
            }
            UpgradeReport::AlreadyRunning { version } => {
                writeln!(f, "already running version {version}; nothing to do")
            }
            UpgradeReport::Failed { error } => writeln!(f, "{}", error.join(": ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged() -> UpgradeReport {
        UpgradeReport::Staged {
            version: "2".into(),
            slot: Slot::B,
            key_id: "0123ABCD".into(),
            downloaded_bytes: 5000,
            reused_bytes: 7,
            armed: Trial {
                slot: Slot::B,
                tries_left: 3,
            },
        }
    }

    #[test]
    fn the_human_summary() {
        assert_eq!(
            staged().to_string(),
            "staged version 2 in slot B (signed by key 0123ABCD; 5000 bytes downloaded, 7 \
             resumed)\nnext boot: slot B on trial (3 tries), falling back to slot A unless \
             marked good\n"
        );
        let already = UpgradeReport::AlreadyRunning {
            version: "2".into(),
        };
        assert_eq!(
            already.to_string(),
            "already running version 2; nothing to do\n"
        );
    }

    #[test]
    fn json_tagged_by_result_and_read_back() {
        let json = serde_json::to_value(staged()).unwrap();
        assert_eq!(json["result"], "staged");
        assert_eq!(json["armed"]["slot"], "B");
        assert_eq!(json["downloaded_bytes"], 5000);
        let failed = UpgradeReport::Failed {
            error: vec!["upgrade refused".into(), "bad key".into()],
        };
        for r in [
            staged(),
            UpgradeReport::AlreadyRunning {
                version: "2".into(),
            },
            failed,
        ] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<UpgradeReport>(&text).unwrap(), r);
        }
        let text = r#"{"result":"already-running","version":"3"}"#;
        assert_eq!(
            serde_json::from_str::<UpgradeReport>(text).unwrap(),
            UpgradeReport::AlreadyRunning {
                version: "3".into()
            }
        );
    }

    #[test]
    fn every_field_is_required() {
        let full = serde_json::to_value(staged()).unwrap();
        for field in [
            "result",
            "version",
            "slot",
            "key_id",
            "downloaded_bytes",
            "reused_bytes",
            "armed",
        ] {
            let mut v = full.clone();
            v.as_object_mut().unwrap().remove(field).unwrap();
            let e = serde_json::from_value::<UpgradeReport>(v).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
        let e = serde_json::from_str::<UpgradeReport>(r#"{"result":"flipped"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `flipped`"), "{e}");
    }
}
