//! The config sources the boot volumes carry, copied into `/run/rkos` by rkos-init's
//! `config-sources` stage: the boot medium's `rkos/config.yaml` (live, install) and the
//! cloud-init seeds (a NoCloud `CIDATA` volume, a `config-2` ConfigDrive), each mounted
//! read-only for the copy (what is copied: [`crate::early`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::cmdline::Mode;
use crate::detect::CIDATA_LABEL;
use crate::devices::{self, BlockDevice};
use crate::kmod::Loader;
use crate::plan::{self, RUN_RKOS};
use crate::{early, system};

/// Copies the config sources the boot volumes carry into /run/rkos: the boot medium's
/// config.yaml (live) and the cloud-init seeds' files (NoCloud `CIDATA`, ConfigDrive
/// `config-2`). Returns the seed device, if any, and the problems met.
pub fn gather_config_sources(
    mode: Mode,
    devs: &[BlockDevice],
    loader: &mut Loader,
) -> (Option<PathBuf>, Vec<String>) {
    let run_rkos = Path::new(RUN_RKOS);
    let mut problems = Vec::new();
    if mode.boots_from_live_medium() {
        if let Err(e) = early::copy_boot_config(Path::new(plan::MEDIUM), run_rkos) {
            problems.push(format!(
                "error: cannot copy the boot medium's rkos/config.yaml: {e}"
            ));
        }
    }
    // The seed is attached with the boot volume (a hypervisor's second drive): the wait
    // loop's scan saw it, unless it appeared since (an emulated CD-ROM is found after the
    // disks); only then are the devices scanned again, as probing them costs.
    let rescanned;
    let devs = if new_block_devices(devs) {
        rescanned = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
        &rescanned[..]
    } else {
        devs
    };
    let mut found = None;
    let seeds: [(&str, &str, SeedCopy); 2] = [
        (CIDATA_LABEL, "NoCloud seed", early::copy_cidata),
        (
            rkos_config::cloudinit::CONFIG_DRIVE_LABEL,
            "ConfigDrive",
            early::copy_config_drive,
        ),
    ];
    for (label, what, copy) in seeds {
        if let Some(seed) = devices::find_label(devs, label, true) {
            if let Err(e) = copy_seed(loader, seed, run_rkos, what, copy) {
                problems.push(format!("error: {what} {}: {e}", seed.path.display()));
            }
            found.get_or_insert_with(|| seed.path.clone());
        }
    }
    (found, problems)
}

/// Copies what rkos reads from a mounted seed to `/run/rkos`; returns the names copied.
type SeedCopy = fn(&Path, &Path) -> std::io::Result<Vec<String>>;

/// Whether a block device appeared that `devs` does not hold.
fn new_block_devices(devs: &[BlockDevice]) -> bool {
    fs::read_dir("/sys/class/block")
        .map(|rd| {
            rd.flatten().any(|e| {
                !devs
                    .iter()
                    .any(|d| *d.name == *e.file_name().to_string_lossy())
            })
        })
        .unwrap_or(false)
}

/// Mounts a seed volume read-only, copies its files with `copy`, unmounts it.
fn copy_seed(
    loader: &mut Loader,
    seed: &BlockDevice,
    run_rkos: &Path,
    what: &str,
    copy: SeedCopy,
) -> Result<(), String> {
    let fstype = seed.fstype().ok_or("unknown filesystem")?.mount_type();
    loader.ensure_fs(fstype);
    let mnt = run_rkos.join("seed.mnt");
    fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    system::mount_fs(
        &seed.path.to_string_lossy(),
        &mnt,
        fstype,
        nix::mount::MsFlags::MS_RDONLY,
        "",
    )
    .map_err(|e| e.to_string())?;
    let copied = copy(&mnt, run_rkos);
    let _ = nix::mount::umount(&mnt);
    let _ = fs::remove_dir(&mnt);
    let copied = copied.map_err(|e| e.to_string())?;
    tracing::info!("{what} {}: {}", seed.path.display(), copied.join(", "));
    Ok(())
}
