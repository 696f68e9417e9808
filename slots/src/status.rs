//! What `rkos status` reports: the slot running, the fallback, versions, trial, last outcome.
//!
//! [`NodeStatus`] is also what `rkos status --json` prints and what the upgrade agent reads
//! back (part of the node↔agent contract, with [`crate::upgrade::UpgradeReport`]). Every
//! field but the later `min_version` is required when read, `null` included: `Option` fields are read with
//! `Option::deserialize`, which turns off serde's "missing means `None`", so a field renamed
//! on one side fails loudly on the other instead of reading as "no trial" or "not on trial"
//! (the agent would then stage forever, or never mark the slot good).

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use rkos_contract::{Cmdline, Slot};

use crate::boot::{BootState, Outcome, Trial};
use crate::state::{StateDir, StateError};

/// The slot the kernel was booted from: `rkos.slot=` on the command line (set by grub.cfg;
/// the last one wins, as for rkos-init).
pub fn booted_slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    Cmdline::parse(cmdline).slot()?.ok()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot: Slot,
    /// The version in the slot's manifest; `None` when the slot is empty or incomplete.
    #[serde(deserialize_with = "Option::deserialize")]
    pub version: Option<String>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub arch: Option<String>,
    /// Why the manifest could not be read, if it exists but is broken.
    #[serde(deserialize_with = "Option::deserialize")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The slot this system runs from (`None`: not booted from disk, or unknown).
    #[serde(deserialize_with = "Option::deserialize")]
    pub active: Option<Slot>,
    /// The default slot in the GRUB environment (the known-good one).
    pub default: Slot,
    /// The slot GRUB goes back to if this boot is never marked good (only while on trial).
    #[serde(deserialize_with = "Option::deserialize")]
    pub fallback: Option<Slot>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub trial: Option<Trial>,
    /// Whether the running slot is on trial and still needs marking good.
    pub running_on_trial: bool,
    #[serde(deserialize_with = "Option::deserialize")]
    pub last_outcome: Option<Outcome>,
    pub slots: Vec<SlotInfo>,
    /// The node's rollback floor ([`crate::floor`]): nothing older is installed. The one
    /// field that may be absent, and is left out when there is no floor: a node whose
    /// `rkos` predates it prints none, and an agent must still read that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// What `rkos status --json` prints: `{"installed": false}` on a node without A/B slots
/// (live, netboot), else `"installed": true` beside the fields of [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// Booted from the live medium or the network: no slots to report.
    NotInstalled,
    Installed(Status),
}

impl Serialize for NodeStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            installed: bool,
            #[serde(flatten)]
            status: Option<&'a Status>,
        }
        let status = match self {
            NodeStatus::NotInstalled => None,
            NodeStatus::Installed(st) => Some(st),
        };
        Json {
            installed: status.is_some(),
            status,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeStatus {
    /// `installed` first, then (when true) the [`Status`] from the other fields, so that a
    /// missing field is reported by name (serde's flattened `Option` would read it as `None`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Json {
            installed: bool,
            #[serde(flatten)]
            rest: serde_json::Map<String, serde_json::Value>,
        }
        let json = Json::deserialize(d)?;
        if !json.installed {
            return Ok(NodeStatus::NotInstalled);
        }
        Status::deserialize(serde_json::Value::Object(json.rest))
            .map(NodeStatus::Installed)
            .map_err(D::Error::custom)
    }
}

impl Status {
    pub fn from_parts(active: Option<Slot>, boot: &BootState, slots: Vec<SlotInfo>) -> Self {
        let running_on_trial = matches!((active, boot.trial), (Some(a), Some(t)) if a == t.slot);
        Status {
            active,
            default: boot.default,
            fallback: running_on_trial.then_some(boot.default),
            trial: boot.trial,
            running_on_trial,
            last_outcome: boot.last,
            slots,
            min_version: None,
        }
    }

    /// Reads the boot state, both slots' manifests and the floor under `state`.
    pub fn read(state: &StateDir, active: Option<Slot>) -> Result<Self, StateError> {
        let boot = state.boot_state()?;
        let slots = Slot::ALL
            .iter()
            .map(|&slot| match state.read_manifest(slot) {
                Ok(m) => SlotInfo {
                    slot,
                    version: m.as_ref().map(|m| m.version.clone()),
                    arch: m.map(|m| m.arch),
                    error: None,
                },
                Err(e) => SlotInfo {
                    slot,
                    version: None,
                    arch: None,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        Ok(Status {
            min_version: state.min_version()?.map(|f| f.version),
            ..Status::from_parts(active, &boot, slots)
        })
    }

    pub fn version_of(&self, slot: Slot) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.slot == slot)
            .and_then(|s| s.version.as_deref())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ver = |s: Slot| self.version_of(s).unwrap_or("(empty)").to_string();
        match self.active {
            Some(a) => writeln!(f, "active slot:   {a} (version {})", ver(a))?,
            None => writeln!(f, "active slot:   unknown (not booted from a slot)")?,
        }
        writeln!(
            f,
            "default slot:  {} (version {})",
            self.default,
            ver(self.default)
        )?;
        match (self.fallback, self.trial) {
            (Some(fb), Some(t)) => writeln!(
                f,
                "fallback slot: {fb} (version {}): GRUB boots it by itself if slot {} is not marked good ({} tries left)",
                ver(fb),
                t.slot,
                t.tries_left
            )?,
            _ => {
                let other = self.active.unwrap_or(self.default).other();
                writeln!(
                    f,
                    "fallback slot: none automatic; slot {other} (version {}) can be chosen in the GRUB menu",
                    ver(other)
                )?
            }
        }
        match self.trial {
            Some(t) if self.running_on_trial => writeln!(
                f,
                "trial:         running slot {} on trial, not yet marked good ({} tries left)",
                t.slot, t.tries_left
            )?,
            Some(t) => writeln!(
                f,
                "trial:         slot {} (version {}) staged, boots on trial next ({} tries)",
                t.slot,
                ver(t.slot),
                t.tries_left
            )?,
            None => writeln!(f, "trial:         none")?,
        }
        match self.last_outcome {
            Some(Outcome::Good(s)) => writeln!(
                f,
                "last outcome:  slot {s} passed its trial and was marked good"
            )?,
            Some(Outcome::RolledBack(s)) => writeln!(
                f,
                "last outcome:  slot {s} was never marked good; GRUB rolled back to slot {}",
                self.default
            )?,
            None => writeln!(f, "last outcome:  none recorded")?,
        }
        if let Some(min) = &self.min_version {
            writeln!(
                f,
                "min version:   {min}: nothing older is installed, --allow-downgrade included"
            )?;
        }
        for s in &self.slots {
            if let Some(e) = &s.error {
                writeln!(f, "warning:       slot {}: {e}", s.slot)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booted_slot_from_the_cmdline() {
        assert_eq!(
            booted_slot_from_cmdline("BOOT_IMAGE=/x rkos.mode=disk rkos.slot=B quiet"),
            Some(Slot::B)
        );
        assert_eq!(booted_slot_from_cmdline("rkos.slot=C"), None);
        assert_eq!(booted_slot_from_cmdline("quiet"), None);
        // The last `rkos.slot=` wins, as rkos-init reads it (an operator's addition in the
        // GRUB editor comes after grub.cfg's).
        assert_eq!(
            booted_slot_from_cmdline("rkos.slot=A quiet rkos.slot=B"),
            Some(Slot::B)
        );
    }

    fn on_trial() -> Status {
        let boot = BootState::default().put_on_trial(Slot::B, 3).unwrap();
        let slot = |slot, version: &str| SlotInfo {
            slot,
            version: Some(version.into()),
            arch: Some("amd64".into()),
            error: None,
        };
        Status::from_parts(
            Some(Slot::A),
            &boot,
            vec![slot(Slot::A, "1"), slot(Slot::B, "2")],
        )
    }

    #[test]
    fn node_status_json_round_trip() {
        let installed = NodeStatus::Installed(on_trial());
        let json = serde_json::to_value(&installed).unwrap();
        assert_eq!(json["installed"], true);
        assert_eq!(json["trial"]["slot"], "B");
        assert_eq!(json["slots"][1]["version"], "2");
        assert_eq!(
            serde_json::from_value::<NodeStatus>(json).unwrap(),
            installed
        );
        let live = serde_json::to_string(&NodeStatus::NotInstalled).unwrap();
        assert_eq!(live, r#"{"installed":false}"#);
        assert_eq!(
            serde_json::from_str::<NodeStatus>(&live).unwrap(),
            NodeStatus::NotInstalled
        );
    }

    #[test]
    fn every_status_field_is_required_null_included() {
        // Dropping any one field must be an error naming it, never a silent default: null is
        // a value, absence is a field renamed on one side.
        let mut full = serde_json::to_value(NodeStatus::Installed(on_trial())).unwrap();
        full["last_outcome"] = serde_json::json!({"outcome": "rolled-back", "slot": "B"});
        serde_json::from_value::<NodeStatus>(full.clone()).unwrap();
        let fields = [
            ("", "installed"),
            ("", "active"),
            ("", "default"),
            ("", "fallback"),
            ("", "trial"),
            ("", "running_on_trial"),
            ("", "last_outcome"),
            ("", "slots"),
            ("/trial", "slot"),
            ("/trial", "tries_left"),
            ("/last_outcome", "outcome"),
            ("/last_outcome", "slot"),
            ("/slots/0", "slot"),
            ("/slots/0", "version"),
            ("/slots/0", "arch"),
            ("/slots/0", "error"),
        ];
        for (pointer, field) in fields {
            let mut v = full.clone();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(field)
                .unwrap();
            let e = serde_json::from_value::<NodeStatus>(v).unwrap_err();
            assert!(e.to_string().contains(field), "{pointer}/{field}: {e}");
        }
    }

    #[test]
    fn the_floor_is_optional_in_the_json_and_shown_when_set() {
        // Without a floor the JSON is what it was (the agent's recorded fixtures), and JSON
        // without the field (an older node's) reads as no floor.
        let plain = on_trial();
        let json = serde_json::to_value(NodeStatus::Installed(plain.clone())).unwrap();
        assert!(json.get("min_version").is_none(), "{json}");
        assert_eq!(
            serde_json::from_value::<NodeStatus>(json).unwrap(),
            NodeStatus::Installed(plain.clone())
        );
        assert!(!plain.to_string().contains("min version"));

        let floored = Status {
            min_version: Some("1.5".into()),
            ..plain
        };
        let json = serde_json::to_value(NodeStatus::Installed(floored.clone())).unwrap();
        assert_eq!(json["min_version"], "1.5");
        assert_eq!(
            serde_json::from_value::<NodeStatus>(json).unwrap(),
            NodeStatus::Installed(floored.clone())
        );
        let text = floored.to_string();
        assert!(text.contains("min version:   1.5"), "{text}");
    }

    #[test]
    fn status_reads_the_floor_from_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        std::fs::create_dir_all(st.grub_dir()).unwrap();
        st.write_boot_state(&BootState::default()).unwrap();
        assert_eq!(Status::read(&st, Some(Slot::A)).unwrap().min_version, None);
        std::fs::write(st.min_version_file(), "2.1\n").unwrap();
        assert_eq!(
            Status::read(&st, Some(Slot::A))
                .unwrap()
                .min_version
                .as_deref(),
            Some("2.1")
        );
    }

    #[test]
    fn trial_status_names_the_fallback() {
        let boot = BootState::default().put_on_trial(Slot::B, 3).unwrap();
        let (_, boot) = boot.grub_boot();
        let st = Status::from_parts(Some(Slot::B), &boot, vec![]);
        assert!(st.running_on_trial);
        assert_eq!(st.fallback, Some(Slot::A));
        let text = st.to_string();
        assert!(text.contains("fallback slot: A"), "{text}");
        assert!(text.contains("2 tries left"), "{text}");

        let (_, rolled) = boot.grub_boot().1.grub_boot().1.grub_boot();
        let st = Status::from_parts(Some(Slot::A), &rolled, vec![]);
        assert!(!st.running_on_trial);
        assert_eq!(st.fallback, None);
        assert!(st.to_string().contains("slot B was never marked good"));
    }
}
