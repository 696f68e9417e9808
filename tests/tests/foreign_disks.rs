//! An installed node with other disks attached that carry rkos's labels (issue 16, item 7):
//! a disk from another node whose whole-disk file systems are labelled `RKOS_STATE` and
//! `RKOS_DATA`, on the AHCI controller so they are `sda`/`sdb` and come before the node's own
//! `vda` in name order (the order rkos-init used to take the first match in), and a `cidata`
//! seed on a CD-ROM that would rename the node. GRUB passes the booted volume's UUID
//! (`rkos.state=`); rkos-init takes that disk's state and data volumes, says on the console
//! which volumes it ignored and why, and leaves the seed alone because the node's config does
//! not opt in (`data_sources: [cdrom]`).
//!
//! Needs what `upgrade_node` needs (root, xorriso, QEMU, RKOS_ISO trusting
//! work/keys/rkos.pub) and mkfs.ext4. Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_contract::{label, partition};
use rkos_tests::host::sh;
use rkos_tests::node::{init_json, login, p, prepare, start_with, BOOT, CMD};
use rkos_tests::qemu::Extras;
use rkos_tests::seed::make_seed_iso;
use std::fs;
use std::path::{Path, PathBuf};

const PASSWORD: &str = "foreign-test-pw";

/// A 64 MiB whole-disk ext4 labelled `label`, holding a file named `marker`.
fn foreign_volume(dir: &Path, name: &str, label: &str) -> Result<PathBuf> {
    let img = dir.join(format!("{name}.img"));
    fs::File::create(&img)?.set_len(64 << 20)?;
    let tree = dir.join(format!("{name}.tree"));
    fs::create_dir_all(&tree)?;
    fs::write(tree.join("marker"), format!("foreign {label}\n"))?;
    sh(
        "mkfs.ext4",
        &["-q", "-F", "-L", label, "-d", p(&tree), p(&img)],
    )?;
    Ok(img)
}

#[test]
fn an_installed_node_keeps_to_its_own_disk_and_ignores_a_seed_it_did_not_ask_for() -> Result<()> {
    let node = prepare("own-disk", PASSWORD, "0.2.0")?;
    let dir = node.tmp.path();
    let state = foreign_volume(dir, "foreign-state", label::STATE)?;
    let data = foreign_volume(dir, "foreign-data", label::DATA)?;
    let seed = make_seed_iso(
        dir,
        "stick",
        "cidata",
        &[
            ("user-data", "#cloud-config\nhostname: from-the-stick\n"),
            ("meta-data", "instance-id: stick-1\n"),
        ],
    )?;
    let extras = Extras {
        cdroms: vec![seed],
        ide_disks: vec![state, data],
        ..Extras::default()
    };
    let mut vm = start_with(&node.disk, "foreign-disks", extras)?;
    // Said on the console before systemd starts, where an operator at the node looks (the
    // seed's line comes last).
    vm.expect(
        r"ignoring the NoCloud seed /dev/sr0 \(label CIDATA\): this installed node reads seed volumes only with `data_sources: \[cdrom\]`",
        BOOT,
    )
    .context("no warning about the seed")?;
    let console = vm.transcript();
    for lbl in [label::STATE, label::DATA] {
        let line = regex::Regex::new(&format!(
            r"ignoring /dev/sd[ab] labelled {lbl}: not on the disk GRUB booted"
        ))?;
        ensure!(
            line.is_match(&console),
            "no warning about the foreign {lbl} volume"
        );
    }
    login(&mut vm, PASSWORD)?;

    let init = init_json(&mut vm)?;
    let part = |n: u32| format!("/dev/vda{n}");
    ensure!(
        init.boot_device
            .as_ref()
            .map(|v| v.device.display().to_string())
            == Some(part(partition::STATE.number)),
        "state volume: {:?}",
        init.boot_device
    );
    ensure!(
        init.data_device
            .as_ref()
            .map(|v| v.device.display().to_string())
            == Some(part(partition::DATA.number)),
        "data volume: {:?}",
        init.data_device
    );
    ensure!(init.cidata_device.is_none(), "the seed was read: {init:?}");
    let uuid = vm.run_ok(
        &format!(
            "sudo blkid -s UUID -o value {}",
            part(partition::STATE.number)
        ),
        CMD,
    )?;
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD)?;
    ensure!(
        cmdline.contains(&format!("rkos.state={}", uuid.trim())),
        "GRUB did not name the state volume {uuid:?}: {cmdline}"
    );
    let host = vm.run_ok("hostname", CMD)?;
    ensure!(
        host.trim() == "own-disk",
        "the host name is {host:?}: the seed was applied"
    );
    // The node's persistent paths are on its own data volume, not the foreign one.
    let src = vm.run_ok("findmnt -n -o SOURCE /var/lib/rkos | cat", CMD)?;
    ensure!(
        src.contains(&part(partition::DATA.number)),
        "/var/lib/rkos is on {src}"
    );
    let mounted = vm.run_ok("findmnt -n -o SOURCE,TARGET | cat", CMD)?;
    ensure!(
        !mounted.contains("/dev/sda") && !mounted.contains("/dev/sdb"),
        "a foreign volume is mounted:\n{mounted}"
    );
    Ok(())
}
