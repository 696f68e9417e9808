//! The lab's commands as the system sees them (root): `up`, `reset`, `down`, `status` and
//! the server's kubeconfig. Progress goes to a callback, one line per event, so the CLI
//! prints it and a test could collect it.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use rkos_vm::Accel;

use crate::plan::{self, LabSpec, Plan};
use crate::seed::{seed_files, write_vfat, SeedInput};
use crate::state::{LabState, Layout, NodeState};
use crate::{net, run, vm, Error, Result};

/// What `up` takes besides the spec.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The console password of `rkos` on every node.
    pub password: Option<String>,
    /// More public keys for `rkos` (the lab's own key is always there).
    pub ssh_keys: Vec<String>,
    /// How long to wait for the nodes (`None`: 5 minutes under KVM, 20 under TCG).
    pub timeout: Option<Duration>,
}

/// Says what `rkos lab` needs when it is not run as root.
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(Error::Invalid(
        "rkos lab needs root: it creates a network namespace with a bridge and taps, a veth \
         pair and iptables NAT on the host, and runs QEMU inside the namespace. Run it with \
         sudo (the lab's files go to /var/lib/rkos-lab, or $RKOS_LAB_DIR with sudo -E)"
            .into(),
    ))
}

/// The host programs a lab runs, and those missing (with the Debian package of each).
pub fn missing_tools() -> Vec<String> {
    let tools = [
        ("ip", "iproute2"),
        ("qemu-img", "qemu-utils"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    tools
        .iter()
        .filter(|(t, _)| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .map(|(t, p)| format!("{t} ({p})"))
        .collect()
}

/// The host's name servers a node can use (not the host's loopback resolvers), else
/// public ones.
pub fn dns_from_resolv(resolv: &str) -> Vec<String> {
    let found: Vec<String> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| {
            s.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| !a.is_loopback())
        })
        .collect();
    if found.is_empty() {
        vec!["1.1.1.1".into(), "9.9.9.9".into()]
    } else {
        found
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(Error::io("reading /dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(Error::io(format!("creating {}", p.display())))
}

/// Brings a lab up: plan, state directory, key, seeds, overlays, network, QEMU for every
/// node, then waits for each. A failure half-way leaves the state for `down` to clean.
pub fn up(
    root: &Path,
    spec: &LabSpec,
    opts: &UpOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<LabState> {
    let plan = plan::plan(spec)?;
    let layout = Layout::new(root, &spec.name);
    if layout.dir.exists() {
        return Err(Error::Invalid(format!(
            "lab {} exists ({}): `rkos lab status` shows it, `rkos lab down` removes it \
             (also what a failed up left)",
            spec.name,
            layout.dir.display()
        )));
    }
    if !spec.image.is_file() {
        return Err(Error::Invalid(format!(
            "no disk image at {} (make disk-image; or --image FILE)",
            spec.image.display()
        )));
    }
    for other in crate::state::list(root) {
        if plan::network_of(&other) == plan.network {
            return Err(Error::Invalid(format!(
                "lab {other} already uses the network {}: choose another --name",
                plan.cidr()
            )));
        }
    }
    mkdir(&layout.dir)?;
    let mut state = LabState::new(plan, &layout, random_hex(16)?, random_hex(4)?);
    state.password = opts.password.clone();
    state.save(&layout)?;
    let lab_key = vm::ssh_keygen(&layout.key(), &format!("rkos-lab-{}", spec.name))?;
    let mut keys = vec![lab_key];
    keys.extend(opts.ssh_keys.iter().cloned());
    let input = SeedInput {
        token: state.token.clone(),
        ssh_keys: keys,
        password: opts.password.clone(),
        dns: dns_from_resolv(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        instance: state.instance.clone(),
    };
    for n in &state.nodes {
        mkdir(&layout.node(&n.node.name))?;
        let files = seed_files(&state.plan, &n.node, &input);
        write_vfat(&layout.seed_dir(&n.node.name), &files.files())?;
        vm::make_overlay(&spec.image, n, &spec.disk_size)?;
    }
    say(&format!(
        "lab {}: network {} in namespace {}",
        spec.name,
        state.plan.cidr(),
        state.plan.namespace
    ));
    let nat = net::apply(&state.plan);
    // record what exists before any error: down deletes exactly these rules
    state.nat = nat.as_ref().ok().cloned();
    state.save(&layout)?;
    let nat = nat?;
    if let Some(why) = &nat.missing {
        say(&format!("lab {}: {why}", spec.name));
    }
    boot(&mut state, &layout, opts.timeout, say)?;
    Ok(state)
}

/// Starts every node's QEMU (in parallel: each daemonizes at once and boots on its own),
/// then waits for all of them.
fn boot(
    state: &mut LabState,
    layout: &Layout,
    timeout: Option<Duration>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let verdict = rkos_vm::verdict(
        vm::probe_kernel(&state.plan.spec.image, &layout.dir.join("probe")).as_deref(),
    );
    state.accel = Some(verdict.to_string());
    state.save(layout)?;
    let started = Instant::now();
    for i in 0..state.nodes.len() {
        let n = &state.nodes[i];
        let pid = vm::start(state, n, verdict.accel, &layout.pidfile(&n.node.name))?;
        say(&format!(
            "{:<20} {:<15} started (pid {pid}, {})",
            n.node.name, n.node.address, verdict.accel
        ));
        state.nodes[i].pid = Some(pid);
        state.save(layout)?;
    }
    let timeout = timeout.unwrap_or(match verdict.accel {
        Accel::Kvm => Duration::from_secs(300),
        Accel::Tcg => Duration::from_secs(1200),
    });
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = state
            .nodes
            .iter()
            .map(|n| {
                let st = &*state;
                s.spawn(move || {
                    wait_node(st, layout, n, started, timeout)?;
                    say(&format!(
                        "{:<20} {:<15} ready in {} s (config applied, k3s active)",
                        n.node.name,
                        n.node.address,
                        started.elapsed().as_secs()
                    ));
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a wait thread"))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    if standin(state, layout) {
        say("k3s is the test stand-in: no Kubernetes, no kubeconfig");
        return Ok(());
    }
    wait_ready(state, layout, started, timeout, say)
}

/// Runs `command` on `node` over SSH (non-interactive); its stdout.
pub fn ssh(
    state: &LabState,
    layout: &Layout,
    node: &NodeState,
    command: &[&str],
) -> Result<String> {
    let cmd: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    run(&vm::ssh_command(
        &state.plan.namespace,
        &layout.key(),
        &node.node.address.to_string(),
        false,
        &cmd,
    ))
}

fn console_tail(node: &NodeState) -> String {
    let text = std::fs::read_to_string(&node.console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(8).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits until `node`'s config is applied and k3s is active (over SSH).
fn wait_node(
    state: &LabState,
    layout: &Layout,
    node: &NodeState,
    started: Instant,
    timeout: Duration,
) -> Result<()> {
    loop {
        let pid = node.pid.unwrap_or(0);
        if !vm::is_our_qemu(pid, &node.overlay) {
            return Err(Error::Invalid(format!(
                "{}: QEMU exited; the end of its console ({}):\n{}",
                node.node.name,
                node.console.display(),
                console_tail(node)
            )));
        }
        if let Ok(out) = ssh(
            state,
            layout,
            node,
            &["systemctl", "is-active", "rkos-config-network", "k3s"],
        ) {
            if out.lines().filter(|l| l.trim() == "active").count() == 2 {
                return Ok(());
            }
        }
        if started.elapsed() > timeout {
            return Err(Error::Invalid(format!(
                "{}: not up after {} s (rkos lab console {} shows its boot)",
                node.node.name,
                timeout.as_secs(),
                node.node.name
            )));
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Whether the lab's k3s is the test stand-in (it says so on `--version`).
pub fn standin(state: &LabState, layout: &Layout) -> bool {
    ssh(state, layout, &state.nodes[0], &["k3s", "--version"]).is_ok_and(|v| v.contains("stand-in"))
}

/// With real k3s: every node Ready, then the kubeconfig exported.
fn wait_ready(
    state: &LabState,
    layout: &Layout,
    started: Instant,
    timeout: Duration,
    say: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let server = &state.nodes[0];
    loop {
        let out = ssh(
            state,
            layout,
            server,
            &["sudo", "k3s", "kubectl", "get", "nodes", "--no-headers"],
        )
        .unwrap_or_default();
        let (count, waiting) = vm::not_ready(&out);
        if count == state.nodes.len() && waiting.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            return Err(Error::Invalid(format!(
                "{count} of {} nodes registered, not Ready: {} (rkos lab ssh {} -- sudo k3s kubectl get nodes)",
                state.nodes.len(),
                waiting.join(", "),
                server.node.name
            )));
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    let kc = kubeconfig(state, layout)?;
    std::fs::write(layout.kubeconfig(), kc).map_err(Error::io("writing the kubeconfig"))?;
    say(&format!(
        "every node Ready in {} s; kubeconfig: {}",
        started.elapsed().as_secs(),
        layout.kubeconfig().display()
    ));
    Ok(())
}

/// The first server's admin kubeconfig, its address rewritten to the server's.
pub fn kubeconfig(state: &LabState, layout: &Layout) -> Result<String> {
    if standin(state, layout) {
        return Err(Error::Invalid(
            "this lab runs the test stand-in k3s: there is no Kubernetes and no kubeconfig".into(),
        ));
    }
    let server = &state.nodes[0];
    let kc = ssh(
        state,
        layout,
        server,
        &["sudo", "cat", "/etc/rancher/k3s/k3s.yaml"],
    )?;
    Ok(vm::rewrite_kubeconfig(
        &kc,
        &server.node.address.to_string(),
    ))
}

/// Stops every node, makes fresh overlays from the image and boots them again with the same
/// seeds (the same instance: the nodes keep their names, the disks are new).
pub fn reset(
    root: &Path,
    name: &str,
    timeout: Option<Duration>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<LabState> {
    let layout = Layout::new(root, name);
    let mut state = LabState::load(&layout)?
        .ok_or_else(|| Error::Invalid(format!("no lab {name} (rkos lab up --name {name})")))?;
    for n in &mut state.nodes {
        vm::stop(n, &layout.pidfile(&n.node.name));
        n.pid = None;
    }
    state.save(&layout)?;
    if !net::namespace_exists(&state.plan.namespace) {
        net::remove(&state.plan, state.nat.as_ref());
        state.nat = Some(net::apply(&state.plan)?);
        state.save(&layout)?;
    }
    for n in &state.nodes {
        vm::make_overlay(&state.plan.spec.image, n, &state.plan.spec.disk_size)?;
    }
    say(&format!(
        "lab {name}: fresh disks from {}",
        state.plan.spec.image.display()
    ));
    boot(&mut state, &layout, timeout, say)?;
    Ok(state)
}

/// What `down` removed and what it could not.
#[derive(Debug, Default)]
pub struct DownReport {
    pub stopped: Vec<String>,
    pub failed: Vec<String>,
}

/// Removes the lab: QEMU, network, files. Works from the name alone when `up` stopped before
/// writing its state.
pub fn down(root: &Path, name: &str) -> Result<DownReport> {
    plan::check_name(name)?;
    let layout = Layout::new(root, name);
    let state = LabState::load(&layout).ok().flatten();
    let mut report = DownReport::default();
    let plan: Option<Plan> = match &state {
        Some(s) => {
            for n in &s.nodes {
                let pidfile = layout.pidfile(&n.node.name);
                if vm::read_pid(&pidfile)
                    .or(n.pid)
                    .is_some_and(|p| vm::is_our_qemu(p, &n.overlay))
                {
                    report.stopped.push(n.node.name.clone());
                }
                vm::stop(n, &pidfile);
            }
            Some(s.plan.clone())
        }
        // without a state only the names can be derived: a 1-server plan names them all
        None => plan::plan(&LabSpec {
            name: name.into(),
            servers: 1,
            agents: 0,
            image: Default::default(),
            cpus: 1,
            memory_mb: 512,
            disk_size: String::new(),
        })
        .ok(),
    };
    if let Some(p) = &plan {
        let nat = state.as_ref().and_then(|s| s.nat.as_ref());
        // a state written before NAT was recorded: its rules may exist all the same
        let guessed;
        let nat = match nat {
            Some(n) => Some(n),
            None => {
                guessed = crate::state::Nat {
                    rules: net::nat_rules(p),
                    missing: None,
                };
                Some(&guessed)
            }
        };
        report.failed.extend(net::remove(p, nat));
    }
    if layout.dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&layout.dir) {
            report
                .failed
                .push(format!("removing {}: {e}", layout.dir.display()));
        }
    }
    Ok(report)
}

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub node: String,
    pub role: String,
    pub address: String,
    pub state: String,
    pub reach: String,
}

/// Each node's state: QEMU running or not, and when it answers over SSH, its k3s.
pub fn status(state: &LabState, layout: &Layout) -> Vec<StatusRow> {
    std::thread::scope(|s| {
        let handles: Vec<_> = state
            .nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    let running = n.pid.is_some_and(|p| vm::is_our_qemu(p, &n.overlay));
                    let st = if !running {
                        "stopped".to_string()
                    } else {
                        match ssh(state, layout, n, &["systemctl", "is-active", "k3s"]) {
                            Ok(o) => format!("running, k3s {}", o.trim()),
                            Err(Error::Command { detail, .. }) if detail.is_empty() => {
                                "running, k3s not active".into()
                            }
                            Err(_) => "running, no SSH yet (booting)".into(),
                        }
                    };
                    StatusRow {
                        node: n.node.name.clone(),
                        role: n.node.role.as_str().into(),
                        address: n.node.address.to_string(),
                        state: st,
                        reach: format!("rkos lab ssh {}", n.node.name),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a status thread"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_the_hosts_real_name_servers_else_public_ones() {
        let r = "# x\nnameserver 127.0.0.53\nnameserver 192.168.1.1\nnameserver ::1\nsearch lan\n";
        assert_eq!(dns_from_resolv(r), ["192.168.1.1"]);
        assert_eq!(
            dns_from_resolv("nameserver 127.0.0.53\n"),
            ["1.1.1.1", "9.9.9.9"]
        );
    }

    fn spec(image: &Path) -> LabSpec {
        LabSpec {
            image: image.into(),
            ..crate::plan::test_spec("u", 1, 1)
        }
    }

    #[test]
    fn up_refuses_before_touching_anything() {
        let t = tempfile::tempdir().unwrap();
        let quiet = |_: &str| {};
        let e = up(
            t.path(),
            &spec(&t.path().join("none.qcow2")),
            &UpOptions::default(),
            &quiet,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no disk image"), "{e}");
        assert!(!t.path().join("u").exists());
        // a lab of that name (or what a failed up left) is down's to remove first
        std::fs::create_dir(t.path().join("u")).unwrap();
        let e = up(t.path(), &spec(t.path()), &UpOptions::default(), &quiet)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rkos lab down"), "{e}");
    }

    #[test]
    fn down_of_a_lab_that_never_existed_is_quiet() {
        let t = tempfile::tempdir().unwrap();
        // as root this runs `ip netns del` and `ip link del` of names no one else uses
        std::fs::create_dir_all(t.path().join("nothing-here/nodes/x")).unwrap();
        let r = down(t.path(), "nothing-here").unwrap();
        assert!(r.stopped.is_empty());
        assert!(!t.path().join("nothing-here").exists());
        if nix::unistd::geteuid().is_root() {
            assert_eq!(r.failed, Vec::<String>::new());
        }
        assert!(down(t.path(), "Bad Name").is_err());
    }
}
