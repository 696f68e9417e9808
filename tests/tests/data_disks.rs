//! k3s state on a USB disk (issue 12: the recommended Raspberry Pi setup, the same code on
//! every architecture): an installed node whose config lists a `data_disks` entry by label
//! for `/var/lib/rancher`, with its own device wait (`wait_seconds`, [`WAIT`]).
//!
//! 1. With the USB disk attached (QEMU's xHCI controller, `usb-storage`): the disk is mounted
//!    at /var/lib/rancher over the data volume's bind, and k3s (the stand-in) started after
//!    it and wrote its state onto the USB disk.
//! 2. Powered off, started again without the disk: the boot does not wait for it, the
//!    console says which disk is missing and what to do once the bounded wait is over, the
//!    login prompt says it too, and k3s did not start (nothing was written to the boot disk's
//!    /var/lib/rancher).
//! 3. The disk plugged into that running node (QEMU's monitor, `device_add`): it is mounted,
//!    k3s starts on its state, and the login prompt's message is gone, with nobody typing a
//!    command.
//!
//! Needs what `upgrade_node` needs (root, QEMU, RKOS_ISO trusting work/keys/rkos.pub) and
//! mkfs.ext4. Built with the `qemu` feature.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rkos_tests::host::sh;
use rkos_tests::node::{login, p, prepare_with, start_with, wait_active, wait_until, BOOT, CMD};
use rkos_tests::qemu::{Extras, Vm};

const PASSWORD: &str = "usb-state-pw";
const LABEL: &str = "K3S_STATE";
/// The disk's `wait_seconds`: not the default 30, so the test shows the setting reaches
/// systemd and the message (and the missing-disk boot is shorter).
const WAIT: u32 = 20;

/// A 256 MiB whole-disk ext4 labelled [`LABEL`] with a marker file.
fn usb_disk(dir: &Path) -> Result<PathBuf> {
    let img = dir.join("usb.img");
    fs::File::create(&img)?.set_len(256 << 20)?;
    let tree = dir.join("usb.tree");
    fs::create_dir_all(&tree)?;
    fs::write(tree.join("on-the-usb-disk"), "yes\n")?;
    sh(
        "mkfs.ext4",
        &["-q", "-F", "-L", LABEL, "-d", p(&tree), p(&img)],
    )?;
    Ok(img)
}

/// The node with the USB disk `usb` attached at power-on, or held for plugging in later.
fn start(disk: &Path, name: &str, usb: &Path, attached: bool) -> Result<Vm> {
    let mut extras = Extras::default();
    if attached {
        extras.usb_disks.push(usb.to_path_buf());
    } else {
        extras.usb_hotplug.push(usb.to_path_buf());
    }
    start_with(disk, name, extras)
}

/// `systemctl is-active k3s`: `active` once the stand-in runs.
fn k3s_state(vm: &mut Vm) -> Result<String> {
    let (_, out) = vm.run("systemctl is-active k3s", CMD)?;
    Ok(out.trim().to_string())
}

#[test]
fn k3s_state_lives_on_a_usb_disk_and_a_missing_disk_is_said_and_waited_for_not_hung_on(
) -> Result<()> {
    let node = prepare_with(
        "usb-state",
        PASSWORD,
        "0.2.0",
        &format!(
            "  data_disks:\n    - path: /var/lib/rancher\n      label: {LABEL}\n      wait_seconds: {WAIT}\n"
        ),
    )?;
    let usb = usb_disk(node.tmp.path())?;

    // --- 1. the USB disk attached ------------------------------------------------------------
    let mut vm = start(&node.disk, "data-disks-attached", &usb, true)?;
    login(&mut vm, PASSWORD)?;
    wait_active(&mut vm, "k3s", Duration::from_secs(120))
        .context("k3s did not start with its disk attached")?;
    let src = vm.run_ok("findmnt -n -o SOURCE /var/lib/rancher | tail -n 1", CMD)?;
    ensure!(
        src.trim().starts_with("/dev/sd"),
        "/var/lib/rancher is not on the USB disk: {src}"
    );
    vm.run_ok("test -f /var/lib/rancher/on-the-usb-disk", CMD)
        .context("the USB disk's own file is not at /var/lib/rancher")?;
    // k3s.service's ExecStartPre (k3s-preload.sh) writes the agent image into k3s's state.
    vm.run_ok("ls /var/lib/rancher/k3s/agent/images | grep -q .", CMD)
        .context("k3s wrote no state onto the USB disk")?;
    let (code, out) = vm.run("sudo rkos data-disks", CMD)?;
    ensure!(
        code == 0 && out.contains("1 data disk(s), all mounted"),
        "rkos data-disks with the disk attached: {code} {out}"
    );
    vm.run_ok("test ! -e /run/rkos/data-disks", CMD)
        .context("a problem was reported with the disk attached")?;
    vm.send("sudo systemctl poweroff\n")?;
    vm.clean_shutdown("the node with its USB disk", "reboot: Power down", CMD)?;
    drop(vm);
    let listing = sh("debugfs", &["-R", "ls -p /k3s/agent/images", p(&usb)])?;
    ensure!(
        listing.lines().count() > 2,
        "the USB disk holds no k3s state after the power-off:\n{listing}"
    );

    // --- 2. the USB disk missing -------------------------------------------------------------
    let t0 = Instant::now();
    let mut vm = start(&node.disk, "data-disks-missing", &usb, false)?;
    vm.expect(
        &format!(
            r"rkos: data disk /dev/disk/by-label/{LABEL} for /var/lib/rancher is not attached \(waited {WAIT} s at boot\)"
        ),
        BOOT,
    )
    .context("the console did not say the data disk is missing")?;
    let message_after = t0.elapsed();
    vm.expect(
        r"Plug it in: it is mounted and k3s, which waits for it, starts by itself",
        CMD,
    )
    .context("the message does not say what to do")?;
    // The login prompt came while the device wait ran, not after it.
    let boot_log = vm.transcript();
    let prompt = boot_log.find("login: ");
    let message = boot_log.find("is not attached (waited");
    eprintln!(
        "power-on to the missing-disk message: {:.0} s; login prompt {} the message",
        message_after.as_secs_f64(),
        match (prompt, message) {
            (Some(a), Some(b)) if a < b => "before",
            _ => "after",
        }
    );
    // The prompt may have come before the message (and been read past): a new one.
    vm.send("\n")?;
    login(&mut vm, PASSWORD)?;
    let issue = vm.run_ok("cat /run/rkos/issue", CMD)?;
    ensure!(
        issue.contains("data disks") && issue.contains(&format!("by-label/{LABEL}")),
        "the login prompt does not say the disk is missing:\n{issue}"
    );
    // systemd took the wait from the rendered drop-in (its own default is 90 s).
    let timeout = vm.run_ok(
        &format!(
            r"systemctl show -p JobRunningTimeoutUSec --value 'dev-disk-by\x2dlabel-{LABEL}.device'"
        ),
        CMD,
    )?;
    ensure!(
        timeout.trim() == format!("{WAIT}s"),
        "the device's wait is {timeout:?}, not the config's {WAIT} s"
    );
    let k3s = k3s_state(&mut vm)?;
    ensure!(k3s != "active", "k3s started without its disk: {k3s}");
    // What k3s.service writes first (k3s-preload.sh): nowhere without the disk, neither at
    // the path nor on the data volume the path was bound from before data_disks.
    vm.run_ok(
        "test ! -e /var/lib/rancher/k3s/agent/images && \
         sudo test ! -e /run/rkos/data/var/lib/rancher/k3s/agent/images",
        CMD,
    )
    .context("k3s state was written to the boot disk without the USB disk")?;
    let (code, out) = vm.run("sudo rkos data-disks", CMD)?;
    ensure!(
        code == 1 && out.contains("is not attached"),
        "rkos data-disks without the disk: {code} {out}"
    );
    let (code, out) = vm.run("rkos data-disks 2>&1", CMD)?;
    ensure!(
        code != 0 && out.contains("run sudo rkos data-disks"),
        "rkos data-disks as the rkos user: {code} {out}"
    );

    // --- 3. the USB disk plugged in late -----------------------------------------------------
    let plugged = Instant::now();
    vm.plug_usb(0)?;
    wait_active(&mut vm, "k3s", Duration::from_secs(120))
        .context("k3s did not start once its disk was plugged in")?;
    eprintln!(
        "disk plugged in to k3s active: {:.0} s",
        plugged.elapsed().as_secs_f64()
    );
    vm.run_ok(
        "findmnt -n -o SOURCE /var/lib/rancher | tail -n 1 | grep -q '^/dev/sd'",
        CMD,
    )
    .context("the late disk is not mounted at /var/lib/rancher")?;
    vm.run_ok("test -f /var/lib/rancher/on-the-usb-disk", CMD)?;
    // The report ran again after the mount: nothing is said missing any more.
    wait_until(
        &mut vm,
        "test ! -e /run/rkos/data-disks",
        Duration::from_secs(30),
    )
    .context("the login prompt still says the disk is missing")?;
    let (code, out) = vm.run("sudo rkos data-disks", CMD)?;
    ensure!(
        code == 0 && out.contains("1 data disk(s), all mounted"),
        "rkos data-disks after the disk came: {code} {out}"
    );
    vm.send("sudo systemctl poweroff\n")?;
    vm.clean_shutdown("the node with its late USB disk", "reboot: Power down", CMD)?;
    Ok(())
}
