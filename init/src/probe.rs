//! Filesystem type and label from raw superblocks.
//!
//! Written by hand rather than linking libblkid: the init must be one static binary, and the
//! three formats that carry rkos volumes (iso9660, ext4, vfat) each need one fixed-offset read.
//! Everything here works on a byte buffer holding the first [`PROBE_LEN`] bytes of a device.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rkos_contract::FsType;
use serde::Serialize;

/// Bytes read from the start of a device: enough for the iso9660 primary volume descriptor
/// (sector 16 of 2048 bytes), the ext superblock (offset 1024) and the FAT boot sector.
pub const PROBE_LEN: usize = 0x8000 + 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub fstype: FsType,
    /// Trimmed; `None` when the volume has no label.
    pub label: Option<String>,
    /// The filesystem UUID as GRUB's `probe --fs-uuid` and blkid print it (ext4 only: the
    /// volumes rkos binds to the booted disk).
    pub uuid: Option<String>,
}

/// Identifies the filesystem in `buf` (the start of a device; may be shorter than
/// [`PROBE_LEN`] for small devices). `None`: none of the formats rkos uses.
pub fn probe_bytes(buf: &[u8]) -> Option<Probe> {
    // ISO first: a hybrid ISO also carries an MBR (and often a FAT-looking boot sector) at 0.
    probe_iso9660(buf)
        .or_else(|| probe_ext(buf))
        .or_else(|| probe_squashfs(buf))
        .or_else(|| probe_vfat(buf))
}

/// The two regions of a device the probes look at: the first 4 KiB (FAT boot sector, ext
/// superblock, squashfs magic) and the iso9660 primary volume descriptor.
const REGIONS: [(usize, usize); 2] = [(0, 4096), (0x8000, PROBE_LEN)];

/// Reads the parts of `path` (a block device or an image file) the probes need and probes it.
/// Readahead is turned off for the descriptor: on an emulated or USB optical drive the
/// kernel's default 128 KiB readahead per device costs more than the whole probe.
pub fn probe_path(path: &Path) -> io::Result<Option<Probe>> {
    let f = File::open(path)?;
    // SAFETY: advisory call on a descriptor we own; it reads no memory of ours.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    let mut buf = vec![0u8; PROBE_LEN];
    let mut len = 0;
    for (start, end) in REGIONS {
        let n = read_at_full(&f, &mut buf[start..end], start as u64)?;
        if n < end - start {
            len = start + n;
            break;
        }
        len = end;
    }
    buf.truncate(len);
    Ok(probe_bytes(&buf))
}

fn read_at_full(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn probe_iso9660(buf: &[u8]) -> Option<Probe> {
    let pvd = buf.get(0x8000..0x8000 + 2048)?;
    // Type 1 = primary volume descriptor, then the standard identifier and version 1.
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" || pvd[6] != 1 {
        return None;
    }
    Some(Probe {
        fstype: FsType::Iso9660,
        label: label(&pvd[40..72]),
        uuid: None,
    })
}

fn probe_ext(buf: &[u8]) -> Option<Probe> {
    let sb = buf.get(1024..1024 + 1024)?;
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return None;
    }
    // ext2/3 volumes mount through the ext4 driver too; rkos only creates ext4.
    Some(Probe {
        fstype: FsType::Ext4,
        label: label(&sb[0x78..0x88]),
        uuid: Some(uuid_text(&sb[0x68..0x78])),
    })
}

fn probe_squashfs(buf: &[u8]) -> Option<Probe> {
    (buf.get(0..4)? == b"hsqs").then_some(Probe {
        fstype: FsType::Squashfs,
        label: None,
        uuid: None,
    })
}

fn probe_vfat(buf: &[u8]) -> Option<Probe> {
    let bs = buf.get(0..512)?;
    if bs[510..512] != [0x55, 0xAA] {
        return None;
    }
    // The extended boot record sits after the FAT32 fields on FAT32, right after the common
    // BPB on FAT12/16; its file system type string says which.
    let lbl = if &bs[0x52..0x57] == b"FAT32" {
        &bs[0x47..0x52]
    } else if &bs[0x36..0x39] == b"FAT" {
        &bs[0x2B..0x36]
    } else {
        return None;
    };
    let lbl = label(lbl).filter(|l| l != "NO NAME");
    Some(Probe {
        fstype: FsType::Vfat,
        label: lbl,
        uuid: None,
    })
}

/// 16 bytes as `8-4-4-4-12` lower-case hex.
fn uuid_text(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]);
    let s = s.trim_end_matches([' ', '\0']).trim_start();
    (!s.is_empty()).then(|| s.to_string())
}

/// A command for a test helper tool; mkfs.* live in /usr/sbin, which a non-root user's PATH
/// often lacks.
#[cfg(test)]
pub(crate) fn test_tool(name: &str) -> std::process::Command {
    let found = ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists());
    std::process::Command::new(found.unwrap_or_else(|| name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(cmd: &mut Command) {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{cmd:?}: {e} (install the build host packages: build/host-deps.sh)")
        });
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn sized_file(dir: &Path, name: &str, mib: u64) -> std::path::PathBuf {
        let p = dir.join(name);
        File::create(&p).unwrap().set_len(mib << 20).unwrap();
        p
    }

    #[test]
    fn ext4_label_from_mkfs() {
        let d = tempfile::tempdir().unwrap();
        let img = sized_file(d.path(), "state.img", 8);
        run(crate::probe::test_tool("mkfs.ext4")
            .args(["-q", "-F", "-L", "RKOS_STATE"])
            .args(["-U", "1b4e28ba-2fa1-11d2-883f-b9a761bde3fb"])
            .arg(&img));
        let p = probe_path(&img).unwrap().unwrap();
        assert_eq!(
            p,
            Probe {
                fstype: FsType::Ext4,
                label: Some("RKOS_STATE".into()),
                uuid: Some("1b4e28ba-2fa1-11d2-883f-b9a761bde3fb".into()),
            }
        );
    }

    #[test]
    fn ext4_without_label() {
        let d = tempfile::tempdir().unwrap();
        let img = sized_file(d.path(), "x.img", 8);
        run(crate::probe::test_tool("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img));
        let p = probe_path(&img).unwrap().unwrap();
        assert_eq!((p.fstype, p.label), (FsType::Ext4, None));
        // mkfs made a random UUID: the one blkid reads
        let out = crate::probe::test_tool("blkid")
            .args(["-s", "UUID", "-o", "value"])
            .arg(&img)
            .output()
            .unwrap();
        assert_eq!(p.uuid.unwrap(), String::from_utf8_lossy(&out.stdout).trim());
    }

    #[test]
    fn vfat_labels_fat16_and_fat32() {
        let d = tempfile::tempdir().unwrap();
        let img = sized_file(d.path(), "seed.img", 8);
        run(crate::probe::test_tool("mkfs.vfat")
            .args(["-n", "CIDATA"])
            .arg(&img));
        assert_eq!(
            probe_path(&img).unwrap().unwrap(),
            Probe {
                fstype: FsType::Vfat,
                label: Some("CIDATA".into()),
                uuid: None,
            }
        );
        let img = sized_file(d.path(), "big.img", 40);
        run(crate::probe::test_tool("mkfs.vfat")
            .args(["-F", "32", "-n", "cidata"])
            .arg(&img));
        assert_eq!(
            probe_path(&img).unwrap().unwrap(),
            Probe {
                fstype: FsType::Vfat,
                label: Some("cidata".into()),
                uuid: None,
            }
        );
        let img = sized_file(d.path(), "nolabel.img", 8);
        run(crate::probe::test_tool("mkfs.vfat").arg(&img));
        assert_eq!(
            probe_path(&img).unwrap().unwrap(),
            Probe {
                fstype: FsType::Vfat,
                label: None,
                uuid: None,
            }
        );
    }

    #[test]
    fn iso9660_volume_id_from_xorriso() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("rootfs.squashfs"), b"x").unwrap();
        let iso = d.path().join("live.iso");
        run(Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-V", "RKOS_LIVE", "-o"])
            .arg(&iso)
            .arg(&tree));
        assert_eq!(
            probe_path(&iso).unwrap().unwrap(),
            Probe {
                fstype: FsType::Iso9660,
                label: Some("RKOS_LIVE".into()),
                uuid: None,
            }
        );
    }

    #[test]
    fn squashfs_magic() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let img = d.path().join("root.squashfs");
        run(Command::new("mksquashfs")
            .arg(&tree)
            .arg(&img)
            .args(["-quiet", "-noappend"]));
        assert_eq!(probe_path(&img).unwrap().unwrap().fstype, FsType::Squashfs);
    }

    #[test]
    fn unknown_short_and_empty_inputs() {
        assert_eq!(probe_bytes(&[]), None);
        assert_eq!(probe_bytes(&[0u8; PROBE_LEN]), None);
        assert_eq!(probe_bytes(&[0xFFu8; 100]), None);
        // An MBR signature alone (a partitioned disk) is not a FAT volume.
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(probe_bytes(&mbr), None);
        let d = tempfile::tempdir().unwrap();
        let small = d.path().join("small");
        std::fs::write(&small, b"tiny").unwrap();
        assert_eq!(probe_path(&small).unwrap(), None);
        assert!(probe_path(&d.path().join("missing")).is_err());
    }

    #[test]
    fn iso_wins_over_a_hybrid_boot_sector() {
        let mut buf = vec![0u8; PROBE_LEN];
        buf[510] = 0x55;
        buf[511] = 0xAA;
        buf[0x36..0x3E].copy_from_slice(b"FAT16   ");
        buf[0x2B..0x36].copy_from_slice(b"EFIBOOT    ");
        buf[0x8000] = 1;
        buf[0x8001..0x8006].copy_from_slice(b"CD001");
        buf[0x8006] = 1;
        buf[0x8000 + 40..0x8000 + 49].copy_from_slice(b"RKOS_LIVE");
        buf[0x8000 + 49..0x8000 + 72].fill(b' ');
        assert_eq!(
            probe_bytes(&buf),
            Some(Probe {
                fstype: FsType::Iso9660,
                label: Some("RKOS_LIVE".into()),
                uuid: None,
            })
        );
        buf[0x8000] = 0;
        assert_eq!(
            probe_bytes(&buf),
            Some(Probe {
                fstype: FsType::Vfat,
                label: Some("EFIBOOT".into()),
                uuid: None,
            })
        );
    }
}
