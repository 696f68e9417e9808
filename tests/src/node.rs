//! An installed node for the upgrade tests (`upgrade_node`, `powercut`): the ISO's image
//! installed by `rkos install` to a disk as slot A, bundles of other versions of the same
//! image, and the console steps that boot, log in and check what came up.

use crate::host::{ensure_root, iso, rkos_bin, sh, workspace};
use crate::qemu::{Arch, Boot, Extras, Vm, VmConfig};
use anyhow::{ensure, Context, Result};
use regex::Regex;
use rkos_contract::report::InitReport;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A full systemd boot under software emulation takes about a minute; leave room for a busy
/// 2-core CI machine.
pub const BOOT: Duration = Duration::from_secs(480);
pub const CMD: Duration = Duration::from_secs(120);
/// Staging the 140 MB version 2 over QEMU's user-mode network under emulation.
pub const STAGE: Duration = Duration::from_secs(600);
/// The version the installed image reports.
pub const V1: &str = "0.1.0";
const GIB: u64 = 1 << 30;

pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The ISO's kernel, initramfs and root filesystem in `dir` (`boot/vmlinuz`, `boot/initrd`,
/// `rootfs.squashfs`: the layout `rkos install --source` reads).
pub fn extract_image(iso: &Path, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir.join("boot"))?;
    let mut args = vec!["-osirrox", "on", "-indev", p(iso)];
    let pairs = [
        ("/boot/vmlinuz", dir.join("boot/vmlinuz")),
        ("/boot/initrd", dir.join("boot/initrd")),
        ("/rootfs.squashfs", dir.join("rootfs.squashfs")),
    ];
    for (from, to) in &pairs {
        args.extend(["-extract", from, p(to)]);
    }
    let status = Command::new("xorriso")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running xorriso")?;
    ensure!(
        status.success() && pairs.iter().all(|(_, to)| to.is_file()),
        "could not extract the image from {}",
        iso.display()
    );
    Ok(())
}

/// `initrd` with a second cpio archive appended that replaces `etc/rkos/version`: the kernel
/// unpacks concatenated archives in order, so the result is the same initramfs reporting
/// another version (rkos-init prints it and records it in /run/rkos/init.json).
pub fn initrd_with_version(initrd: &Path, version: &str, work: &Path, out: &Path) -> Result<()> {
    let tree = work.join(format!("version-{version}"));
    fs::create_dir_all(tree.join("etc/rkos"))?;
    fs::write(tree.join("etc/rkos/version"), format!("{version}\n"))?;
    let extra = work.join(format!("version-{version}.cpio.gz"));
    sh(
        "sh",
        &[
            "-c",
            &format!(
                "cd '{}' && find etc | cpio -o -H newc --quiet | gzip -9 > '{}'",
                tree.display(),
                extra.display()
            ),
        ],
    )?;
    let mut bytes = fs::read(initrd)?;
    bytes.extend(fs::read(&extra)?);
    fs::write(out, bytes)?;
    Ok(())
}

/// Links (or copies) `from` to `to`: the 140 MB root filesystem goes into several bundles.
pub fn link(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

/// `rkos bundle create` of the three files in `files` into `out`, for amd64.
pub fn bundle(rkos: &Path, files: &Path, version: &str, key: &Path, out: &Path) -> Result<()> {
    bundle_for(Arch::Amd64, rkos, files, version, key, out)
}

/// [`bundle`] for `arch`.
pub fn bundle_for(
    arch: Arch,
    rkos: &Path,
    files: &Path,
    version: &str,
    key: &Path,
    out: &Path,
) -> Result<()> {
    sh(
        rkos,
        &[
            "bundle",
            "create",
            "--version",
            version,
            "--arch",
            arch.as_str(),
            "--key",
            p(key),
            "--out",
            p(out),
            p(&files.join("vmlinuz")),
            p(&files.join("initrd")),
            p(&files.join("rootfs.squashfs")),
        ],
    )
    .map(|_| ())
}

/// A bundle of the image extracted in `src` that reports `version`: the same kernel and root
/// filesystem, an initramfs that says `version`. `dir` takes the work files.
pub fn version_bundle(
    rkos: &Path,
    src: &Path,
    version: &str,
    key: &Path,
    dir: &Path,
    out: &Path,
) -> Result<()> {
    version_bundle_for(Arch::Amd64, rkos, src, version, key, dir, out)
}

/// [`version_bundle`] of an image for `arch`.
pub fn version_bundle_for(
    arch: Arch,
    rkos: &Path,
    src: &Path,
    version: &str,
    key: &Path,
    dir: &Path,
    out: &Path,
) -> Result<()> {
    let files = dir.join(format!("{version}-files"));
    fs::create_dir_all(&files)?;
    link(&src.join("boot/vmlinuz"), &files.join("vmlinuz"))?;
    link(&src.join("rootfs.squashfs"), &files.join("rootfs.squashfs"))?;
    initrd_with_version(
        &src.join("boot/initrd"),
        version,
        dir,
        &files.join("initrd"),
    )?;
    bundle_for(arch, rkos, &files, version, key, out)
}

/// The bundle signing key, work/keys/rkos.key; the ISO must trust its public half.
pub fn signing_key() -> Result<PathBuf> {
    let key = workspace().join("work/keys/rkos.key");
    ensure!(
        key.is_file(),
        "{} is needed (build/mkbundle.sh keys)",
        key.display()
    );
    Ok(key)
}

/// A loop device over a sparse file, detached on drop.
pub struct Loop(pub String);

impl Loop {
    pub fn new(file: &Path, bytes: u64) -> Result<Loop> {
        fs::File::create(file)?.set_len(bytes)?;
        Loop::losetup(file)
    }

    fn losetup(file: &Path) -> Result<Loop> {
        let dev = sh("losetup", &["--find", "--show", "--partscan", p(file)])?;
        Ok(Loop(dev.trim().to_string()))
    }

    /// A loop device over the existing disk image `file`, with a device for each partition
    /// (`partx`, as the installer does: the kernel's own scan is not always there).
    pub fn attach(file: &Path) -> Result<Loop> {
        let dev = Loop::losetup(file)?;
        sh("partx", &["--update", &dev.0])?;
        let _ = sh("udevadm", &["settle", "--timeout=10"]);
        Ok(dev)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Edits the GRUB environment block on the installed disk image `disk` (its `RKOS_STATE`
/// mounted through a loop device under `work`): what a test changes of a board's boot.
pub fn edit_grubenv(
    disk: &Path,
    work: &Path,
    edit: impl FnOnce(&mut rkos_slots::GrubEnv) -> Result<()>,
) -> Result<()> {
    ensure_root("a loop device")?;
    let dev = Loop::attach(disk)?;
    let part = crate::host::gpt_partition(disk, rkos_contract::label::STATE)?.0;
    let mnt = work.join("state");
    fs::create_dir_all(&mnt)?;
    let _m = crate::host::Mount::new(&[&format!("{}p{part}", dev.0)], &mnt)?;
    let sd = rkos_slots::StateDir::new(&mnt);
    let mut env = sd.read_env()?;
    edit(&mut env)?;
    fs::write(sd.grubenv(), env.serialize()?)?;
    Ok(())
}

/// The unattended install from the kernel command line, as an operator starts it from the
/// ISO `iso` of `arch`: its kernel and initramfs (extracted into `work`) with the installer's
/// words for `/dev/vda` (the blank `disk`), a config URL serving `config` (from the host's
/// loopback, QEMU's 10.0.2.2) and a power-off, and the ISO attached as the medium the image
/// is copied from. Returns once the installer says it installed (within `limit`) and the
/// config was fetched: the VM (powering off) and the kernel and initramfs it started.
pub fn install_unattended(
    name: &str,
    arch: Arch,
    iso: &Path,
    disk: &Path,
    config: &str,
    work: &Path,
    limit: Duration,
) -> Result<(Vm, PathBuf, PathBuf)> {
    let www = work.join("www");
    fs::create_dir_all(&www)?;
    fs::write(www.join("node.yaml"), config)?;
    let httpd = crate::httpd::Httpd::serve(&www)?;
    let config_url = format!("http://10.0.2.2:{}/node.yaml", httpd.port());
    let (kernel, initrd) = crate::qemu::extract_kernel(iso, work)?;
    let consoles = match arch {
        Arch::Amd64 => "console=tty0 console=ttyS0,115200n8",
        Arch::Arm64 => "console=ttyAMA0,115200",
    };
    let mut vm = Vm::start(&VmConfig {
        name: name.into(),
        arch,
        boot: Boot::Kernel {
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            cmdline: format!(
                "rkos.mode=install rkos.install.device=/dev/vda rkos.install.config_url={config_url} \
                 rkos.install.power_off {consoles}"
            ),
            medium: Some(iso.to_path_buf()),
        },
        disks: vec![disk.to_path_buf()],
        memory_mb: 2048,
        extras: Extras::default(),
    })?;
    vm.expect(&regex::escape("rkos-install: installed rkos"), limit)
        .with_context(|| format!("the unattended install on {arch} did not finish"))?;
    ensure!(
        httpd.requests().iter().any(|r| r.contains("node.yaml")),
        "the installer never fetched the config: {:?}",
        httpd.requests()
    );
    Ok((vm, kernel, initrd))
}

/// An installed node's disk and the bundles for it, in a temporary directory.
pub struct Prepared {
    pub tmp: tempfile::TempDir,
    /// The host's `rkos`.
    pub rkos: PathBuf,
    /// The bundle signing key ([`signing_key`]).
    pub key: PathBuf,
    /// The 5 GiB raw disk, slot A holding version [`V1`].
    pub disk: PathBuf,
    /// The ISO's image, extracted (`boot/vmlinuz`, `boot/initrd`, `rootfs.squashfs`).
    pub src: PathBuf,
    /// What the bundle server serves: `www/v2` holds [`version_bundle`] of version `v2`.
    pub www: PathBuf,
}

/// The ISO under test (`RKOS_ISO`), checked to trust work/keys/rkos.pub and installed by
/// `rkos install` as slot A, version [`V1`], to a raw disk with host name `hostname` and
/// `rkos`'s password `password`; and a bundle of the same image as version `v2`.
pub fn prepare(hostname: &str, password: &str, v2: &str) -> Result<Prepared> {
    prepare_with(hostname, password, v2, "")
}

/// [`prepare`], with `more` (keys of the config's `rkos:` map, indented by two spaces) in the
/// installed config.
pub fn prepare_with(hostname: &str, password: &str, v2: &str, more: &str) -> Result<Prepared> {
    ensure_root("loop devices")?;
    let rkos = rkos_bin()?;
    let iso = iso()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let key = signing_key()?;
    let src = dir.join("v1");
    extract_image(&iso, &src)?;
    let baked = sh(
        "unsquashfs",
        &[
            "-cat",
            p(&src.join("rootfs.squashfs")),
            "usr/lib/rkos/trusted-keys/rkos.pub",
        ],
    )
    .context("reading the image's trusted key")?;
    ensure!(
        baked.trim() == fs::read_to_string(workspace().join("work/keys/rkos.pub"))?.trim(),
        "the ISO trusts another key than work/keys/rkos.pub: rebuild it"
    );
    let config = dir.join("node.yaml");
    fs::write(
        &config,
        format!("hostname: {hostname}\nrkos:\n  password: {password}\n{more}"),
    )?;
    let disk = dir.join("disk.img");
    {
        let dev = Loop::new(&disk, 5 * GIB)?;
        let t0 = Instant::now();
        sh(
            &rkos,
            &[
                "install",
                "--yes",
                "--device",
                &dev.0,
                "--config",
                p(&config),
                "--source",
                p(&src),
                "--image-version",
                V1,
            ],
        )?;
        eprintln!("installed in {:?}", t0.elapsed());
    }
    let www = dir.join("www");
    fs::create_dir_all(&www)?;
    version_bundle(&rkos, &src, v2, &key, dir, &www.join("v2"))?;
    Ok(Prepared {
        rkos,
        key,
        disk,
        src,
        www,
        tmp,
    })
}

/// Boots the installed node on `disk` (raw, or a qcow2 overlay named `*.qcow2`) from its
/// own GRUB.
pub fn start(disk: &Path, name: &str) -> Result<Vm> {
    start_with(disk, name, Extras::default())
}

/// [`start`], with more devices attached (`extras`).
pub fn start_with(disk: &Path, name: &str, extras: Extras) -> Result<Vm> {
    Vm::start(&VmConfig {
        name: name.into(),
        arch: Arch::Amd64,
        boot: Boot::Disk { uefi_vars: None },
        disks: vec![disk.to_path_buf()],
        memory_mb: 1536,
        extras,
    })
}

/// Logs `rkos` in with `password` at the login prompt of an installed node (which has no
/// autologin), waiting up to `boot` for the prompt, and readies the shell.
pub fn password_login(vm: &mut Vm, password: &str, boot: Duration) -> Result<()> {
    vm.expect(r"login: ", boot).context("no login prompt")?;
    vm.send("rkos\n")?;
    vm.expect(r"Password: ", CMD)
        .context("no password prompt")?;
    vm.send(&format!("{password}\n"))?;
    vm.expect(r"rkos@[^ ]*[:~]|\$ ", CMD)
        .context("the password did not log in")?;
    vm.prepare_shell()
}

/// [`password_login`], then kernel and systemd status lines off the console.
pub fn login(vm: &mut Vm, password: &str) -> Result<()> {
    login_within(vm, password, BOOT)
}

/// [`login`], waiting up to `boot` for the prompt (an emulated arm64 boot takes longer).
pub fn login_within(vm: &mut Vm, password: &str, boot: Duration) -> Result<()> {
    password_login(vm, password, boot)?;
    eprintln!(
        "{}: logged in {:.0} s after QEMU started",
        vm.log_path.display(),
        vm.started.elapsed().as_secs_f64()
    );
    // Kernel and systemd status lines on the same console would interleave with command
    // output (a reboot sets both back).
    vm.run_ok("sudo dmesg -n 1; sudo kill -s RTMIN+21 1", CMD)
        .map(|_| ())
}

/// The one line of `out` that matches `pattern` whole (other console lines may interleave).
pub fn line_matching<'a>(out: &'a str, pattern: &str) -> Result<&'a str> {
    let re = Regex::new(&format!("^(?:{pattern})$"))?;
    out.lines()
        .map(str::trim)
        .find(|l| re.is_match(l))
        .with_context(|| format!("no line /{pattern}/ in:\n{out}"))
}

/// `rkos status`, checked line by line against `want` (regexes, each matching one line).
pub fn status(vm: &mut Vm, want: &[&str]) -> Result<String> {
    let out = vm.run_ok("rkos status", CMD)?;
    for w in want {
        let re = Regex::new(w)?;
        ensure!(
            out.lines().any(|l| re.is_match(l)),
            "rkos status lacks /{w}/:\n{out}"
        );
    }
    Ok(out)
}

/// What rkos-init recorded for this boot in /run/rkos/init.json.
pub fn init_json(vm: &mut Vm) -> Result<InitReport> {
    let json = vm.run_ok("cat /run/rkos/init.json", CMD)?;
    serde_json::from_str(json.trim()).with_context(|| format!("reading init.json: {json}"))
}

/// What rkos-init recorded for this boot, `(slot, version)` from /run/rkos/init.json, checked
/// against the slot GRUB put on the kernel command line.
pub fn booted(vm: &mut Vm) -> Result<(String, String)> {
    let report = init_json(vm)?;
    let slot = report
        .slot
        .with_context(|| format!("init.json names no slot: {report:?}"))?
        .to_string();
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD)?;
    ensure!(
        cmdline.contains(&format!("rkos.slot={slot}")),
        "init.json says slot {slot}, the command line: {cmdline}"
    );
    Ok((slot, report.version))
}

/// rkos-init recorded this boot as `version` on `slot`.
pub fn init_report(vm: &mut Vm, version: &str, slot: &str) -> Result<()> {
    let got = booted(vm)?;
    ensure!(
        got == (slot.to_string(), version.to_string()),
        "init.json is not version {version} on slot {slot}: {got:?}"
    );
    Ok(())
}

/// Waits up to `wait` (polled in the guest every 2 s) until the shell command `condition`
/// (no single quotes) succeeds.
pub fn wait_until(vm: &mut Vm, condition: &str, wait: Duration) -> Result<()> {
    vm.run_ok(
        &format!(
            "timeout {} sh -c 'until {condition}; do sleep 2; done'",
            wait.as_secs()
        ),
        wait + Duration::from_secs(30),
    )
    .map(|_| ())
}

/// Waits up to `wait` (polled in the guest every 2 s) for `unit` to be active.
pub fn wait_active(vm: &mut Vm, unit: &str, wait: Duration) -> Result<()> {
    wait_until(vm, &format!("systemctl is-active -q {unit}"), wait)
}

/// Waits up to `wait` for `rkos-mark-good.service` to finish on a node that booted `version`
/// from `slot` on trial, then checks `rkos status`: the slot passed and is now the default.
pub fn marked_good(vm: &mut Vm, version: &str, slot: &str, wait: Duration) -> Result<()> {
    wait_active(vm, "rkos-mark-good.service", wait)
        .context("rkos-mark-good.service never finished")?;
    status(
        vm,
        &[
            &format!(r"^active slot: +{slot} \(version {version}\)"),
            &format!(r"^default slot: +{slot}"),
            r"^trial: +none",
            &format!(r"^last outcome: +slot {slot} passed its trial and was marked good"),
        ],
    )
    .map(|_| ())
}
