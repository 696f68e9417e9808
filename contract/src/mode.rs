//! The boot mode (`rkos.mode=`), as rkos-init resolves it and records it in `init.json`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// Booted from the `RKOS_LIVE` medium; nothing persists.
    Live,
    /// Installed: image from `RKOS_STATE:/slots/<slot>/`, persistent paths from `RKOS_DATA`.
    Disk,
    /// Diskless: the image is downloaded into RAM.
    Netboot,
    /// Like live; the real root starts the installer.
    Install,
    /// Stop after the basic mounts and module loading and start the rescue shell.
    Rescue,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown boot mode `{0}`: expected live, disk, netboot, install or rescue")]
pub struct BootModeError(pub String);

impl BootMode {
    pub const ALL: [BootMode; 5] = [
        BootMode::Live,
        BootMode::Disk,
        BootMode::Netboot,
        BootMode::Install,
        BootMode::Rescue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Live => "live",
            BootMode::Disk => "disk",
            BootMode::Netboot => "netboot",
            BootMode::Install => "install",
            BootMode::Rescue => "rescue",
        }
    }

    /// Modes whose node keeps nothing across reboots (tmpfs for kubelet and containerd).
    pub fn is_ephemeral(self) -> bool {
        matches!(self, BootMode::Live | BootMode::Install | BootMode::Netboot)
    }

    /// Live and install run from the `RKOS_LIVE` medium, which may carry a config.
    pub fn boots_from_live_medium(self) -> bool {
        matches!(self, BootMode::Live | BootMode::Install)
    }
}

impl fmt::Display for BootMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BootMode {
    type Err = BootModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BootMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| BootModeError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_round_trip() {
        for m in BootMode::ALL {
            assert_eq!(m.to_string().parse::<BootMode>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<BootMode>(&json).unwrap(), m);
        }
        assert_eq!("usb".parse::<BootMode>(), Err(BootModeError("usb".into())));
        assert!("Live".parse::<BootMode>().is_err());
    }

    #[test]
    fn ephemeral_and_live_medium_modes() {
        let ephemeral: Vec<_> = BootMode::ALL
            .into_iter()
            .filter(|m| m.is_ephemeral())
            .collect();
        assert_eq!(
            ephemeral,
            [BootMode::Live, BootMode::Netboot, BootMode::Install]
        );
        let medium: Vec<_> = BootMode::ALL
            .into_iter()
            .filter(|m| m.boots_from_live_medium())
            .collect();
        assert_eq!(medium, [BootMode::Live, BootMode::Install]);
    }
}
