//! First boot: grow `RKOS_DATA` (the last partition) to the end of its disk, then its ext4
//! file system, online. It matters when a disk image was written to a bigger disk or a VM's
//! disk was enlarged; on a disk installed by the wizard it finds nothing to do.

use std::path::Path;
use std::process::Command;

use crate::install::PART_DATA;

#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("`{cmd}` failed: {msg}")]
    Command { cmd: String, msg: String },
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

fn run(cmd: &str, args: &[&str]) -> Result<String, GrowError> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| GrowError::Command {
            cmd: cmd.into(),
            msg: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(GrowError::Command {
            cmd: format!("{cmd} {}", args.join(" ")),
            msg: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )
            .trim()
            .to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_mounted(dev: &Path) -> bool {
    let canon = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|src| std::fs::canonicalize(src).is_ok_and(|c| c == canon))
}

/// Grows partition 4 of `disk` (`data_part`, mounted or not) to the disk's end.
pub fn grow_data(disk: &Path, data_part: &Path) -> Result<Grown, GrowError> {
    let d = disk.to_string_lossy();
    // Moves the backup GPT to the real end of a disk that grew (a no-op otherwise).
    run("sgdisk", &["-e", &d])?;
    let info_text = run("sgdisk", &["-i", &PART_DATA.to_string(), &d])?;
    let info = parse_part_info(&info_text).ok_or_else(|| GrowError::Table {
        disk: d.to_string(),
        msg: format!("no partition {PART_DATA}"),
    })?;
    if info.name != crate::install::LABEL_DATA {
        return Err(GrowError::Table {
            disk: d.to_string(),
            msg: format!(
                "partition {PART_DATA} is `{}`, not {}",
                info.name,
                crate::install::LABEL_DATA
            ),
        });
    }
    let last_usable =
        parse_last_usable(&run("sgdisk", &["-E", &d])?).ok_or_else(|| GrowError::Table {
            disk: d.to_string(),
            msg: "sgdisk -E printed no sector".into(),
        })?;
    // The installer aligns partitions to 2048 sectors; the last MiB or less is not worth it.
    if last_usable < info.last + 2048 {
        return Ok(Grown::AlreadyFull);
    }
    // Same first sector, same unique GUID, same name: only the end moves, the data stays.
    let n = PART_DATA;
    run(
        "sgdisk",
        &[
            &format!("--delete={n}"),
            &format!("--new={n}:{}:0", info.first),
            &format!("--typecode={n}:8300"),
            &format!("--change-name={n}:{}", crate::install::LABEL_DATA),
            &format!("--partition-guid={n}:{}", info.unique_guid),
            &d,
        ],
    )?;
    // Tell the kernel about the new size of the partition in use (BLKPG resize).
    run("partx", &["--update", "--nr", &n.to_string(), &d])?;
    let _ = run("udevadm", &["settle", "--timeout=10"]);
    let part = data_part.to_string_lossy();
    if !is_mounted(data_part) {
        // Offline (an image being prepared): resize2fs wants a freshly checked file system.
        // e2fsck exits 1 when it fixed something, which is fine here.
        let st = Command::new("e2fsck")
            .args(["-f", "-p", &part])
            .status()
            .map_err(|e| GrowError::Command {
                cmd: "e2fsck".into(),
                msg: e.to_string(),
            })?;
        if !matches!(st.code(), Some(0 | 1)) {
            return Err(GrowError::Command {
                cmd: format!("e2fsck -f -p {part}"),
                msg: st.to_string(),
            });
        }
    }
    run("resize2fs", &[&part])?;
    let new_last = parse_part_info(&run("sgdisk", &["-i", &n.to_string(), &d])?)
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
