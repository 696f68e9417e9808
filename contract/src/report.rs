//! What rkos-init records about a boot in `/run/rkos/init.json` ([`crate::paths::INIT_REPORT`]),
//! written and read back as [`InitReport`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{BootMode, Slot};

/// The file systems rkos-init mounts: `RKOS_LIVE` (iso9660), `RKOS_STATE` and `RKOS_DATA`
/// (ext4), a NoCloud seed (vfat or iso9660), the image (squashfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Iso9660,
    Ext4,
    Vfat,
    Squashfs,
}

impl FsType {
    /// The name `mount(2)` takes.
    pub fn mount_type(self) -> &'static str {
        match self {
            FsType::Iso9660 => "iso9660",
            FsType::Ext4 => "ext4",
            FsType::Vfat => "vfat",
            FsType::Squashfs => "squashfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mount_type())
    }
}

/// A device rkos-init mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub device: PathBuf,
    pub fstype: FsType,
}

/// The time one stage of the boot took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub ms: f64,
    /// The part of `ms` that is the init's own work: 0 for a stage the init does not control.
    pub own_ms: f64,
}

/// `init.json`. Every field but `mode` may be missing when read (a reader needs only what it
/// asks for); unknown fields are ignored. All times are milliseconds to one decimal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    /// The image's version (`/etc/rkos/version` in the initramfs).
    #[serde(default)]
    pub version: String,
    /// The mode the boot resolved to.
    pub mode: BootMode,
    /// The slot booted; only in disk mode.
    #[serde(default)]
    pub slot: Option<Slot>,
    /// Live/install: `RKOS_LIVE`; disk: `RKOS_STATE`; netboot: none.
    #[serde(default)]
    pub boot_device: Option<Volume>,
    /// Disk: `RKOS_DATA`.
    #[serde(default)]
    pub data_device: Option<Volume>,
    /// The NoCloud seed copied, if any.
    #[serde(default)]
    pub cidata_device: Option<PathBuf>,
    /// (image file, loop device) for each loop device set up.
    #[serde(default)]
    pub loop_devices: Vec<(PathBuf, PathBuf)>,
    /// Persistent paths seeded on `RKOS_DATA` from the image at this boot.
    #[serde(default)]
    pub seeded: Vec<PathBuf>,
    #[serde(default)]
    pub modules_loaded: Vec<String>,
    /// Modules that failed to load (a driver for absent hardware, say): never fatal by themselves.
    #[serde(default)]
    pub modules_failed: Vec<String>,
    /// How many config problems were found (they are listed in `/run/rkos/config-errors`).
    #[serde(default)]
    pub config_problems: usize,
    /// When rkos-init started, after the kernel's start.
    #[serde(default)]
    pub started_after_kernel_ms: f64,
    #[serde(default)]
    pub stages: Vec<StageTime>,
    /// Time inside finit_module outside the device wait (driver probing).
    #[serde(default)]
    pub module_kernel_ms: f64,
    /// Time inside mount(2) and loop device set-up (superblock reads, journal replay, block
    /// device configuration).
    #[serde(default)]
    pub mount_kernel_ms: f64,
    /// Time inside writes to /dev/kmsg: the kernel printing the log lines on the consoles.
    #[serde(default)]
    pub console_kernel_ms: f64,
    /// Wall time minus waiting for devices, checking/fetching the image, module init,
    /// mount(2) and console output: what the init itself computes and the small syscalls it
    /// makes.
    #[serde(default)]
    pub own_ms: f64,
    #[serde(default)]
    pub total_ms: f64,
    #[serde(default)]
    pub cpu_user_ms: f64,
    #[serde(default)]
    pub cpu_sys_ms: f64,
}

impl InitReport {
    /// A report of a boot in `mode` with nothing else recorded yet.
    pub fn new(version: impl Into<String>, mode: BootMode) -> Self {
        InitReport {
            version: version.into(),
            mode,
            slot: None,
            boot_device: None,
            data_device: None,
            cidata_device: None,
            loop_devices: Vec::new(),
            seeded: Vec::new(),
            modules_loaded: Vec::new(),
            modules_failed: Vec::new(),
            config_problems: 0,
            started_after_kernel_ms: 0.0,
            stages: Vec::new(),
            module_kernel_ms: 0.0,
            mount_kernel_ms: 0.0,
            console_kernel_ms: 0.0,
            own_ms: 0.0,
            total_ms: 0.0,
            cpu_user_ms: 0.0,
            cpu_sys_ms: 0.0,
        }
    }

    /// Every block device the boot used: the boot and data volumes, the seed, the loop
    /// devices (an installer must never offer their disks).
    pub fn devices(&self) -> impl Iterator<Item = &Path> {
        let volumes = [&self.boot_device, &self.data_device]
            .into_iter()
            .flatten()
            .map(|v| v.device.as_path());
        volumes
            .chain(self.cidata_device.as_deref())
            .chain(self.loop_devices.iter().map(|(_, dev)| dev.as_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields the QEMU tests, `rkos status`, `rkos config apply` and the live autologin
    /// generator read, as rkos-init writes them.
    #[test]
    fn json_shape_is_what_readers_expect() {
        let mut r = InitReport::new("1.2.3", BootMode::Disk);
        r.slot = Some(Slot::B);
        r.boot_device = Some(Volume {
            device: "/dev/vda3".into(),
            fstype: FsType::Ext4,
        });
        r.loop_devices = vec![(
            "/run/rkos/state/slots/B/rootfs.squashfs".into(),
            "/dev/loop0".into(),
        )];
        r.stages = vec![StageTime {
            stage: "modules".into(),
            ms: 12.5,
            own_ms: 3.0,
        }];
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["version"], "1.2.3");
        assert_eq!(v["mode"], "disk");
        assert_eq!(v["slot"], "B");
        assert_eq!(v["boot_device"]["device"], "/dev/vda3");
        assert_eq!(v["boot_device"]["fstype"], "ext4");
        assert_eq!(v["data_device"], serde_json::Value::Null);
        assert_eq!(v["loop_devices"][0][1], "/dev/loop0");
        assert_eq!(v["stages"][0]["stage"], "modules");
        assert_eq!(v["stages"][0]["own_ms"], 3.0);
        let back: InitReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_partial_report_reads_with_defaults() {
        let r: InitReport =
            serde_json::from_str(r#"{"mode":"netboot","extra":{"later":"field"}}"#).unwrap();
        assert_eq!(r, InitReport::new("", BootMode::Netboot));
        assert!(serde_json::from_str::<InitReport>(r#"{"slot":"A"}"#).is_err());
        assert!(serde_json::from_str::<InitReport>(r#"{"mode":"usb"}"#).is_err());
    }

    #[test]
    fn devices_used() {
        let mut r = InitReport::new("1", BootMode::Live);
        r.boot_device = Some(Volume {
            device: "/dev/sr0".into(),
            fstype: FsType::Iso9660,
        });
        r.cidata_device = Some("/dev/vdb".into());
        r.loop_devices = vec![(
            "/run/rkos/medium/rootfs.squashfs".into(),
            "/dev/loop0".into(),
        )];
        let devs: Vec<_> = r.devices().collect();
        assert_eq!(
            devs,
            [
                Path::new("/dev/sr0"),
                Path::new("/dev/vdb"),
                Path::new("/dev/loop0")
            ]
        );
    }
}
