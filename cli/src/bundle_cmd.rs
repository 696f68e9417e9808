//! `rkos bundle keygen|create|verify`: the build side of upgrade bundles (also used by
//! build/mkbundle.sh).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rkos_bundle::{sign, Source, TrustedKeys};
use rkos_contract::files::{MANIFEST, SIGNATURE};

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub cmd: BundleCmd,
}

#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    /// Generate a signing key pair: DIR/rkos.pub (bake into images) and DIR/rkos.key (secret).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a signed bundle in --out from FILEs (vmlinuz, initrd, rootfs.squashfs).
    Create {
        #[arg(long)]
        version: String,
        /// The release's rollback floor (at most --version, semver order): a node that marks
        /// this release good never installs an older version afterwards, even with
        /// --allow-downgrade. Nodes from before floors existed refuse such a bundle.
        #[arg(long, value_name = "VERSION")]
        min_version: Option<String>,
        /// The architecture the files are for (default: this machine's).
        #[arg(long, default_value = rkos_contract::arch())]
        arch: String,
        /// The secret key (rkos.key).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a bundle directory: signature with --key, then every file's size and sha256.
    Verify {
        dir: PathBuf,
        /// A public key file (repeatable).
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
    },
}

pub fn run_bundle(args: &BundleArgs) -> Result<()> {
    match &args.cmd {
        BundleCmd::Keygen { out } => {
            let (p, s) = sign::keygen(out)?;
            println!(
                "public key: {}\nsecret key: {} (keep it private)",
                p.display(),
                s.display()
            );
        }
        BundleCmd::Create {
            version,
            min_version,
            arch,
            key,
            out,
            files,
        } => {
            let m =
                sign::create_with_floor(version, min_version.as_deref(), arch, key, out, files)?;
            println!(
                "bundle {} ({}) in {}: {} files, {} bytes",
                m.version,
                m.arch,
                out.display(),
                m.files.len(),
                m.total_size()
            );
            if let Some(min) = &m.min_version {
                println!("minimum version {min}: nodes that mark it good refuse anything older");
            }
        }
        BundleCmd::Verify { dir, key } => {
            let mut keys = Vec::new();
            for k in key {
                let text = std::fs::read_to_string(k)
                    .with_context(|| format!("reading {}", k.display()))?;
                keys.push(rkos_bundle::keys::parse_public_key(
                    &text,
                    &k.display().to_string(),
                )?);
            }
            let keys = TrustedKeys::from_keys(keys, "--key")?;
            let src = Source::parse(&dir.to_string_lossy())?;
            let manifest = src.read_small(MANIFEST)?;
            let sig = src.read_small(SIGNATURE)?;
            let (m, key_id) = keys.verify_manifest(&manifest, &String::from_utf8_lossy(&sig))?;
            for f in &m.files {
                rkos_bundle::verify_file(&dir.join(&f.name), f)?;
            }
            println!(
                "bundle {} ({}) OK: signed by key {key_id}, {} files verified",
                m.version,
                m.arch,
                m.files.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(dir: &std::path::Path, version: &str, min_version: Option<&str>) -> Result<()> {
        let files = rkos_contract::files::SLOT_FILES
            .iter()
            .map(|n| {
                let p = dir.join(n);
                std::fs::write(&p, n).unwrap();
                p
            })
            .collect();
        run_bundle(&BundleArgs {
            cmd: BundleCmd::Create {
                version: version.into(),
                min_version: min_version.map(str::to_string),
                arch: "amd64".into(),
                key: dir.join("keys").join(sign::SECRET_KEY_NAME),
                out: dir.join(format!("bundle-{version}")),
                files,
            },
        })
    }

    #[test]
    fn create_with_a_min_version_at_most_its_own() {
        let d = tempfile::tempdir().unwrap();
        sign::keygen(&d.path().join("keys")).unwrap();
        let e = create(d.path(), "2.0", Some("2.1")).unwrap_err();
        assert!(
            format!("{e:#}").contains("min_version \"2.1\" is above the release's own version"),
            "{e:#}"
        );
        assert!(!d.path().join("bundle-2.0").exists(), "nothing written");
        create(d.path(), "2.0", Some("1.5")).unwrap();
        let m = std::fs::read(d.path().join("bundle-2.0").join(MANIFEST)).unwrap();
        let m = rkos_slots::Manifest::parse(&m).unwrap();
        assert_eq!(m.min_version.as_deref(), Some("1.5"));
        create(d.path(), "2.2", None).unwrap();
        let m = std::fs::read(d.path().join("bundle-2.2").join(MANIFEST)).unwrap();
        assert!(!String::from_utf8_lossy(&m).contains("min_version"));
    }
}
