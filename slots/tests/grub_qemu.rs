//! The real GRUB against the model: a small raw disk (GPT: BIOS boot + ext4 `RKOS_STATE`),
//! `grub-install --target=i386-pc`, our `grub/grub.cfg`, slots A and B each with Debian's
//! kernel and a busybox initramfs whose /init prints its slot and /proc/cmdline and powers
//! off. Each QEMU boot is one GRUB decision; after each, the environment block GRUB saved is
//! read back and compared with `BootState::grub_boot`'s prediction.
//!
//! Needs root (loop devices, mount), grub-pc-bin, qemu-system-x86_64, busybox-static, cpio,
//! gdisk, e2fsprogs and the kernel from build/fetch-kernel.sh. Run with
//! `cargo test -p rkos-slots --features qemu --test grub_qemu`.
#![cfg(feature = "qemu")]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rkos_slots::{BootState, GrubEnv, Outcome, Slot, StateDir, GRUB_CFG};

const SECTOR: u64 = 512;
const P2_FIRST: u64 = 4096;
const P2_LAST: u64 = 118_783;
const DISK_BYTES: u64 = 64 << 20;
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The RKOS_STATE partition of the image, attached and mounted until dropped.
struct Mounted {
    dev: String,
    dir: PathBuf,
}

impl Mounted {
    fn new(img: &Path, dir: &Path) -> Mounted {
        // A loop device over the partition's byte range: works where partition scanning of
        // loop devices does not (containers without udev).
        let dev = run(Command::new("losetup").args([
            "-f",
            "--show",
            "-o",
            &(P2_FIRST * SECTOR).to_string(),
            "--sizelimit",
            &((P2_LAST - P2_FIRST + 1) * SECTOR).to_string(),
            img.to_str().unwrap(),
        ]))
        .trim()
        .to_string();
        fs::create_dir_all(dir).unwrap();
        let m = Mounted {
            dev,
            dir: dir.to_path_buf(),
        };
        run(Command::new("mount").arg(&m.dev).arg(dir));
        m
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

struct Loop(String);
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn kernel() -> PathBuf {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let find = || {
        fs::read_dir(top.join("work/kernel/current/boot"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("vmlinuz-")
            })
    };
    if let Some(k) = find() {
        return k;
    }
    run(&mut Command::new(top.join("build/fetch-kernel.sh")));
    find().expect("build/fetch-kernel.sh did not unpack a kernel")
}

fn initramfs(work: &Path, slot: Slot, out: &Path) {
    let dir = work.join(format!("initramfs-{slot}"));
    for d in ["bin", "proc", "dev"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let busybox = which("busybox");
    fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    fs::write(dir.join("slot-id"), slot.as_str()).unwrap();
    fs::write(
        dir.join("init"),
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         echo \"RKOS-TEST slot=$(/bin/busybox cat /slot-id) cmdline=$(/bin/busybox cat /proc/cmdline)\"\n\
         /bin/busybox poweroff -f\n",
    )
    .unwrap();
    run(Command::new("chmod").arg("755").arg(dir.join("init")));
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        dir.display(),
        out.display()
    )));
}

fn which(tool: &str) -> PathBuf {
    let p = run(Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}")));
    PathBuf::from(p.trim())
}

/// Boots the disk once; returns (slot id printed by the initramfs, kernel command line).
fn boot(img: &Path) -> (Slot, String) {
    boot_drive(&format!("file={},format=raw,if=ide", img.display()))
}

/// Boots the disk once from a read-only virtio disk, where GRUB's `save_env` fails (QEMU's
/// IDE disks cannot be read-only).
fn boot_read_only(img: &Path) -> (Slot, String) {
    boot_drive(&format!(
        "file={},format=raw,if=virtio,readonly=on",
        img.display()
    ))
}

fn boot_drive(drive: &str) -> (Slot, String) {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-m", "256", "-nographic", "-no-reboot", "-nodefaults"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-drive")
        .arg(drive)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-x86_64 must be installed");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).replace('\r', "")
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let out = reader.join().unwrap();
            panic!("boot did not finish in {BOOT_TIMEOUT:?}; console:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = reader.join().unwrap();
    let line = out
        .lines()
        .find_map(|l| l.split_once("RKOS-TEST slot=").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("the initramfs did not report; console:\n{out}"));
    let (slot, cmdline) = line.split_once(" cmdline=").unwrap();
    eprintln!(
        "boot took {:.1}s: slot {slot}, cmdline {cmdline}",
        start.elapsed().as_secs_f64()
    );
    (slot.trim().parse().unwrap(), cmdline.trim().to_string())
}

fn read_state(img: &Path, mnt: &Path) -> (BootState, GrubEnv) {
    let m = Mounted::new(img, mnt);
    let st = StateDir::new(&m.dir);
    (st.boot_state().unwrap(), st.read_env().unwrap())
}

fn edit_state(img: &Path, mnt: &Path, f: impl FnOnce(&StateDir)) {
    let m = Mounted::new(img, mnt);
    f(&StateDir::new(&m.dir));
}

/// Boots once and checks GRUB against the model: same slot, same saved state.
fn boot_and_check(img: &Path, mnt: &Path, expect_before: BootState) -> BootState {
    let (predicted_slot, predicted) = expect_before.grub_boot();
    let (slot, cmdline) = boot(img);
    assert_eq!(
        slot, predicted_slot,
        "GRUB booted {slot}, the model says {predicted_slot}"
    );
    assert!(
        cmdline.contains(&format!("rkos.slot={slot}")) && cmdline.contains("rkos.mode=disk"),
        "{cmdline}"
    );
    let (after, env) = read_state(img, mnt);
    assert_eq!(after, predicted, "GRUB saved {env:?}");
    after
}

#[test]
fn grub_boot_counting_matches_the_model() {
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("disk.img");
    let mnt = work.path().join("mnt");
    fs::File::create(&img).unwrap().set_len(DISK_BYTES).unwrap();
    run(Command::new("sgdisk")
        .args(["-n1:2048:4095", "-t1:ef02", "-c1:bios"])
        .arg(format!("-n2:{P2_FIRST}:{P2_LAST}"))
        .args(["-t2:8300", "-c2:RKOS_STATE"])
        .arg(&img));

    {
        let disk = Loop(
            run(Command::new("losetup").args(["-f", "--show", img.to_str().unwrap()]))
                .trim()
                .to_string(),
        );
        let part = Loop(
            run(Command::new("losetup").args([
                "-f",
                "--show",
                "-o",
                &(P2_FIRST * SECTOR).to_string(),
                "--sizelimit",
                &((P2_LAST - P2_FIRST + 1) * SECTOR).to_string(),
                img.to_str().unwrap(),
            ]))
            .trim()
            .to_string(),
        );
        run(Command::new("mkfs.ext4").args(["-q", "-L", "RKOS_STATE", &part.0]));
        drop(part);
        let m = Mounted::new(&img, &mnt);
        run(Command::new("grub-install")
            .args(["--target=i386-pc", "--modules=part_gpt ext2"])
            .arg(format!("--boot-directory={}", m.dir.display()))
            .arg(&disk.0));
        let st = StateDir::new(&m.dir);
        fs::write(st.grub_cfg(), GRUB_CFG).unwrap();
        let k = kernel();
        for slot in Slot::ALL {
            fs::create_dir_all(st.slot_dir(slot)).unwrap();
            fs::copy(&k, st.slot_dir(slot).join("vmlinuz")).unwrap();
            initramfs(work.path(), slot, &st.slot_dir(slot).join("initrd"));
        }
        // A fresh block as the installer writes it, plus test-only speed-ups.
        let mut env = GrubEnv::new();
        env.set("rkos_timeout", "0").unwrap();
        env.set("rkos_cmdline", "quiet").unwrap();
        fs::write(st.grubenv(), env.serialize().unwrap()).unwrap();
        st.write_boot_state(&BootState::default()).unwrap();
    }

    // 1. B on trial with 2 tries: B, B, then GRUB gives up by itself and boots A.
    let mut model = BootState::default();
    edit_state(&img, &mnt, |st| {
        model = st
            .update_boot_state(|s| s.put_on_trial(Slot::B, 2))
            .unwrap();
    });
    model = boot_and_check(&img, &mnt, model);
    assert_eq!(model.trial.unwrap().tries_left, 1);
    model = boot_and_check(&img, &mnt, model);
    assert_eq!(model.trial.unwrap().tries_left, 0);
    model = boot_and_check(&img, &mnt, model);
    assert_eq!(model.trial, None);
    assert_eq!(model.default, Slot::A);
    assert_eq!(model.last, Some(Outcome::RolledBack(Slot::B)));

    // 2. B on trial again, marked good by our code after its first boot: it stays.
    edit_state(&img, &mnt, |st| {
        model = st
            .update_boot_state(|s| s.put_on_trial(Slot::B, 2))
            .unwrap();
    });
    model = boot_and_check(&img, &mnt, model);
    edit_state(&img, &mnt, |st| {
        model = st.update_boot_state(|s| s.mark_good(Slot::B)).unwrap();
    });
    assert_eq!(model.default, Slot::B);
    model = boot_and_check(&img, &mnt, model);
    assert_eq!(model.default, Slot::B);
    assert_eq!(model.last, Some(Outcome::Good(Slot::B)));
    // The other variables (ours and GRUB's) survived every save_env.
    let (_, env) = read_state(&img, &mnt);
    assert_eq!(env.get("rkos_timeout"), Some("0"));

    // 3. A on trial, but the environment cannot be written: GRUB boots the known-good B and
    // the trial keeps its tries; once the disk is writable again, the trial runs, counted.
    edit_state(&img, &mnt, |st| {
        model = st
            .update_boot_state(|s| s.put_on_trial(Slot::A, 2))
            .unwrap();
    });
    let (predicted_slot, predicted) = model.grub_boot_unsaved();
    let (slot, _) = boot_read_only(&img);
    assert_eq!(slot, predicted_slot, "a trial booted without its try saved");
    let (after, env) = read_state(&img, &mnt);
    assert_eq!(after, predicted, "GRUB saved {env:?}");
    model = boot_and_check(&img, &mnt, model);
    assert_eq!(model.trial.unwrap().tries_left, 1);
}
