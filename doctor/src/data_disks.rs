//! The config's `data_disks` on the running node: each attached and mounted at its path, or
//! what is wrong and what to do. `rkos data-disks` prints it; rkos-data-disks.service
//! (ordered after the rendered mounts) puts it on the console and at the login prompt, so
//! the owner of a Pi whose USB disk is unplugged learns why k3s did not start.

use std::path::Path;

use crate::mounts::{self, Mount};

/// A data disk as the config names it: where it mounts, the device node it appears as
/// (`/dev/disk/by-label/...` or `/dev/disk/by-uuid/...`), its systemd mount unit and how
/// long the boot waited for it (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDisk {
    pub path: String,
    pub device: String,
    pub unit: String,
    pub wait_seconds: u32,
}

/// What the node shows for one data disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Mounted at its path from `device` (the node it resolves to).
    Mounted { device: String },
    /// The device node is there (`device`) but its path is not mounted from it.
    NotMounted { device: String },
    /// No such device node: the disk is not attached (or its label or UUID differs).
    Missing,
}

/// `disk`'s state on the node at `root` (`/` on a node; a tree in tests), with its mounts.
pub fn state(root: &Path, disk: &DataDisk, mounts: &[Mount]) -> State {
    let node = root.join(disk.device.trim_start_matches('/'));
    let Ok(real) = node.canonicalize() else {
        return State::Missing;
    };
    let device = match real.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => real.display().to_string(),
    };
    // Another mount can sit at the path (the data volume's bind at a built-in persistent
    // path, should rkos-init have failed to take it back), so "mounted" means: the mount on
    // top at the path is this device's.
    let top = mounts::containing(mounts, &disk.path)
        .filter(|m| m.mount_point == disk.path && m.source == device);
    match top {
        Some(_) => State::Mounted { device },
        None => State::NotMounted { device },
    }
}

/// One line for `disk` in `state`; `None` when it is as it should be.
pub fn problem(disk: &DataDisk, state: &State) -> Option<String> {
    // Either way k3s is not started on the boot disk's state (its unit requires the disk).
    match state {
        State::Mounted { .. } => None,
        State::Missing => Some(format!(
            "data disk {dev} for {path} is not attached (waited {wait} s at boot). \
             Plug it in: it is mounted and k3s, which waits for it, starts by itself. \
             Or remove it from rkos.data_disks",
            dev = disk.device,
            path = disk.path,
            wait = disk.wait_seconds
        )),
        State::NotMounted { device } => Some(format!(
            "data disk {dev} ({device}) is attached but not mounted at {path}: see \
             `journalctl -b -u {unit}`; k3s waits for it (it is not started on the boot \
             disk's state); then run: sudo systemctl start k3s",
            dev = disk.device,
            path = disk.path,
            unit = disk.unit
        )),
    }
}

/// Every disk's problem line, with the mounts read from `ROOT/proc/self/mountinfo`.
pub fn problems(root: &Path, disks: &[DataDisk]) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("proc/self/mountinfo")).unwrap_or_default();
    let mounts = mounts::parse(&text);
    disks
        .iter()
        .filter_map(|d| problem(d, &state(root, d, &mounts)))
        .collect()
}

/// Writes `lines` for the login prompt (`ROOT/run/rkos/data-disks`), or removes the file
/// when there are none.
pub fn write_report(root: &Path, lines: &[String]) -> std::io::Result<()> {
    rkos_io::write_lines_or_remove(
        &rkos_contract::paths::under(root, rkos_contract::paths::DATA_DISK_PROBLEMS),
        lines,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn disk() -> DataDisk {
        DataDisk {
            path: "/var/lib/rancher".into(),
            device: "/dev/disk/by-label/K3S_STATE".into(),
            unit: "var-lib-rancher.mount".into(),
            wait_seconds: 30,
        }
    }

    /// A tree with `/dev/sda1` and, when `attached`, the label's link to it.
    fn tree(attached: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("dev/disk/by-label")).unwrap();
        fs::write(t.path().join("dev/sda1"), "").unwrap();
        if attached {
            symlink("../../sda1", t.path().join("dev/disk/by-label/K3S_STATE")).unwrap();
        }
        t
    }

    const BIND_ONLY: &str = "\
22 1 0:20 / / rw - overlay overlay rw
26 22 254:4 /var/lib/rancher /var/lib/rancher rw - ext4 /dev/vda4 rw
";

    #[test]
    fn a_missing_disk_says_so_with_what_to_do() {
        let t = tree(false);
        let s = state(t.path(), &disk(), &mounts::parse(BIND_ONLY));
        assert_eq!(s, State::Missing);
        let line = problem(&disk(), &s).unwrap();
        for want in [
            "/dev/disk/by-label/K3S_STATE",
            "/var/lib/rancher",
            "not attached",
            "waited 30 s",
            "k3s, which waits for it, starts by itself",
            "rkos.data_disks",
        ] {
            assert!(line.contains(want), "{want:?} not in {line}");
        }
    }

    #[test]
    fn an_attached_disk_under_the_data_volumes_bind_is_not_mounted_until_it_is_on_top() {
        let t = tree(true);
        let s = state(t.path(), &disk(), &mounts::parse(BIND_ONLY));
        assert_eq!(
            s,
            State::NotMounted {
                device: "/dev/sda1".into()
            }
        );
        let line = problem(&disk(), &s).unwrap();
        assert!(
            line.contains("(/dev/sda1) is attached but not mounted")
                && line.contains("journalctl -b -u var-lib-rancher.mount")
                && line.contains("sudo systemctl start k3s"),
            "{line}"
        );
        let stacked = format!("{BIND_ONLY}31 26 8:1 / /var/lib/rancher rw - ext4 /dev/sda1 rw\n");
        let s = state(t.path(), &disk(), &mounts::parse(&stacked));
        assert_eq!(
            s,
            State::Mounted {
                device: "/dev/sda1".into()
            }
        );
        assert_eq!(problem(&disk(), &s), None);
    }

    #[test]
    fn problems_reads_the_mounts_under_the_root() {
        let t = tree(true);
        fs::create_dir_all(t.path().join("proc/self")).unwrap();
        fs::write(t.path().join("proc/self/mountinfo"), BIND_ONLY).unwrap();
        let other = DataDisk {
            path: "/mnt/backup".into(),
            device: "/dev/disk/by-uuid/0a1b".into(),
            unit: "mnt-backup.mount".into(),
            wait_seconds: 120,
        };
        let lines = problems(t.path(), &[disk(), other]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains(
            "/dev/disk/by-uuid/0a1b for /mnt/backup is not attached (waited 120 s at boot)"
        ));
        let file = t.path().join("run/rkos/data-disks");
        write_report(t.path(), &lines).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap().lines().count(), 2);
        write_report(t.path(), &[]).unwrap();
        assert!(
            !file.exists(),
            "a stale report stays once the disks are back"
        );
    }
}
