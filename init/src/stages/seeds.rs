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
/// does), so a stick labelled `cidata` that someone plugs in cannot reconfigure it.
/// `opted_in` answers that from the node's config without any seed (asked only for an
/// installed node).
pub fn reads_seeds(mode: BootMode, opted_in: impl FnOnce() -> bool) -> bool {
    match mode {
        BootMode::Disk => opted_in(),
        BootMode::Live | BootMode::Install | BootMode::Netboot | BootMode::Rescue => true,
    }
}

/// Whether the installed node's config under `root` opts in to its seed volumes. Its raw
/// sources are read first (the image defaults from the initramfs's copy, as the second
/// thread reads them): when none says `cdrom` the answer is no without a full load, whose
/// cold code costs a fifth of a second under emulation on every boot of most nodes.
fn opted_in(root: &Path, cmdline: &str) -> bool {
    use rkos_config::{datasource, source};
    let mut sources = source::image_defaults(Path::new("/")).0;
    sources.extend(source::collect_report_after_defaults(root, cmdline).0);
    datasource::mentions_seed_volumes(&sources)
        && datasource::reads_seed_volumes(
            &early::load_config(
                rkos_config::ImageDefaults::parse(Path::new("/")),
                root,
                cmdline,
                None,
            )
            .config,
        )
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
    let allowed = reads_seeds(b.mode, || opted_in(root, &b.cmdline));
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

/// Whether a block device appeared that `devs` does not hold and that could be a seed: not
/// a loop device (rkos-init's own, for the image: on an installed node one always appears
/// after the wait, and a rescan that probes every device costs a fifth of a second under
/// emulation) nor a RAM disk.
fn new_block_devices(devs: &[BlockDevice]) -> bool {
    fs::read_dir("/sys/class/block")
        .map(|rd| {
            rd.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                may_be_seed(&name) && !devs.iter().any(|d| *d.name == *name)
            })
        })
        .unwrap_or(false)
}

/// Whether a block device of this name can be a seed volume someone attached.
fn may_be_seed(name: &str) -> bool {
    !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
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
    if copied.is_empty() {
        tracing::debug!("{what} {}: nothing to read", seed.path.display());
    } else {
        tracing::info!("{what} {}: {}", seed.path.display(), copied.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's root with `yaml` as its persistent config.
    fn root_with(yaml: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let file = rkos_contract::paths::under(t.path(), rkos_contract::paths::PERSISTENT_CONFIG);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, yaml).unwrap();
        t
    }

    #[test]
    fn an_installed_node_reads_seed_volumes_only_when_its_config_says_so() {
        let yes = root_with("rkos:\n  data_sources: [cdrom]\n");
        let no = root_with("rkos:\n  data_sources: [\"https://example.com/c.yaml\"]\n");
        // Says the word, not as a data source: a full load says no.
        let only_said = root_with("hostname: cdrom-lab\n");
        assert!(reads_seeds(BootMode::Disk, || opted_in(yes.path(), "")));
        assert!(!reads_seeds(BootMode::Disk, || opted_in(no.path(), "")));
        assert!(!reads_seeds(BootMode::Disk, || opted_in(
            only_said.path(),
            ""
        )));
        assert!(!reads_seeds(BootMode::Disk, || opted_in(
            root_with("").path(),
            ""
        )));
        assert!(reads_seeds(BootMode::Disk, || opted_in(
            root_with("").path(),
            "rkos.data_sources=cdrom"
        )));
        for m in [BootMode::Live, BootMode::Install] {
            assert!(reads_seeds(m, || unreachable!(
                "the live medium does not ask"
            )));
        }
    }

    #[test]
    fn loop_devices_and_ram_disks_are_never_seeds() {
        for n in ["loop0", "loop12", "ram0", "zram0"] {
            assert!(!may_be_seed(n), "{n}");
        }
        for n in ["sr0", "vdb", "sda1", "mmcblk0p1", "nvme0n1"] {
            assert!(may_be_seed(n), "{n}");
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
