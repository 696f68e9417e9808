//! First boot: grow `RKOS_DATA` (the last partition) to the end of its disk, then its ext4
//! file system, online. It matters when a disk image was written to a bigger disk or a VM's
//! disk was enlarged; on a disk installed by the wizard it finds nothing to do.

use std::path::Path;

use rkos_contract::partition::DATA;

use crate::cmd::{self, CommandError};
use crate::layout;

#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot read the partition table of {disk}: {msg}")]
    Table { disk: String, msg: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Grown {
    /// The partition already ends at the end of the disk.
    AlreadyFull,
    /// Grown from `from` to `to` sectors.
    Grown { from: u64, to: u64 },
}

/// What `sgdisk -i N DISK` says about a partition.
#[derive(Debug, PartialEq, Eq)]
pub struct PartInfo {
    pub first: u64,
    pub last: u64,
    pub unique_guid: String,
    pub name: String,
}

fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
}

/// Parses `sgdisk -i N` output.
pub fn parse_part_info(text: &str) -> Option<PartInfo> {
    let num = |k| after(text, k)?.split_whitespace().next()?.parse().ok();
    Some(PartInfo {
        first: num("First sector:")?,
        last: num("Last sector:")?,
        unique_guid: after(text, "Partition unique GUID:")?.to_string(),
        name: after(text, "Partition name:")?
            .trim_matches('\'')
            .to_string(),
    })
}

/// Parses the last usable sector from `sgdisk -E` (prints the number alone).
pub fn parse_last_usable(text: &str) -> Option<u64> {
    text.lines().rev().find_map(|l| l.trim().parse().ok())
}

fn is_mounted(dev: &Path) -> bool {
    let canon = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|src| std::fs::canonicalize(src).is_ok_and(|c| c == canon))
}

/// Grows the DATA partition of `disk` (`data_part`, mounted or not) to the disk's end.
pub fn grow_data(disk: &Path, data_part: &Path) -> Result<Grown, GrowError> {
    let d = disk.to_string_lossy();
    let n = DATA.number.to_string();
    // Moves the backup GPT to the real end of a disk that grew (a no-op otherwise).
    cmd::run("sgdisk", &["-e", &d])?;
    let info =
        parse_part_info(&cmd::run("sgdisk", &["-i", &n, &d])?).ok_or_else(|| GrowError::Table {
            disk: d.to_string(),
            msg: format!("no partition {n}"),
        })?;
    if info.name != DATA.name {
        return Err(GrowError::Table {
            disk: d.to_string(),
            msg: format!("partition {n} is `{}`, not {}", info.name, DATA.name),
        });
    }
    let last_usable =
        parse_last_usable(&cmd::run("sgdisk", &["-E", &d])?).ok_or_else(|| GrowError::Table {
            disk: d.to_string(),
            msg: "sgdisk -E printed no sector".into(),
        })?;
    // The installer aligns partitions to 2048 sectors; the last MiB or less is not worth it.
    if last_usable < info.last + 2048 {
        return Ok(Grown::AlreadyFull);
    }
    // Same first sector, same unique GUID, same name and type: only the end moves, the data
    // stays.
    let [typecode, name] = layout::type_and_name(&DATA);
    cmd::run(
        "sgdisk",
        &[
            &format!("--delete={n}"),
            &format!("--new={n}:{}:0", info.first),
            &typecode,
            &name,
            &format!("--partition-guid={n}:{}", info.unique_guid),
            &d,
        ],
    )?;
    // Tell the kernel about the new size of the partition in use (BLKPG resize).
    cmd::run("partx", &["--update", "--nr", &n, &d])?;
    let _ = cmd::run("udevadm", &["settle", "--timeout=10"]);
    let part = data_part.to_string_lossy();
    if !is_mounted(data_part) {
        // Offline (an image being prepared): resize2fs wants a freshly checked file system.
        // e2fsck exits 1 when it fixed something, which is fine here.
        cmd::run_accepting("e2fsck", &["-f", "-p", &part], &[0, 1])?;
    }
    cmd::run("resize2fs", &[&part])?;
    let new_last = parse_part_info(&cmd::run("sgdisk", &["-i", &n, &d])?)
        .map(|i| i.last)
        .unwrap_or(last_usable);
    Ok(Grown::Grown {
        from: info.last,
        to: new_last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sgdisk_info() {
        let text = "Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)\n\
Partition unique GUID: 3A1F7C1E-2B8E-4E55-9B0B-6F3E0A1D2C3B\n\
First sector: 4327424 (at 2.1 GiB)\n\
Last sector: 8386559 (at 4.0 GiB)\n\
Partition size: 4059136 sectors (1.9 GiB)\n\
Attribute flags: 0000000000000000\n\
Partition name: 'RKOS_DATA'\n";
        assert_eq!(
            parse_part_info(text).unwrap(),
            PartInfo {
                first: 4327424,
                last: 8386559,
                unique_guid: "3A1F7C1E-2B8E-4E55-9B0B-6F3E0A1D2C3B".into(),
                name: "RKOS_DATA".into()
            }
        );
        assert_eq!(parse_part_info("Partition #4 does not exist."), None);
        assert_eq!(parse_last_usable("16777182\n"), Some(16777182));
    }
}
