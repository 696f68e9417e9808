//! What `rkos status` reports: the slot running, the fallback, versions, trial, last outcome.

use std::fmt;

use serde::Serialize;

use rkos_contract::{Cmdline, Slot};

use crate::boot::{BootState, Outcome, Trial};
use crate::state::{StateDir, StateError};

/// The slot the kernel was booted from: `rkos.slot=` on the command line (set by grub.cfg;
/// the last one wins, as for rkos-init).
pub fn booted_slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    Cmdline::parse(cmdline).slot()?.ok()
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot: Slot,
    /// The version in the slot's manifest; `None` when the slot is empty or incomplete.
    pub version: Option<String>,
    pub arch: Option<String>,
    /// Why the manifest could not be read, if it exists but is broken.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// The slot this system runs from (`None`: not booted from disk, or unknown).
    pub active: Option<Slot>,
    /// The default slot in the GRUB environment (the known-good one).
    pub default: Slot,
    /// The slot GRUB goes back to if this boot is never marked good (only while on trial).
    pub fallback: Option<Slot>,
    pub trial: Option<Trial>,
    /// Whether the running slot is on trial and still needs marking good.
    pub running_on_trial: bool,
    pub last_outcome: Option<Outcome>,
    pub slots: Vec<SlotInfo>,
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
        }
    }

    /// Reads the boot state and both slots' manifests under `state`.
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
        Ok(Status::from_parts(active, &boot, slots))
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
