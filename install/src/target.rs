//! What the install writes to: a whole block device, or a raw image file attached to a loop
//! device for the time of the install (a disk image is the same install onto a file).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkos_slots::human_size;

use crate::cmd;
use crate::layout::{partition_path, Layout};
use crate::InstallError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A whole disk (`/dev/sda`); everything on it is erased. It must be a block device,
    /// big enough for the image, with nothing of it mounted.
    Device(PathBuf),
    /// A raw disk image of `size_bytes`, created (or replaced) at `path`, sparse.
    Image { path: PathBuf, size_bytes: u64 },
}

impl Target {
    /// What the report and the messages name.
    pub fn path(&self) -> &Path {
        match self {
            Target::Device(p) | Target::Image { path: p, .. } => p,
        }
    }
}

/// The block device being installed to, checked and ready; an image's loop device is
/// detached when this is dropped.
pub(crate) struct Disk {
    pub dev: PathBuf,
    pub bytes: u64,
    loop_dev: bool,
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.loop_dev {
            if let Err(e) = cmd::run("losetup", &["--detach", &p(&self.dev)]) {
                tracing::warn!("{e}");
            }
        }
    }
}

pub(crate) fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Checks `target` for `layout` and, for an image, creates it and attaches it.
pub(crate) fn open(target: &Target, layout: &Layout) -> Result<Disk, InstallError> {
    match target {
        Target::Device(dev) => {
            let bytes = check_device(dev, layout)?;
            Ok(Disk {
                dev: dev.clone(),
                bytes,
                loop_dev: false,
            })
        }
        Target::Image { path, size_bytes } => {
            check_size(path, *size_bytes, layout)?;
            let f = fs::File::create(path).map_err(|e| InstallError::io(path, e))?;
            f.set_len(*size_bytes)
                .map_err(|e| InstallError::io(path, e))?;
            drop(f);
            let dev = cmd::run("losetup", &["--find", "--show", "--partscan", &p(path)])?;
            Ok(Disk {
                dev: PathBuf::from(dev.trim()),
                bytes: *size_bytes,
                loop_dev: true,
            })
        }
    }
}

fn check_size(disk: &Path, size: u64, layout: &Layout) -> Result<(), InstallError> {
    if size < layout.min_disk_bytes() {
        return Err(InstallError::Target(format!(
            "{} is too small: {} (this image needs at least {})",
            disk.display(),
            human_size(size),
            human_size(layout.min_disk_bytes())
        )));
    }
    Ok(())
}

/// Size of a block device.
pub fn device_size(dev: &Path) -> Result<u64, InstallError> {
    let out = cmd::run("blockdev", &["--getsize64", &p(dev)])?;
    out.trim()
        .parse()
        .map_err(|_| InstallError::Target(format!("cannot read the size of {}", dev.display())))
}

/// Refuses a target that is not a block device, is too small, or has a mounted partition;
/// returns its size.
pub fn check_device(disk: &Path, layout: &Layout) -> Result<u64, InstallError> {
    let meta = fs::metadata(disk).map_err(|e| InstallError::io(disk, e))?;
    if !meta.file_type().is_block_device() {
        return Err(InstallError::Target(format!(
            "{} is not a block device",
            disk.display()
        )));
    }
    let size = device_size(disk)?;
    check_size(disk, size, layout)?;
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let canon = p(&fs::canonicalize(disk).unwrap_or_else(|_| disk.to_path_buf()));
    for line in mounts.lines() {
        let src = line.split_whitespace().next().unwrap_or("");
        let src_canon = fs::canonicalize(src).map(|c| p(&c)).unwrap_or_default();
        if src_canon == canon || is_partition_of(&src_canon, &canon) {
            return Err(InstallError::Target(format!(
                "{} is in use: {src} is mounted; unmount it first",
                disk.display()
            )));
        }
    }
    Ok(size)
}

/// Whether `part` names a partition of `disk` (`/dev/sda1` of `/dev/sda`, `/dev/loop1p2` of
/// `/dev/loop1`, but not `/dev/loop10` of `/dev/loop1`).
fn is_partition_of(part: &str, disk: &str) -> bool {
    let Some(rest) = part.strip_prefix(disk) else {
        return false;
    };
    let digits = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        match rest.strip_prefix('p') {
            Some(d) => d,
            None => return false,
        }
    } else {
        rest
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Makes the kernel read the new partition table and waits for the partitions' device
/// nodes.
pub(crate) fn reread_partitions(disk: &Path, layout: &Layout) -> Result<(), InstallError> {
    // partx works for loop devices too, where partprobe may not. Then udev (if any) settles
    // and the nodes appear.
    let d = p(disk);
    let _ = cmd::run("partx", &["--update", &d]);
    if cmd::run("partx", &["--show", &d]).is_err() {
        let _ = cmd::run("partx", &["--add", &d]);
    }
    let _ = cmd::run("udevadm", &["settle", "--timeout=10"]);
    let parts: Vec<PathBuf> = layout
        .partitions()
        .iter()
        .map(|(part, _)| partition_path(disk, part.gpt.number))
        .collect();
    wait_for(&parts, Duration::from_secs(15))
}

fn wait_for(paths: &[PathBuf], timeout: Duration) -> Result<(), InstallError> {
    let start = Instant::now();
    loop {
        let missing: Vec<String> = paths
            .iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(InstallError::Target(format!(
                "the new partitions did not appear: {}",
                missing.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_disk() {
        assert!(is_partition_of("/dev/sda1", "/dev/sda"));
        assert!(is_partition_of("/dev/loop1p2", "/dev/loop1"));
        assert!(!is_partition_of("/dev/loop10", "/dev/loop1"));
        assert!(!is_partition_of("/dev/sdab", "/dev/sda"));
        assert!(!is_partition_of("/dev/sda", "/dev/sda"));
    }

    #[test]
    fn refuses_a_plain_file_as_a_device() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let e = check_device(t.path(), &Layout::for_image(0)).unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
    }

    #[test]
    fn an_image_too_small_is_refused_before_it_is_created() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("disk.raw");
        let target = Target::Image {
            path: path.clone(),
            size_bytes: 3 << 30,
        };
        let e = open(&target, &Layout::for_image(0)).err().unwrap();
        assert!(
            e.to_string().contains("too small") && e.to_string().contains("4.0 GiB"),
            "{e}"
        );
        assert!(!path.exists());
    }
}
