//! Building the new root: the mount plan's stages, the config sources, /run moved in, the
//! installed node's identity and machine id, and the data volume synced.

use std::fs;
use std::path::Path;
use std::time::Instant;

use rkos_contract::{label, paths};

use super::{seeds, Boot};
use crate::plan::{self, SYSROOT};
use crate::{early, identity, system};

/// The next group of the mount plan's steps, which belongs to `stage`.
pub(super) fn mount(b: &mut Boot, stage: plan::Stage) -> Result<(), String> {
    let steps = match b.mounts.pop_front() {
        Some((s, steps)) if s == stage => steps,
        other => {
            return Err(format!(
                "internal error: mount plan at {other:?}, not {stage:?}"
            ))
        }
    };
    let mut exec = system::Executor::new(&mut b.loader);
    let result = steps.iter().try_for_each(|step| {
        let start = Instant::now();
        exec.run(step).map_err(|e| format!("{step}: {e}"))?;
        tracing::debug!("{step}: {:.1} ms", start.elapsed().as_secs_f64() * 1000.0);
        Ok(())
    });
    b.loop_devices.append(&mut exec.loops);
    b.seeded.append(&mut exec.seeded);
    result
}

/// Copies the config sources the boot volumes carry into /run/rkos (the boot medium's
/// config.yaml when booted from it, the cloud-init seeds' files), then has the second thread
/// load the config from where they now are. Problems are reported with the config's, never
/// fatal.
pub(super) fn config_sources(b: &mut Boot) -> Result<(), String> {
    if b.mode.boots_from_live_medium() {
        if let Err(e) = early::copy_boot_config(Path::new(paths::MEDIUM), Path::new("/")) {
            b.config_problems.push(format!(
                "error: cannot copy the boot medium's rkos/config.yaml: {e}"
            ));
        }
    }
    // Before move-run the sources are under the initramfs's /run, after it under the new
    // root's, with the persistent config.
    let root = Path::new(if b.run_moved { SYSROOT } else { "/" });
    seeds::copy_seeds(b, root);
    b.early_work.load_config_from(root, &b.cmdline);
    Ok(())
}

/// Puts /run into the new root, so the config sources under /run/rkos are where the config
/// is read from; a symlink keeps /run/... paths (the data volume's mount among them)
/// working in the initramfs.
pub(super) fn move_run(b: &mut Boot) -> Result<(), String> {
    system::move_mount(Path::new("/run"), &Path::new(SYSROOT).join("run"))
        .map_err(|e| e.to_string())?;
    b.run_moved = true;
    fs::remove_dir("/run").map_err(|e| format!("rmdir /run: {e}"))?;
    std::os::unix::fs::symlink("/sysroot/run", "/run").map_err(|e| format!("symlink /run: {e}"))
}

/// The installed node's identity: a new instance (a clone of the disk image with a new
/// cloud-init instance-id, or a copy on another machine) drops the previous one's machine
/// id, SSH host keys and k3s node password from the data volume before the machine id is
/// made. A problem is a warning: the node keeps what it has.
pub(super) fn identity(b: &mut Boot) -> Result<(), String> {
    let data = Path::new(paths::DATA_MOUNT);
    match identity::stage(Path::new(SYSROOT), data, Path::new("/sys")) {
        Ok((now, reason, written)) => {
            if written {
                b.seeded.push(identity::record_path(data));
            }
            b.instance = Some((now, reason));
        }
        Err(e) => tracing::warn!("{e}"),
    }
    Ok(())
}

/// The installed node's machine id, kept on the data volume; a problem is a warning (systemd
/// then makes a new id for this boot).
pub(super) fn machine_id(b: &mut Boot) -> Result<(), String> {
    let data = Path::new(paths::DATA_MOUNT);
    let id = system::persist_machine_id(data, Path::new(SYSROOT), || {
        fs::read_to_string("/proc/sys/kernel/random/uuid")
    });
    match id {
        Ok((id, made)) => {
            if made {
                b.seeded.push(data.join("etc/machine-id"));
            }
            b.machine_id = Some(id);
        }
        Err(e) => tracing::warn!("machine id not kept on {}: {e}", label::DATA),
    }
    Ok(())
}

/// One `syncfs` of the data volume, so what was created on it survives a power cut.
pub(super) fn sync_data(_: &mut Boot) -> Result<(), String> {
    system::sync_fs(Path::new(paths::DATA_MOUNT)).map_err(|e| e.to_string())
}
