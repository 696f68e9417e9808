//! Boot counting: the state GRUB keeps in its environment block and its transitions.
//!
//! GRUB script has no arithmetic, so the number of tries left is one of a few explicit values
//! (`rkos_tries` = `MAX_TRIES` ... `0`) and `slots/grub/grub.cfg` decrements it with an
//! if-chain. This module is the model of that script; the real-GRUB test
//! (`tests/grub_qemu.rs`) boots the template in QEMU and checks every step against it.
//!
//! Variables:
//! - `rkos_default` — the slot known good (`A` or `B`; absent means `A`);
//! - `rkos_trial` — the slot on trial, or empty;
//! - `rkos_tries` — boots of the trial slot GRUB may still start; `0` while the last try runs;
//! - `rkos_last` — the last recorded outcome: `good:X` (a trial marked good) or
//!   `rolled-back:X` (GRUB gave up on trial slot X and booted the default).

use std::fmt;
use std::str::FromStr;

use rkos_contract::{Slot, SlotError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::grubenv::{EnvError, GrubEnv};

pub const KEY_DEFAULT: &str = "rkos_default";
pub const KEY_TRIAL: &str = "rkos_trial";
pub const KEY_TRIES: &str = "rkos_tries";
pub const KEY_LAST: &str = "rkos_last";

/// Most tries a trial may get: the grub.cfg if-chain handles 1..=MAX_TRIES.
pub const MAX_TRIES: u8 = 5;
/// Tries given to a new slot unless the caller asks otherwise.
pub const DEFAULT_TRIES: u8 = 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BootError {
    #[error(transparent)]
    BadSlot(#[from] SlotError),
    #[error("invalid {KEY_TRIES} value {0:?} (expected 0..={MAX_TRIES})")]
    BadTries(String),
    #[error("invalid {KEY_LAST} value {0:?}")]
    BadOutcome(String),
    #[error("{KEY_TRIES} is set without a trial slot")]
    TriesWithoutTrial,
    #[error("the trial slot {0} is also the default slot")]
    TrialIsDefault(Slot),
    #[error("tries must be 1..={MAX_TRIES}, got {0}")]
    TriesRange(u8),
    #[error("slot {0} is the default slot; only the other slot can be put on trial")]
    AlreadyDefault(Slot),
    #[error(
        "booted slot {booted} is neither the default ({default}) nor on trial; not marking it good"
    )]
    NotTrialNorDefault { booted: Slot, default: Slot },
    #[error(transparent)]
    Env(#[from] EnvError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub slot: Slot,
    /// Boots GRUB may still start; 0 means the last one is running or has failed.
    pub tries_left: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "slot", rename_all = "kebab-case")]
pub enum Outcome {
    /// The trial of this slot was marked good and it became the default.
    Good(Slot),
    /// GRUB exhausted the tries of this slot and went back to the default by itself.
    RolledBack(Slot),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Good(s) => write!(f, "good:{s}"),
            Outcome::RolledBack(s) => write!(f, "rolled-back:{s}"),
        }
    }
}

impl FromStr for Outcome {
    type Err = BootError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BootError::BadOutcome(s.to_string());
        let (kind, slot) = s.split_once(':').ok_or_else(bad)?;
        let slot: Slot = slot.parse().map_err(|_| bad())?;
        match kind {
            "good" => Ok(Outcome::Good(slot)),
            "rolled-back" => Ok(Outcome::RolledBack(slot)),
            _ => Err(bad()),
        }
    }
}

/// The boot-counting state held in the GRUB environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    pub default: Slot,
    pub trial: Option<Trial>,
    pub last: Option<Outcome>,
}

impl Default for BootState {
    /// A fresh install: slot A, nothing on trial.
    fn default() -> Self {
        BootState {
            default: Slot::A,
            trial: None,
            last: None,
        }
    }
}

impl BootState {
    /// Reads the state from an environment block; unknown variables are ignored, malformed
    /// rkos variables are errors (we never act on an environment we do not understand).
    pub fn from_env(env: &GrubEnv) -> Result<Self, BootError> {
        let nonempty = |k| env.get(k).filter(|v| !v.is_empty());
        let default = match nonempty(KEY_DEFAULT) {
            Some(v) => v.parse()?,
            None => Slot::A,
        };
        let tries = match nonempty(KEY_TRIES) {
            Some(v) => Some(
                v.parse::<u8>()
                    .ok()
                    .filter(|t| *t <= MAX_TRIES)
                    .ok_or_else(|| BootError::BadTries(v.to_string()))?,
            ),
            None => None,
        };
        let trial = match (nonempty(KEY_TRIAL), tries) {
            (Some(s), t) => {
                let slot: Slot = s.parse()?;
                if slot == default {
                    return Err(BootError::TrialIsDefault(slot));
                }
                Some(Trial {
                    slot,
                    tries_left: t.unwrap_or(0),
                })
            }
            (None, Some(_)) => return Err(BootError::TriesWithoutTrial),
            (None, None) => None,
        };
        let last = nonempty(KEY_LAST).map(str::parse).transpose()?;
        Ok(BootState {
            default,
            trial,
            last,
        })
    }

    /// Writes the state into an environment block, leaving other variables alone.
    pub fn apply_to(&self, env: &mut GrubEnv) -> Result<(), BootError> {
        env.set(KEY_DEFAULT, self.default.as_str())?;
        match self.trial {
            Some(t) => {
                env.set(KEY_TRIAL, t.slot.as_str())?;
                env.set(KEY_TRIES, &t.tries_left.to_string())?;
            }
            None => {
                env.set(KEY_TRIAL, "")?;
                env.set(KEY_TRIES, "")?;
            }
        }
        match self.last {
            Some(o) => env.set(KEY_LAST, &o.to_string())?,
            None => env.set(KEY_LAST, "")?,
        }
        Ok(())
    }

    /// Puts `slot` on trial with `tries` boots; the default stays the fallback.
    pub fn put_on_trial(&self, slot: Slot, tries: u8) -> Result<Self, BootError> {
        if tries == 0 || tries > MAX_TRIES {
            return Err(BootError::TriesRange(tries));
        }
        if slot == self.default {
            return Err(BootError::AlreadyDefault(slot));
        }
        Ok(BootState {
            trial: Some(Trial {
                slot,
                tries_left: tries,
            }),
            ..*self
        })
    }

    /// Removes a pending trial (before the inactive slot is rewritten: a power cut while its
    /// files are incomplete must not leave GRUB trying it).
    pub fn cancel_trial(&self) -> Self {
        BootState {
            trial: None,
            ..*self
        }
    }

    /// What GRUB does at power-on: returns the slot it boots and the state it saves first.
    pub fn grub_boot(&self) -> (Slot, BootState) {
        match self.trial {
            Some(t) if t.tries_left > 0 => (
                t.slot,
                BootState {
                    trial: Some(Trial {
                        slot: t.slot,
                        tries_left: t.tries_left - 1,
                    }),
                    ..*self
                },
            ),
            Some(t) => (
                self.default,
                BootState {
                    default: self.default,
                    trial: None,
                    last: Some(Outcome::RolledBack(t.slot)),
                },
            ),
            None => (self.default, *self),
        }
    }

    /// What GRUB does when it cannot write its environment (`save_env` fails: a failing
    /// disk, a read-only medium): it boots the known-good slot and the state stays as it
    /// was, so a trial never runs without its try counted.
    pub fn grub_boot_unsaved(&self) -> (Slot, BootState) {
        (self.default, *self)
    }

    /// The slot GRUB falls back to when the kernel of the slot it chose cannot be loaded:
    /// always the other one (retrying the same slot would fail the same way).
    pub fn grub_fallback(booted: Slot) -> Slot {
        booted.other()
    }

    /// The running system found itself healthy on `booted`.
    pub fn mark_good(&self, booted: Slot) -> Result<Self, BootError> {
        match self.trial {
            Some(t) if t.slot == booted => Ok(BootState {
                default: booted,
                trial: None,
                last: Some(Outcome::Good(booted)),
            }),
            // Already the default (a normal boot, or the default picked by hand while a
            // trial waits): nothing to record, and a pending trial keeps its tries.
            _ if booted == self.default => Ok(*self),
            _ => Err(BootError::NotTrialNorDefault {
                booted,
                default: self.default,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trial_runs_out_then_falls_back() {
        let s = BootState::default().put_on_trial(Slot::B, 3).unwrap();
        let mut booted = Vec::new();
        let mut st = s;
        for _ in 0..5 {
            let (slot, next) = st.grub_boot();
            booted.push(slot);
            st = next;
        }
        assert_eq!(booted, [Slot::B, Slot::B, Slot::B, Slot::A, Slot::A]);
        assert_eq!(st.trial, None);
        assert_eq!(st.default, Slot::A);
        assert_eq!(st.last, Some(Outcome::RolledBack(Slot::B)));
    }

    #[test]
    fn mark_good_on_last_try_promotes() {
        let mut st = BootState::default().put_on_trial(Slot::B, 2).unwrap();
        st = st.grub_boot().1;
        let (slot, st) = st.grub_boot();
        assert_eq!(slot, Slot::B);
        assert_eq!(st.trial.unwrap().tries_left, 0);
        let good = st.mark_good(Slot::B).unwrap();
        assert_eq!(good.default, Slot::B);
        assert_eq!(good.trial, None);
        assert_eq!(good.last, Some(Outcome::Good(Slot::B)));
        assert_eq!(good.grub_boot().0, Slot::B);
    }

    #[test]
    fn refusals() {
        let st = BootState::default();
        assert_eq!(
            st.put_on_trial(Slot::A, 3),
            Err(BootError::AlreadyDefault(Slot::A))
        );
        assert_eq!(st.put_on_trial(Slot::B, 0), Err(BootError::TriesRange(0)));
        assert_eq!(
            st.put_on_trial(Slot::B, MAX_TRIES + 1),
            Err(BootError::TriesRange(MAX_TRIES + 1))
        );
        assert!(matches!(
            st.mark_good(Slot::B),
            Err(BootError::NotTrialNorDefault { .. })
        ));
        assert_eq!(st.mark_good(Slot::A), Ok(st));
    }

    #[test]
    fn env_roundtrip_and_strictness() {
        let st = BootState::default().put_on_trial(Slot::B, 3).unwrap();
        let mut env = GrubEnv::new();
        env.set("other", "kept").unwrap();
        st.apply_to(&mut env).unwrap();
        assert_eq!(BootState::from_env(&env).unwrap(), st);
        assert_eq!(env.get("other"), Some("kept"));
        assert_eq!(
            BootState::from_env(&GrubEnv::new()).unwrap(),
            BootState::default()
        );

        let mut bad = GrubEnv::new();
        bad.set(KEY_DEFAULT, "C").unwrap();
        assert!(matches!(
            BootState::from_env(&bad),
            Err(BootError::BadSlot(_))
        ));
        let mut bad = GrubEnv::new();
        bad.set(KEY_TRIAL, "B").unwrap();
        bad.set(KEY_TRIES, "9").unwrap();
        assert!(matches!(
            BootState::from_env(&bad),
            Err(BootError::BadTries(_))
        ));
        let mut bad = GrubEnv::new();
        bad.set(KEY_TRIES, "2").unwrap();
        assert_eq!(BootState::from_env(&bad), Err(BootError::TriesWithoutTrial));
        let mut bad = GrubEnv::new();
        bad.set(KEY_TRIAL, "A").unwrap();
        assert_eq!(
            BootState::from_env(&bad),
            Err(BootError::TrialIsDefault(Slot::A))
        );
        let mut bad = GrubEnv::new();
        bad.set(KEY_LAST, "maybe:A").unwrap();
        assert!(matches!(
            BootState::from_env(&bad),
            Err(BootError::BadOutcome(_))
        ));
    }

    fn arb_state() -> impl Strategy<Value = BootState> {
        let slot = prop_oneof![Just(Slot::A), Just(Slot::B)];
        let outcome = prop_oneof![
            Just(None),
            Just(Some(Outcome::Good(Slot::A))),
            Just(Some(Outcome::RolledBack(Slot::B)))
        ];
        (slot, proptest::option::of(0..=MAX_TRIES), outcome).prop_map(|(d, t, last)| BootState {
            default: d,
            trial: t.map(|tries_left| Trial {
                slot: d.other(),
                tries_left,
            }),
            last,
        })
    }

    proptest! {
        // Whatever happens, GRUB boots the trial slot at most tries_left times, then the
        // default for ever; and the env encoding always reads back the same state.
        #[test]
        fn bounded_tries_then_default(st in arb_state(), boots in 1usize..12) {
            let mut env = GrubEnv::new();
            st.apply_to(&mut env).unwrap();
            prop_assert_eq!(BootState::from_env(&env).unwrap(), st);

            let mut cur = st;
            let mut trial_boots = 0;
            for _ in 0..boots {
                let (slot, next) = cur.grub_boot();
                if slot != st.default { trial_boots += 1; }
                cur = next;
            }
            let allowed = st.trial.map_or(0, |t| t.tries_left as usize);
            prop_assert!(trial_boots <= allowed);
            if boots > allowed {
                prop_assert_eq!(cur.trial, None);
                prop_assert_eq!(cur.default, st.default);
                if let Some(t) = st.trial {
                    prop_assert_eq!(cur.last, Some(Outcome::RolledBack(t.slot)));
                }
            }
        }

        // Marking good while running the trial always makes it the default and ends the trial.
        #[test]
        fn mark_good_while_on_trial(st in arb_state()) {
            let (slot, booted_state) = st.grub_boot();
            let after = booted_state.mark_good(slot).unwrap();
            prop_assert_eq!(after.default, slot);
            prop_assert_eq!(after.trial, if slot == st.default { booted_state.trial } else { None });
        }
    }
}
