//! `rkos upgrade` on an installed node, in QEMU, with the real image: the stand-in ISO's
//! kernel, initramfs (rkos-init in disk mode, checking the rootfs against the slot manifest)
//! and root filesystem (systemd, rkos-mark-good.service, the `rkos` binary) installed to a disk
//! by `rkos install`, booted through the installed GRUB. Bundles are served from the host's
//! loopback (the guest reaches it at 10.0.2.2) by [`rkos_tests::httpd`], which counts the
//! bytes it sent and can throttle, so the test knows how far a download got.
//!
//! Three QEMU runs, seven boots:
//! 1. slot A, version 1: `rkos status`; bundles with a tampered manifest, a tampered file, a
//!    truncated file and a signature by an unknown key are each refused with a clear message,
//!    grubenv byte-identical and slot B not made; then a throttled download of version 2 is
//!    started and the VM killed in the middle of its root filesystem.
//! 2. slot A again, complete, no trial, grubenv as before, the interrupted part still there;
//!    `rkos upgrade` to version 2 resumes it and flips; the VM is killed the moment it returns.
//! 3. slot B on trial runs version 2 (rkos-init says so); rkos-mark-good.service marks it good;
//!    a broken version 3 (its rootfs is no squashfs) is put on trial in slot A with one try and
//!    `--reboot`; rkos-init fails on the trial and restarts the machine; GRUB, with the try
//!    used up, goes back to slot B by itself, and `rkos status` reports the rollback.
//! 4. version 4, whose initramfs cannot load the virtio disk driver, is put on trial the same
//!    way: rkos-init finds no disk (so no GRUB environment to read), restarts after its
//!    countdown anyway, and the node comes back on slot B without anyone at the console.
//!
//! Needs root (loop devices), xorriso, cpio, gzip, sgdisk, mkfs, grub-install, QEMU, and an
//! ISO built with work/keys/rkos.pub as its trusted key: RKOS_ISO names it (the stand-in ISO,
//! whose /etc/default/rkos-mark-good makes "healthy" mean the stand-in k3s started). RKOS_BIN
//! names the host's `rkos` (else it is built). Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use regex::Regex;
use rkos_tests::host::sh;
use rkos_tests::httpd::Httpd;
use rkos_tests::node::{
    bundle, init_report, initrd_with_version, line_matching, link, login, marked_good, p, prepare,
    start, status, BOOT, CMD, STAGE, V1,
};
use rkos_tests::qemu::Vm;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "upgrade-test-pw";
const V2: &str = "0.2.0";
const V3: &str = "0.3.0";
const V4: &str = "0.4.0";

/// Small stand-in files for bundles that must be refused before they are ever booted.
fn small_files(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (name, n) in [
        ("vmlinuz", 70_000),
        ("initrd", 50_000),
        ("rootfs.squashfs", 300_000),
    ] {
        let bytes: Vec<u8> = (0..n as u32).map(|i| (i * 7 % 253) as u8).collect();
        fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// Boots the disk and checks it runs version 1 from slot A with nothing on trial: the
/// `initrd` (version `version`) whose virtio block driver is an empty file: the kernel
/// unpacks the appended archive last, so `virtio_blk.ko` no longer loads and rkos-init finds
/// no disk, failing before the state volume (and its GRUB environment) is readable.
fn initrd_without_disk_driver(initrd: &Path, version: &str, work: &Path, out: &Path) -> Result<()> {
    let listing = sh(
        "sh",
        &[
            "-c",
            &format!("zstd -qdc '{}' | cpio -t --quiet", initrd.display()),
        ],
    )?;
    let drivers: Vec<&str> = listing
        .lines()
        .filter(|l| l.ends_with("/virtio_blk.ko"))
        .collect();
    ensure!(
        !drivers.is_empty(),
        "no virtio_blk.ko in {}",
        initrd.display()
    );
    let tree = work.join(format!("nodisk-{version}"));
    for d in &drivers {
        let f = tree.join(d.trim_start_matches("./"));
        fs::create_dir_all(f.parent().context("module path")?)?;
        fs::write(f, b"")?;
    }
    fs::create_dir_all(tree.join("etc/rkos"))?;
    fs::write(tree.join("etc/rkos/version"), format!("{version}\n"))?;
    let mut bytes = fs::read(initrd)?;
    bytes.extend(sh_bytes(&format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -9",
        tree.display()
    ))?);
    fs::write(out, bytes)?;
    Ok(())
}

/// The raw standard output of `sh -c script`.
fn sh_bytes(script: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()?;
    ensure!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// Puts the bundle at `url` (version `version`, whose boot fails: `why`) on trial in slot A
/// with one try and `--reboot`; rkos-init must restart it, and GRUB go back to version 2 on
/// slot B by itself.
fn trial_rolls_back(vm: &mut Vm, url: &str, version: &str, why: &str) -> Result<()> {
    vm.send(&format!(
        "sudo rkos upgrade --bundle {url} --tries 1 --reboot\n"
    ))?;
    vm.expect(&format!("rkos-init: rkos {version} started"), BOOT)
        .with_context(|| format!("the trial slot A did not boot version {version}"))?;
    vm.expect(r"restarting in 10 s so GRUB counts the try", BOOT)
        .with_context(|| format!("rkos-init did not restart the failed trial ({why})"))?;
    vm.expect(&format!("rkos-init: rkos {V2} started"), BOOT)
        .with_context(|| format!("GRUB did not fall back to slot B ({why})"))?;
    login(vm, PASSWORD)?;
    init_report(vm, V2, "B")?;
    status(
        vm,
        &[
            &format!(r"^active slot: +B \(version {V2}\)"),
            r"^default slot: +B",
            r"^trial: +none",
            r"^last outcome: +slot A was never marked good; GRUB rolled back to slot B",
        ],
    )?;
    Ok(())
}

/// state before any upgrade, and after every upgrade that must not have happened.
fn boot_on_v1_untouched(disk: &Path, name: &str) -> Result<Vm> {
    let mut vm = start(disk, name)?;
    vm.expect(&format!("rkos-init: rkos {V1} started"), BOOT)?;
    login(&mut vm, PASSWORD)?;
    init_report(&mut vm, V1, "A")?;
    status(
        &mut vm,
        &[
            &format!(r"^active slot: +A \(version {V1}\)"),
            r"^trial: +none",
        ],
    )?;
    Ok(vm)
}

fn grubenv_sum(vm: &mut Vm) -> Result<String> {
    let out = vm.run_ok("sudo sha256sum /run/rkos/state/grub/grubenv", CMD)?;
    let line = line_matching(&out, r"[0-9a-f]{64}  \S+")?;
    Ok(line[..64].to_string())
}

/// Slot B holds no installed file (no manifest, kernel, initrd or root filesystem).
fn slot_b_not_made(vm: &mut Vm) -> Result<()> {
    let out = vm.run_ok(
        "sudo find /run/rkos/state/slots/B -maxdepth 1 -type f 2>/dev/null | wc -l",
        CMD,
    )?;
    ensure!(
        line_matching(&out, r"\d+")? == "0",
        "slot B has files: {out}"
    );
    Ok(())
}

#[test]
fn upgrade_refusals_power_cuts_and_rollback_on_an_installed_node() -> Result<()> {
    let began = Instant::now();
    // the image, installed to a disk as slot A, version 1; version 2's bundle
    let node = prepare("upgrade-node", PASSWORD, V2)?;
    let (dir, rkos, key, src, www) = (node.tmp.path(), &node.rkos, &node.key, &node.src, &node.www);
    let disk = &node.disk;

    // --- the other bundles -----------------------------------------------------------------
    let rootfs_size = fs::metadata(src.join("rootfs.squashfs"))?.len();

    // version 3's init fails: its root filesystem is listed in the manifest, sha256 and all,
    // but is no squashfs, so rkos-init cannot mount it
    let v3_files = dir.join("v3-files");
    fs::create_dir_all(&v3_files)?;
    link(&src.join("boot/vmlinuz"), &v3_files.join("vmlinuz"))?;
    initrd_with_version(&src.join("boot/initrd"), V3, dir, &v3_files.join("initrd"))?;
    fs::write(
        v3_files.join("rootfs.squashfs"),
        b"not a squashfs\n".repeat(70_000),
    )?;
    bundle(rkos, &v3_files, V3, key, &www.join("v3"))?;

    // version 4's initramfs cannot load the virtio disk driver: rkos-init fails before the
    // state volume is mounted, so it cannot know the slot is on trial, and must restart anyway
    let v4_files = dir.join("v4-files");
    fs::create_dir_all(&v4_files)?;
    link(&src.join("boot/vmlinuz"), &v4_files.join("vmlinuz"))?;
    link(
        &src.join("rootfs.squashfs"),
        &v4_files.join("rootfs.squashfs"),
    )?;
    initrd_without_disk_driver(&src.join("boot/initrd"), V4, dir, &v4_files.join("initrd"))?;
    bundle(rkos, &v4_files, V4, key, &www.join("v4"))?;

    let small = dir.join("small");
    small_files(&small)?;
    bundle(rkos, &small, "0.2.1", key, &www.join("tampered-manifest"))?;
    let m = www.join("tampered-manifest/manifest.json");
    let text = fs::read_to_string(&m)?;
    ensure!(text.contains("0.2.1"), "{text}");
    fs::write(&m, text.replace("0.2.1", "0.2.9"))?;

    bundle(rkos, &small, "0.2.2", key, &www.join("tampered-file"))?;
    let f = www.join("tampered-file/rootfs.squashfs");
    let mut bytes = fs::read(&f)?;
    bytes[150_000] ^= 0x55;
    fs::write(&f, bytes)?;

    bundle(rkos, &small, "0.2.3", key, &www.join("truncated"))?;
    let f = www.join("truncated/rootfs.squashfs");
    let bytes = fs::read(&f)?;
    fs::write(&f, &bytes[..bytes.len() / 2])?;

    let other = dir.join("other-keys");
    sh(rkos, &["bundle", "keygen", "--out", p(&other)])?;
    bundle(
        rkos,
        &small,
        "0.2.4",
        &other.join("rkos.key"),
        &www.join("wrong-key"),
    )?;

    let httpd = Httpd::serve(www)?;
    let url = |name: &str| format!("http://10.0.2.2:{}/{name}", httpd.port());
    eprintln!("prepared in {:?}", began.elapsed());

    // --- boot 1: slot A; bad bundles refused; a download cut by the power ------------------
    let mut vm = boot_on_v1_untouched(disk, "upgrade-node-1")?;
    let env_sum = grubenv_sum(&mut vm)?;
    for (name, why) in [
        ("tampered-manifest", r"manifest signature does not verify"),
        (
            "tampered-file",
            r"tampered-file/rootfs\.squashfs: sha256 is [0-9a-f]+, the signed manifest says",
        ),
        (
            "truncated",
            r"truncated/rootfs\.squashfs: source has 150000 bytes, the manifest says 300000 \(truncated\)",
        ),
        (
            "wrong-key",
            r"signed by key [0-9A-F]+, which is not among the node's 1 trusted key",
        ),
    ] {
        let (code, out) = vm.run(
            &format!(
                "sudo rkos upgrade --bundle {} --tries 1 --attempts 1 2>&1",
                url(name)
            ),
            CMD,
        )?;
        ensure!(code != 0, "the {name} bundle was accepted:\n{out}");
        ensure!(
            Regex::new(why)?.is_match(&out),
            "the {name} bundle was refused without saying /{why}/:\n{out}"
        );
        eprintln!(
            "{name}: refused: {}",
            out.trim().lines().last().unwrap_or("")
        );
        ensure!(
            grubenv_sum(&mut vm)? == env_sum,
            "grubenv changed after the {name} bundle"
        );
        slot_b_not_made(&mut vm)?;
    }
    ensure!(
        httpd.sent("/tampered-file/rootfs.squashfs") > 0,
        "the tampered file was never fetched: {:?}",
        httpd.requests()
    );

    // Version 2, throttled, in the background; the power goes when a quarter of its root
    // filesystem has arrived.
    httpd.set_rate(4 << 20);
    vm.run_ok(
        &format!(
            "sudo sh -c 'rkos upgrade --bundle {} --tries 1 >/tmp/upgrade.log 2>&1 &'",
            url("v2")
        ),
        CMD,
    )?;
    let cut_at = rootfs_size / 4;
    let deadline = Instant::now() + STAGE;
    while httpd.sent("/v2/rootfs.squashfs") < cut_at {
        ensure!(
            Instant::now() < deadline,
            "the download of version 2 never got going: {:?}",
            httpd.requests()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(vm);
    let first_run = httpd.sent("/v2/rootfs.squashfs");
    eprintln!("killed during staging after {first_run} of {rootfs_size} bytes of rootfs.squashfs");
    ensure!(
        first_run < rootfs_size,
        "the download finished before the kill"
    );
    httpd.set_rate(0);

    // --- boot 2: slot A, complete, no trial; version 2 staged (resumed) and flipped ----------
    let mut vm = boot_on_v1_untouched(disk, "upgrade-node-2")?;
    ensure!(
        grubenv_sum(&mut vm)? == env_sum,
        "grubenv changed by the interrupted download"
    );
    slot_b_not_made(&mut vm)?;
    let part = vm.run_ok(
        "sudo stat -c %s /run/rkos/state/slots/B/.staging/rootfs.squashfs.part",
        CMD,
    )?;
    let part: u64 = line_matching(&part, r"\d+")?.parse()?;
    eprintln!("after the cut: {part} bytes of rootfs.squashfs were on disk");
    ensure!(
        part > 0,
        "the power cut lost all of rootfs.squashfs's part (it is flushed every 16 MiB)"
    );

    let t0 = Instant::now();
    let out = vm.run_ok(
        &format!("sudo rkos upgrade --bundle {} --tries 1 2>&1", url("v2")),
        STAGE,
    )?;
    let took = t0.elapsed();
    // the power goes the moment `rkos upgrade` returns: no clean shutdown, no sync by hand
    drop(vm);
    let second_run = httpd.sent("/v2/rootfs.squashfs") - first_run;
    eprintln!(
        "staged version 2 in {took:?}, {second_run} bytes of rootfs.squashfs fetched this time:\n{}",
        out.trim()
    );
    for name in ["vmlinuz", "initrd"] {
        let size = fs::metadata(www.join("v2").join(name))?.len();
        let sent = httpd.sent(&format!("/v2/{name}"));
        ensure!(
            sent == size,
            "{name}, complete before the cut, was fetched again ({sent} bytes sent for {size})"
        );
    }
    ensure!(
        second_run < rootfs_size,
        "the interrupted download was not resumed ({second_run} of {rootfs_size} bytes fetched again)"
    );

    // --- boot 3: version 2 on trial, marked good; broken version 3 tried and rolled back -----
    let mut vm = start(disk, "upgrade-node-3")?;
    vm.expect(&format!("rkos-init: rkos {V2} started"), BOOT)
        .context("the trial slot B did not boot version 2")?;
    login(&mut vm, PASSWORD)?;
    init_report(&mut vm, V2, "B")?;
    marked_good(&mut vm, V2, "B", Duration::from_secs(300))?;

    trial_rolls_back(&mut vm, &url("v3"), V3, "the broken root filesystem")?;
    // --- boot 4: version 4 has no disk driver; unattended, the node comes back on B ---------
    trial_rolls_back(&mut vm, &url("v4"), V4, "no disk driver")?;
    drop(vm);
    eprintln!("whole test: {:?}", began.elapsed());
    Ok(())
}
