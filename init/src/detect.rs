//! Mode detection and what the init waits for: pure functions over the probed devices.

use std::path::Path;
use std::time::Duration;

use rkos_contract::{files, label, BootMode, Slot, Volume};

use crate::devices::{self, BlockDevice};

/// What the wait loop needs to have found before the boot can go on.
pub fn looked_for(mode: Option<BootMode>, slot: Option<Slot>, wait: Duration) -> String {
    let within = format!("within rkos.wait={} s", wait.as_secs_f64());
    let (live, state, data) = (label::LIVE, label::STATE, label::DATA);
    let (rootfs, manifest) = (files::ROOTFS, files::MANIFEST);
    match mode {
        Some(BootMode::Live | BootMode::Install) => {
            format!("a volume labelled {live} (the rkos ISO or USB stick) holding /{rootfs}, {within}")
        }
        Some(BootMode::Disk) => format!(
            "volumes labelled {state} (holding /slots/{}/{rootfs} and {manifest}) and {data}, {within}",
            slot.map(|s| s.as_str()).unwrap_or("<rkos.slot>")
        ),
        Some(BootMode::Netboot) => "the image at rkos.image=URL".into(),
        Some(BootMode::Rescue) => String::new(),
        None => format!(
            "a volume labelled {state} (installed disk, with {data}) or {live} (live medium), {within}"
        ),
    }
}

/// After this long without the boot volume, the console says what is looked for and until
/// when ([`still_waiting`]): a slow SD card or USB disk is no reason for silence.
pub const WAIT_NOTICE: Duration = Duration::from_secs(2);

/// The console line of a boot still waiting for its volume after `waited`.
pub fn still_waiting(looked_for: &str, waited: Duration) -> String {
    format!(
        "rkos-init: no boot volume yet after {:.0} s; waiting for {looked_for}\n",
        waited.as_secs_f64()
    )
}

/// An installed disk's `RKOS_STATE` and `RKOS_DATA`. With `state_uuid` (GRUB's
/// `rkos.state=`), the state volume with that UUID and the data volume on the same disk:
/// another disk carrying the labels (a disk moved from another node, a wiped node's old
/// disk) is never taken. Without it (a grub.cfg from before `rkos.state`), the first of each
/// label in name order.
pub fn installed<'a>(
    devs: &'a [BlockDevice],
    state_uuid: Option<&str>,
) -> (Option<&'a BlockDevice>, Option<&'a BlockDevice>) {
    let Some(uuid) = state_uuid else {
        return (
            devices::find_label(devs, label::STATE, false),
            devices::find_label(devs, label::DATA, false),
        );
    };
    let state = devs.iter().find(|d| {
        d.label() == Some(label::STATE)
            && d.probe.as_ref().and_then(|p| p.uuid.as_deref()) == Some(uuid)
    });
    let data = state.and_then(|s| {
        devs.iter()
            .find(|d| d.disk == s.disk && d.label() == Some(label::DATA))
    });
    (state, data)
}

/// Volumes labelled like an installed disk's that [`installed`] did not take, for the
/// console: `(device, label)`.
pub fn ignored<'a>(
    devs: &'a [BlockDevice],
    state_uuid: Option<&str>,
) -> Vec<(&'a BlockDevice, &'static str)> {
    let (state, data) = installed(devs, state_uuid);
    let taken = |d: &BlockDevice| [state, data].iter().flatten().any(|t| t.path == d.path);
    devs.iter()
        .filter(|d| !taken(d))
        .filter_map(|d| {
            [label::STATE, label::DATA]
                .into_iter()
                .find(|l| d.label() == Some(l))
                .map(|l| (d, l))
        })
        .collect()
}

/// An installed disk's boot partition (`RKOS_EFI`, the ESP; a Raspberry Pi's firmware
/// partition): the one on the same disk as the state volume `state`, never another disk's.
pub fn boot_partition<'a>(devs: &'a [BlockDevice], state: &Path) -> Option<&'a BlockDevice> {
    let disk = &devs.iter().find(|d| d.path == state)?.disk;
    devs.iter()
        .find(|d| d.disk == *disk && d.label() == Some(label::EFI))
}

fn volume(d: &BlockDevice) -> Option<Volume> {
    d.fstype().map(|fstype| Volume {
        device: d.path.clone(),
        fstype,
    })
}

/// The mode and the volumes, once the devices it needs are there.
pub fn decide(
    mode: Option<BootMode>,
    state_uuid: Option<&str>,
    devs: &[BlockDevice],
) -> Option<(BootMode, Option<Volume>, Option<Volume>)> {
    let vol = |label: &str| devices::find_label(devs, label, false).and_then(volume);
    let (state, data) = installed(devs, state_uuid);
    let (state, data) = (state.and_then(volume), data.and_then(volume));
    match mode {
        Some(m @ (BootMode::Live | BootMode::Install)) => {
            vol(label::LIVE).map(|b| (m, Some(b), None))
        }
        Some(BootMode::Disk) => match (state, data) {
            (Some(s), Some(d)) => Some((BootMode::Disk, Some(s), Some(d))),
            _ => None,
        },
        Some(BootMode::Netboot) => Some((BootMode::Netboot, None, None)),
        Some(BootMode::Rescue) => None,
        None => match (state, data, vol(label::LIVE)) {
            (Some(s), Some(d), _) => Some((BootMode::Disk, Some(s), Some(d))),
            // A state volume without its data volume yet: keep waiting for it.
            (Some(_), None, _) => None,
            (None, _, Some(l)) => Some((BootMode::Live, Some(l), None)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Probe;
    use rkos_contract::FsType;

    fn dev(name: &str, fstype: FsType, label: Option<&str>) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            disk: name
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == 'p')
                .into(),
            path: format!("/dev/{name}").into(),
            size_bytes: 1 << 30,
            probe: Some(Probe {
                fstype,
                label: label.map(String::from),
                uuid: None,
            }),
            error: None,
        }
    }

    fn vol(name: &str, fstype: FsType) -> Option<Volume> {
        Some(Volume {
            device: format!("/dev/{name}").into(),
            fstype,
        })
    }

    #[test]
    fn the_boot_partition_is_the_booted_disks() {
        let esp_b = dev("vdb2", FsType::Vfat, Some(label::EFI));
        let esp_a = dev("vda1", FsType::Vfat, Some(label::EFI));
        let state = dev("vda2", FsType::Ext4, Some(label::STATE));
        let devs = [esp_b.clone(), esp_a.clone(), state.clone()];
        assert_eq!(
            boot_partition(&devs, &state.path).map(|d| &d.path),
            Some(&esp_a.path)
        );
        // only another disk has one
        assert_eq!(boot_partition(&[esp_b, state.clone()], &state.path), None);
        assert_eq!(boot_partition(&devs, Path::new("/dev/vdc2")), None);
    }

    #[test]
    fn auto_detection_prefers_an_installed_disk() {
        let live = dev("sr0", FsType::Iso9660, Some(label::LIVE));
        let state = dev("vda2", FsType::Ext4, Some(label::STATE));
        let data = dev("vda3", FsType::Ext4, Some(label::DATA));
        let other = dev("vdb", FsType::Vfat, Some(label::CIDATA));
        assert_eq!(decide(None, None, &[]), None);
        assert_eq!(decide(None, None, std::slice::from_ref(&other)), None);
        assert_eq!(
            decide(None, None, &[live.clone(), other.clone()]),
            Some((BootMode::Live, vol("sr0", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(None, None, &[live.clone(), state.clone(), data.clone()]),
            Some((
                BootMode::Disk,
                vol("vda2", FsType::Ext4),
                vol("vda3", FsType::Ext4)
            ))
        );
        // State without data: not yet (the data partition may still be appearing).
        assert_eq!(decide(None, None, &[live.clone(), state.clone()]), None);
    }

    #[test]
    fn explicit_modes_wait_for_their_volumes() {
        let live = dev("sda", FsType::Iso9660, Some(label::LIVE));
        let state = dev("nvme0n1p2", FsType::Ext4, Some(label::STATE));
        let data = dev("nvme0n1p3", FsType::Ext4, Some(label::DATA));
        let all = [live.clone(), state.clone(), data.clone()];
        assert_eq!(
            decide(Some(BootMode::Live), None, &all),
            Some((BootMode::Live, vol("sda", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(Some(BootMode::Install), None, &all),
            Some((BootMode::Install, vol("sda", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(Some(BootMode::Live), None, &[state.clone(), data.clone()]),
            None
        );
        assert_eq!(
            decide(Some(BootMode::Disk), None, &[live.clone(), state.clone()]),
            None
        );
        assert_eq!(
            decide(Some(BootMode::Disk), None, &all).map(|d| d.0),
            Some(BootMode::Disk)
        );
        assert_eq!(
            decide(Some(BootMode::Netboot), None, &[]),
            Some((BootMode::Netboot, None, None))
        );
        assert_eq!(decide(Some(BootMode::Rescue), None, &all), None);
        // Labels are exact for the rkos volumes.
        let lower = dev("sr0", FsType::Iso9660, Some("rkos_live"));
        assert_eq!(decide(Some(BootMode::Live), None, &[lower]), None);
    }

    #[test]
    fn messages_say_what_is_wanted() {
        let w = Duration::from_secs(10);
        assert!(looked_for(Some(BootMode::Live), None, w).contains("RKOS_LIVE"));
        let d = looked_for(Some(BootMode::Disk), Some(Slot::B), w);
        assert!(
            d.contains("/slots/B/rootfs.squashfs")
                && d.contains("RKOS_DATA")
                && d.contains("rkos.wait=10 s"),
            "{d}"
        );
        assert!(looked_for(Some(BootMode::Disk), None, w).contains("<rkos.slot>"));
        let a = looked_for(None, None, Duration::from_millis(2500));
        assert!(
            a.contains("RKOS_STATE") && a.contains("RKOS_LIVE") && a.contains("2.5 s"),
            "{a}"
        );
    }

    #[test]
    fn a_slow_boot_device_is_announced_with_the_limit() {
        let wanted = looked_for(Some(BootMode::Live), None, Duration::from_secs(30));
        let line = still_waiting(&wanted, Duration::from_millis(2040));
        assert!(
            line.starts_with(
                "rkos-init: no boot volume yet after 2 s; waiting for a volume labelled RKOS_LIVE"
            ),
            "{line}"
        );
        assert!(line.ends_with("within rkos.wait=30 s\n"), "{line}");
    }

    fn with_uuid(mut d: BlockDevice, disk: &str, uuid: &str) -> BlockDevice {
        d.disk = disk.into();
        d.probe.as_mut().unwrap().uuid = Some(uuid.into());
        d
    }

    #[test]
    fn the_booted_disk_is_bound_by_the_state_uuid() {
        // vda: the disk GRUB booted; sda: another node's old disk, first in name order.
        let other_data = with_uuid(dev("sda3", FsType::Ext4, Some(label::DATA)), "sda", "d-old");
        let other_state = with_uuid(
            dev("sda2", FsType::Ext4, Some(label::STATE)),
            "sda",
            "s-old",
        );
        let state = with_uuid(
            dev("vda2", FsType::Ext4, Some(label::STATE)),
            "vda",
            "s-mine",
        );
        let data = with_uuid(
            dev("vda3", FsType::Ext4, Some(label::DATA)),
            "vda",
            "d-mine",
        );
        let all = [
            other_state.clone(),
            other_data.clone(),
            state.clone(),
            data.clone(),
        ];
        // Without rkos.state the first by name wins: the other disk's.
        assert_eq!(
            decide(Some(BootMode::Disk), None, &all),
            Some((
                BootMode::Disk,
                vol("sda2", FsType::Ext4),
                vol("sda3", FsType::Ext4)
            ))
        );
        let want = Some((
            BootMode::Disk,
            vol("vda2", FsType::Ext4),
            vol("vda3", FsType::Ext4),
        ));
        assert_eq!(decide(Some(BootMode::Disk), Some("s-mine"), &all), want);
        assert_eq!(decide(None, Some("s-mine"), &all), want);
        let ignored: Vec<_> = ignored(&all, Some("s-mine"))
            .iter()
            .map(|(d, l)| (d.name.clone(), *l))
            .collect();
        assert_eq!(
            ignored,
            [
                ("sda2".to_string(), label::STATE),
                ("sda3".to_string(), label::DATA)
            ]
        );
        // Only another disk's data volume: keep waiting for our own, never take it.
        assert_eq!(
            decide(
                Some(BootMode::Disk),
                Some("s-mine"),
                &[other_data.clone(), state.clone()]
            ),
            None
        );
        // The state volume GRUB named is not there (yet): wait.
        assert_eq!(decide(Some(BootMode::Disk), Some("s-gone"), &all), None);
    }
}
