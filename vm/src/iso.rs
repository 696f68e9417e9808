//! Files out of an rkos ISO, for boots that need the kernel itself (direct-kernel boots and
//! the accelerator probe).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rkos_contract::files;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running xorriso to read {iso}: {source}")]
    Xorriso {
        iso: PathBuf,
        source: std::io::Error,
    },
    #[error("could not extract {what} from {iso}")]
    Missing { iso: PathBuf, what: String },
}

/// Extracts `/boot/vmlinuz` and `/boot/initrd` ([`files`]`::MEDIUM_*`) from an rkos ISO
/// into `dir`.
pub fn extract_kernel(iso: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let kernel = dir.join(files::VMLINUZ);
    let initrd = dir.join(files::INITRD);
    extract(
        iso,
        &[
            (files::MEDIUM_VMLINUZ, &kernel),
            (files::MEDIUM_INITRD, &initrd),
        ],
    )?;
    Ok((kernel, initrd))
}

/// Extracts `/boot/vmlinuz` alone (what the accelerator probe boots).
pub fn extract_vmlinuz(iso: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let kernel = dir.join(files::VMLINUZ);
    extract(iso, &[(files::MEDIUM_VMLINUZ, &kernel)])?;
    Ok(kernel)
}

/// Extracts each (path on the ISO relative to its root, destination).
fn extract(iso: &Path, wanted: &[(&str, &Path)]) -> Result<(), Error> {
    let on_iso = |from: &str| format!("/{from}");
    let mut cmd = Command::new("xorriso");
    cmd.args(["-osirrox", "on", "-indev"]).arg(iso);
    for (from, to) in wanted {
        cmd.arg("-extract").arg(on_iso(from)).arg(to);
    }
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| Error::Xorriso {
            iso: iso.to_path_buf(),
            source,
        })?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(_, to)| !to.is_file())
        .map(|(from, _)| on_iso(from))
        .collect();
    if !status.success() || !missing.is_empty() {
        let what = if missing.is_empty() {
            wanted.iter().map(|(from, _)| on_iso(from)).collect()
        } else {
            missing
        };
        return Err(Error::Missing {
            iso: iso.to_path_buf(),
            what: what.join(" and "),
        });
    }
    Ok(())
}
