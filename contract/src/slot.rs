//! An A/B slot on `RKOS_STATE` (`rkos.slot=`, `slots/<X>/`, GRUB's `rkos_default`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    A,
    B,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid slot {0:?} (expected A or B)")]
pub struct SlotError(pub String);

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = SlotError;
    /// Either case: GRUB writes `A`, an operator may type `a`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A" | "a" => Ok(Slot::A),
            "B" | "b" => Ok(Slot::B),
            _ => Err(SlotError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_either_case_print_upper() {
        assert_eq!("b".parse(), Ok(Slot::B));
        assert_eq!("A".parse(), Ok(Slot::A));
        assert_eq!("C".parse::<Slot>(), Err(SlotError("C".into())));
        assert_eq!(Slot::B.to_string(), "B");
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!(serde_json::to_string(&Slot::B).unwrap(), "\"B\"");
    }
}
