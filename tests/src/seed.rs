//! cloud-init seed volumes: a small FAT filesystem labelled `CIDATA` holding `user-data` and
//! `meta-data`, made with mkfs.vfat and mtools ([`make_seed`]), and ISO 9660 seeds as
//! cloud-localds, virt-install and Proxmox write them ([`make_seed_iso`]: `cidata` for
//! NoCloud, `config-2` for a ConfigDrive), made with xorriso. No mount, no root needed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a `CIDATA` seed image at `dir/seed.img` with the given user-data and meta-data.
/// The volume is `rkos-lab`'s (the lab's seeds are the same kind of volume).
pub fn make_seed(dir: &Path, user_data: &str, meta_data: &str) -> Result<PathBuf> {
    Ok(rkos_lab::seed::write_vfat(
        dir,
        &[("user-data", user_data), ("meta-data", meta_data)],
    )?)
}

/// Writes an ISO 9660 seed (Rock Ridge and Joliet, as `genisoimage -volid cidata -joliet
/// -rock` makes it) labelled `label` at `dir/NAME.iso`, holding `files` (paths may have
/// directories: `openstack/latest/user_data`).
pub fn make_seed_iso(
    dir: &Path,
    name: &str,
    label: &str,
    files: &[(&str, &str)],
) -> Result<PathBuf> {
    let stage = dir.join(format!("{name}.tree"));
    let _ = std::fs::remove_dir_all(&stage);
    for (path, text) in files {
        let p = stage.join(path);
        std::fs::create_dir_all(p.parent().context("a file in a directory")?)?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let iso = dir.join(format!("{name}.iso"));
    let _ = std::fs::remove_file(&iso);
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", label, "-J", "-R", "-o"])
        .arg(&iso)
        .arg(&stage))?;
    Ok(iso)
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

    #[test]
    fn iso_seeds_carry_their_label_and_tree() {
        let dir = tempfile::tempdir().unwrap();
        let iso = make_seed_iso(
            dir.path(),
            "drive",
            "config-2",
            &[("openstack/latest/meta_data.json", "{\"uuid\": \"x\"}")],
        )
        .unwrap();
        let out = Command::new("xorriso")
            .args(["-indev"])
            .arg(&iso)
            .args(["-pvd_info", "-find", "/openstack/latest", "-type", "f"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Volume Id    : config-2") || log.contains("config-2"),
            "{text}{log}"
        );
        assert!(text.contains("/openstack/latest/meta_data.json"), "{text}");
    }
}
