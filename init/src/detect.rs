//! Mode detection and what the init waits for: pure functions over the probed devices.

use std::time::Duration;

use crate::cmdline::{Mode, Slot};
use crate::devices::{self, BlockDevice};
use crate::plan::Volume;

pub const LIVE_LABEL: &str = "RKOS_LIVE";
pub const STATE_LABEL: &str = "RKOS_STATE";
pub const DATA_LABEL: &str = "RKOS_DATA";
pub const CIDATA_LABEL: &str = "CIDATA";

/// What the wait loop needs to have found before the boot can go on.
pub fn looked_for(mode: Option<Mode>, slot: Option<Slot>, wait: Duration) -> String {
    let within = format!("within rkos.wait={} s", wait.as_secs_f64());
    match mode {
        Some(Mode::Live | Mode::Install) => {
            format!("a volume labelled {LIVE_LABEL} (the rkos ISO or USB stick) holding /rootfs.squashfs, {within}")
        }
        Some(Mode::Disk) => format!(
            "volumes labelled {STATE_LABEL} (holding /slots/{}/rootfs.squashfs and manifest.json) and {DATA_LABEL}, {within}",
            slot.map(|s| s.as_str()).unwrap_or("<rkos.slot>")
        ),
        Some(Mode::Netboot) => "the image at rkos.image=URL".into(),
        Some(Mode::Rescue) => String::new(),
        None => format!(
            "a volume labelled {STATE_LABEL} (installed disk, with {DATA_LABEL}) or {LIVE_LABEL} (live medium), {within}"
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
    mode: Option<Mode>,
    devs: &[BlockDevice],
) -> Option<(Mode, Option<Volume>, Option<Volume>)> {
    let vol = |label: &str| {
        devices::find_label(devs, label, false).and_then(|d| {
            d.fstype().map(|fstype| Volume {
                device: d.path.clone(),
                fstype,
            })
        })
    };
    match mode {
        Some(m @ (Mode::Live | Mode::Install)) => vol(LIVE_LABEL).map(|b| (m, Some(b), None)),
        Some(Mode::Disk) => match (vol(STATE_LABEL), vol(DATA_LABEL)) {
            (Some(s), Some(d)) => Some((Mode::Disk, Some(s), Some(d))),
            _ => None,
        },
        Some(Mode::Netboot) => Some((Mode::Netboot, None, None)),
        Some(Mode::Rescue) => None,
        None => match (vol(STATE_LABEL), vol(DATA_LABEL), vol(LIVE_LABEL)) {
            (Some(s), Some(d), _) => Some((Mode::Disk, Some(s), Some(d))),
            // A state volume without its data volume yet: keep waiting for it.
            (Some(_), None, _) => None,
            (None, _, Some(l)) => Some((Mode::Live, Some(l), None)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{FsType, Probe};

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
        let live = dev("sr0", FsType::Iso9660, Some(LIVE_LABEL));
        let state = dev("vda2", FsType::Ext4, Some(STATE_LABEL));
        let data = dev("vda3", FsType::Ext4, Some(DATA_LABEL));
        let other = dev("vdb", FsType::Vfat, Some("CIDATA"));
        assert_eq!(decide(None, &[]), None);
        assert_eq!(decide(None, std::slice::from_ref(&other)), None);
        assert_eq!(
            decide(None, &[live.clone(), other.clone()]),
            Some((Mode::Live, vol("sr0", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(None, &[live.clone(), state.clone(), data.clone()]),
            Some((
                Mode::Disk,
                vol("vda2", FsType::Ext4),
                vol("vda3", FsType::Ext4)
            ))
        );
        // State without data: not yet (the data partition may still be appearing).
        assert_eq!(decide(None, &[live.clone(), state.clone()]), None);
    }

    #[test]
    fn explicit_modes_wait_for_their_volumes() {
        let live = dev("sda", FsType::Iso9660, Some(LIVE_LABEL));
        let state = dev("nvme0n1p2", FsType::Ext4, Some(STATE_LABEL));
        let data = dev("nvme0n1p3", FsType::Ext4, Some(DATA_LABEL));
        let all = [live.clone(), state.clone(), data.clone()];
        assert_eq!(
            decide(Some(Mode::Live), &all),
            Some((Mode::Live, vol("sda", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(Some(Mode::Install), &all),
            Some((Mode::Install, vol("sda", FsType::Iso9660), None))
        );
        assert_eq!(
            decide(Some(Mode::Live), &[state.clone(), data.clone()]),
            None
        );
        assert_eq!(
            decide(Some(Mode::Disk), &[live.clone(), state.clone()]),
            None
        );
        assert_eq!(
            decide(Some(Mode::Disk), &all).map(|d| d.0),
            Some(Mode::Disk)
        );
        assert_eq!(
            decide(Some(Mode::Netboot), &[]),
            Some((Mode::Netboot, None, None))
        );
        assert_eq!(decide(Some(Mode::Rescue), &all), None);
        // Labels are exact for the rkos volumes.
        let lower = dev("sr0", FsType::Iso9660, Some("rkos_live"));
        assert_eq!(decide(Some(Mode::Live), &[lower]), None);
    }

    #[test]
    fn messages_say_what_is_wanted() {
        let w = Duration::from_secs(10);
        assert!(looked_for(Some(Mode::Live), None, w).contains("RKOS_LIVE"));
        let d = looked_for(Some(Mode::Disk), Some(Slot::B), w);
        assert!(
            d.contains("/slots/B/rootfs.squashfs")
                && d.contains("RKOS_DATA")
                && d.contains("rkos.wait=10 s"),
            "{d}"
        );
        assert!(looked_for(Some(Mode::Disk), None, w).contains("<rkos.slot>"));
        let a = looked_for(None, None, Duration::from_millis(2500));
        assert!(
            a.contains("RKOS_STATE") && a.contains("RKOS_LIVE") && a.contains("2.5 s"),
            "{a}"
        );
    }

    #[test]
    fn a_slow_boot_device_is_announced_with_the_limit() {
        let wanted = looked_for(Some(Mode::Live), None, Duration::from_secs(30));
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
