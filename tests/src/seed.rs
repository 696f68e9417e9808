//! NoCloud seed volumes: a small FAT filesystem labelled `CIDATA` holding `user-data` and
//! `meta-data`, made with mkfs.vfat and mtools (no mount, no root needed).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a `CIDATA` seed image at `dir/seed.img` with the given user-data and meta-data.
pub fn make_seed(dir: &Path, user_data: &str, meta_data: &str) -> Result<PathBuf> {
    let img = dir.join("seed.img");
    let ud = dir.join("user-data");
    let md = dir.join("meta-data");
    std::fs::write(&ud, user_data).context("writing user-data")?;
    std::fs::write(&md, meta_data).context("writing meta-data")?;
    let _ = std::fs::remove_file(&img);
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", rkos_contract::label::CIDATA])
        .arg(&img)
        .arg("2048"))?;
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(&ud)
        .arg(&md)
        .arg("::/"))?;
    Ok(img)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (dosfstools, mtools)"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_volume_is_labelled_cidata_and_holds_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let img = make_seed(
            dir.path(),
            "#cloud-config\nhostname: a\n",
            "instance-id: a\n",
        )
        .unwrap();
        let out = Command::new("mdir")
            .arg("-i")
            .arg(&img)
            .arg("::/")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(listing.contains("cidata"), "{listing}");
        assert!(
            listing.contains("user-data") && listing.contains("meta-data"),
            "{listing}"
        );
        let copied = dir.path().join("back");
        let ok = Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg("::/user-data")
            .arg(&copied)
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(
            std::fs::read_to_string(copied).unwrap(),
            "#cloud-config\nhostname: a\n"
        );
    }
}
