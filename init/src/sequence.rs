//! The boot as a list of named stages, in order (as Talos's sequencer lists phases): the
//! [`PRELUDE`] finds the boot volume and the mode, then [`after_detection`] lists what that
//! mode does. Pure: the stages themselves are `crate::stages`'s functions, one per
//! [`StageId`].

use rkos_contract::BootMode;

use crate::plan;

/// One stage of the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageId {
    /// /proc, /sys, /dev (devtmpfs), /run (tmpfs); the kernel log opened.
    MountBasic,
    /// The kernel command line read: consoles, mode, slot, logging.
    BootParams,
    /// Coldplug: the modules for every device present.
    Modules,
    /// `rkos.mode=rescue`: the rescue shell, as asked.
    RescueIfAsked,
    /// Probing block devices until the boot volume is there (or `rkos.wait` is up).
    WaitDevices,
    /// The mount plan for the mode found.
    Plan,
    /// One stage of the mount plan.
    Mount(plan::Stage),
    /// The config the boot volumes carry copied into /run/rkos; the config starts loading
    /// on the second thread.
    ConfigSources,
    /// /run moved into the new root.
    MoveRun,
    /// The installed node's machine id written into the new root.
    MachineId,
    /// One `syncfs` of the data volume when anything was created on it.
    SyncData,
    /// The merged config applied: hostname, modules, sysctls, persistent paths.
    Config,
    /// `init.json` and the summary line.
    Report,
    /// The new root becomes `/` and its init runs.
    SwitchRoot,
}

impl StageId {
    /// The name in the timings (the `rkos-init: <stage> <ms> ms` lines and `init.json`);
    /// `None` for the short steps between stages, which count in the total only.
    pub fn timed_name(self) -> Option<&'static str> {
        Some(match self {
            StageId::MountBasic => "mount-basic",
            StageId::Modules => "modules",
            StageId::WaitDevices => "wait-devices",
            StageId::Mount(s) => s.as_str(),
            StageId::ConfigSources => "config-sources",
            StageId::MoveRun => "move-run",
            StageId::MachineId => "machine-id",
            StageId::SyncData => "sync-data",
            StageId::Config => "config",
            StageId::BootParams
            | StageId::RescueIfAsked
            | StageId::Plan
            | StageId::Report
            | StageId::SwitchRoot => return None,
        })
    }
}

/// Stages whose time the init does not control: devices appearing, downloading and hashing
/// the image, the disk writing back.
pub const NOT_OWN_WORK: &[&str] = &["wait-devices", "verify-image", "fetch-image", "sync-data"];

/// What every boot does first: find out how it boots.
pub const PRELUDE: [StageId; 6] = [
    StageId::MountBasic,
    StageId::BootParams,
    StageId::Modules,
    StageId::RescueIfAsked,
    StageId::WaitDevices,
    StageId::Plan,
];

/// The stages of a boot in `mode` whose mount plan has `mounts` (its stages, in order).
///
/// The config sources are copied as soon as they are in place, so the config loads on the
/// second thread while the main thread goes on: booted from the live medium, once the medium
/// is mounted (the load overlaps the image's mount); elsewhere the persistent config is in
/// place only once /run is in the new root (the load overlaps the machine id).
pub fn after_detection(mode: BootMode, mounts: &[plan::Stage]) -> Vec<StageId> {
    let mut stages = Vec::new();
    for &m in mounts {
        stages.push(StageId::Mount(m));
        if m == plan::Stage::Medium && mode.boots_from_live_medium() {
            stages.push(StageId::ConfigSources);
        }
    }
    stages.push(StageId::MoveRun);
    if !stages.contains(&StageId::ConfigSources) {
        stages.push(StageId::ConfigSources);
    }
    if mode == BootMode::Disk {
        stages.push(StageId::MachineId);
    }
    stages.extend([
        StageId::SyncData,
        StageId::Config,
        StageId::Report,
        StageId::SwitchRoot,
    ]);
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use plan::Stage as M;

    fn names(stages: &[StageId]) -> Vec<&'static str> {
        stages.iter().filter_map(|s| s.timed_name()).collect()
    }

    #[test]
    fn live_copies_the_config_sources_right_after_the_medium() {
        let mounts = [M::Medium, M::Image, M::Overlay, M::Tmpfs];
        for mode in [BootMode::Live, BootMode::Install] {
            assert_eq!(
                names(&after_detection(mode, &mounts)),
                [
                    "mount-medium",
                    "config-sources",
                    "mount-image",
                    "mount-overlay",
                    "mount-tmpfs",
                    "move-run",
                    "sync-data",
                    "config"
                ]
            );
        }
    }

    #[test]
    fn disk_copies_them_once_run_is_in_the_new_root_and_keeps_the_machine_id() {
        let mounts = [
            M::Medium,
            M::Verify,
            M::Image,
            M::Overlay,
            M::Data,
            M::Persist,
        ];
        let stages = after_detection(BootMode::Disk, &mounts);
        assert_eq!(
            names(&stages),
            [
                "mount-medium",
                "verify-image",
                "mount-image",
                "mount-overlay",
                "mount-data",
                "bind-persistent",
                "move-run",
                "config-sources",
                "machine-id",
                "sync-data",
                "config"
            ]
        );
        assert_eq!(stages.last(), Some(&StageId::SwitchRoot));
        assert_eq!(stages[stages.len() - 2], StageId::Report);
    }

    #[test]
    fn netboot_has_no_medium_and_loads_the_config_after_move_run() {
        let stages = after_detection(BootMode::Netboot, &[M::Fetch, M::Image, M::Overlay]);
        assert_eq!(
            names(&stages)[..5],
            [
                "fetch-image",
                "mount-image",
                "mount-overlay",
                "move-run",
                "config-sources"
            ]
        );
        assert!(!stages.contains(&StageId::MachineId));
    }

    #[test]
    fn the_prelude_finds_the_mode_and_its_untimed_steps_have_no_name() {
        assert_eq!(names(&PRELUDE), ["mount-basic", "modules", "wait-devices"]);
        assert_eq!(PRELUDE.last(), Some(&StageId::Plan));
    }

    #[test]
    fn stages_left_out_of_own_work_are_stages() {
        let all: Vec<&str> = [M::Fetch, M::Verify]
            .iter()
            .map(|m| m.as_str())
            .chain(names(&after_detection(BootMode::Disk, &[])))
            .chain(names(&PRELUDE))
            .collect();
        for n in NOT_OWN_WORK {
            assert!(all.contains(n), "{n}");
        }
    }
}
