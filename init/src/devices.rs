//! Block devices as sysfs lists them, probed for filesystem and label, and the primary MAC.
//! Takes the sysfs and /dev directories as parameters so tests run against a temp dir.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use rkos_contract::FsType;

use crate::probe::{self, Probe};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    pub name: String,
    /// The whole disk the device is on (its own name for a whole disk): STATE and DATA are
    /// taken from one disk.
    pub disk: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// `None` with `error` unset: no filesystem rkos knows.
    pub probe: Option<Probe>,
    /// Why the device could not be read (no medium in a drive, I/O error).
    pub error: Option<String>,
}

impl BlockDevice {
    pub fn label(&self) -> Option<&str> {
        self.probe.as_ref().and_then(|p| p.label.as_deref())
    }
    pub fn fstype(&self) -> Option<FsType> {
        self.probe.as_ref().map(|p| p.fstype)
    }
}

/// Devices that never carry an rkos volume and would only slow the scan down.
fn skipped(name: &str) -> bool {
    ["ram", "loop", "zram", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Lists `sys_block` (normally `/sys/class/block`) in name order and probes each device
/// node under `dev`.
pub fn scan(sys_block: &Path, dev: &Path) -> Vec<BlockDevice> {
    let mut names: Vec<String> = match fs::read_dir(sys_block) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.retain(|n| !skipped(n));
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let sectors: u64 = fs::read_to_string(sys_block.join(&name).join("size"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let path = dev.join(&name);
            let disk = whole_disk(sys_block, &name);
            let (probe, error) = if sectors == 0 {
                (None, Some("empty (no medium)".to_string()))
            } else {
                match probe::probe_path(&path) {
                    Ok(p) => (p, None),
                    Err(e) => (None, Some(e.to_string())),
                }
            };
            BlockDevice {
                name,
                disk,
                path,
                size_bytes: sectors * 512,
                probe,
                error,
            }
        })
        .collect()
}

/// The disk a partition `name` belongs to: sysfs lists a partition inside its disk's
/// directory (`/sys/class/block/vda3` links to `.../block/vda/vda3`).
fn whole_disk(sys_block: &Path, name: &str) -> String {
    let entry = sys_block.join(name);
    if entry.join("partition").exists() {
        if let Some(disk) = fs::canonicalize(&entry).ok().and_then(|p| {
            p.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        }) {
            return disk;
        }
    }
    name.to_string()
}

/// The first device (in name order, so a whole disk before its partitions) with `label`.
/// `ignore_case` is for `CIDATA`, which cloud-init accepts in either case.
pub fn find_label<'a>(
    devs: &'a [BlockDevice],
    label: &str,
    ignore_case: bool,
) -> Option<&'a BlockDevice> {
    devs.iter().find(|d| match d.label() {
        Some(l) if ignore_case => l.eq_ignore_ascii_case(label),
        Some(l) => l == label,
        None => false,
    })
}

/// All devices with `label`, for warning about ambiguous setups.
pub fn count_label(devs: &[BlockDevice], label: &str) -> usize {
    devs.iter().filter(|d| d.label() == Some(label)).count()
}

/// One line per device, for failure messages: what was found.
pub fn describe(devs: &[BlockDevice]) -> String {
    if devs.is_empty() {
        return "  (no block devices at all: is the storage driver in the initramfs?)\n"
            .to_string();
    }
    let mut s = String::new();
    for d in devs {
        let what = match (&d.probe, &d.error) {
            (_, Some(e)) => e.clone(),
            (Some(p), None) => match &p.label {
                Some(l) => format!("{} label {l:?}", p.fstype),
                None => format!("{} without label", p.fstype),
            },
            (None, None) => "no filesystem rkos knows (partition table, swap, ...)".to_string(),
        };
        let _ = writeln!(
            s,
            "  {:<16} {:>10}  {what}",
            d.path.display(),
            rkos_slots::human_size(d.size_bytes)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_dev(sys: &Path, dev: &Path, name: &str, content: Option<&Path>, sectors: u64) {
        fs::create_dir_all(sys.join(name)).unwrap();
        fs::write(sys.join(name).join("size"), format!("{sectors}\n")).unwrap();
        if let Some(c) = content {
            fs::copy(c, dev.join(name)).unwrap();
        }
    }

    #[test]
    fn scan_probes_and_finds_labels() {
        let d = tempfile::tempdir().unwrap();
        let (sys, dev) = (d.path().join("sys"), d.path().join("dev"));
        fs::create_dir_all(&sys).unwrap();
        fs::create_dir_all(&dev).unwrap();
        let img = d.path().join("state.img");
        fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let out = crate::probe::test_tool("mkfs.ext4")
            .args(["-q", "-F", "-L", "RKOS_STATE"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success());
        let seed = d.path().join("seed.img");
        fs::File::create(&seed).unwrap().set_len(4 << 20).unwrap();
        assert!(crate::probe::test_tool("mkfs.vfat")
            .args(["-n", "cidata"])
            .arg(&seed)
            .output()
            .unwrap()
            .status
            .success());
        let junk = d.path().join("junk");
        fs::write(&junk, vec![0u8; 65536]).unwrap();
        fake_dev(&sys, &dev, "vdb", Some(&img), 16384);
        fake_dev(&sys, &dev, "vda", Some(&junk), 128);
        fake_dev(&sys, &dev, "vdc", Some(&seed), 8192);
        fake_dev(&sys, &dev, "sr0", None, 0);
        fake_dev(&sys, &dev, "sdz", None, 10);
        fake_dev(&sys, &dev, "loop0", Some(&img), 16384);
        let devs = scan(&sys, &dev);
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sdz", "sr0", "vda", "vdb", "vdc"]);
        assert_eq!(
            find_label(&devs, "RKOS_STATE", false).unwrap().path,
            dev.join("vdb")
        );
        assert_eq!(find_label(&devs, "CIDATA", true).unwrap().name, "vdc");
        assert!(find_label(&devs, "CIDATA", false).is_none());
        assert!(find_label(&devs, "RKOS_LIVE", false).is_none());
        assert_eq!(count_label(&devs, "RKOS_STATE"), 1);
        let text = describe(&devs);
        assert!(
            text.contains("vdb") && text.contains("8.0 MiB  ext4 label \"RKOS_STATE\""),
            "{text}"
        );
        assert!(
            text.contains("sr0") && text.contains("empty (no medium)"),
            "{text}"
        );
        assert!(text.contains("No such file"), "{text}");
        assert!(text.contains("no filesystem rkos knows"), "{text}");
        assert!(describe(&[]).contains("no block devices"));
        assert!(scan(&d.path().join("nonexistent"), &dev).is_empty());
    }

    #[test]
    fn a_partition_knows_its_disk() {
        let d = tempfile::tempdir().unwrap();
        // sysfs: /sys/class/block/vda3 -> ../../devices/.../block/vda/vda3
        let devices = d.path().join("devices/block");
        for (disk, part) in [("vda", Some("vda3")), ("vdb", None)] {
            fs::create_dir_all(devices.join(disk)).unwrap();
            if let Some(p) = part {
                fs::create_dir_all(devices.join(disk).join(p)).unwrap();
                fs::write(devices.join(disk).join(p).join("partition"), "3\n").unwrap();
            }
        }
        let class = d.path().join("class/block");
        fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(devices.join("vda/vda3"), class.join("vda3")).unwrap();
        std::os::unix::fs::symlink(devices.join("vda"), class.join("vda")).unwrap();
        std::os::unix::fs::symlink(devices.join("vdb"), class.join("vdb")).unwrap();
        assert_eq!(whole_disk(&class, "vda3"), "vda");
        assert_eq!(whole_disk(&class, "vda"), "vda");
        assert_eq!(whole_disk(&class, "vdb"), "vdb");
    }
}
