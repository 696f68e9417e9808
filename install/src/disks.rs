//! Which disks can be install targets: read from `/sys/block` under a given root, so tests
//! run against a fake tree.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rkos_contract::{label, paths, InitReport};

pub use crate::layout::MIN_DISK_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name, e.g. `sda`, `nvme0n1`, `vda`.
    pub name: String,
    pub size_bytes: u64,
    pub model: String,
    pub removable: bool,
    pub read_only: bool,
}

impl Disk {
    pub fn dev_path(&self) -> PathBuf {
        PathBuf::from("/dev").join(&self.name)
    }

    pub fn describe(&self) -> String {
        let model = if self.model.is_empty() {
            "unknown model"
        } else {
            &self.model
        };
        format!(
            "{} - {} - {}{}",
            self.name,
            human_size(self.size_bytes),
            model,
            if self.removable { " (removable)" } else { "" }
        )
    }

    pub fn too_small(&self) -> bool {
        self.size_bytes < MIN_DISK_BYTES
    }
}

pub use rkos_slots::human_size;

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Kinds of block devices that are never install targets.
fn virtual_device(name: &str) -> bool {
    ["loop", "ram", "sr", "zram", "dm-", "md", "nbd", "fd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// All whole disks under `ROOT/sys/block`, minus virtual devices and the `excluded` ones
/// (kernel names of disks). Sorted by name. Too-small disks are listed (the UI says why it
/// refuses them).
pub fn list(root: &Path, excluded: &BTreeSet<String>) -> Vec<Disk> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(root.join("sys/block")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if virtual_device(&name) || excluded.contains(&name) {
            continue;
        }
        let dir = e.path();
        let sectors: u64 = read_trim(&dir.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue; // an empty card reader or a drive with no medium
        }
        // virtio disks have only a PCI vendor id here (`0x1af4`): not a name to show.
        let vendor = read_trim(&dir.join("device/vendor"))
            .filter(|v| !v.starts_with("0x"))
            .unwrap_or_default();
        let model = read_trim(&dir.join("device/model")).unwrap_or_default();
        let model = [vendor, model]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Disk {
            name,
            // /sys/block/*/size counts 512-byte sectors whatever the logical block size.
            size_bytes: sectors * 512,
            model,
            removable: read_trim(&dir.join("removable")).as_deref() == Some("1"),
            read_only: read_trim(&dir.join("ro")).as_deref() == Some("1"),
        });
    }
    out.retain(|d| !d.read_only);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One block device by kernel name, read from sysfs whatever its kind (for a device named
/// explicitly, e.g. a loop device backing a disk image being made).
pub fn lookup(root: &Path, name: &str) -> Option<Disk> {
    let name = name.trim_start_matches("/dev/");
    let dir = root.join("sys/block").join(name);
    let sectors: u64 = read_trim(&dir.join("size"))?.parse().ok()?;
    Some(Disk {
        name: name.to_string(),
        size_bytes: sectors * 512,
        model: read_trim(&dir.join("device/model")).unwrap_or_default(),
        removable: read_trim(&dir.join("removable")).as_deref() == Some("1"),
        read_only: read_trim(&dir.join("ro")).as_deref() == Some("1"),
    })
}

/// The whole disk that holds a block device: `sda1` -> `sda`, `nvme0n1p2` -> `nvme0n1`,
/// `sda` -> `sda`. Read from sysfs (a partition's directory sits inside its disk's).
pub fn parent_disk(root: &Path, dev: &str) -> Option<String> {
    let name = dev.trim_start_matches("/dev/");
    let block = root.join("sys/block");
    if block.join(name).exists() {
        return Some(name.to_string());
    }
    let entries = fs::read_dir(&block).ok()?;
    for e in entries.flatten() {
        if e.path().join(name).join("partition").exists() {
            return Some(e.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// Disks that must never be offered: every device the boot used, as rkos-init recorded it in
/// `ROOT/run/rkos/init.json` ([`InitReport::devices`]), anything holding the `RKOS_LIVE`
/// volume (`ROOT/dev/disk/by-label/RKOS_LIVE`), and the disks of mounted file systems that
/// the live system uses (`ROOT/proc/self/mounts` entries of `/dev/...`).
pub fn boot_disks(root: &Path) -> BTreeSet<String> {
    let mut devs = Vec::new();
    let report = paths::under(root, paths::INIT_REPORT);
    match fs::read_to_string(&report).map(|text| serde_json::from_str::<InitReport>(&text)) {
        Ok(Ok(r)) => devs.extend(r.devices().map(|d| d.to_string_lossy().into_owned())),
        Ok(Err(e)) => tracing::warn!("{}: {e}", report.display()),
        // Not booted by rkos-init (a host making a disk image): nothing recorded.
        Err(_) => {}
    }
    let live = root.join("dev/disk/by-label").join(label::LIVE);
    if let Ok(target) = fs::read_link(&live) {
        if let Some(n) = target.file_name() {
            devs.push(n.to_string_lossy().into_owned());
        }
    }
    if let Ok(mounts) = fs::read_to_string(root.join("proc/self/mounts")) {
        for line in mounts.lines() {
            if let Some(src) = line.split_whitespace().next() {
                if src.starts_with("/dev/") {
                    devs.push(src.to_string());
                }
            }
        }
    }
    devs.iter().filter_map(|d| parent_disk(root, d)).collect()
}

/// Accept `sda`, `/dev/sda`, or a `/dev/disk/by-*/...` link; return the kernel name if it is
/// among the candidates, else a message listing them.
pub fn resolve_choice(root: &Path, wanted: &str, candidates: &[Disk]) -> Result<Disk, String> {
    let mut name = wanted.trim().trim_start_matches("/dev/").to_string();
    if wanted.starts_with("/dev/disk/") {
        if let Ok(t) = fs::canonicalize(root.join(wanted.trim_start_matches('/'))) {
            if let Some(n) = t.file_name() {
                name = n.to_string_lossy().into_owned();
            }
        }
    }
    let names: Vec<&str> = candidates.iter().map(|d| d.name.as_str()).collect();
    match candidates.iter().find(|d| d.name == name) {
        Some(d) if d.too_small() => Err(format!(
            "{} is too small: {} (rkos needs at least {})",
            d.name,
            human_size(d.size_bytes),
            human_size(MIN_DISK_BYTES)
        )),
        Some(d) => Ok(d.clone()),
        None => Err(format!(
            "`{wanted}` is not a disk that can be installed to (candidates: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkos_contract::{BootMode, FsType, Volume};

    fn disk(root: &Path, name: &str, sectors: u64, model: &str, removable: bool) {
        let d = root.join("sys/block").join(name);
        fs::create_dir_all(d.join("device")).unwrap();
        fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        fs::write(d.join("device/model"), format!("{model}   \n")).unwrap();
        fs::write(d.join("removable"), if removable { "1\n" } else { "0\n" }).unwrap();
        fs::write(d.join("ro"), "0\n").unwrap();
    }

    fn part(root: &Path, disk: &str, name: &str) {
        let d = root.join("sys/block").join(disk).join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("partition"), "1\n").unwrap();
    }

    #[test]
    fn lists_real_disks_and_skips_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        disk(r, "sda", 16 << 21, "QEMU HARDDISK", false); // 16 GiB
        disk(r, "vdb", 1 << 21, "", false); // 1 GiB
        fs::write(r.join("sys/block/vdb/device/vendor"), "0x1af4\n").unwrap();
        disk(r, "sr0", 600 << 11, "QEMU DVD-ROM", true);
        disk(r, "loop0", 1000, "", false);
        disk(r, "zram0", 1000, "", false);
        disk(r, "sdc", 0, "card reader", true);
        let list = list(r, &BTreeSet::new());
        let names: Vec<_> = list.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "vdb"]);
        assert_eq!(list[0].size_bytes, 16 << 30);
        assert_eq!(list[0].describe(), "sda - 16.0 GiB - QEMU HARDDISK");
        assert!(list[1].too_small());
        assert_eq!(list[1].describe(), "vdb - 1.0 GiB - unknown model");
        let err = resolve_choice(r, "/dev/vdb", &list).unwrap_err();
        assert!(err.contains("at least 4.0 GiB"), "{err}");
        assert_eq!(resolve_choice(r, "sda", &list).unwrap().name, "sda");
        assert!(resolve_choice(r, "sdz", &list)
            .unwrap_err()
            .contains("candidates: sda, vdb"));
    }

    #[test]
    fn the_boot_medium_is_excluded() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        disk(r, "sda", 16 << 21, "disk", false);
        disk(r, "sdb", 16 << 21, "usb stick", true);
        part(r, "sdb", "sdb1");
        disk(r, "nvme0n1", 32 << 21, "nvme", false);
        part(r, "nvme0n1", "nvme0n1p1");
        disk(r, "vdc", 16 << 21, "seed", false);
        disk(r, "loop0", 1000, "", false);
        // What rkos-init writes: the medium, a NoCloud seed and the image's loop device.
        let mut report = InitReport::new("1", BootMode::Live);
        report.boot_device = Some(Volume {
            device: "/dev/sdb1".into(),
            fstype: FsType::Iso9660,
        });
        report.cidata_device = Some("/dev/vdc".into());
        report.loop_devices = vec![(
            "/run/rkos/medium/rootfs.squashfs".into(),
            "/dev/loop0".into(),
        )];
        let init_json = paths::under(r, paths::INIT_REPORT);
        fs::create_dir_all(init_json.parent().unwrap()).unwrap();
        fs::write(&init_json, serde_json::to_vec(&report).unwrap()).unwrap();
        fs::create_dir_all(r.join("dev/disk/by-label")).unwrap();
        std::os::unix::fs::symlink("../../nvme0n1p1", r.join("dev/disk/by-label/RKOS_LIVE"))
            .unwrap();
        let excl = boot_disks(r);
        assert_eq!(
            excl.iter().map(String::as_str).collect::<Vec<_>>(),
            ["loop0", "nvme0n1", "sdb", "vdc"]
        );
        let names: Vec<_> = list(r, &excl).into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["sda"]);
    }

    #[test]
    fn parents() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        disk(r, "mmcblk0", 100, "", true);
        part(r, "mmcblk0", "mmcblk0p2");
        assert_eq!(parent_disk(r, "/dev/mmcblk0p2").as_deref(), Some("mmcblk0"));
        assert_eq!(parent_disk(r, "mmcblk0").as_deref(), Some("mmcblk0"));
        assert_eq!(parent_disk(r, "/dev/sdq1"), None);
    }
}
