//! The system side of the wizard that is not the disk install: writing the node's config and
//! applying it, and reading the unattended-install parameters.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rkos_contract::cmdline::{keys, truthy, Cmdline};
use rkos_contract::paths;

use crate::atomic::write_atomic;

/// `ROOT/var/lib/rkos/config.yaml`.
pub fn config_path(root: &Path) -> PathBuf {
    paths::under(root, paths::PERSISTENT_CONFIG)
}

/// Writes the persistent config atomically with mode 0600 (it holds the token and the
/// password hash); the directory is made 0700 if it has to be created.
pub fn write_config(root: &Path, yaml: &str) -> std::io::Result<PathBuf> {
    let path = config_path(root);
    let dir = path.parent().expect("config path has a parent");
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    write_atomic(&path, yaml.as_bytes(), 0o600)?;
    Ok(path)
}

/// Runs `rkos config apply --stage network` (the same binary) so the new config takes
/// effect: files rendered, `github:` keys fetched, k3s restarted with the new role. The
/// network stage because the node is up: it is what the boot's second apply does.
pub fn apply(rkos_binary: &Path) -> Result<(), String> {
    let status = Command::new(rkos_binary)
        .args(["config", "apply", "--stage", "network"])
        .status()
        .map_err(|e| format!("could not run {} config apply: {e}", rkos_binary.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rkos config apply --stage network` failed ({status})"
        ))
    }
}

/// Unattended install parameters (k3OS's silent install), from the kernel command line:
/// `rkos.install.device=`, `rkos.install.config_url=`, `rkos.install.power_off`,
/// `rkos.install.reboot`, `rkos.install.tty=` (`k3os.install.*` accepted as well).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unattended {
    pub device: Option<String>,
    pub config_url: Option<String>,
    pub power_off: bool,
    pub reboot: bool,
    pub tty: Option<String>,
}

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
/// the install ran on, so the installed system talks on the same console.
pub fn consoles_from_cmdline(cmdline: &str) -> Vec<String> {
    Cmdline::parse(cmdline)
        .words()
        .iter()
        .filter(|w| w.key == keys::CONSOLE)
        .filter_map(|w| Some(format!("{}={}", keys::CONSOLE, w.value.as_ref()?)))
        .collect()
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
    fn consoles() {
        assert_eq!(
            consoles_from_cmdline("a console=tty0 b console console=ttyS0,115200n8"),
            ["console=tty0", "console=ttyS0,115200n8"]
        );
    }

    #[test]
    fn writes_config_0600_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = write_config(t.path(), "hostname: a\n").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        write_config(t.path(), "hostname: b\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "hostname: b\n");
    }
}
