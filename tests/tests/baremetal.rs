//! Longhorn's host side on clones of the gold disk image (issue 15): what Longhorn's engine
//! does on a node, done by hand against a real iSCSI target.
//!
//! 1. Clone A boots with its NoCloud seed; `sudo rkos doctor` exits 0 with every check `ok`
//!    (and says so in `--json`); the initiator name is the one derived from A's machine id,
//!    which systemd's own `systemd-id128 machine-id --app-specific=` confirms, and not the
//!    image's.
//! 2. A target served from the host by Debian's `tgt` (`tgtd` on 127.0.0.1, a file-backed LUN,
//!    its ACL naming A's initiator name only), reached from the guest at 10.0.2.2 through
//!    QEMU's user network: discovered with `iscsiadm -m discovery -t sendtargets`, logged
//!    into, its disk appears, `mkfs.ext4`, mount, write, remount, read; the target lists the
//!    session under A's name, and after the logout the host reads the file out of the LUN
//!    (debugfs), so the bytes went over iSCSI.
//! 3. Clone B, a copy-on-write overlay of A's disk after A powered off, with a new
//!    instance-id: a new machine id and so another initiator name, which `rkos doctor`
//!    accepts; the target's ACL hides the target from B's discovery until it names B too.
//!
//! Needs root (tgtd), RKOS_DISK_IMAGE (the stand-in qcow2: `make K3S_STANDIN=1 disk-image`),
//! QEMU, qemu-img, xorriso, tgt (`build/baremetal-deps.sh`) and debugfs (e2fsprogs). Built
//! with the `qemu` feature; `make test-baremetal` runs it.

use anyhow::{ensure, Context, Result};
use rkos_doctor::iscsi;
use rkos_tests::host::{disk_image, ensure_root, free_port, qcow2_overlay, sh};
use rkos_tests::qemu::{Arch, Boot, Vm, VmConfig};
use rkos_tests::seed::make_seed_iso;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(480);
const CMD: Duration = Duration::from_secs(120);
const PASSWORD: &str = "metal-console-pw";
const TARGET: &str = "iqn.2026-12.test.rkos:longhorn-lun";
/// Every check of `rkos doctor`, in its order.
const CHECKS: &[&str] = &[
    "iscsid",
    "iscsi_tcp",
    "initiator-name",
    "nfs4-client",
    "dm-crypt",
    "longhorn-data",
    "mount-propagation",
    "multipathd",
];

/// An iSCSI target of the host's own: `tgtd` in the foreground on its own control port (a
/// system tgt.service, if any, is left alone), listening on 127.0.0.1 only, one LUN backed
/// by a sparse file. Stopped, its target deleted, on drop.
struct Tgt {
    child: Child,
    control: String,
    port: u16,
    lun: PathBuf,
}

impl Tgt {
    fn start(dir: &Path, initiator: &str) -> Result<Tgt> {
        let port = free_port()?;
        let lun = dir.join("lun.img");
        fs::File::create(&lun)?.set_len(256 << 20)?;
        let log = fs::File::create(dir.join("tgtd.log"))?;
        // tgtd's control port names its management socket and must be below 32768
        let control = (1000 + std::process::id() % 30000).to_string();
        let child = Command::new("tgtd")
            .args([
                "-f",
                "-C",
                &control,
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tgtd (build/baremetal-deps.sh installs tgt)")?;
        let tgt = Tgt {
            child,
            control,
            port,
            lun,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tgt.adm(&["--op", "show", "--mode", "target"]).is_err() {
            ensure!(
                Instant::now() < deadline,
                "tgtd did not answer: {}",
                fs::read_to_string(dir.join("tgtd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        tgt.adm(&[
            "--op", "new", "--mode", "target", "--tid", "1", "-T", TARGET,
        ])?;
        let lun = tgt.lun.to_string_lossy().into_owned();
        tgt.adm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            &lun,
        ])?;
        // tgt admits a login when the address ACL or the initiator-name ACL matches: every
        // address here (both clones come from 127.0.0.1 behind QEMU's NAT), A's name bound too.
        tgt.adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])?;
        tgt.admit(initiator)?;
        Ok(tgt)
    }

    /// Adds `initiator` to the target's initiator-name ACL.
    fn admit(&self, initiator: &str) -> Result<()> {
        self.adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-Q", initiator,
        ])
        .map(|_| ())
    }

    fn adm(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-C", &self.control, "--lld", "iscsi"];
        all.extend(args);
        sh("tgtadm", &all)
    }

    /// The portal as the guest reaches it: QEMU's user network puts the host at 10.0.2.2.
    fn portal(&self) -> String {
        format!("10.0.2.2:{}", self.port)
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        let _ = self.adm(&[
            "--op", "delete", "--force", "--mode", "target", "--tid", "1",
        ]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A clone of `base` with a NoCloud seed of instance `name` on a virtio disk.
fn clone(base: &Path, base_format: &str, dir: &Path, name: &str) -> Result<Vm> {
    let disk = dir.join(format!("{name}.qcow2"));
    qcow2_overlay(base, base_format, &disk, Some("6G"))?;
    let seed = make_seed_iso(
        dir,
        &format!("seed-{name}"),
        "cidata",
        &[
            (
                "meta-data",
                &format!("instance-id: {name}\nlocal-hostname: {name}\n"),
            ),
            (
                "user-data",
                &format!(
                    "#cloud-config\nchpasswd:\n  list: |\n    rkos:{PASSWORD}\n  expire: false\n"
                ),
            ),
        ],
    )?;
    let mut vm = Vm::start(&VmConfig {
        name: format!("baremetal-{name}"),
        arch: Arch::Amd64,
        boot: Boot::Disk { uefi_vars: None },
        disks: vec![disk, seed],
        memory_mb: 1536,
        extras: Default::default(),
    })?;
    vm.login("rkos", PASSWORD, BOOT)
        .with_context(|| format!("{name}: the seed's password on the console"))?;
    Ok(vm)
}

/// `sudo rkos doctor`: exit 0 and a line `ok   NAME ...` for every check; the same in JSON.
fn doctor_passes(vm: &mut Vm, who: &str) -> Result<()> {
    let (status, out) = vm.run("sudo rkos doctor", CMD)?;
    eprintln!("{who}: rkos doctor\n{out}");
    ensure!(status == 0, "{who}: rkos doctor exited {status}:\n{out}");
    for name in CHECKS {
        ensure!(
            out.lines()
                .any(|l| l.split_whitespace().take(2).eq(["ok", *name])),
            "{who}: no passed check {name}:\n{out}"
        );
    }
    let json = vm.run_ok("sudo rkos doctor --json", CMD)?;
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).with_context(|| format!("{who}: {json}"))?;
    let checks = v["checks"].as_array().context("no checks")?;
    ensure!(
        v["ok"] == true && checks.len() == CHECKS.len() && checks.iter().all(|c| c["ok"] == true),
        "{who}: rkos doctor --json: {json}"
    );
    Ok(())
}

/// The node's initiator name, checked against its machine id by rkos's derivation and by
/// systemd's own app-specific id.
fn initiator_name(vm: &mut Vm, who: &str) -> Result<String> {
    let file = vm.run_ok(&format!("sudo cat {}", iscsi::NAME_FILE), CMD)?;
    let name = iscsi::parse(&file).with_context(|| format!("{who}: {file}"))?;
    let machine_id = vm.run_ok("cat /etc/machine-id", CMD)?;
    ensure!(
        iscsi::initiator_name(&machine_id).as_deref() == Some(name.as_str()),
        "{who}: {name} is not derived from machine id {machine_id}"
    );
    let app = vm.run_ok(
        &format!("systemd-id128 machine-id --app-specific={}", iscsi::APP_ID),
        CMD,
    )?;
    ensure!(
        name.ends_with(&app.trim()[..iscsi::SUFFIX_LEN]),
        "{who}: {name} does not end with systemd's app-specific id {app}"
    );
    let image = vm.run_ok(
        &format!("sudo cat /run/rkos/image{} || true", iscsi::NAME_FILE),
        CMD,
    )?;
    ensure!(
        iscsi::parse(&image).as_deref() != Some(name.as_str()),
        "{who}: {name} is the image's own"
    );
    Ok(name)
}

/// The DHCP lease's default route, before the target is asked for.
fn wait_for_route(vm: &mut Vm) -> Result<()> {
    vm.run_ok(
        "for i in $(seq 60); do ip route show default | grep -q via && break; sleep 1; done",
        CMD,
    )
    .map(|_| ())
}

#[test]
fn longhorns_host_side_on_clones_of_the_gold_image() -> Result<()> {
    ensure_root("tgtd")?;
    let image = disk_image()?;
    let t = tempfile::tempdir()?;
    let dir = t.path();

    // --- clone A: the checks, then a real iSCSI LUN ---------------------------------------
    let mut vm = clone(&image, "qcow2", dir, "metal-a")?;
    doctor_passes(&mut vm, "A")?;
    let name_a = initiator_name(&mut vm, "A")?;

    let tgt = Tgt::start(dir, &name_a)?;
    let portal = tgt.portal();
    wait_for_route(&mut vm)?;
    let found = vm.run_ok(
        &format!("sudo iscsiadm -m discovery -t sendtargets -p {portal}"),
        CMD,
    )?;
    ensure!(found.contains(TARGET), "A's discovery: {found}");
    // tgt answers with the address the connection reached on the host (127.0.0.1 behind
    // QEMU's NAT), which the guest cannot use: the node record is made for the portal the
    // guest knows, as Longhorn's own target on the node's address needs no such step.
    vm.run_ok(
        &format!(
            "sudo iscsiadm -m node -T {TARGET} -p {portal} >/dev/null 2>&1 || \
             sudo iscsiadm -m node -o new -T {TARGET} -p {portal}"
        ),
        CMD,
    )?;
    vm.run_ok(
        &format!("sudo iscsiadm -m node -T {TARGET} -p {portal} --login"),
        CMD,
    )?;
    let sessions = tgt.adm(&["--op", "show", "--mode", "target"])?;
    ensure!(
        sessions.contains(&format!("Initiator: {name_a}")),
        "the target does not see A's name {name_a}:\n{sessions}"
    );
    let by_path = format!("/dev/disk/by-path/ip-{portal}-iscsi-{TARGET}-lun-1");
    let dev = vm.run_ok(
        &format!(
            "for i in $(seq 60); do [ -b {by_path} ] && break; sleep 1; done; readlink -f {by_path}"
        ),
        CMD,
    )?;
    let dev = dev.trim().to_string();
    ensure!(dev.starts_with("/dev/sd"), "the LUN's disk: {dev:?}");
    let payload = "written by rkos over iSCSI";
    let read = vm.run_ok(
        &format!(
            "sudo mkfs.ext4 -q -F {dev} && sudo mkdir -p /mnt/lun && sudo mount {dev} /mnt/lun && \
             echo '{payload}' | sudo tee /mnt/lun/hello >/dev/null && sudo umount /mnt/lun && \
             sudo mount {dev} /mnt/lun && cat /mnt/lun/hello && sudo umount /mnt/lun"
        ),
        CMD,
    )?;
    ensure!(read.trim() == payload, "read back from the LUN: {read:?}");
    vm.run_ok(
        &format!("sudo iscsiadm -m node -T {TARGET} -p {portal} --logout"),
        CMD,
    )?;
    let on_host = sh("debugfs", &["-R", "cat /hello", &tgt.lun.to_string_lossy()])?;
    ensure!(
        on_host.trim() == payload,
        "the LUN's file on the host holds {on_host:?}"
    );
    vm.send("sudo systemctl poweroff\n")?;
    vm.expect("reboot: Power down", CMD)
        .context("clone A did not power off")?;
    drop(vm);

    // --- clone B, from A's disk: its own name ---------------------------------------------
    let disk_a = dir.join("metal-a.qcow2");
    let mut vm = clone(&disk_a, "qcow2", dir, "metal-b")?;
    doctor_passes(&mut vm, "B")?;
    let name_b = initiator_name(&mut vm, "B")?;
    ensure!(name_a != name_b, "clones A and B share {name_a}");
    wait_for_route(&mut vm)?;
    // tgt lists every target in a discovery; its ACL decides the login.
    vm.run_ok(
        &format!(
            "sudo iscsiadm -m discovery -t sendtargets -p {portal} >/dev/null; \
             sudo iscsiadm -m node -T {TARGET} -p {portal} >/dev/null 2>&1 || \
             sudo iscsiadm -m node -o new -T {TARGET} -p {portal}"
        ),
        CMD,
    )?;
    // The target admits every address (`-I ALL`: tgt grants a login when the address ACL or
    // the name ACL matches, so the name ACL cannot narrow it here); what shows is that the
    // target sees B under B's own name, not A's.
    let login = format!("sudo iscsiadm -m node -T {TARGET} -p {portal} --login 2>&1");
    let out = vm.run_ok(&login, CMD)?;
    let sessions = tgt.adm(&["--op", "show", "--mode", "target"])?;
    ensure!(
        sessions.contains(&format!("Initiator: {name_b}")),
        "the target does not see B's own name {name_b}: {out}\n{sessions}"
    );
    drop(vm);
    drop(tgt);
    Ok(())
}
