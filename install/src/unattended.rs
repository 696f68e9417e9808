//! The settings of an install without questions (k3OS's silent install), and the kernel
//! arguments an installed node keeps from the live boot.
//!
//! The settings' one home is the live system's merged config, its `install` section
//! ([`Unattended::from_config`]): the config crate turns the `rkos.install.*` words of the
//! kernel command line into that section, above the boot medium's config and a NoCloud seed.

use std::path::Path;

use rkos_contract::cmdline::{keys, Cmdline};

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
            reboot: install.reboot == Some(true),
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

/// How an install started by the boot (`rkos.mode=install`, rkos-install.service) begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Install without questions: a disk or a config was named.
    Unattended,
    /// Nothing was named (the ISO's plain "rkos install" entry): erase nothing, start
    /// `os-config` on the console.
    Interactive,
}

impl Unattended {
    /// A disk is erased without a question only when the operator named a device or a config
    /// (`rkos.install.device=`, `rkos.install.config_url=` on the kernel command line, or the
    /// same keys in the `install:` section of the boot medium's config or a NoCloud seed):
    /// a menu entry alone must never erase the only disk of a machine.
    pub fn start(&self) -> Start {
        if self.device.is_some() || self.config_url.is_some() {
            Start::Unattended
        } else {
            Start::Interactive
        }
    }
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

/// The `console=` arguments of this boot (`ROOT/proc/cmdline`) the installed system keeps:
/// none when they are grub.cfg's defaults (tty0 and ttyS0), else all of them in order, as
/// they replace grub.cfg's list (`rkos_consoles`) rather than adding to it.
pub fn extra_cmdline(root: &Path) -> Option<String> {
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    let consoles = consoles_from_cmdline(&cmdline);
    let default = |a: &String| a == "console=tty0" || a.starts_with("console=ttyS0");
    (!consoles.iter().all(default)).then(|| consoles.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    use rkos_config::{Source, SourceKind};

    /// The settings the merged config of these sources gives.
    fn from_sources(sources: &[Source]) -> Unattended {
        let loaded = rkos_config::load(sources);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        Unattended::from_config(&loaded.config.rkos.install)
    }

    fn from_cmdline(cmdline: &str) -> Unattended {
        from_sources(&[Source::cmdline(cmdline)])
    }

    #[test]
    fn settings_from_the_kernel_command_line() {
        let u = from_cmdline(
            "BOOT_IMAGE=/boot/vmlinuz rkos.mode=install rkos.install.device=/dev/vda rkos.install.config_url=\"http://10.0.2.2:8000/a b.yaml\" rkos.install.power_off console=ttyS0",
        );
        assert_eq!(u.device.as_deref(), Some("/dev/vda"));
        assert_eq!(
            u.config_url.as_deref(),
            Some("http://10.0.2.2:8000/a b.yaml")
        );
        assert!(u.power_off);
        assert!(!u.reboot);
        let k = from_cmdline(
            "k3os.install.device=/dev/sda k3os.install.power-off=false k3os.install.reboot=true rkos.install.tty=ttyS1",
        );
        assert_eq!(k.device.as_deref(), Some("/dev/sda"));
        assert!(!k.power_off);
        assert!(k.reboot);
        assert_eq!(k.tty.as_deref(), Some("ttyS1"));
        assert_eq!(from_cmdline("quiet"), Unattended::default());
        // The last word wins, as for every key; nothing after `--` counts.
        let last = from_cmdline(
            "rkos.install.device=/dev/sda rkos.install.poweroff rkos.install.device=/dev/vdb -- rkos.install.reboot",
        );
        assert_eq!(last.device.as_deref(), Some("/dev/vdb"));
        assert!(last.power_off && !last.reboot);
    }

    #[test]
    fn the_command_line_wins_over_the_boot_mediums_section_and_the_flags_over_both() {
        let medium = Source::new(
            SourceKind::BootMedium,
            "/run/rkos/boot/config.yaml",
            "rkos:\n  install:\n    device: /dev/sdb\n    config_url: http://cfg\n    power_off: true\n",
        );
        let u = from_sources(&[medium, Source::cmdline("rkos.install.device=/dev/vda")]);
        assert_eq!(u.device.as_deref(), Some("/dev/vda"));
        assert_eq!(u.config_url.as_deref(), Some("http://cfg"));
        assert!(u.power_off && !u.reboot);
        let flags = Unattended {
            config_url: Some("/srv/node.yaml".into()),
            reboot: true,
            ..Default::default()
        };
        let both = flags.or(u);
        assert_eq!(both.device.as_deref(), Some("/dev/vda"));
        assert_eq!(both.config_url.as_deref(), Some("/srv/node.yaml"));
        assert!(both.power_off && both.reboot);
    }

    #[test]
    fn only_a_named_device_or_config_installs_without_questions() {
        // The ISO's "rkos install" entry: nothing named, even with power_off asked.
        let plain =
            from_cmdline("BOOT_IMAGE=/boot/vmlinuz rkos.mode=install rkos.install.power_off");
        assert_eq!(plain.start(), Start::Interactive);
        assert_eq!(Unattended::default().start(), Start::Interactive);
        for named in [
            "rkos.mode=install rkos.install.device=/dev/vda",
            "rkos.mode=install rkos.install.config_url=http://10.0.2.2/n.yaml",
            "k3os.mode=install k3os.install.device=/dev/sda",
        ] {
            assert_eq!(from_cmdline(named).start(), Start::Unattended, "{named}");
        }
        // A boot medium prepared for a silent install names its disk in its own config.
        let medium = Source::new(
            SourceKind::BootMedium,
            "/run/rkos/boot/config.yaml",
            "rkos:\n  install:\n    device: /dev/sdb\n",
        );
        assert_eq!(from_sources(&[medium]).start(), Start::Unattended);
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
    fn consoles_other_than_the_default_ones_are_carried_over_with_the_others() {
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
            Some("console=ttyS1,9600 console=tty0")
        );
        std::fs::write(t.path().join("proc/cmdline"), "quiet\n").unwrap();
        assert_eq!(extra_cmdline(t.path()), None);
    }
}
