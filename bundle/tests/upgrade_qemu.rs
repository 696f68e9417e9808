//! Crash safety of `rkos upgrade` with real GRUB, a real kernel, real ext4 and the real `rkos`
//! binary, in QEMU. The disk: GPT with BIOS boot + ext4 `RKOS_STATE` (grub-install, our
//! grub.cfg), slot A = version 1, bundles on the same partition. Each slot's initramfs is
//! a test harness (busybox + `rkos`): it mounts `RKOS_STATE`, checks that the slot it was
//! booted from is complete (`rkos bundle verify`), prints `rkos status --json`, then does the
//! action the test left in `/test-action` (`upgrade DIR`, `mark-good` or nothing), and powers
//! off. It is not the rkos image (no rkos-init, no systemd): what is under test is staging,
//! flip and GRUB, by killing the VM in the middle of them.
//!
//! Shows: an upgrade from 1 to 2; a tampered bundle rejected with grubenv unchanged; the VM
//! killed at several moments during staging and right after the flip, and every following
//! boot running a complete version; mark-good; a broken version (its init panics) rolled
//! back by GRUB by itself.
//!
//! Needs root (loop devices, mount), grub-pc-bin, qemu-system-x86_64, busybox-static, cpio,
//! gdisk, e2fsprogs, kmod, binutils (strip) and the kernel from build/fetch-kernel.sh.
//! `cargo test -p rkos-bundle --features qemu --test upgrade_qemu` (RKOS_BIN: the rkos binary
//! to use; else it is built).
#![cfg(feature = "qemu")]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkos_bundle::sign;
use rkos_slots::{BootState, GrubEnv, Outcome, Slot, StateDir, GRUB_CFG};

const SECTOR: u64 = 512;
const P2_FIRST: u64 = 4096;
const DISK_BYTES: u64 = 640 << 20;
const P2_LAST: u64 = DISK_BYTES / SECTOR - 64;
const ROOTFS_BYTES: usize = 12 << 20;
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

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

fn losetup_part(img: &Path) -> String {
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
    .to_string()
}

/// `RKOS_STATE` of the image, mounted until dropped.
struct Mounted {
    dev: String,
    dir: PathBuf,
}

impl Mounted {
    fn new(img: &Path, dir: &Path) -> Mounted {
        let dev = losetup_part(img);
        fs::create_dir_all(dir).unwrap();
        let m = Mounted {
            dev,
            dir: dir.to_path_buf(),
        };
        run(Command::new("mount").arg(&m.dev).arg(dir));
        m
    }
    fn state(&self) -> StateDir {
        StateDir::new(&self.dir)
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

fn kernel_tree() -> PathBuf {
    PathBuf::from(run(&mut Command::new(workspace().join("build/fetch-kernel.sh"))).trim())
}

fn rkos_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RKOS_BIN") {
        return PathBuf::from(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "-q", "-p", "rkos-cli"])
        .current_dir(workspace()));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug/rkos")
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /m/*.ko; do insmod "$m"; done
i=0
while [ ! -b /dev/vda2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /state /tmp
mount -t ext4 /dev/vda2 /state || echo "RKOS-TEST no-state"
slot=$(sed -n 's/.*rkos\.slot=\([AB]\).*/\1/p' /proc/cmdline)
echo "RKOS-TEST booted slot=$slot"
if rkos bundle verify /state/slots/$slot --key /keys/test.pub >/tmp/v 2>&1; then
    echo "RKOS-TEST complete slot=$slot: $(cat /tmp/v)"
else
    echo "RKOS-TEST INCOMPLETE slot=$slot: $(cat /tmp/v)"
fi
echo "RKOS-TEST status $(rkos status --state-dir /state --json 2>&1 | tr -d '\n')"
read action arg < /state/test-action
case "$action" in
upgrade)
    echo "RKOS-TEST upgrading from $arg"
    rkos upgrade --bundle "$arg" --state-dir /state --keys-dir /keys --tries 2 --attempts 1 >/tmp/u 2>&1
    rc=$?
    echo "RKOS-TEST upgrade-exit=$rc $(tail -n 3 /tmp/u | tr '\n' ' ')"
    ;;
mark-good)
    echo "RKOS-TEST mark-good $(rkos mark-good --state-dir /state 2>&1 | tr '\n' ' ')"
    ;;
esac
umount /state
echo "RKOS-TEST done"
poweroff -f
"#;

/// The test harness initramfs (see the module comment); `broken` makes /init fail at once,
/// which panics the kernel (panic=10 then reboots, and QEMU, run with -no-reboot, exits).
fn initramfs(work: &Path, name: &str, broken: bool, out: &Path) {
    let dir = work.join(format!("initramfs-{name}"));
    let _ = fs::remove_dir_all(&dir);
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "m",
        "keys",
        "lib64",
        "lib/x86_64-linux-gnu",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    if broken {
        fs::write(
            dir.join("init"),
            "#!/bin/busybox sh\necho 'RKOS-TEST broken init'\nexit 1\n",
        )
        .unwrap();
    } else {
        fs::write(dir.join("init"), INIT).unwrap();
    }
    run(Command::new("chmod").arg("755").arg(dir.join("init")));
    fs::copy(which("busybox"), dir.join("bin/busybox")).unwrap();
    let rkos = rkos_bin();
    run(Command::new("strip")
        .arg("-o")
        .arg(dir.join("bin/rkos"))
        .arg(&rkos));
    for line in run(Command::new("ldd").arg(&rkos)).lines() {
        let lib = line
            .split("=>")
            .nth(1)
            .unwrap_or(line)
            .split_whitespace()
            .next()
            .unwrap_or("");
        if lib.starts_with('/') {
            let to = dir.join(lib.trim_start_matches('/'));
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(lib, &to).unwrap();
        }
    }
    fs::copy(work.join("keys/rkos.pub"), dir.join("keys/test.pub")).unwrap();
    let tree = kernel_tree();
    let kver = fs::read_dir(tree.join("lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let mut seen = Vec::new();
    for m in ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"] {
        let deps = run(Command::new("modprobe")
            .arg("-d")
            .arg(&tree)
            .arg("-S")
            .arg(&kver)
            .args(["--show-depends", m]));
        for l in deps.lines() {
            if let Some(p) = l.strip_prefix("insmod ") {
                let p = p.split_whitespace().next().unwrap().to_string();
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
        }
    }
    for (i, p) in seen.iter().enumerate() {
        let name = Path::new(p).file_name().unwrap().to_string_lossy();
        fs::copy(p, dir.join(format!("m/{i:02}-{name}"))).unwrap();
    }
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        dir.display(),
        out.display()
    )));
}

fn which(tool: &str) -> PathBuf {
    PathBuf::from(
        run(Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}")))
        .trim(),
    )
}

/// A version's files: the kernel, an initramfs and a random "rootfs".
fn version_files(work: &Path, version: &str, broken: bool) -> Vec<PathBuf> {
    let dir = work.join(format!("files-{version}"));
    fs::create_dir_all(&dir).unwrap();
    let vmlinuz = fs::read_dir(kernel_tree().join("boot"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap();
    fs::copy(vmlinuz, dir.join("vmlinuz")).unwrap();
    initramfs(work, version, broken, &dir.join("initrd"));
    let mut x = version.bytes().fold(0x51u64, |a, b| a * 31 + b as u64) | 1;
    let rootfs: Vec<u8> = (0..ROOTFS_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(dir.join("rootfs.squashfs"), rootfs).unwrap();
    ["vmlinuz", "initrd", "rootfs.squashfs"]
        .iter()
        .map(|n| dir.join(n))
        .collect()
}

struct Vm {
    child: Child,
    out: Arc<Mutex<String>>,
    started: Instant,
}

impl Vm {
    fn start(img: &Path) -> Vm {
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-m", "384", "-nographic", "-no-reboot", "-nodefaults"])
            .args(["-serial", "stdio", "-monitor", "none"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", img.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-system-x86_64 must be installed");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o2 = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
            }
        });
        Vm {
            child,
            out,
            started: Instant::now(),
        }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&mut self, pat: &str) {
        while !self.text().contains(pat) {
            if self.child.try_wait().unwrap().is_some() || self.started.elapsed() > BOOT_TIMEOUT {
                panic!("no {pat:?} on the console:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        self.text()
    }

    fn wait_exit(mut self) -> String {
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            if self.started.elapsed() > BOOT_TIMEOUT {
                let t = self.kill();
                panic!("VM did not power off in {BOOT_TIMEOUT:?}:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(200));
        let t = self.text();
        eprintln!(
            "boot: {:.1}s: {}",
            self.started.elapsed().as_secs_f64(),
            t.lines()
                .filter(|l| l.contains("RKOS-TEST"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        t
    }
}

/// The console line `RKOS-TEST <key>...`, without the prefix.
fn marker(text: &str, key: &str) -> Option<String> {
    let pat = format!("RKOS-TEST {key}");
    text.lines()
        .find_map(|l| l.find(&pat).map(|i| l[i + pat.len()..].to_string()))
}

/// Which slot booted; panics unless the slot was complete (the property under test).
fn booted_complete(text: &str) -> Slot {
    let slot: Slot = marker(text, "booted slot=")
        .unwrap_or_else(|| panic!("no boot marker:\n{text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        marker(text, &format!("complete slot={slot}")).is_some(),
        "GRUB booted an incomplete slot {slot}:\n{text}"
    );
    slot
}

fn set_action(img: &Path, mnt: &Path, action: &str) {
    let m = Mounted::new(img, mnt);
    fs::write(m.dir.join("test-action"), format!("{action}\n")).unwrap();
}

#[test]
fn upgrade_survives_kills_and_broken_versions_roll_back() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let img = w.join("disk.img");
    let mnt = w.join("mnt");
    sign::keygen(&w.join("keys")).unwrap();
    let secret = w.join("keys/rkos.key");

    fs::File::create(&img).unwrap().set_len(DISK_BYTES).unwrap();
    run(Command::new("sgdisk")
        .args(["-n1:2048:4095", "-t1:ef02"])
        .arg(format!("-n2:{P2_FIRST}:{P2_LAST}"))
        .args(["-t2:8300", "-c2:RKOS_STATE"])
        .arg(&img));
    let v1 = version_files(w, "1", false);
    let v2 = version_files(w, "2", false);
    let v3 = version_files(w, "3-broken", true);
    {
        let disk = Loop(
            run(Command::new("losetup").args(["-f", "--show", img.to_str().unwrap()]))
                .trim()
                .to_string(),
        );
        let part = Loop(losetup_part(&img));
        run(Command::new("mkfs.ext4").args(["-q", "-L", "RKOS_STATE", &part.0]));
        drop(part);
        let m = Mounted::new(&img, &mnt);
        run(Command::new("grub-install")
            .args(["--target=i386-pc", "--modules=part_gpt ext2"])
            .arg(format!("--boot-directory={}", m.dir.display()))
            .arg(&disk.0));
        let st = m.state();
        fs::write(st.grub_cfg(), GRUB_CFG).unwrap();
        let mut env = GrubEnv::new();
        env.set("rkos_timeout", "0").unwrap();
        env.set("rkos_cmdline", "quiet").unwrap();
        fs::write(st.grubenv(), env.serialize().unwrap()).unwrap();
        st.write_boot_state(&BootState::default()).unwrap();
        sign::create("1", "amd64", &secret, &st.slot_dir(Slot::A), &v1).unwrap();
        sign::create("2", "amd64", &secret, &m.dir.join("bundles/v2"), &v2).unwrap();
        sign::create("3", "amd64", &secret, &m.dir.join("bundles/v3"), &v3).unwrap();
        // Tampered: version 2's manifest edited after signing.
        let t = m.dir.join("bundles/tampered");
        sign::create("2", "amd64", &secret, &t, &v2).unwrap();
        let mf = fs::read_to_string(t.join("manifest.json")).unwrap();
        fs::write(t.join("manifest.json"), mf.replace("\"2\"", "\"9\"")).unwrap();
        fs::write(m.dir.join("test-action"), "none\n").unwrap();
    }

    // A tampered bundle: refused, grubenv byte for byte the same.
    let env_before = {
        let m = Mounted::new(&img, &mnt);
        fs::read(m.state().grubenv()).unwrap()
    };
    set_action(&img, &mnt, "upgrade /state/bundles/tampered");
    let t = Vm::start(&img).wait_exit();
    assert_eq!(booted_complete(&t), Slot::A);
    let exit = marker(&t, "upgrade-exit=").unwrap();
    assert!(!exit.starts_with('0'), "tampered bundle accepted: {exit}");
    assert!(exit.contains("signature"), "{exit}");
    {
        let m = Mounted::new(&img, &mnt);
        assert_eq!(fs::read(m.state().grubenv()).unwrap(), env_before);
        assert!(!m.state().manifest(Slot::B).exists());
    }

    // Kill the VM at several moments of staging and right after the flip; every next boot
    // must run a complete version. Between rounds the boot state goes back to A.
    let kill_points: [(&str, u64); 4] = [
        ("RKOS-TEST upgrading", 200),
        ("RKOS-TEST upgrading", 1000),
        ("RKOS-TEST upgrading", 2500),
        ("RKOS-TEST upgrade-exit=0", 0),
    ];
    for (i, (pat, delay_ms)) in kill_points.iter().enumerate() {
        set_action(&img, &mnt, "upgrade /state/bundles/v2");
        let mut vm = Vm::start(&img);
        vm.wait_for(pat);
        std::thread::sleep(Duration::from_millis(*delay_ms));
        let t = vm.kill();
        eprintln!(
            "kill {i}: after {pat:?} + {delay_ms} ms; upgrade finished before the kill: {}",
            t.contains("upgrade-exit=0")
        );
        set_action(&img, &mnt, "none");
        let t = Vm::start(&img).wait_exit();
        let slot = booted_complete(&t);
        if *pat == "RKOS-TEST upgrade-exit=0" {
            // The flip was done (and made durable) before the command exited.
            assert_eq!(slot, Slot::B, "flip lost after the command returned:\n{t}");
        }
        let m = Mounted::new(&img, &mnt);
        m.state().write_boot_state(&BootState::default()).unwrap();
    }

    // A full upgrade, then mark-good from the new version.
    set_action(&img, &mnt, "upgrade /state/bundles/v2");
    let t = Vm::start(&img).wait_exit();
    assert_eq!(booted_complete(&t), Slot::A);
    assert!(marker(&t, "upgrade-exit=0").is_some(), "{t}");
    set_action(&img, &mnt, "mark-good");
    let t = Vm::start(&img).wait_exit();
    assert_eq!(booted_complete(&t), Slot::B);
    let status = marker(&t, "status").unwrap();
    assert!(status.contains("\"running_on_trial\": true"), "{status}");
    {
        let m = Mounted::new(&img, &mnt);
        let st = m.state().boot_state().unwrap();
        assert_eq!(st.default, Slot::B);
        assert_eq!(st.last, Some(Outcome::Good(Slot::B)));
        assert_eq!(
            m.state().read_manifest(Slot::B).unwrap().unwrap().version,
            "2"
        );
    }

    // A broken version 3 (its init fails: kernel panic) staged from B into A and put on
    // trial with 2 tries: GRUB tries it twice, then goes back to B by itself.
    set_action(&img, &mnt, "upgrade /state/bundles/v3");
    let t = Vm::start(&img).wait_exit();
    assert_eq!(booted_complete(&t), Slot::B);
    assert!(marker(&t, "upgrade-exit=0").is_some(), "{t}");
    set_action(&img, &mnt, "none");
    for _ in 0..2 {
        let t = Vm::start(&img).wait_exit();
        assert!(t.contains("RKOS-TEST broken init"), "{t}");
        assert!(
            t.contains("rkos (slot A)"),
            "GRUB did not boot the trial slot A:\n{t}"
        );
    }
    let t = Vm::start(&img).wait_exit();
    assert_eq!(booted_complete(&t), Slot::B);
    let status = marker(&t, "status").unwrap();
    assert!(
        status.contains("rolled-back") && status.contains("\"A\""),
        "{status}"
    );
    let m = Mounted::new(&img, &mnt);
    let st = m.state().boot_state().unwrap();
    assert_eq!(st.default, Slot::B);
    assert_eq!(st.trial, None);
    assert_eq!(st.last, Some(Outcome::RolledBack(Slot::A)));
}
