//! The `config` stage: the node's merged config (loaded on the second thread) applied before
//! systemd starts, as a list of small tasks. Config problems are reported, never fatal.

use std::path::Path;
use std::time::Instant;

use rkos_contract::{paths, BootMode};

use super::Boot;
use crate::early::{self, EarlyConfig};
use crate::identity;
use crate::kmod::{self, Loader};
use crate::log;
use crate::modules::ModuleIndex;
use crate::plan::{self, SYSROOT};
use crate::system;

/// A task of the config stage: it applies one part of the config, adding what went wrong to
/// the boot's config problems.
type Task = fn(&mut Boot, &EarlyConfig);

/// In order: the modules come before the sysctls they bring (`br_netfilter`'s
/// `net.bridge.*`).
const TASKS: &[(&str, Task)] = &[
    ("hostname", hostname),
    ("identity", identity_report),
    ("network-names", network_names),
    ("modules", modules),
    ("sysctls", sysctls),
    ("data-disks", data_disks),
    ("persistent-paths", persistent_paths),
];

pub(super) fn config(b: &mut Boot) -> Result<(), String> {
    let mut early = b.early_work.config(Path::new(SYSROOT), &b.cmdline);
    b.config_problems.append(&mut early.problems);
    for (name, task) in TASKS {
        let start = Instant::now();
        task(b, &early);
        tracing::debug!(
            "config {name}: {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    report(b);
    tracing::info!("hostname {}", early.hostname(b.machine_id.as_deref()));
    Ok(())
}

fn hostname(b: &mut Boot, early: &EarlyConfig) {
    let name = &early.hostname(b.machine_id.as_deref());
    if let Err(e) = nix::unistd::sethostname(name) {
        b.config_problems
            .push(format!("error: hostname {name:?}: {e}"));
    }
    if let Err(e) = early::write_hostname(Path::new(SYSROOT), name) {
        b.config_problems.push(format!("error: /etc/hostname: {e}"));
    }
}

/// An installed node's identity as this boot found it, for the booted system and the tests
/// (`/run/rkos/identity.json`).
fn identity_report(b: &mut Boot, early: &EarlyConfig) {
    let Some((now, reason)) = &b.instance else {
        return;
    };
    let machine_id = b.machine_id.as_deref();
    let default = rkos_config::node_default_hostname(machine_id, early.primary_mac.as_deref());
    let report = identity::Report {
        instance_id: now.instance_id.as_deref(),
        machine: now.machine.as_deref(),
        new: reason.is_some(),
        reason: reason.as_deref(),
        machine_id,
        default_hostname: &default,
    };
    if let Err(e) = report.write(Path::new("/")) {
        tracing::warn!("cannot write {}: {e}", paths::IDENTITY_REPORT);
    }
}

/// Device renames (`set-name` in a seed's network config): their `.link` files in place
/// before udev's first coldplug in the new root, which applies them (a rename after it
/// would leave `udevadm trigger --settle` waiting for an event of a device renamed under it).
fn network_names(b: &mut Boot, early: &EarlyConfig) {
    let links = rkos_config::render::link_files(&early.config);
    if let Err(e) = rkos_config::apply::write_rendered(Path::new(SYSROOT), &links) {
        b.config_problems
            .push(format!("error: network device names: {e}"));
    }
}

/// The initramfs carries the modules the image's default config asks for; the real root
/// carries every module, but reading its index from the squashfs costs more than the rest
/// of the init together, so it is opened only for a module the initramfs lacks.
fn modules(b: &mut Boot, early: &EarlyConfig) {
    let mut full: Option<Loader> = None;
    for m in &early.config.rkos.modules {
        if b.loader.load(m).is_ok() {
            continue;
        }
        let full = full.get_or_insert_with(|| {
            let dir = Path::new(SYSROOT)
                .join("lib/modules")
                .join(kmod::kernel_release());
            Loader::new(ModuleIndex::load(&dir).unwrap_or_default())
        });
        if let Err(e) = full.load(m) {
            b.config_problems.push(format!("error: module {m}: {e}"));
        }
    }
    if let Some(l) = full {
        for f in l.failed {
            b.config_problems.push(format!("error: module {f}"));
        }
    }
}

fn sysctls(b: &mut Boot, early: &EarlyConfig) {
    let problems = early::write_sysctls(Path::new("/proc/sys"), &early.config.rkos.sysctls);
    b.config_problems
        .extend(problems.into_iter().map(|p| format!("error: {p}")));
}

/// The paths of the config's data disks, which systemd mounts (from `rkos config apply`'s
/// units) instead of rkos-init's binds from the data volume.
fn data_disk_paths(early: &EarlyConfig) -> Vec<String> {
    early
        .config
        .rkos
        .data_disks
        .iter()
        .map(|d| d.path.clone())
        .collect()
}

/// An installed node's built-in persistent binds at a data disk's path are taken back, so
/// the path is free for the disk's mount; with the disk missing, k3s (which requires it)
/// does not start on the data volume's state either.
fn data_disks(b: &mut Boot, early: &EarlyConfig) {
    if b.mode != BootMode::Disk {
        return;
    }
    for path in plan::binds_replaced_by_data_disks(&data_disk_paths(early)) {
        let at = Path::new(SYSROOT).join(path.strip_prefix("/").unwrap_or(&path));
        if let Err(e) = nix::mount::umount(&at) {
            b.config_problems.push(format!(
                "error: data disk {}: the data volume's bind there stays ({e}); the disk \
                 cannot be mounted",
                path.display()
            ));
        }
    }
}

/// An installed node's extra persistent paths: seeded from the image and bound like the
/// built-in ones, except at a data disk's path. A failed seed or bind skips the rest of that
/// path only.
fn persistent_paths(b: &mut Boot, early: &EarlyConfig) {
    // Compared normalised, as render compares them (by mount unit name).
    let normal = |p: &String| plan::normalize_persistent(p).ok();
    let disks: Vec<_> = data_disk_paths(early).iter().filter_map(normal).collect();
    let extra: Vec<String> = early
        .config
        .rkos
        .persistent_paths
        .iter()
        .filter(|p| normal(p).is_none_or(|n| !disks.contains(&n)))
        .cloned()
        .collect();
    if b.mode != BootMode::Disk || extra.is_empty() {
        return;
    }
    let (groups, problems) = early::persistent_groups(&extra);
    b.config_problems.extend(problems);
    let mut exec = system::Executor::new(&mut b.loader);
    for (path, steps) in &groups {
        for step in steps {
            if let Err(e) = exec.run(step) {
                b.config_problems.push(format!(
                    "error: persistent path {}: {step}: {e}",
                    path.display()
                ));
                break;
            }
        }
    }
    let seeded = std::mem::take(&mut exec.seeded);
    if !seeded.is_empty() {
        if let Err(e) = system::sync_fs(Path::new(paths::DATA_MOUNT)) {
            b.config_problems.push(format!("error: {e}"));
        }
    }
    b.seeded.extend(seeded);
}

/// The problems on every console and in /run/rkos/config-errors (shown at the login prompt).
fn report(b: &Boot) {
    let problems = &b.config_problems;
    if !problems.is_empty() {
        let mut text = format!(
            "rkos-init: {} config problem(s); booting anyway:\n",
            problems.len()
        );
        for p in problems {
            text.push_str(&format!("  {p}\n"));
        }
        log::to_consoles(&b.consoles, &text);
    }
    if let Err(e) = early::write_problems(Path::new("/"), problems) {
        tracing::warn!("cannot write {}: {e}", paths::CONFIG_ERRORS);
    }
}
