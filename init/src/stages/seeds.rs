//! The cloud-init seed volumes, copied into `/run/rkos` by the `config-sources` stage: a
//! NoCloud `CIDATA` volume and a `config-2` ConfigDrive, each mounted read-only for the copy
//! (what is copied: `crate::early`).

use std::fs;
use std::io;
use std::path::Path;

use rkos_contract::{label, paths};

use rkos_contract::BootMode;

use super::Boot;
use crate::devices::{self, BlockDevice};
use crate::kmod::Loader;
use crate::{early, log, system};

/// Copies what rkos reads from a mounted seed to `ROOT/run/rkos`; returns the names copied.
type SeedCopy = fn(&Path, &Path) -> io::Result<Vec<String>>;

/// The seed volumes rkos reads, by label (matched without regard to case).
const SEEDS: [(&str, &str, SeedCopy); 2] = [
    (label::CIDATA, "NoCloud seed", early::copy_cidata),
    (label::CONFIG_DRIVE, "ConfigDrive", early::copy_config_drive),
];

/// Whether this boot reads seed volumes: the live ISO and the installer always do; an
/// installed node only when its own config says `data_sources: [cdrom]` (the disk image's
/// does), so a stick labelled `cidata` that someone plugs in cannot reconfigure it. `config`
/// loads the node's config without any seed (called only for an installed node).
pub fn reads_seeds(mode: BootMode, config: impl FnOnce() -> rkos_config::Config) -> bool {
    match mode {
        BootMode::Disk => rkos_config::datasource::reads_seed_volumes(&config()),
        BootMode::Live | BootMode::Install | BootMode::Netboot | BootMode::Rescue => true,
    }
}

/// The console line for a seed volume an installed node leaves alone.
pub fn ignored_line(what: &str, device: &Path, label: &str) -> String {
    format!(
        "rkos-init: warning: ignoring the {what} {} (label {label}): this installed node reads \
         seed volumes only with `data_sources: [{}]` in its config\n",
        device.display(),
        rkos_config::datasource::SEED_VOLUMES
    )
}

/// The boot partition's `rkos/config.yaml`, copied as the live medium's is
/// (`early::copy_boot_config`): a Pi owner writes it on the card's FAT partition.
fn copy_boot_partition(mnt: &Path, root: &Path) -> io::Result<Vec<String>> {
    Ok(if early::copy_boot_config(mnt, root)? {
        vec![rkos_contract::files::MEDIUM_CONFIG.to_string()]
    } else {
        Vec::new()
    })
}

/// Copies every seed volume's files; a problem is reported with the config's, never fatal.
/// The first seed found is recorded in `init.json`. On an installed node that reads seed
/// volumes, its own boot partition (`RKOS_EFI` on the booted disk) is one too, for its
/// `rkos/config.yaml`.
pub(super) fn copy_seeds(b: &mut Boot, root: &Path) {
    // A seed is attached with the boot volume (a hypervisor's second drive): the wait
    // loop's scan saw it, unless it appeared since (an emulated CD-ROM is found after the
    // disks); only then are the devices scanned again, as probing them costs.
    if new_block_devices(&b.devices) {
        b.devices = devices::scan(Path::new("/sys/class/block"), Path::new("/dev"));
    }
    let found: Vec<_> = SEEDS
        .iter()
        .filter_map(|&(label, what, copy)| {
            devices::find_label(&b.devices, label, true).map(|d| (d.clone(), label, what, copy))
        })
        .collect();
    let boot_partition = match (&b.mode, &b.boot) {
        (BootMode::Disk, Some(state)) => {
            crate::detect::boot_partition(&b.devices, &state.device).cloned()
        }
        _ => None,
    };
    if found.is_empty() && boot_partition.is_none() {
        return;
    }
    let cmdline = b.cmdline.clone();
    let allowed = reads_seeds(b.mode, || {
        rkos_config::NodeConfig::at(root)
            .cmdline(cmdline)
            .names_as_booted()
            .load()
            .config
    });
    for (seed, label, what, copy) in found {
        let seed = &seed;
        if !allowed {
            log::to_consoles(&b.consoles, &ignored_line(what, &seed.path, label));
            continue;
        }
        if let Err(e) = copy_seed(&mut b.loader, seed, what, copy) {
            b.config_problems
                .push(format!("error: {what} {}: {e}", seed.path.display()));
        }
        b.cidata_device.get_or_insert_with(|| seed.path.clone());
    }
    if let Some(esp) = boot_partition.filter(|_| allowed) {
        if let Err(e) = copy_seed(&mut b.loader, &esp, "boot partition", copy_boot_partition) {
            b.config_problems
                .push(format!("error: boot partition {}: {e}", esp.path.display()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> rkos_config::Config {
        let loaded = rkos_config::load(&[rkos_config::Source::given_file("c.yaml", yaml)]);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.config
    }

    #[test]
    fn an_installed_node_reads_seed_volumes_only_when_its_config_says_so() {
        let yes = "rkos:\n  data_sources: [cdrom]\n";
        let no = "rkos:\n  data_sources: [\"https://example.com/c.yaml\"]\n";
        assert!(reads_seeds(BootMode::Disk, || config(yes)));
        assert!(!reads_seeds(BootMode::Disk, || config(no)));
        assert!(!reads_seeds(BootMode::Disk, || config("")));
        for m in [BootMode::Live, BootMode::Install] {
            assert!(reads_seeds(m, || unreachable!(
                "the live medium does not ask"
            )));
        }
    }

    #[test]
    fn an_ignored_seed_is_named_with_the_way_to_read_it() {
        let l = ignored_line("NoCloud seed", Path::new("/dev/vdc"), "CIDATA");
        assert!(
            l.contains("/dev/vdc") && l.contains("CIDATA") && l.contains("data_sources: [cdrom]"),
            "{l}"
        );
    }
}
