//! Well-known paths on a running node, absolute. Code that works under another root (tests,
//! the installer writing a new disk, a container seeing the host at `/host`) joins them with
//! [`under`].

use std::path::{Path, PathBuf};

macro_rules! run_rkos {
    () => {
        "/run/rkos"
    };
    ($rest:literal) => {
        concat!(run_rkos!(), "/", $rest)
    };
}

macro_rules! var_lib_rkos {
    () => {
        "/var/lib/rkos"
    };
    ($rest:literal) => {
        concat!(var_lib_rkos!(), "/", $rest)
    };
}

/// rkos-init's working directory. The initramfs's `/run` moves into the real root, so what
/// rkos-init leaves here is what the real root learns about the boot.
pub const RUN_RKOS: &str = run_rkos!();
/// The live medium (`RKOS_LIVE`), read-only.
pub const MEDIUM: &str = run_rkos!("medium");
/// `RKOS_STATE`, read-only (`rkos upgrade` remounts it to write a slot).
pub const STATE_MOUNT: &str = run_rkos!("state");
/// `RKOS_DATA`, read-write: each persistent path `P` is `DATA_MOUNT/P` bind-mounted onto `P`.
pub const DATA_MOUNT: &str = run_rkos!("data");
/// The squashfs image, the overlay's lower layer.
pub const IMAGE_MOUNT: &str = run_rkos!("image");
/// The tmpfs holding the overlay's upper and work directories.
pub const RW: &str = run_rkos!("rw");
/// Netboot downloads the image here (in RAM).
pub const NETBOOT: &str = run_rkos!("netboot");
/// Netboot: the DHCP lease rkos-init got, `key=value` lines (udhcpc's names).
pub const NETBOOT_LEASE: &str = run_rkos!("netboot/lease");
/// Netboot: where the image and config came from and the image's version, `key=value` lines.
pub const NETBOOT_SOURCE: &str = run_rkos!("netboot/source");
/// Netboot: the boot NIC handed to systemd-networkd, which keeps the initramfs's address.
pub const NETBOOT_NETWORK: &str = "/run/systemd/network/70-rkos-netboot.network";
/// The boot NIC's udev link file: it keeps the name the NIC had when rkos-init configured it.
pub const NETBOOT_LINK: &str = "/run/systemd/network/70-rkos-netboot.link";
/// Netboot: the version the upgrade agent reboots this node for, and the boot it was armed
/// in (two lines); `/run` is new at every boot, so it never outlives the reboot.
pub const NETBOOT_UPGRADE: &str = run_rkos!("netboot/upgrade");
/// Netboot: the local scratch disk, when `rkos.netboot.scratch` names one.
pub const NETBOOT_SCRATCH: &str = run_rkos!("scratch");
/// A copy of the live medium's config (`rkos/config.yaml` on it), if it has one.
pub const BOOT_CONFIG: &str = run_rkos!("boot/config.yaml");
/// Copies of a NoCloud seed's files (see [`crate::files::CIDATA_FILES`]).
pub const CIDATA_DIR: &str = run_rkos!("cidata");
/// Copies of a ConfigDrive's `openstack/latest/` files (see
/// [`crate::files::CONFIG_DRIVE_FILES`]).
pub const CONFIG_DRIVE_DIR: &str = run_rkos!("config-2");
/// A NoCloud seed fetched from the URL of `ds=nocloud;s=URL` on the kernel command line
/// (by `rkos config apply --stage network`), the same files as [`CIDATA_DIR`].
pub const NOCLOUD_NET_DIR: &str = run_rkos!("nocloud-net");
/// Where rkos-init mounts a seed volume for a moment to copy it.
pub const SEED_MOUNT: &str = run_rkos!("seed.mnt");
/// rkos-init's identity decision for this boot (JSON: instance, machine, whether it is
/// new and why, the machine id, the default host name); installed nodes only.
pub const IDENTITY_REPORT: &str = run_rkos!("identity.json");
/// Configs fetched from the config's `data_sources` URLs.
pub const DATASOURCES_DIR: &str = run_rkos!("datasources");
/// rkos-init's report of the boot ([`crate::InitReport`], JSON).
pub const INIT_REPORT: &str = run_rkos!("init.json");
/// The config problems found at boot, one per line (shown at the login prompt).
pub const CONFIG_ERRORS: &str = run_rkos!("config-errors");
/// The data disks that are missing or not mounted, one line each (`rkos data-disks
/// --report`; shown at the login prompt).
pub const DATA_DISK_PROBLEMS: &str = run_rkos!("data-disks");
/// Held (`flock`, exclusive) by `rkos upgrade` from before it reads the boot state until it
/// is done, so two runs never stage or flip at once; it holds the holder's pid.
pub const UPGRADE_LOCK: &str = run_rkos!("upgrade.lock");

/// rkos's persistent state (persistent on installed nodes whatever the config says).
pub const VAR_LIB_RKOS: &str = var_lib_rkos!();
/// The node's own config, then the drop-ins of `config.d` in name order.
pub const PERSISTENT_CONFIG: &str = var_lib_rkos!("config.yaml");
pub const PERSISTENT_CONFIG_DIR: &str = var_lib_rkos!("config.d");
/// The last copy of each persistent config file that loaded without errors.
pub const LAST_GOOD_DIR: &str = var_lib_rkos!("last-good");
/// A cloud-init `user-data` that is a script, kept to be run like `run_cmd`.
pub const USER_DATA_SCRIPT: &str = var_lib_rkos!("user-data.sh");
/// A cloud-init boothook (`#cloud-boothook`), kept to be run like `boot_cmd`.
pub const USER_DATA_BOOTHOOK: &str = var_lib_rkos!("user-data-boothook.sh");
/// The instance an installed node's identity belongs to (its machine id, SSH host keys,
/// k3s node password), on `RKOS_DATA`: a new instance (cloud-init `instance-id`, else the
/// machine) gets a new identity.
pub const IDENTITY_RECORD: &str = var_lib_rkos!("identity.json");
/// SSH keys fetched for `github:`/`gitlab:` entries, used when the fetch fails.
pub const KEY_CACHE_DIR: &str = var_lib_rkos!("cache/keys");
/// What the installer installed, when and from where.
pub const INSTALLED_STAMP: &str = var_lib_rkos!("installed.json");

/// The image's default config, lowest of the config sources.
pub const IMAGE_DEFAULTS_DIR: &str = "/usr/lib/rkos/config.d";
/// The minisign public keys the image trusts for upgrades (`*.pub`).
pub const TRUSTED_KEYS_DIR: &str = "/usr/lib/rkos/trusted-keys";
/// The image's version, one line (in the root file system and in the initramfs).
pub const IMAGE_VERSION: &str = "/etc/rkos/version";
/// The kernel command line the node booted with (split by [`crate::cmdline::Cmdline`]).
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// `path` (absolute, from this module) under `root`: `under("/mnt", BOOT_CONFIG)` is
/// `/mnt/run/rkos/boot/config.yaml`; under `/` it is the path itself.
pub fn under(root: impl AsRef<Path>, path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    root.as_ref().join(path.strip_prefix("/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_root_and_under_slash() {
        assert_eq!(
            under(Path::new("/mnt"), BOOT_CONFIG),
            Path::new("/mnt/run/rkos/boot/config.yaml")
        );
        assert_eq!(under("/", INIT_REPORT), Path::new(INIT_REPORT));
        assert_eq!(
            under(IMAGE_MOUNT, Path::new("/usr")),
            Path::new("/run/rkos/image/usr")
        );
        assert_eq!(
            under(Path::new("rel"), "/var/lib/rkos"),
            Path::new("rel/var/lib/rkos")
        );
    }
}
