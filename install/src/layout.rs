//! The installed disk's layout: the contract's partitions ([`rkos_contract::partition`]:
//! numbers, GPT names and type codes) with the file system made on each and its label
//! ([`rkos_contract::label`]), their sizes for a given image, and the tool command lines
//! derived from them. The install, a disk image and the first-boot grow all read it from here.

use std::path::{Path, PathBuf};

use rkos_contract::label;
use rkos_contract::partition::{self, Partition};

const MIB: u64 = 1 << 20;

/// The smallest disk the installer takes: BIOS boot + ESP + `RKOS_STATE` (room for two
/// slots) + at least 1 GiB of `RKOS_DATA`. See [`Layout::min_disk_bytes`].
pub const MIN_DISK_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSystem {
    /// Raw: GRUB's BIOS core image.
    None,
    Vfat {
        label: &'static str,
    },
    /// `reserved`: keep ext4's default 5% for root (DATA), or none (STATE, which only the
    /// installer and upgrades write).
    Ext4 {
        label: &'static str,
        reserved: bool,
    },
}

/// One partition of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Its number, GPT name and type code.
    pub gpt: Partition,
    pub fs: FileSystem,
}

pub const BIOS: Part = Part {
    gpt: partition::BIOS,
    fs: FileSystem::None,
};
pub const EFI: Part = Part {
    gpt: partition::EFI,
    fs: FileSystem::Vfat { label: label::EFI },
};
pub const STATE: Part = Part {
    gpt: partition::STATE,
    fs: FileSystem::Ext4 {
        label: label::STATE,
        reserved: false,
    },
};
pub const DATA: Part = Part {
    gpt: partition::DATA,
    fs: FileSystem::Ext4 {
        label: label::DATA,
        reserved: true,
    },
};

/// Partition sizes in MiB. `RKOS_STATE` holds two slots plus the staging copy of an upgrade
/// being downloaded; it is sized from the image so a bigger future image still fits, with a
/// floor of 2 GiB. DATA takes the rest (and grows on first boot if the disk grew).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub bios_mib: u64,
    pub esp_mib: u64,
    pub state_mib: u64,
}

impl Layout {
    pub fn for_image(slot_bytes: u64) -> Layout {
        let need = slot_bytes.saturating_mul(3).div_ceil(MIB) + 256;
        Layout {
            bios_mib: 1,
            esp_mib: 64,
            state_mib: need.max(2048).next_multiple_of(256),
        }
    }

    /// The partitions in disk order, each with its size in MiB (`None`: to the disk's end).
    pub fn partitions(&self) -> [(Part, Option<u64>); 4] {
        [
            (BIOS, Some(self.bios_mib)),
            (EFI, Some(self.esp_mib)),
            (STATE, Some(self.state_mib)),
            (DATA, None),
        ]
    }

    /// Everything but DATA, plus the 1 MiB alignment gap in front and GPT's backup at the end.
    pub fn fixed_bytes(&self) -> u64 {
        let fixed: u64 = self.partitions().iter().filter_map(|(_, mib)| *mib).sum();
        (1 + fixed + 1) * MIB
    }

    /// The disk must hold the fixed partitions and at least 1 GiB of DATA, and never less
    /// than [`MIN_DISK_BYTES`].
    pub fn min_disk_bytes(&self) -> u64 {
        (self.fixed_bytes() + (1 << 30)).max(MIN_DISK_BYTES)
    }
}

/// `/dev/sda` + 1 -> `/dev/sda1`; `/dev/nvme0n1`, `/dev/loop0`, `/dev/mmcblk0` + 1 -> `...p1`
/// (the kernel adds `p` when the disk name ends in a digit).
pub fn partition_path(disk: &Path, n: u32) -> PathBuf {
    let s = disk.to_string_lossy();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{n}"))
    } else {
        PathBuf::from(format!("{s}{n}"))
    }
}

/// sgdisk arguments that give partition `p` its type and name (also used when DATA is
/// recreated larger).
pub fn type_and_name(p: &Partition) -> [String; 2] {
    [
        format!("--typecode={}:{}", p.number, p.type_code),
        format!("--change-name={}:{}", p.number, p.name),
    ]
}

/// The sgdisk invocations that lay out `disk` (arguments after `sgdisk`).
pub fn partition_commands(disk: &Path, l: &Layout) -> Vec<Vec<String>> {
    let d = disk.to_string_lossy().into_owned();
    let mut table = vec!["--clear".to_string(), "--set-alignment=2048".to_string()];
    for (i, (p, mib)) in l.partitions().iter().enumerate() {
        // The first starts after 1 MiB (alignment, and room for the GPT), the others where
        // the previous ended (`0`).
        let start = if i == 0 { "1M" } else { "0" };
        let end = mib.map_or("0".to_string(), |m| format!("+{m}M"));
        table.push(format!("--new={}:{start}:{end}", p.gpt.number));
        table.extend(type_and_name(&p.gpt));
    }
    table.push(d.clone());
    vec![vec!["--zap-all".into(), d], table]
}

/// The mkfs invocations (program, arguments) for the partitions of `disk` that hold a file
/// system.
pub fn format_commands(disk: &Path, l: &Layout) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for (p, _) in l.partitions() {
        let dev = partition_path(disk, p.gpt.number)
            .to_string_lossy()
            .into_owned();
        match p.fs {
            FileSystem::None => {}
            FileSystem::Vfat { label } => out.push((
                "mkfs.vfat",
                vec!["-F".into(), "32".into(), "-n".into(), label.into(), dev],
            )),
            FileSystem::Ext4 { label, reserved } => {
                let mut args = vec!["-q".to_string(), "-F".into()];
                if !reserved {
                    args.extend(["-m".into(), "0".into()]);
                }
                args.extend(["-L".into(), label.into(), dev]);
                out.push(("mkfs.ext4", args));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        let p = |d: &str, n| partition_path(Path::new(d), n);
        assert_eq!(p("/dev/sda", 4), Path::new("/dev/sda4"));
        assert_eq!(p("/dev/vdb", 1), Path::new("/dev/vdb1"));
        assert_eq!(p("/dev/nvme0n1", 2), Path::new("/dev/nvme0n1p2"));
        assert_eq!(p("/dev/loop7", 3), Path::new("/dev/loop7p3"));
        assert_eq!(p("/dev/mmcblk0", 1), Path::new("/dev/mmcblk0p1"));
    }

    #[test]
    fn the_contracts_partitions_in_disk_order_each_file_system_labelled_like_its_partition() {
        let parts = Layout::for_image(0).partitions().map(|(p, _)| p);
        assert_eq!(parts.map(|p| p.gpt), partition::ALL);
        for p in parts {
            match p.fs {
                FileSystem::None => assert_eq!(p.gpt, partition::BIOS),
                FileSystem::Vfat { label } | FileSystem::Ext4 { label, .. } => {
                    assert_eq!(label, p.gpt.name, "{p:?}")
                }
            }
        }
    }

    #[test]
    fn layout_sizes() {
        let small = Layout::for_image(300 * MIB);
        assert_eq!(small.state_mib, 2048);
        assert_eq!(small.fixed_bytes(), (1 + 1 + 64 + 2048 + 1) * MIB);
        assert_eq!(small.min_disk_bytes(), MIN_DISK_BYTES);
        let big = Layout::for_image(1500 * MIB);
        assert_eq!(big.state_mib, 4864); // 3 x 1500 + 256 = 4756, rounded up to 256 MiB
        assert!(big.min_disk_bytes() > MIN_DISK_BYTES);
    }

    #[test]
    fn sgdisk_command_lines() {
        let cmds = partition_commands(Path::new("/dev/vda"), &Layout::for_image(100 * MIB));
        assert_eq!(cmds[0], ["--zap-all", "/dev/vda"]);
        assert_eq!(
            cmds[1].join(" "),
            "--clear --set-alignment=2048 \
             --new=1:1M:+1M --typecode=1:EF02 --change-name=1:BIOS \
             --new=2:0:+64M --typecode=2:EF00 --change-name=2:RKOS_EFI \
             --new=3:0:+2048M --typecode=3:8300 --change-name=3:RKOS_STATE \
             --new=4:0:0 --typecode=4:8300 --change-name=4:RKOS_DATA \
             /dev/vda"
        );
    }

    #[test]
    fn mkfs_command_lines() {
        let cmds = format_commands(Path::new("/dev/loop3"), &Layout::for_image(0));
        let lines: Vec<String> = cmds
            .iter()
            .map(|(p, a)| format!("{p} {}", a.join(" ")))
            .collect();
        assert_eq!(
            lines,
            [
                "mkfs.vfat -F 32 -n RKOS_EFI /dev/loop3p2",
                "mkfs.ext4 -q -F -m 0 -L RKOS_STATE /dev/loop3p3",
                "mkfs.ext4 -q -F -L RKOS_DATA /dev/loop3p4",
            ]
        );
    }
}
