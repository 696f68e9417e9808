//! The cloud-init seed volumes, copied into `/run/rkos` by the `config-sources` stage: a
//! NoCloud `CIDATA` volume and a `config-2` ConfigDrive, each mounted read-only for the copy
//! (what is copied: `crate::early`).

use std::fs;
use std::io;
use std::path::Path;

use rkos_contract::{label, paths};

use super::Boot;
use crate::devices::{self, BlockDevice};
use crate::kmod::Loader;
use crate::{early, system};

/// Copies what rkos reads from a mounted seed to `ROOT/run/rkos`; returns the names copied.
type SeedCopy = fn(&Path, &Path) -> io::Result<Vec<String>>;

/// The seed volumes rkos reads, by label (matched without regard to case).
const SEEDS: [(&str, &str, SeedCopy); 2] = [
    (label::CIDATA, "NoCloud seed", early::copy_cidata),
    (label::CONFIG_DRIVE, "ConfigDrive", early::copy_config_drive),
];

/// Copies every seed volume's files; a problem is reported with the config's, never fatal.
/// The first seed found is recorded in `init.json`.
pub(super) fn copy_seeds(b: &mut Boot) {
    // A seed is attached with the boot volume (a hypervisor's second drive): the wait
    // loop's scan saw it, unless it appeared since (an emulated CD-ROM is found after the
    // disks); only then are the devices scanned again, as probing them costs.
    if new_block_devices(&b.devices) {
        b.devices = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
    }
    for (label, what, copy) in SEEDS {
        let Some(seed) = devices::find_label(&b.devices, label, true) else {
            continue;
        };
        if let Err(e) = copy_seed(&mut b.loader, seed, what, copy) {
            b.config_problems
                .push(format!("error: {what} {}: {e}", seed.path.display()));
        }
        b.cidata_device.get_or_insert_with(|| seed.path.clone());
    }
}

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
    what: &str,
    copy: SeedCopy,
) -> Result<(), String> {
    let fstype = seed.fstype().ok_or("unknown filesystem")?.mount_type();
    loader.ensure_fs(fstype);
    let mnt = Path::new(paths::SEED_MOUNT);
    fs::create_dir_all(mnt).map_err(|e| e.to_string())?;
    system::mount_fs(
        &seed.path.to_string_lossy(),
        mnt,
        fstype,
        nix::mount::MsFlags::MS_RDONLY,
        "",
    )
    .map_err(|e| e.to_string())?;
    let copied = copy(mnt, Path::new("/"));
    let _ = nix::mount::umount(mnt);
    let _ = fs::remove_dir(mnt);
    let copied = copied.map_err(|e| e.to_string())?;
    tracing::info!("{what} {}: {}", seed.path.display(), copied.join(", "));
    Ok(())
}
