//! Failure handling: a message on every console saying what was looked for and what was
//! found, then a busybox shell, offered again whenever it exits. PID 1 never returns (the
//! kernel would panic) and never loops without saying why.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use rkos_contract::{paths, BootMode, Slot};

use crate::devices::{self, BlockDevice};
use crate::log;

pub const BUSYBOX: &str = "/bin/busybox";

/// The text shown when the boot cannot go on. `looked_for` says what the init needed;
/// `devices` is what a fresh scan found.
pub fn failure_message(
    error: &str,
    looked_for: &str,
    devices: &[BlockDevice],
    cmdline: &str,
    then: OnFailure,
) -> String {
    let mut s = String::new();
    let bar = "=".repeat(72);
    let _ = writeln!(s, "\n{bar}");
    let _ = writeln!(s, "rkos-init: BOOT FAILED: {error}");
    if !looked_for.is_empty() {
        let _ = writeln!(s, "Looked for: {looked_for}");
    }
    let _ = writeln!(s, "Found these block devices:");
    s.push_str(&devices::describe(devices));
    let _ = writeln!(s, "Kernel command line: {}", cmdline.trim());
    match then {
        OnFailure::Rescue => {
            let _ = writeln!(
                s,
                "Starting a rescue shell (busybox). `reboot -f` restarts the machine."
            );
        }
        OnFailure::Restart => {
            let _ = writeln!(
                s,
                "This is an installed slot: restarting in {} s so GRUB counts the try and falls \
                 back (its menu has a rescue entry).",
                RESTART_DELAY.as_secs()
            );
        }
    }
    let _ = writeln!(s, "{bar}");
    s
}

/// Makes room for busybox's applets and links its modprobe (the initramfs build links it
/// already; a hand-made initramfs may not). Best effort: the shell works without it, only less
/// comfortably.
pub fn prepare_busybox(root: &Path) {
    for d in ["bin", "sbin", "usr/bin", "usr/sbin"] {
        let _ = fs::create_dir_all(root.join(d));
    }
    let _ = symlink(BUSYBOX, root.join("sbin/modprobe"));
}

fn install_applets() {
    let _ = Command::new(BUSYBOX).args(["--install", "-s"]).status();
}

/// How long the failure message stays on screen before an installed slot restarts.
pub const RESTART_DELAY: Duration = Duration::from_secs(10);

/// What a failed boot (an error or a panic of rkos-init) does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The busybox shell on the console, for ever.
    Rescue,
    /// A restart after [`RESTART_DELAY`]: GRUB then spends the trial's tries and falls back.
    Restart,
}

/// The rule: a disk boot started by GRUB with `rkos.slot` restarts, unless the state volume
/// could be read and says that slot is not on trial (the known-good slot: a restart would
/// boot it again, and the operator needs the shell). A failure before the state volume is
/// readable (no disk driver, a panic) restarts: only that lets an unattended node get back
/// to its previous slot. Live, netboot, install and rescue boots get the shell.
///
/// `asked`: `rkos.mode` from the command line (GRUB of an installed disk passes `disk`);
/// `slot`: `rkos.slot`; `on_trial`: whether the state says `slot` is on trial, if known.
pub fn on_failure(
    asked: Option<BootMode>,
    slot: Option<Slot>,
    on_trial: Option<bool>,
) -> OnFailure {
    match (asked, slot, on_trial) {
        (None | Some(BootMode::Disk), Some(_), None | Some(true)) => OnFailure::Restart,
        _ => OnFailure::Rescue,
    }
}

/// [`on_failure`] for this boot: its kernel command line, and the state volume if rkos-init
/// mounted it already.
pub fn decide(cmdline: &str) -> OnFailure {
    let Ok(params) = crate::cmdline::parse(cmdline) else {
        return OnFailure::Rescue;
    };
    let on_trial = params.slot.and_then(|slot| {
        let state = rkos_slots::StateDir::new(paths::STATE_MOUNT)
            .boot_state()
            .ok()?;
        Some(state.trial.map(|t| t.slot) == Some(slot))
    });
    on_failure(params.mode, params.slot, on_trial)
}

/// Counts down [`RESTART_DELAY`] on the consoles, then restarts the machine.
pub fn restart(consoles: &[PathBuf]) -> ! {
    for left in (1..=RESTART_DELAY.as_secs()).rev() {
        log::to_consoles(consoles, &format!("rkos-init: restarting in {left} s\n"));
        sleep(Duration::from_secs(1));
    }
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Only reached if the kernel refused: the shell is all that is left.
    shell_forever(consoles)
}

/// Loads the filesystem drivers the operator is likely to need in the rescue shell.
pub fn load_rescue_modules() {
    if let Ok(index) = crate::kmod::initramfs_index() {
        let mut l = crate::kmod::Loader::new(index);
        for fs in ["ext4", "vfat", "iso9660", "squashfs", "overlay"] {
            l.ensure_fs(fs);
        }
        let _ = l.load("loop");
    }
}

/// Runs the rescue shell on the console for ever. `consoles` get the notices.
pub fn shell_forever(consoles: &[PathBuf]) -> ! {
    prepare_busybox(Path::new("/"));
    install_applets();
    loop {
        // setsid + cttyhack: the shell gets the console as its controlling terminal, so
        // Ctrl-C and job control work.
        let child = Command::new(BUSYBOX)
            .args(["setsid", BUSYBOX, "cttyhack", BUSYBOX, "sh", "-l"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/")
            .env("TERM", "linux")
            .env("PS1", "(rkos rescue) \\w # ")
            .spawn();
        match child {
            Ok(child) => {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                // PID 1 reaps every orphan; return to the loop when the shell itself ends.
                loop {
                    match nix::sys::wait::waitpid(None, None) {
                        Ok(status) if status.pid() == Some(pid) => break,
                        Ok(_) => {}
                        Err(nix::errno::Errno::ECHILD) => break,
                        Err(_) => {}
                    }
                }
                crate::log::to_consoles(
                    consoles,
                    "rkos-init: the rescue shell exited; starting it again\n",
                );
                sleep(Duration::from_millis(500));
            }
            Err(e) => {
                // Nothing else can run: say so once a minute instead of spinning.
                crate::log::to_consoles(
                    consoles,
                    &format!("rkos-init: cannot start the rescue shell {BUSYBOX}: {e}\nrkos-init: the machine must be restarted\n"),
                );
                sleep(Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Probe;
    use rkos_contract::FsType;

    #[test]
    fn message_names_what_was_wanted_and_found() {
        let devs = vec![
            BlockDevice {
                disk: String::new(),
                name: "sda".into(),
                path: "/dev/sda".into(),
                size_bytes: 8 << 30,
                probe: Some(Probe {
                    fstype: FsType::Ext4,
                    label: Some("RKOS_DATA".into()),
                    uuid: None,
                }),
                error: None,
            },
            BlockDevice {
                disk: String::new(),
                name: "sr0".into(),
                path: "/dev/sr0".into(),
                size_bytes: 0,
                probe: None,
                error: Some("empty (no medium)".into()),
            },
        ];
        let m = failure_message(
            "no boot volume after 10 s",
            "a volume labelled RKOS_LIVE (iso9660) holding /rootfs.squashfs",
            &devs,
            "console=ttyS0 rkos.mode=live\n",
            OnFailure::Rescue,
        );
        assert!(m.contains("BOOT FAILED: no boot volume after 10 s"), "{m}");
        assert!(m.contains("Looked for: a volume labelled RKOS_LIVE"), "{m}");
        assert!(
            m.contains("/dev/sda") && m.contains("ext4 label \"RKOS_DATA\""),
            "{m}"
        );
        assert!(
            m.contains("/dev/sr0") && m.contains("empty (no medium)"),
            "{m}"
        );
        assert!(
            m.contains("Kernel command line: console=ttyS0 rkos.mode=live\n"),
            "{m}"
        );
        assert!(m.contains("rescue shell"), "{m}");
    }

    #[test]
    fn an_installed_slot_restarts_unless_known_good() {
        use OnFailure::{Rescue, Restart};
        let disk = Some(BootMode::Disk);
        // A trial that fails before its state volume is readable (no disk driver, a panic).
        assert_eq!(on_failure(disk, Some(Slot::B), None), Restart);
        assert_eq!(on_failure(None, Some(Slot::B), None), Restart);
        assert_eq!(on_failure(disk, Some(Slot::B), Some(true)), Restart);
        // The known-good slot, as the state says: a restart would boot it again.
        assert_eq!(on_failure(disk, Some(Slot::A), Some(false)), Rescue);
        // Not an installed slot.
        assert_eq!(on_failure(disk, None, None), Rescue);
        for mode in [
            BootMode::Live,
            BootMode::Netboot,
            BootMode::Install,
            BootMode::Rescue,
        ] {
            assert_eq!(
                on_failure(Some(mode), Some(Slot::B), None),
                Rescue,
                "{mode:?}"
            );
        }
    }

    #[test]
    fn the_command_line_decides_before_anything_is_mounted() {
        // No state volume is mounted where the tests run: unknown, so a GRUB slot restarts.
        assert_eq!(
            decide("rkos.mode=disk rkos.slot=B console=ttyS0"),
            OnFailure::Restart
        );
        assert_eq!(decide("rkos.mode=live console=ttyS0"), OnFailure::Rescue);
        assert_eq!(decide(""), OnFailure::Rescue);
        let m = failure_message("x", "", &[], "rkos.slot=B", OnFailure::Restart);
        assert!(m.contains("restarting in 10 s"), "{m}");
    }

    #[test]
    fn busybox_links() {
        let d = tempfile::tempdir().unwrap();
        prepare_busybox(d.path());
        assert_eq!(
            fs::read_link(d.path().join("sbin/modprobe")).unwrap(),
            PathBuf::from(BUSYBOX)
        );
        assert!(d.path().join("usr/sbin").is_dir());
        // Idempotent.
        prepare_busybox(d.path());
    }
}
