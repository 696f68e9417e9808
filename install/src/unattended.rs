//! The settings of an install without questions (k3OS's silent install), and the kernel
//! arguments an installed node keeps from the live boot.
//!
//! The settings' home is the merged config's `install` section ([`Unattended::from_config`]);
//! the `rkos.install.*` words are still read from the command line here as well
//! ([`unattended_from_cmdline`]), until the merged config carries all of them.

use std::path::Path;

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

fn truthy(v: Option<&str>) -> bool {
    !matches!(
        v.map(str::to_ascii_lowercase).as_deref(),
        Some("false" | "0" | "no" | "off")
    )
}

/// Splits a kernel command line into words; double quotes group words with spaces, as the
/// kernel itself does for parameter values.
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The `rkos.install.*` words of a kernel command line (`k3os.install.*` accepted as well).
pub fn unattended_from_cmdline(cmdline: &str) -> Unattended {
    let mut u = Unattended::default();
    for w in words(cmdline) {
        let (k, v) = match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w.clone(), None),
        };
        let Some(key) = k
            .strip_prefix("rkos.install.")
            .or_else(|| k.strip_prefix("k3os.install."))
        else {
            continue;
        };
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
/// the install ran on, so the installed system talks on the same console.
pub fn consoles_from_cmdline(cmdline: &str) -> Vec<String> {
    words(cmdline)
        .into_iter()
        .filter(|w| w.starts_with("console="))
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
            consoles_from_cmdline("a console=tty0 b console=ttyS0,115200n8"),
            ["console=tty0", "console=ttyS0,115200n8"]
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
