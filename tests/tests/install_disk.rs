//! Install to disk for real, without the ISO: the `rkos install` binary partitions a loop
//! device (a sparse 5 GiB file), makes the file systems, copies slot A, installs GRUB for BIOS
//! and UEFI and writes the config; the result is inspected with the system's own tools, grown
//! as a bigger disk would be on first boot, and booted by QEMU with SeaBIOS and with OVMF,
//! through the installed GRUB, to slot A's kernel. Slot A holds Debian's kernel and a tiny
//! initramfs that prints its command line and powers off, so each boot takes seconds.
//!
//! Needs root (loop devices, mount), sgdisk, mkfs, grub-install, mtools, udevadm, QEMU and
//! OVMF (build/host-deps.sh installs them). Built with the `qemu` feature.

use anyhow::{ensure, Context, Result};
use rkos_contract::{label, partition};
use rkos_tests::host::{ensure_rkos_partitions, ensure_root, rkos_bin, sh, workspace, Mount};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GIB: u64 = 1 << 30;

/// A slot's files: Debian's kernel, an initramfs whose /init prints a marker with its
/// command line and powers off, and a small squashfs.
fn fixture(dir: &Path) -> Result<PathBuf> {
    let tree = sh(workspace().join("build/fetch-kernel.sh"), &[])?;
    let boot = PathBuf::from(tree.trim()).join("boot");
    let vmlinuz = fs::read_dir(&boot)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz in the kernel tree")?;
    let src = dir.join("src");
    let ird = dir.join("initrd-tree");
    fs::create_dir_all(src.join("boot"))?;
    fs::create_dir_all(ird.join("bin"))?;
    fs::copy(&vmlinuz, src.join("boot/vmlinuz"))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("busybox (busybox-static) is needed")?;
    fs::copy(busybox, ird.join("bin/busybox"))?;
    fs::write(
        ird.join("init"),
        "#!/bin/busybox sh\n/bin/busybox mkdir -p /proc\n/bin/busybox mount -t proc proc /proc\n\
         echo \"INSTALLED-SLOT-BOOTED: $(/bin/busybox cat /proc/cmdline)\"\n/bin/busybox poweroff -f\n",
    )?;
    fs::set_permissions(ird.join("init"), fs::Permissions::from_mode(0o755))?;
    let cpio = format!(
        "cd {} && find . | cpio -o -H newc 2>/dev/null | gzip > {}",
        ird.display(),
        src.join("boot/initrd").display()
    );
    sh("sh", &["-c", &cpio])?;
    let sq = dir.join("sq");
    fs::create_dir_all(&sq)?;
    fs::write(sq.join("marker"), "rootfs of the install test\n")?;
    sh(
        "mksquashfs",
        &[
            &sq.to_string_lossy(),
            &src.join("rootfs.squashfs").to_string_lossy(),
            "-quiet",
            "-noappend",
        ],
    )?;
    Ok(src)
}

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: String,
    file: PathBuf,
}

impl Loop {
    fn new(file: &Path, bytes: u64) -> Result<Loop> {
        fs::File::create(file)?.set_len(bytes)?;
        Loop::attach(file)
    }
    fn attach(file: &Path) -> Result<Loop> {
        let dev = sh(
            "losetup",
            &["--find", "--show", "--partscan", &file.to_string_lossy()],
        )?
        .trim()
        .to_string();
        Ok(Loop {
            dev,
            file: file.to_path_buf(),
        })
    }
    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// `dev` mounted at the directory `at` (made if missing).
fn mount(dev: &str, at: &Path) -> Result<Mount> {
    fs::create_dir_all(at)?;
    Mount::new(&[dev], at)
}

fn first_mib_is_zero(file: &Path) -> Result<bool> {
    let bytes = fs::read(file)?;
    Ok(bytes.iter().take(1 << 20).all(|b| *b == 0))
}

/// Boots the disk image with QEMU (TCG), GRUB from the disk, and returns the console.
fn boot(image: &Path, uefi: bool, dir: &Path) -> Result<String> {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "300",
        "qemu-system-x86_64",
        "-machine",
        "q35",
        "-m",
        "512",
        "-display",
        "none",
    ]);
    cmd.args([
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
    ]);
    if uefi {
        let vars = dir.join("OVMF_VARS.fd");
        fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
            .context("OVMF (package ovmf) is needed")?;
        cmd.arg("-drive")
            .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd");
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    cmd.arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", image.display()));
    let out = cmd.stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let log = rkos_tests::qemu::log_dir();
    fs::create_dir_all(&log)?;
    fs::write(
        log.join(format!(
            "install-disk-{}.log",
            if uefi { "uefi" } else { "bios" }
        )),
        &text,
    )?;
    Ok(text)
}

fn boot_line(console: &str) -> Option<&str> {
    console
        .lines()
        .find(|l| l.contains("INSTALLED-SLOT-BOOTED:"))
}

#[test]
fn install_to_a_disk_then_grow_and_boot_it_with_bios_and_uefi() -> Result<()> {
    ensure_root("loop devices, mount")?;
    let rkos = rkos_bin()?;
    let t = tempfile::tempdir()?;
    let dir = t.path();
    let src = fixture(dir)?;
    let config = dir.join("node.yaml");
    fs::write(
        &config,
        "hostname: installed-node\nrkos:\n  password: secret123\n  token: abc\n",
    )?;

    // A disk that is too small is refused, untouched.
    {
        let small = Loop::new(&dir.join("small.img"), 3 * GIB)?;
        let out = Command::new(&rkos)
            .args(["install", "--yes", "--device", &small.dev, "--config"])
            .arg(&config)
            .arg("--source")
            .arg(&src)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "a 3 GiB disk was accepted");
        ensure!(
            err.contains("too small") && err.contains("4.0 GiB"),
            "{err}"
        );
        ensure!(
            first_mib_is_zero(&small.file)?,
            "the small disk was written"
        );
    }

    let disk = Loop::new(&dir.join("disk.img"), 5 * GIB)?;
    // A broken config is refused before anything is written.
    let bad = dir.join("bad.yaml");
    fs::write(&bad, "rkos:\n  server_url: http://10.0.0.1\n")?;
    let out = Command::new(&rkos)
        .args(["install", "--yes", "--device", &disk.dev, "--config"])
        .arg(&bad)
        .arg("--source")
        .arg(&src)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("bad.yaml:2:"),
        "{err}"
    );
    ensure!(
        first_mib_is_zero(&disk.file)?,
        "a refused config still wrote the disk"
    );

    // The install itself as rkos-install.service runs it: parameters from the kernel
    // command line (a scratch root stands in for /proc and /run; /sys is the real one).
    let fake_root = dir.join("root");
    fs::create_dir_all(fake_root.join("proc"))?;
    fs::create_dir_all(fake_root.join("dev/disk/by-label"))?;
    std::os::unix::fs::symlink("/sys", fake_root.join("sys"))?;
    fs::write(
        fake_root.join("proc/cmdline"),
        format!(
            "BOOT_IMAGE=/boot/vmlinuz rkos.mode=install rkos.install.device={} rkos.install.config_url={} console=ttyS0,115200n8\n",
            disk.dev,
            config.display()
        ),
    )?;
    let started = std::time::Instant::now();
    let out = Command::new(&rkos)
        .args([
            "install",
            "--from-cmdline",
            "--image-version",
            "9.9.9-test",
            "--root",
        ])
        .arg(&fake_root)
        .arg("--source")
        .arg(&src)
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "rkos install failed:\n{log}");
    eprintln!("install took {:?}\n{log}", started.elapsed());

    let table = sh("sgdisk", &["-p", &disk.dev])?;
    ensure_rkos_partitions(&table)?;
    for (n, label, fstype) in [
        (partition::EFI.number, label::EFI, "vfat"),
        (partition::STATE.number, label::STATE, "ext4"),
        (partition::DATA.number, label::DATA, "ext4"),
    ] {
        let info = sh("blkid", &[&disk.part(n)])?;
        ensure!(
            info.contains(&format!("LABEL=\"{label}\""))
                && info.contains(&format!("TYPE=\"{fstype}\"")),
            "{info}"
        );
    }
    // GRUB names the state volume it runs from on the kernel command line (rkos.state=).
    let state_uuid = sh(
        "blkid",
        &[
            "-s",
            "UUID",
            "-o",
            "value",
            &disk.part(partition::STATE.number),
        ],
    )?
    .trim()
    .to_string();
    ensure!(!state_uuid.is_empty(), "the state volume has no UUID");
    let esp = sh("mdir", &["-i", &disk.part(2), "-b", "::/EFI/BOOT"])?;
    ensure!(esp.to_uppercase().contains("BOOTX64.EFI"), "ESP: {esp}");

    {
        let state = mount(&disk.part(3), &dir.join("state"))?;
        let env = sh(
            "grub-editenv",
            &[&state.0.join("grub/grubenv").to_string_lossy(), "list"],
        )?;
        ensure!(env.lines().any(|l| l == "rkos_default=A"), "grubenv: {env}");
        ensure!(env.lines().any(|l| l == "rkos_trial="), "grubenv: {env}");
        ensure!(
            env.lines().any(|l| l == "rkos_cmdline=gpt"),
            "grubenv: {env}"
        );
        ensure!(
            state.0.join("grub/i386-pc/core.img").exists(),
            "no BIOS GRUB"
        );
        ensure!(
            !state.0.join("grub/device.map").exists(),
            "device.map left behind"
        );
        let cfg = fs::read_to_string(state.0.join("grub/grub.cfg"))?;
        ensure!(
            cfg == rkos_slots::GRUB_CFG,
            "grub.cfg is not rkos-slots' template"
        );
        let manifest =
            rkos_slots::Manifest::parse(&fs::read(state.0.join("slots/A/manifest.json"))?)?;
        ensure!(
            manifest.version == "9.9.9-test" && manifest.arch == "amd64",
            "{manifest:?}"
        );
        ensure!(manifest.files.len() == 3, "{manifest:?}");
        for f in &manifest.files {
            let file = state.0.join("slots/A").join(&f.name);
            let sum = sh("sha256sum", &[&file.to_string_lossy()])?;
            ensure!(
                sum.starts_with(&f.sha256),
                "{}: manifest {}, file {sum}",
                f.name,
                f.sha256
            );
            ensure!(
                fs::metadata(&file)?.len() == f.size,
                "{}: size differs",
                f.name
            );
        }
    }
    {
        let data = mount(&disk.part(4), &dir.join("data"))?;
        let cfg = data.0.join("var/lib/rkos/config.yaml");
        ensure!(
            fs::read(&cfg)? == fs::read(&config)?,
            "the config on RKOS_DATA differs"
        );
        let mode = fs::metadata(&cfg)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "config.yaml mode {mode:o}");
    }

    // A bigger disk (an image written to it, or a VM disk enlarged): RKOS_DATA grows to the end.
    let before = data_end(&disk.dev)?;
    let file = disk.file.clone();
    drop(disk);
    fs::OpenOptions::new()
        .write(true)
        .open(&file)?
        .set_len(7 * GIB)?;
    let disk = Loop::attach(&file)?;
    // The kernel ignores a GPT whose protective MBR does not match the disk's size unless
    // booted with `gpt`, which the installer puts on the installed system's command line;
    // partx reads the table as that kernel would.
    sh("partx", &["--add", &disk.dev])?;
    std::os::unix::fs::symlink(disk.part(4), fake_root.join("dev/disk/by-label/RKOS_DATA"))?;
    // Offline here: growing a mounted ext4 needs CAP_SYS_RESOURCE, which a container's root
    // may lack; the node grows it online (rkos-grow-data.service).
    let out = Command::new(&rkos)
        .args(["install", "--grow-data", "--root"])
        .arg(&fake_root)
        .output()?;
    ensure!(
        out.status.success(),
        "grow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let data = mount(&disk.part(4), &dir.join("data2"))?;
        let df = sh("df", &["-B1", "--output=size", &data.0.to_string_lossy()])?;
        let size: u64 = df.lines().nth(1).unwrap_or("0").trim().parse()?;
        ensure!(size > 4 * GIB, "RKOS_DATA is {size} bytes after growing");
        ensure!(
            data.0.join("var/lib/rkos/config.yaml").exists(),
            "the data did not survive growing"
        );
    }
    let after = data_end(&disk.dev)?;
    ensure!(
        after + 2048 > before + 2 * GIB / 512,
        "partition 4 ends at {after}, was {before}"
    );
    // A second run finds nothing to do.
    let out = Command::new(&rkos)
        .args(["install", "--grow-data", "--root"])
        .arg(&fake_root)
        .output()?;
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("already fills"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = disk.file.clone();
    drop(disk);

    for uefi in [false, true] {
        let console = boot(&image, uefi, dir)?;
        let line = boot_line(&console).with_context(|| {
            format!(
                "{} boot never reached slot A's kernel:\n{}",
                if uefi { "UEFI" } else { "BIOS" },
                tail(&console)
            )
        })?;
        ensure!(
            line.contains("rkos.mode=disk")
                && line.contains("rkos.slot=A")
                && line.contains(&format!("rkos.state={state_uuid} "))
                && line.ends_with(" gpt"),
            "{line}"
        );
    }
    Ok(())
}

fn tail(s: &str) -> &str {
    let mut i = s.len().saturating_sub(2000);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn data_end(dev: &str) -> Result<u64> {
    let info = sh("sgdisk", &["-i", "4", dev])?;
    info.lines()
        .find_map(|l| l.strip_prefix("Last sector: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no last sector")
}
