//! Files out of an rkos ISO, for boots that need the kernel itself (direct-kernel boots and
//! the accelerator probe).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Extracts `/boot/vmlinuz` and `/boot/initrd` from an rkos ISO into `dir`.
pub fn extract_kernel(iso: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd");
    extract(
        iso,
        &[("/boot/vmlinuz", &kernel), ("/boot/initrd", &initrd)],
    )?;
    Ok((kernel, initrd))
}

/// Extracts `/boot/vmlinuz` alone (what the accelerator probe boots).
pub fn extract_vmlinuz(iso: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let kernel = dir.join("vmlinuz");
    extract(iso, &[("/boot/vmlinuz", &kernel)])?;
    Ok(kernel)
}

fn extract(iso: &Path, files: &[(&str, &Path)]) -> Result<(), Error> {
    let mut cmd = Command::new("xorriso");
    cmd.args(["-osirrox", "on", "-indev"]).arg(iso);
    for (from, to) in files {
        cmd.arg("-extract").arg(from).arg(to);
    }
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| Error::Xorriso {
            iso: iso.to_path_buf(),
            source,
        })?;
    let missing: Vec<&str> = files
        .iter()
        .filter(|(_, to)| !to.is_file())
        .map(|(from, _)| *from)
        .collect();
    if !status.success() || !missing.is_empty() {
        return Err(Error::Missing {
            iso: iso.to_path_buf(),
            what: if missing.is_empty() {
                files
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(" and ")
            } else {
                missing.join(" and ")
            },
        });
    }
    Ok(())
}
