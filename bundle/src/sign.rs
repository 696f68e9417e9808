//! Build side: key generation and bundle creation (feature `sign`).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use minisign::{KeyPair, SecretKeyBox};
use rkos_contract::files::{MANIFEST, SIGNATURE};
use rkos_slots::manifest::{FileEntry, Manifest};

use crate::error::{BundleError, IoContext, Result};

pub const PUBLIC_KEY_NAME: &str = "rkos.pub";
pub const SECRET_KEY_NAME: &str = "rkos.key";

/// Writes a new key pair into `dir` (`rkos.pub`, and `rkos.key` with mode 0600, not
/// password-protected so builds can sign unattended: keep it off shared machines). Refuses
/// to overwrite an existing pair.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let pub_path = dir.join(PUBLIC_KEY_NAME);
    let sec_path = dir.join(SECRET_KEY_NAME);
    for p in [&pub_path, &sec_path] {
        if p.exists() {
            return Err(BundleError::Refused(format!(
                "{} exists; not overwriting a signing key",
                p.display()
            )));
        }
    }
    let kp =
        KeyPair::generate_unencrypted_keypair().map_err(|e| BundleError::Sign(e.to_string()))?;
    let pk_box = kp
        .pk
        .to_box()
        .map_err(|e| BundleError::Sign(e.to_string()))?;
    let sk_box = kp
        .sk
        .to_box(None)
        .map_err(|e| BundleError::Sign(e.to_string()))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&sec_path)
        .ctx(|| format!("creating {}", sec_path.display()))?;
    f.write_all(sk_box.to_string().as_bytes())
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", sec_path.display()))?;
    fs::write(&pub_path, pk_box.to_string()).ctx(|| format!("writing {}", pub_path.display()))?;
    Ok((pub_path, sec_path))
}

/// Signs `data` with the secret key file at `key`; returns the `.minisig` text.
pub fn sign_bytes(data: &[u8], key: &Path, trusted_comment: &str) -> Result<String> {
    let text = fs::read_to_string(key).ctx(|| format!("reading {}", key.display()))?;
    let sk = SecretKeyBox::from_string(&text)
        .and_then(|b| b.into_unencrypted_secret_key())
        .map_err(|e| BundleError::Sign(format!("{}: {e}", key.display())))?;
    let sig = minisign::sign(
        None,
        &sk,
        io::Cursor::new(data),
        Some(trusted_comment),
        None,
    )
    .map_err(|e| BundleError::Sign(e.to_string()))?;
    Ok(sig.to_string())
}

/// Makes a bundle in `out`: copies of `files` (by base name), `manifest.json` and its
/// signature. The manifest is validated (the three slot files must be present).
pub fn create(
    version: &str,
    arch: &str,
    key: &Path,
    out: &Path,
    files: &[PathBuf],
) -> Result<Manifest> {
    create_with_floor(version, None, arch, key, out, files)
}

/// [`create`], with the release's rollback floor (`min_version`, at most `version`): a node
/// that marks this release good never installs anything older afterwards. The manifest then
/// has a field that nodes from before floors existed refuse to read.
pub fn create_with_floor(
    version: &str,
    min_version: Option<&str>,
    arch: &str,
    key: &Path,
    out: &Path,
    files: &[PathBuf],
) -> Result<Manifest> {
    let mut entries = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BundleError::Refused(format!("{}: no usable file name", f.display())))?
            .to_string();
        let h = rkos_io::sha256_file(f).ctx(|| format!("reading {}", f.display()))?;
        entries.push(FileEntry {
            name,
            size: h.size,
            sha256: h.sha256,
        });
    }
    let manifest = Manifest {
        version: version.to_string(),
        min_version: min_version.map(str::to_string),
        arch: arch.to_string(),
        files: entries,
    };
    manifest.validate()?;
    let json = manifest.to_json();
    let sig = sign_bytes(&json, key, &format!("rkos {version} {arch}"))?;
    fs::create_dir_all(out).ctx(|| format!("creating {}", out.display()))?;
    for f in files {
        let dest = out.join(f.file_name().expect("checked above"));
        if fs::canonicalize(f).ok() != fs::canonicalize(&dest).ok() {
            fs::copy(f, &dest).ctx(|| format!("copying {} to {}", f.display(), dest.display()))?;
        }
    }
    fs::write(out.join(SIGNATURE), sig)
        .ctx(|| format!("writing signature in {}", out.display()))?;
    fs::write(out.join(MANIFEST), &json)
        .ctx(|| format!("writing manifest in {}", out.display()))?;
    Ok(manifest)
}
