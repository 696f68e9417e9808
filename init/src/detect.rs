//! Mode detection and what the init waits for: pure functions over the probed devices.

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

/// The mode and the volumes, once the devices it needs are there.
pub fn decide(
    mode: Option<BootMode>,
    devs: &[BlockDevice],
) -> Option<(BootMode, Option<Volume>, Option<Volume>)> {
    let vol = |label: &str| {
        devices::find_label(devs, label, false).and_then(|d| {
            d.fstype().map(|fstype| Volume {
                device: d.path.clone(),
                fstype,
            })
        })
    };
    match mode {
        Some(m @ (BootMode::Live | BootMode::Install)) => {
            vol(label::LIVE).map(|b| (m, Some(b), None))
        }
        Some(BootMode::Disk) => match (vol(label::STATE), vol(label::DATA)) {
            (Some(s), Some(d)) => Some((BootMode::Disk, Some(s), Some(d))),
            _ => None,
        },
        Some(BootMode::Netboot) => Some((BootMode::Netboot, None, None)),
        Some(BootMode::Rescue) => None,
        None => match (vol(label::STATE), vol(label::DATA), vol(label::LIVE)) {
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
            path: format!("/dev/{name}").into(),
            size_bytes: 1 << 30,
            probe: Some(Probe {
                fstype,
                label: label.map(String::from),
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
    fn auto_detection_prefers_an_installed_disk() {
        let live = dev("sr0", FsType::Iso9660, Some(label::LIVE));
        let state = dev("vda2", FsType::Ext4, Some(label::STATE));
        let data = dev("vda3", FsType::Ext4, Some(label::DATA));
        let other = dev("vdb", FsType::Vfat, Some(label::CIDATA));
        assert_eq!(decide(None, &[]), None);
        assert_eq!(decide(None, std::slice::from_ref(&other)), None);
        assert_eq!(
            decide(None, &[live.clone(), other.clone()]),
            Some((BootMode::Live, vol("sr0", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(None, &[live.clone(), state.clone(), data.clone()]),
            Some((
                BootMode::Disk,
                vol("vda2", FsType::Ext4),
                vol("vda3", FsType::Ext4)
            ))
        );
        // State without data: not yet (the data partition may still be appearing).
        assert_eq!(decide(None, &[live.clone(), state.clone()]), None);
    }

    #[test]
    fn explicit_modes_wait_for_their_volumes() {
        let live = dev("sda", FsType::Iso9660, Some(label::LIVE));
        let state = dev("nvme0n1p2", FsType::Ext4, Some(label::STATE));
        let data = dev("nvme0n1p3", FsType::Ext4, Some(label::DATA));
        let all = [live.clone(), state.clone(), data.clone()];
        assert_eq!(
            decide(Some(BootMode::Live), &all),
            Some((BootMode::Live, vol("sda", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(Some(BootMode::Install), &all),
            Some((BootMode::Install, vol("sda", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(Some(BootMode::Live), &[state.clone(), data.clone()]),
            None
        );
        assert_eq!(
            decide(Some(BootMode::Disk), &[live.clone(), state.clone()]),
            None
        );
        assert_eq!(
            decide(Some(BootMode::Disk), &all).map(|d| d.0),
            Some(BootMode::Disk)
        );
        assert_eq!(
            decide(Some(BootMode::Netboot), &[]),
            Some((BootMode::Netboot, None, None))
        );
        assert_eq!(decide(Some(BootMode::Rescue), &all), None);
        // Labels are exact for the rkos volumes.
        let lower = dev("sr0", FsType::Iso9660, Some("rkos_live"));
        assert_eq!(decide(Some(BootMode::Live), &[lower]), None);
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
}
