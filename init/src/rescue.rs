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

use rkos_contract::{paths, Slot};

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
    let _ = writeln!(
        s,
        "Starting a rescue shell (busybox). `reboot -f` restarts the machine."
    );
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

/// How long the failure message stays on screen before a failed trial boot restarts.
const TRIAL_RESTART_DELAY: Duration = Duration::from_secs(10);

/// A trial slot that cannot boot must not sit in the rescue shell: only a restart lets GRUB
/// spend the remaining tries and then fall back to the known-good slot by itself. When the
/// state volume is not mounted yet, GRUB's environment cannot be read and the shell is the
/// safe answer (the panic=/watchdog path still covers a hang).
pub fn restart_if_on_trial(booted: Slot, consoles: &[PathBuf]) {
    let state = rkos_slots::StateDir::new(paths::STATE_MOUNT);
    let on_trial = matches!(state.boot_state(), Ok(s) if s.trial.map(|t| t.slot) == Some(booted));
    if !on_trial {
        return;
    }
    log::to_consoles(
        consoles,
        &format!(
            "rkos-init: slot {booted} is on trial and failed to boot; restarting in {} s so \
             GRUB falls back to the previous slot\n",
            TRIAL_RESTART_DELAY.as_secs()
        ),
    );
    sleep(TRIAL_RESTART_DELAY);
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
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
                name: "sda".into(),
                path: "/dev/sda".into(),
                size_bytes: 8 << 30,
                probe: Some(Probe {
                    fstype: FsType::Ext4,
                    label: Some("RKOS_DATA".into()),
                }),
                error: None,
            },
            BlockDevice {
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
