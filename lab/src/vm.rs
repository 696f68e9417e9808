//! The VMs (root): copy-on-write overlays of the gold image, QEMU inside the lab's namespace
//! (daemonized, serial console to a file, pid in a file), SSH to the nodes with the lab's key,
//! and the wait until a node is up. Command lines are pure and tested.
//!
//! The wait is over SSH (`systemctl is-active k3s` as `rkos`), not on the serial log: the
//! console's login prompt comes before `rkos-config-network` and k3s, and its text differs
//! between images, while `is-active` answers exactly the question and works the same under
//! KVM and TCG (only slower).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rkos_vm::{Accel, Arch};

use crate::state::{LabState, NodeState};
use crate::{argv, run, Error, Result};

/// `qemu-img create` of `node`'s overlay on `image` (absolute: the overlay records it).
pub fn overlay_command(image: &Path, overlay: &Path, size: &str) -> Vec<String> {
    argv(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        &image.display().to_string(),
        &overlay.display().to_string(),
        size,
    ])
}

/// QEMU for one node, run inside the namespace: daemonized, so the VMs outlive `rkos lab up`.
pub fn qemu_command(
    state: &LabState,
    node: &NodeState,
    accel: Accel,
    pidfile: &Path,
) -> Vec<String> {
    let arch = Arch::Amd64;
    let cpu = match accel {
        Accel::Kvm => accel.cpu(),
        Accel::Tcg => arch.tcg_cpu(),
    };
    let spec = &state.plan.spec;
    let mut v = argv(&[
        "ip",
        "netns",
        "exec",
        &state.plan.namespace,
        arch.qemu_system(),
    ]);
    v.extend(argv(&[
        "-name",
        &node.node.name,
        "-accel",
        accel.as_str(),
        "-cpu",
        cpu,
        "-machine",
        arch.machine(),
        "-smp",
        &spec.cpus.to_string(),
        "-m",
        &spec.memory_mb.to_string(),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        &format!("file:{}", node.console.display()),
        "-daemonize",
        "-pidfile",
        &pidfile.display().to_string(),
        // the node's watchdog, as on real servers (the image arms it)
        "-device",
        "i6300esb",
        "-drive",
        &format!(
            "file={},format=qcow2,if=none,id=disk0",
            node.overlay.display()
        ),
        // the disk first: SeaBIOS would otherwise try the seed's FAT boot sector
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=0",
        "-drive",
        &format!(
            "file={},format=raw,if=virtio,readonly=on",
            node.seed.display()
        ),
        "-netdev",
        &format!(
            "tap,id=net0,ifname={},script=no,downscript=no",
            node.node.tap
        ),
        "-device",
        &format!("virtio-net-pci,netdev=net0,mac={},romfile=", node.node.mac),
    ]));
    v
}

/// SSH to `address` as `rkos` with the lab's key, from inside the namespace; `command` empty
/// is an interactive login. Host keys are not kept: each `up` or `reset` makes new ones.
pub fn ssh_command(
    namespace: &str,
    key: &Path,
    address: &str,
    tty: bool,
    command: &[String],
) -> Vec<String> {
    let mut v = argv(&["ip", "netns", "exec", namespace, "ssh", "-i"]);
    v.push(key.display().to_string());
    v.extend(argv(&[
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "IdentitiesOnly=yes",
    ]));
    if !tty {
        v.extend(argv(&["-o", "BatchMode=yes"]));
    }
    v.push(format!("rkos@{address}"));
    v.extend(command.iter().cloned());
    v
}

/// A new Ed25519 key pair at `key` (and `key.pub`, a file there before is replaced) without
/// a passphrase; returns the public key line.
pub fn ssh_keygen(key: &Path, comment: &str) -> Result<String> {
    let _ = std::fs::remove_file(key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    run(&argv(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        comment,
        "-f",
        &key.display().to_string(),
    ]))?;
    let public = key.with_extension("pub");
    std::fs::read_to_string(&public)
        .map(|k| k.trim().to_string())
        .map_err(Error::io(format!("reading {}", public.display())))
}

/// The k3s admin kubeconfig with its loopback address replaced by the server's.
pub fn rewrite_kubeconfig(text: &str, server: &str) -> String {
    text.replace("https://127.0.0.1:6443", &format!("https://{server}:6443"))
        .replace("https://localhost:6443", &format!("https://{server}:6443"))
}

/// `kubectl get nodes --no-headers`: how many nodes, and the names of those not `Ready`.
pub fn not_ready(get_nodes: &str) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut waiting = Vec::new();
    for line in get_nodes.lines().filter(|l| !l.trim().is_empty()) {
        count += 1;
        let mut w = line.split_whitespace();
        let name = w.next().unwrap_or_default();
        let status = w.next().unwrap_or_default();
        if !status.split(',').any(|s| s == "Ready") {
            waiting.push(name.to_string());
        }
    }
    (count, waiting)
}

/// Whether `pid` is a running QEMU of this lab (its command line names `overlay`), so a pid
/// reused by another process is never signalled.
pub fn is_our_qemu(pid: u32, overlay: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let text = String::from_utf8_lossy(&cmdline);
    text.contains("qemu") && text.contains(&overlay.display().to_string())
}

/// The pid in QEMU's pid file.
pub fn read_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// Makes a fresh overlay for `node` (an old one is replaced).
pub fn make_overlay(image: &Path, node: &NodeState, size: &str) -> Result<()> {
    let _ = std::fs::remove_file(&node.overlay);
    run(&overlay_command(image, &node.overlay, size)).map(|_| ())
}

/// Starts QEMU for `node`; returns its pid once QEMU has daemonized.
pub fn start(state: &LabState, node: &NodeState, accel: Accel, pidfile: &Path) -> Result<u32> {
    let _ = std::fs::remove_file(pidfile);
    let _ = std::fs::remove_file(&node.console);
    run(&qemu_command(state, node, accel, pidfile))?;
    read_pid(pidfile)
        .ok_or_else(|| Error::Invalid(format!("QEMU wrote no pid to {}", pidfile.display())))
}

/// Stops the QEMU of `node` if it runs: SIGTERM, then SIGKILL after 10 s.
pub fn stop(node: &NodeState, pidfile: &Path) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for pid in node.pid.into_iter().chain(read_pid(pidfile)) {
        if !is_our_qemu(pid, &node.overlay) {
            continue;
        }
        let p = Pid::from_raw(pid as i32);
        let _ = kill(p, Signal::SIGTERM);
        for _ in 0..100 {
            if !is_our_qemu(pid, &node.overlay) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if is_our_qemu(pid, &node.overlay) {
            let _ = kill(p, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The kernel to probe KVM with: `RKOS_PROBE_KERNEL`, else the one on the ISO beside the
/// image (`X.qcow2` -> `X.iso`), extracted into `dir`; `None`: no kernel, so TCG.
pub fn probe_kernel(image: &Path, dir: &Path) -> Option<PathBuf> {
    if rkos_vm::accel::forced().is_some() {
        return None;
    }
    if let Some(k) = std::env::var_os("RKOS_PROBE_KERNEL") {
        return Some(PathBuf::from(k));
    }
    let iso = image.with_extension("iso");
    if !iso.is_file() {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    rkos_vm::iso::extract_vmlinuz(&iso, dir).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, test_spec};
    use crate::state::Layout;

    fn lab() -> (LabState, Layout) {
        let mut spec = test_spec("v", 1, 1);
        spec.image = "/img/gold.qcow2".into();
        spec.memory_mb = 1536;
        let p = plan(&spec).unwrap();
        let l = Layout::new(Path::new("/r"), "v");
        (LabState::new(p, &l, "t".into(), "1".into()), l)
    }

    #[test]
    fn overlays_are_copy_on_write_of_the_image() {
        let (s, _) = lab();
        let c = overlay_command(Path::new("/img/gold.qcow2"), &s.nodes[0].overlay, "20G").join(" ");
        assert_eq!(
            c,
            "qemu-img create -q -f qcow2 -F qcow2 -b /img/gold.qcow2 /r/v/nodes/v-server-1/disk.qcow2 20G"
        );
    }

    #[test]
    fn qemu_runs_in_the_namespace_on_the_nodes_tap_disk_and_seed() {
        let (s, l) = lab();
        let n = &s.nodes[1];
        let c = qemu_command(&s, n, Accel::Tcg, &l.pidfile(&n.node.name)).join(" ");
        assert!(
            c.starts_with("ip netns exec rkos-lab-v qemu-system-x86_64 "),
            "{c}"
        );
        for want in [
            "-accel tcg -cpu max",
            "-smp 2 -m 1536",
            "-serial file:/r/v/nodes/v-agent-1/console.log",
            "-pidfile /r/v/nodes/v-agent-1/qemu.pid",
            "file=/r/v/nodes/v-agent-1/disk.qcow2,format=qcow2",
            "file=/r/v/nodes/v-agent-1/seed/seed.img,format=raw",
            "ifname=tap1,",
            &format!("mac={},", n.node.mac),
            "-daemonize",
        ] {
            assert!(c.contains(want), "{want}: {c}");
        }
        let k = qemu_command(&s, n, Accel::Kvm, Path::new("/p")).join(" ");
        assert!(k.contains("-accel kvm -cpu host"), "{k}");
    }

    #[test]
    fn ssh_uses_the_labs_key_inside_the_namespace() {
        let c = ssh_command(
            "rkos-lab-v",
            Path::new("/r/v/id_ed25519"),
            "10.1.2.11",
            false,
            &["true".into()],
        );
        let s = c.join(" ");
        assert!(
            s.starts_with("ip netns exec rkos-lab-v ssh -i /r/v/id_ed25519 "),
            "{s}"
        );
        assert!(s.contains("BatchMode=yes"));
        assert!(s.ends_with("rkos@10.1.2.11 true"), "{s}");
        let i = ssh_command("n", Path::new("/k"), "a", true, &[]).join(" ");
        assert!(!i.contains("BatchMode") && i.ends_with("rkos@a"), "{i}");
    }

    #[test]
    fn kubeconfig_points_at_the_server() {
        let kc = "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n";
        assert_eq!(
            rewrite_kubeconfig(kc, "10.9.8.11"),
            "clusters:\n- cluster:\n    server: https://10.9.8.11:6443\n"
        );
    }

    #[test]
    fn nodes_not_ready_are_named() {
        let out = "a   Ready    control-plane,master   5m   v1.30\n\
                   b   NotReady <none>                 1m   v1.30\n\
                   c   Ready,SchedulingDisabled <none> 1m   v1.30\n";
        assert_eq!(not_ready(out), (3, vec!["b".to_string()]));
        assert_eq!(not_ready(""), (0, vec![]));
    }

    #[test]
    fn a_pid_that_is_not_our_qemu_is_left_alone() {
        // this test process is not a QEMU running the overlay
        assert!(!is_our_qemu(
            std::process::id(),
            Path::new("/r/v/nodes/x/disk.qcow2")
        ));
        let t = tempfile::tempdir().unwrap();
        let pf = t.path().join("qemu.pid");
        assert_eq!(read_pid(&pf), None);
        std::fs::write(&pf, "1234\n").unwrap();
        assert_eq!(read_pid(&pf), Some(1234));
    }
}
