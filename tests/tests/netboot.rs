//! The network boot under QEMU (software emulation), against `rkos farm serve` on the host's
//! loopback (a user-mode guest reaches it as 10.0.2.2) or in a network namespace the test
//! makes, with `make netboot`'s artefacts (`RKOS_NETBOOT_DIR`, `make test-netboot` sets it).
//! Root: namespaces, bridge, tap. Each test cleans up after itself (processes killed on drop,
//! the namespace deleted). Figures for docs/benchmarks.md are printed as `figure:` lines.

use anyhow::{bail, ensure, Context, Result};
use rkos_contract::BootMode;
use rkos_tests::host::{rkos_bin, sh, Mount};
use rkos_tests::node::p;
use rkos_tests::qemu::{Arch, Boot, Extras, NetBackend, Nic, Vm, VmConfig};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(600);
const CMD: Duration = Duration::from_secs(60);
const PASSWORD: &str = "netboot-test";
const TOKEN: &str = "K10a3f1c2d4e5b60718293a4b5c6d7e8f90::server:netboottestsecret";
/// The nodes of the inventory (and a MAC it does not list).
const MAC_A: &str = "52:54:00:4e:42:0a";
const MAC_B: &str = "52:54:00:4e:42:0b";
const MAC_UNKNOWN: &str = "52:54:00:4e:42:ff";
/// 1.5 GiB: what a netboot node must boot in (the image in RAM included).
const MEMORY_MB: u32 = 1536;

fn netboot_dir() -> Result<PathBuf> {
    let d = std::env::var_os("RKOS_NETBOOT_DIR")
        .map(PathBuf::from)
        .context("RKOS_NETBOOT_DIR names make netboot's output (make test-netboot sets it)")?;
    ensure!(
        d.join("rootfs.squashfs").is_file(),
        "{} has no rootfs.squashfs",
        d.display()
    );
    Ok(d)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The inventory: nodes A and B in pools with their own labels and taints, a catch-all pool,
/// and a config fragment that gives `rkos` a password (netboot nodes have no autologin).
/// Node A has a fixed address only where the farm's dnsmasq hands addresses out (`dhcp`):
/// the farm refuses one it could not give.
fn inventory(farm_url: &str, dhcp: &str) -> String {
    let ip_a = if dhcp.is_empty() {
        ""
    } else {
        "        ip: 192.168.77.21\n"
    };
    format!(
        r#"farm:
  url: {farm_url}
cluster:
  server_url: https://10.0.2.2:6443
  token: {TOKEN}
{dhcp}kernel_args: ["console=ttyS0,115200", "rkos.netboot.timeout=300"]
tags:
  test:
    config:
      rkos:
        password: {PASSWORD}
pools:
  gpu:
    tags: [test]
    labels: {{accelerator: gpu-a}}
    taints: ["gpu=true:NoSchedule"]
    nodes:
      - name: node-a
        macs: ["{MAC_A}"]
{ip_a}  batch:
    tags: [test]
    labels: {{tier: batch}}
    taints: ["batch=true:PreferNoSchedule"]
    nodes:
      - name: node-b
        macs: ["{MAC_B}"]
  spare:
    tags: [test]
    catch_all: true
    name_prefix: spare
"#
    )
}

/// A process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rkos farm serve` for `dir` on `listen`, in namespace `netns` when given.
fn farm(
    dir: &Path,
    inventory: &Path,
    listen: &str,
    state: &Path,
    netns: Option<&str>,
) -> Result<Proc> {
    let rkos = rkos_bin()?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&rkos);
            c
        }
        None => Command::new(&rkos),
    };
    cmd.args(["farm", "serve", "--listen", listen])
        .arg("--dir")
        .arg(dir)
        .arg("--inventory")
        .arg(inventory)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(fs::File::create(state.join("farm.log"))?);
    let child = cmd.spawn().context("starting rkos farm serve")?;
    let p = Proc(child);
    if netns.is_none() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(listen).is_err() {
            ensure!(
                Instant::now() < deadline,
                "rkos farm serve never listened on {listen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        std::thread::sleep(Duration::from_secs(2));
    }
    Ok(p)
}

fn pxe_vm(name: &str, mac: &str, backend: NetBackend, netns: Option<&str>) -> Result<Vm> {
    Vm::start_with_nic(
        &VmConfig {
            name: name.into(),
            arch: Arch::Amd64,
            boot: Boot::Pxe,
            disks: vec![],
            memory_mb: MEMORY_MB,
            extras: Extras {
                mac: Some(mac.into()),
                ..Default::default()
            },
        },
        &Nic {
            pxe: true,
            backend,
            netns: netns.map(str::to_string),
        },
    )
}

fn login(vm: &mut Vm) -> Result<f64> {
    vm.expect(r"login: ", BOOT).context("no login prompt")?;
    let secs = vm.started.elapsed().as_secs_f64();
    vm.send("rkos\n")?;
    vm.expect(r"Password: ", CMD)
        .context("no password prompt")?;
    vm.send(&format!("{PASSWORD}\n"))?;
    vm.expect(r"rkos@[^ ]*[:~]|\$ ", CMD)
        .context("the password did not log in")?;
    vm.prepare_shell()?;
    vm.run_ok("sudo dmesg -n 1; sudo kill -s RTMIN+21 1", CMD)?;
    Ok(secs)
}

/// The node is who the inventory says, with its labels and taints in k3s's config, its root
/// in RAM from the downloaded image, and its NIC handed to systemd-networkd.
fn check_node(vm: &mut Vm, name: &str, labels: &[&str], taints: &[&str]) -> Result<()> {
    let host = vm.run_ok("hostname", CMD)?;
    ensure!(
        host.trim() == name,
        "hostname {host:?}, the inventory says {name}"
    );
    let k3s = vm.run_ok("sudo cat /etc/rancher/k3s/config.yaml", CMD)?;
    for want in labels.iter().chain(taints).chain(&[TOKEN]) {
        ensure!(k3s.contains(want), "k3s config lacks {want}:\n{k3s}");
    }
    let init = rkos_tests::node::init_json(vm)?;
    ensure!(init.mode == BootMode::Netboot, "init.json: {init:?}");
    let loops = vm.run_ok("sudo losetup -n -O BACK-FILE | cat", CMD)?;
    ensure!(
        loops.contains("/run/rkos/netboot/rootfs.squashfs"),
        "the image is not the download: {loops}"
    );
    let kubelet = vm.run_ok("findmnt -n -o FSTYPE /var/lib/kubelet | cat", CMD)?;
    ensure!(kubelet.trim() == "tmpfs", "/var/lib/kubelet on {kubelet}");
    // the login can come before networkd has taken the link over ("pending"): a minute for it
    let net = vm.run_ok(
        "for i in $(seq 60); do networkctl list --no-legend | grep -q configured && break; \
         sleep 1; done; networkctl list --no-legend | cat",
        CMD + CMD,
    )?;
    ensure!(
        net.contains("configured"),
        "networkd does not manage the NIC:\n{net}"
    );
    // rkos-init's default route and networkd's both name the NIC: the first is enough
    let file = vm.run_ok(
        "dev=$(ip -o route show default | awk '{print $5}' | head -n 1); \
         networkctl status --no-pager \"$dev\" | cat; \
         udevadm info -q property -p \"/sys/class/net/$dev\" | grep ID_NET_LINK_FILE",
        CMD,
    )?;
    ensure!(
        file.contains("70-rkos-netboot.network") && file.contains("70-rkos-netboot.link"),
        "the NIC is not under the netboot .network and .link:\n{file}"
    );
    Ok(())
}

/// The stand-in k3s started with the rendered config (there is no real cluster here).
fn k3s_up(vm: &mut Vm) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(240);
    while vm.run("sudo test -f /run/k3s-standin/argv", CMD)?.0 != 0 {
        ensure!(
            Instant::now() < deadline,
            "k3s.service never started the stand-in"
        );
        vm.run("sleep 5", CMD)?;
    }
    Ok(())
}

fn system_running(vm: &mut Vm) -> Result<String> {
    Ok(vm
        .run(
            "systemctl is-system-running --wait 2>/dev/null; systemctl --failed --no-legend | cat",
            Duration::from_secs(300),
        )?
        .1)
}

fn mib(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// A copy of `dir` (hard links: the files are not changed in place) for a test to alter.
fn copy_dir(dir: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if fs::hard_link(e.path(), &dest).is_err() {
            fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// A newer version of the image for the farm to serve: the same kernel; an initrd whose
/// appended archive says `version`; the squashfs made again from the image tree with its
/// `/etc/rkos/version` changed; signed with the build's key.
fn newer_version(dist: &Path, to: &Path, version: &str) -> Result<bool> {
    let tree = rkos_tests::host::workspace().join("work/image/root");
    let keys = rkos_tests::host::workspace().join("work/keys");
    if !tree.join("etc/rkos/version").is_file() || !keys.join("rkos.key").is_file() {
        eprintln!("no work/image/root or work/keys: the new-version reboot is skipped");
        return Ok(false);
    }
    fs::create_dir_all(to)?;
    for f in ["vmlinuz", "initrd", "undionly.kpxe", "ipxe.efi"] {
        fs::copy(dist.join(f), to.join(f))?;
    }
    let extra = to.join("extra");
    fs::create_dir_all(extra.join("etc/rkos"))?;
    fs::write(extra.join("etc/rkos/version"), format!("{version}\n"))?;
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet >> {}",
            extra.display(),
            to.join("initrd").display()
        ))
        .status()?;
    ensure!(cpio.success(), "appending to the initrd");
    // The image tree with its version file replaced for the time of mksquashfs: a bind
    // mount over it (mksquashfs's `-e` would also drop a pseudo file of the same name).
    let version_file = to.join("version");
    fs::write(&version_file, format!("{version}\n"))?;
    let target = tree.join("etc/rkos/version");
    let bound = Mount::new(&["--bind", p(&version_file)], &target)?;
    let made = sh(
        "mksquashfs",
        &[
            p(&tree),
            p(&to.join("rootfs.squashfs")),
            "-comp",
            "zstd",
            "-Xcompression-level",
            "1",
            "-b",
            "1M",
            "-noappend",
            "-quiet",
            "-no-progress",
        ],
    );
    drop(bound);
    made?;
    fs::remove_file(&version_file)?;
    fs::remove_dir_all(&extra)?;
    sign(to, version, &keys.join("rkos.key"))?;
    Ok(true)
}

/// Writes `dir`'s signed manifest (`rkos bundle create`) of its kernel, initrd and squashfs
/// as `version`, with the secret key `key`.
fn sign(dir: &Path, version: &str, key: &Path) -> Result<()> {
    rkos_tests::node::bundle(&rkos_bin()?, dir, version, key, dir)
}

/// `rkos farm serve` on the host's loopback for PXE under QEMU's user-mode network: its TFTP
/// hands iPXE the farm's boot script, which loads kernel and initrd from the farm.
struct UserFarm {
    work: tempfile::TempDir,
    dist: PathBuf,
    /// A symlink to the directory served (a test points it at another version).
    served: PathBuf,
    inv: PathBuf,
    port: u16,
    listen: String,
    tftp: PathBuf,
    proc: Option<Proc>,
}

impl UserFarm {
    fn start() -> Result<UserFarm> {
        let dist = netboot_dir()?;
        let work = tempfile::tempdir()?;
        let port = free_port()?;
        let served = work.path().join("served");
        std::os::unix::fs::symlink(&dist, &served)?;
        let inv = work.path().join("farm.yaml");
        fs::write(&inv, inventory(&format!("http://10.0.2.2:{port}"), ""))?;
        let listen = format!("127.0.0.1:{port}");
        let tftp = work.path().join("tftp");
        let mut f = UserFarm {
            work,
            dist,
            served,
            inv,
            port,
            listen,
            tftp,
            proc: None,
        };
        f.serve()?;
        fs::create_dir_all(&f.tftp)?;
        let boot_ipxe = sh("curl", &["-sf", &format!("http://{}/boot.ipxe", f.listen)])?;
        fs::write(f.tftp.join("boot.ipxe"), boot_ipxe)?;
        Ok(f)
    }

    /// (Re)starts `rkos farm serve`.
    fn serve(&mut self) -> Result<()> {
        self.proc = None;
        let p = farm(
            &self.served,
            &self.inv,
            &self.listen,
            self.work.path(),
            None,
        )?;
        self.proc = Some(p);
        Ok(())
    }

    fn pxe(&self, name: &str, mac: &str) -> Result<Vm> {
        let backend = NetBackend::UserTftp {
            tftp: self.tftp.clone(),
            bootfile: "boot.ipxe".into(),
        };
        pxe_vm(name, mac, backend, None)
    }

    /// Node A by PXE to a shell, checked as the inventory says, k3s started; the seconds
    /// from power-on to the login prompt.
    fn boot_node_a(&self) -> Result<(Vm, f64)> {
        let mut vm = self.pxe("netboot-pxe-a", MAC_A)?;
        let to_login = login(&mut vm)?;
        check_node(
            &mut vm,
            "node-a",
            &["accelerator=gpu-a", "farm.rkos.io/pool=gpu"],
            &["gpu=true:NoSchedule"],
        )?;
        k3s_up(&mut vm)?;
        eprintln!("figure: PXE power-on to login prompt {to_login:.0} s ({MEMORY_MB} MiB)");
        Ok((vm, to_login))
    }
}

/// The short one (`make boot-test`): PXE -> iPXE -> `rkos farm serve` -> the image into RAM
/// -> login, as node A of the inventory, with its name, labels and taints.
#[test]
fn pxe_boot_smoke() -> Result<()> {
    let farm = UserFarm::start()?;
    farm.boot_node_a()?;
    Ok(())
}

/// The long one (`make test-netboot`): node A's boot gives the figures; the farm killed
/// after boot leaves it running; a reboot after the farm serves a new version comes up on
/// it; node B and an unknown MAC get their own names, labels and taints.
#[test]
fn pxe_farm_gone_new_version_and_pools() -> Result<()> {
    let mut farm = UserFarm::start()?;
    let (dist, port) = (farm.dist.clone(), farm.port);
    let (mut vm, _) = farm.boot_node_a()?;
    let transcript = vm.transcript();
    let rate = transcript
        .lines()
        .find_map(|l| l.split(" verified: ").nth(1))
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(" MiB/s").next())
        .and_then(|r| r.parse::<f64>().ok())
        .context("no download rate on the console")?;
    // curl from the same server, in the same guest, in the same run.
    let curl = vm.run_ok(
        &format!("curl -s -o /dev/null -w '%{{speed_download}}' http://10.0.2.2:{port}/image/rootfs.squashfs"),
        Duration::from_secs(600),
    )?;
    let curl_mib = curl.trim().parse::<f64>().context("curl's speed")? / (1 << 20) as f64;
    // The same work as rkos-init (the bytes hashed with sha256 and kept in RAM), by curl and
    // coreutils: what the download costs apart from rkos-init's own code.
    let same_work = vm.run_ok(
        &format!(
            "s=$(date +%s.%N); curl -s http://10.0.2.2:{port}/image/rootfs.squashfs \
             | tee /dev/shm/curl-copy | sha256sum >/dev/null; e=$(date +%s.%N); \
             echo \"$(stat -c %s /dev/shm/curl-copy) $s $e\"; rm -f /dev/shm/curl-copy"
        ),
        Duration::from_secs(600),
    )?;
    let same_mib = {
        let v: Vec<f64> = same_work
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        ensure!(v.len() == 3, "curl | sha256sum: {same_work}");
        v[0] / (v[2] - v[1]) / (1 << 20) as f64
    };
    let meminfo = vm.run_ok("cat /proc/meminfo", CMD)?;
    let image_mib = fs::metadata(dist.join("rootfs.squashfs"))?.len() as f64 / (1 << 20) as f64;
    let shmem = mib(&meminfo, "Shmem:").unwrap_or(0.0);
    let avail = mib(&meminfo, "MemAvailable:").unwrap_or(0.0);
    let used = vm.run_ok("free -m | awk '/^Mem:/{print $3}'", CMD)?;
    eprintln!(
        "figure: image {image_mib:.1} MiB; after boot Shmem (tmpfs: the image and the overlay) \
         {shmem:.1} MiB, MemAvailable {avail:.0} MiB, used {} MiB",
        used.trim()
    );
    eprintln!(
        "figure: download rkos-init {rate:.1} MiB/s, curl in the same guest {curl_mib:.1} MiB/s, \
         ratio {:.2}; curl | tee (tmpfs) | sha256sum {same_mib:.1} MiB/s, ratio {:.2}",
        rate / curl_mib,
        rate / same_mib
    );

    // The farm gone: the node does not need it any more.
    farm.proc = None;
    let state = system_running(&mut vm)?;
    ensure!(
        state.lines().next().map(str::trim) == Some("running"),
        "after the farm stopped: {state}"
    );
    let k3s = vm.run_ok("systemctl is-active k3s", CMD)?;
    ensure!(k3s.trim() == "active", "k3s is {k3s}");

    // A new version on the farm; a reboot comes up on it.
    let v2 = farm.work.path().join("v2");
    if newer_version(&dist, &v2, "0.1.1")? {
        fs::remove_file(&farm.served)?;
        std::os::unix::fs::symlink(&v2, &farm.served)?;
        farm.serve()?;
        vm.send("sudo reboot\n")?;
        vm.expect(
            r"downloading http://10\.0\.2\.2:\d+/image/rootfs\.squashfs",
            BOOT,
        )
        .context("the reboot did not download the image again")?;
        login(&mut vm)?;
        let v = vm.run_ok("cat /etc/rkos/version /run/rkos/netboot/source", CMD)?;
        ensure!(
            v.lines().next() == Some("0.1.1") && v.contains("version=0.1.1"),
            "after the reboot: {v}"
        );
        drop(vm);
        fs::remove_file(&farm.served)?;
        std::os::unix::fs::symlink(&dist, &farm.served)?;
    } else {
        drop(vm);
    }

    farm.serve()?;
    let mut vm = farm.pxe("netboot-pxe-b", MAC_B)?;
    login(&mut vm)?;
    check_node(
        &mut vm,
        "node-b",
        &["tier=batch", "farm.rkos.io/pool=batch"],
        &["batch=true:PreferNoSchedule"],
    )?;
    let k3s = vm.run_ok("sudo cat /etc/rancher/k3s/config.yaml", CMD)?;
    ensure!(!k3s.contains("gpu"), "node B has node A's labels:\n{k3s}");
    drop(vm);

    let mut vm = farm.pxe("netboot-pxe-unknown", MAC_UNKNOWN)?;
    login(&mut vm)?;
    check_node(
        &mut vm,
        "spare-5254004e42ff",
        &["farm.rkos.io/pool=spare"],
        &[],
    )?;
    Ok(())
}

/// Direct kernel boots (faster than PXE) against a farm serving an altered image: a squashfs
/// with one byte changed, a manifest signed by a key the initrd does not trust. Each is
/// refused with the URL and what was expected, and the node stops at the rescue shell.
#[test]
fn altered_images_are_refused() -> Result<()> {
    let dist = netboot_dir()?;
    let work = tempfile::tempdir()?;
    let port = free_port()?;
    let inv = work.path().join("farm.yaml");
    fs::write(&inv, inventory(&format!("http://10.0.2.2:{port}"), ""))?;

    let tampered = work.path().join("tampered");
    copy_dir(&dist, &tampered)?;
    let img = tampered.join("rootfs.squashfs");
    fs::remove_file(&img)?;
    let mut bytes = fs::read(dist.join("rootfs.squashfs"))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&img, bytes)?;

    let forged = work.path().join("forged");
    copy_dir(&dist, &forged)?;
    let rkos = rkos_bin()?;
    let other = work.path().join("other-key");
    sh(
        &rkos,
        &["bundle", "keygen", "--out", other.to_str().unwrap()],
    )?;
    for f in ["manifest.json", "manifest.json.minisig"] {
        fs::remove_file(forged.join(f))?;
    }
    // The signature is checked before the version: any version shows the refusal.
    sign(&forged, "0.1.0", &other.join("rkos.key"))?;

    for (case, dir, want) in [
        (
            "tampered",
            &tampered,
            r"rootfs\.squashfs: sha256 is [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}; the image is refused",
        ),
        (
            "forged",
            &forged,
            r"manifest\.json: manifest is signed by key [0-9A-F]{16}, which is not among the node's 1 trusted key\(s\)",
        ),
    ] {
        let _farm = farm(dir, &inv, &format!("127.0.0.1:{port}"), work.path(), None)?;
        let mut vm = Vm::start(&VmConfig {
            name: format!("netboot-{case}"),
            arch: Arch::Amd64,
            boot: Boot::Kernel {
                kernel: dist.join("vmlinuz"),
                initrd: dist.join("initrd"),
                cmdline: format!(
                    "console=ttyS0,115200 rkos.mode=netboot rkos.image=http://10.0.2.2:{port}/image/ \
                     rkos.config_url=http://10.0.2.2:{port}/nodes/${{mac}}/config.yaml"
                ),
                medium: None,
            },
            disks: vec![],
            memory_mb: MEMORY_MB,
            extras: Default::default(),
        })?;
        vm.expect(&format!(r"BOOT FAILED: .*netboot: .*{want}"), BOOT)
            .with_context(|| format!("{case}: no refusal naming the image"))?;
        vm.expect(r"rescue shell", CMD)?;
        vm.type_until(
            "echo rescue-$((6*7))",
            "rescue-42",
            5,
            Duration::from_secs(20),
        )?;
        let (st, _) = vm.run("test -e /run/rkos/netboot/rootfs.squashfs", CMD)?;
        ensure!(st != 0, "{case}: the refused image is still in RAM");
    }
    Ok(())
}

/// A network namespace with a bridge and a tap, removed when dropped.
struct Netns(String);

impl Netns {
    fn make(name: &str) -> Result<Netns> {
        let _ = sh("ip", &["netns", "del", name]);
        sh("ip", &["netns", "add", name])?;
        let ns = Netns(name.into());
        for cmd in [
            "ip link set lo up",
            "ip link add rkosbr0 type bridge",
            "ip addr add 192.168.77.1/24 dev rkosbr0",
            "ip link set rkosbr0 up",
            "ip tuntap add rkostap0 mode tap",
            "ip link set rkostap0 master rkosbr0",
            "ip link set rkostap0 up",
        ] {
            let args: Vec<&str> = ["netns", "exec", name]
                .into_iter()
                .chain(cmd.split(' '))
                .collect();
            sh("ip", &args)?;
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.0]);
    }
}

/// A real dnsmasq (Debian's), configured by `rkos farm dnsmasq`, in a namespace with the farm:
/// the node's iPXE gets its address (the inventory's fixed one) and the farm's boot script
/// from it, then boots as over any network.
#[test]
fn dnsmasq_in_a_namespace_boots_a_node() -> Result<()> {
    let dist = netboot_dir()?;
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        bail!("dnsmasq is missing (build/netboot-deps.sh installs dnsmasq-base)");
    }
    let work = tempfile::tempdir()?;
    let ns = Netns::make(&format!("rkosnb{}", std::process::id()))?;
    let inv = work.path().join("farm.yaml");
    fs::write(
        &inv,
        inventory(
            "http://192.168.77.1:8080",
            &format!(
                "dhcp:\n  interface: rkosbr0\n  range: 192.168.77.100,192.168.77.150,1h\n  tftp_root: {}\n",
                dist.display()
            ),
        ),
    )?;
    let conf = work.path().join("dnsmasq.conf");
    let rkos = rkos_bin()?;
    sh(
        &rkos,
        &[
            "farm",
            "dnsmasq",
            "--inventory",
            inv.to_str().unwrap(),
            "--out",
            conf.to_str().unwrap(),
        ],
    )?;
    let mut dnsmasq = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "dnsmasq",
                "--keep-in-foreground",
                "--log-facility=-",
            ])
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!(
                "--pid-file={}",
                work.path().join("dnsmasq.pid").display()
            ))
            // dnsmasq's optional-argument options take `=VALUE` only
            .arg(format!(
                "--dhcp-leasefile={}",
                work.path().join("leases").display()
            ))
            .stdout(Stdio::null())
            .stderr(fs::File::create(work.path().join("dnsmasq.log"))?)
            .spawn()
            .context("starting dnsmasq")?,
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = dnsmasq.0.try_wait()? {
        bail!(
            "dnsmasq ended at once ({status}):\n{}",
            fs::read_to_string(work.path().join("dnsmasq.log")).unwrap_or_default()
        );
    }
    let _farm = farm(&dist, &inv, "192.168.77.1:8080", work.path(), Some(&ns.0))?;
    let mut vm = pxe_vm(
        "netboot-dnsmasq",
        MAC_A,
        NetBackend::Tap("rkostap0".into()),
        Some(&ns.0),
    )?;
    let r = (|| -> Result<()> {
        login(&mut vm)?;
        check_node(
            &mut vm,
            "node-a",
            &["accelerator=gpu-a"],
            &["gpu=true:NoSchedule"],
        )?;
        let ip = vm.run_ok("ip -4 -o addr show scope global | cat", CMD)?;
        ensure!(
            ip.contains("192.168.77.21/24"),
            "not the inventory's fixed address:\n{ip}"
        );
        Ok(())
    })();
    if r.is_err() {
        eprintln!(
            "dnsmasq's log:\n{}",
            fs::read_to_string(work.path().join("dnsmasq.log")).unwrap_or_default()
        );
    }
    r
}
