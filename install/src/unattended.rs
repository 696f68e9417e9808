//! The settings of an install without questions (k3OS's silent install), and the kernel
//! arguments an installed node keeps from the live boot.
//!
//! The settings' home is the merged config's `install` section ([`Unattended::from_config`]);
//! the `rkos.install.*` words are still read from the command line here as well
//! ([`unattended_from_cmdline`]), until the merged config carries all of them.

use std::path::Path;

use rkos_contract::cmdline::{keys, truthy, Cmdline};

/// What an unattended install does: `rkos.install.device=`, `rkos.install.config_url=`,
/// `rkos.install.power_off`, `rkos.install.reboot`, `rkos.install.tty=`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unattended {
    pub device: Option<String>,
    pub config_url: Option<String>,
    pub power_off: bool,
    pub reboot: bool,
    pub tty: Option<String>,
}

impl Unattended {
    /// From the live system's merged config (boot medium, NoCloud seed, command line).
    pub fn from_config(install: &rkos_config::Install) -> Unattended {
        Unattended {
            device: install.device.clone(),
            config_url: install.config_url.clone(),
            power_off: install.power_off == Some(true),
            reboot: false,
            tty: install.tty.clone(),
        }
    }

    /// `self`, with what it leaves unset taken from `other`; a power-off or reboot asked by
    /// either is done.
    pub fn or(self, other: Unattended) -> Unattended {
        Unattended {
            device: self.device.or(other.device),
            config_url: self.config_url.or(other.config_url),
            power_off: self.power_off || other.power_off,
            reboot: self.reboot || other.reboot,
            tty: self.tty.or(other.tty),
        }
    }
}

/// The `rkos.install.*` words of a kernel command line (`k3os.install.*` accepted as well),
/// split by the one splitter ([`Cmdline`]): a later word overrides an earlier one.
pub fn unattended_from_cmdline(cmdline: &str) -> Unattended {
    let mut u = Unattended::default();
    for (key, w) in Cmdline::parse(cmdline).rkos_words() {
        let Some(key) = key.strip_prefix("install.") else {
            continue;
        };
        let v = w.value.clone();
        match key.replace('-', "_").as_str() {
            "device" => u.device = v.filter(|s| !s.is_empty()),
            "config_url" => u.config_url = v.filter(|s| !s.is_empty()),
            "power_off" | "poweroff" => u.power_off = truthy(v.as_deref()),
            "reboot" => u.reboot = truthy(v.as_deref()),
            "tty" => u.tty = v,
            _ => {}
        }
    }
    u
}

/// Kernel arguments an installed node should keep from the live boot: the serial console
/// the install ran on, so the installed system talks on the same console. A bare `console`
/// names no console and is not kept.
pub fn consoles_from_cmdline(cmdline: &str) -> Vec<String> {
    Cmdline::parse(cmdline)
        .words()
        .iter()
        .filter(|w| w.key == keys::CONSOLE)
        .filter_map(|w| Some(format!("{}={}", keys::CONSOLE, w.value.as_ref()?)))
        .collect()
}

/// The `console=` arguments of this boot (`ROOT/proc/cmdline`) that the installed system's
/// GRUB must add: grub.cfg already passes tty0 and ttyS0, only other consoles are carried.
pub fn extra_cmdline(root: &Path) -> Option<String> {
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    let extra: Vec<_> = consoles_from_cmdline(&cmdline)
        .into_iter()
        .filter(|a| a != "console=tty0" && !a.starts_with("console=ttyS0"))
        .collect();
    (!extra.is_empty()).then(|| extra.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unattended_params() {
        let u = unattended_from_cmdline(
            "BOOT_IMAGE=/boot/vmlinuz rkos.mode=install rkos.install.device=/dev/vda rkos.install.config_url=\"http://10.0.2.2:8000/a b.yaml\" rkos.install.power_off console=ttyS0",
        );
        assert_eq!(u.device.as_deref(), Some("/dev/vda"));
        assert_eq!(
            u.config_url.as_deref(),
            Some("http://10.0.2.2:8000/a b.yaml")
        );
        assert!(u.power_off);
        assert!(!u.reboot);
        let k = unattended_from_cmdline(
            "k3os.install.device=/dev/sda k3os.install.power_off=false k3os.install.reboot=true",
        );
        assert_eq!(k.device.as_deref(), Some("/dev/sda"));
        assert!(!k.power_off);
        assert!(k.reboot);
        assert_eq!(unattended_from_cmdline("quiet"), Unattended::default());
        // The last word wins, as for every key; nothing after `--` counts.
        let last = unattended_from_cmdline(
            "rkos.install.device=/dev/sda rkos.install.device=/dev/vdb -- rkos.install.reboot",
        );
        assert_eq!(last.device.as_deref(), Some("/dev/vdb"));
        assert!(!last.reboot);
    }

    #[test]
    fn the_command_line_wins_over_the_config_section() {
        let section = rkos_config::Install {
            device: Some("/dev/sdb".into()),
            config_url: Some("http://cfg".into()),
            power_off: Some(true),
            ..Default::default()
        };
        let u = unattended_from_cmdline("rkos.install.device=/dev/vda")
            .or(Unattended::from_config(&section));
        assert_eq!(u.device.as_deref(), Some("/dev/vda"));
        assert_eq!(u.config_url.as_deref(), Some("http://cfg"));
        assert!(u.power_off && !u.reboot);
    }

    #[test]
    fn consoles() {
        assert_eq!(
            consoles_from_cmdline("a console=tty0 b console console=ttyS0,115200n8"),
            ["console=tty0", "console=ttyS0,115200n8"]
        );
        // The kernel hands the words after `--` to init: they are not its consoles.
        assert_eq!(
            consoles_from_cmdline("console=ttyS1 -- console=ttyS2"),
            ["console=ttyS1"]
        );
    }

    #[test]
    fn consoles_other_than_the_default_ones_are_carried_over() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(
            t.path().join("proc/cmdline"),
            "rkos.mode=live console=tty0 console=ttyS0,115200n8\n",
        )
        .unwrap();
        assert_eq!(extra_cmdline(t.path()), None);
        std::fs::write(
            t.path().join("proc/cmdline"),
            "console=ttyS1,9600 console=tty0 quiet\n",
        )
        .unwrap();
        assert_eq!(
            extra_cmdline(t.path()).as_deref(),
            Some("console=ttyS1,9600")
        );
    }
}
