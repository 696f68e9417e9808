//! Trust roots and signature checks. Keys come only from the node: the image
//! (`rkos_contract::paths::TRUSTED_KEYS_DIR`, `/usr/lib/rkos/trusted-keys/*.pub`) and `upgrade.trusted_keys` in its config; never from
//! the bundle or from a cluster object.

use base64::Engine;
use std::fs;
use std::path::Path;

use minisign_verify::{PublicKey, Signature};
use rkos_slots::Manifest;

use crate::error::{BundleError, Result};

/// A public key and where it came from (for messages).
pub struct TrustedKey {
    pub origin: String,
    pub key_id: String,
    key: PublicKey,
}

/// The node's trust roots. Never empty.
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

/// Parses one key: a minisign `.pub` file (comment line + base64) or the bare base64 line.
pub fn parse_public_key(text: &str, origin: &str) -> Result<TrustedKey> {
    let text = text.trim();
    let parsed = if text.lines().count() >= 2 {
        PublicKey::decode(text)
    } else {
        PublicKey::from_base64(text)
    };
    let key = parsed.map_err(|e| BundleError::BadKey {
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    let key_id = key_id_of(text).unwrap_or_else(|| "?".into());
    Ok(TrustedKey {
        origin: origin.to_string(),
        key_id,
        key,
    })
}

/// minisign shows a key id as 16 hex digits of the little-endian 8-byte key number.
fn key_id_of(text: &str) -> Option<String> {
    let b64 = text.lines().last()?.trim();
    let bin = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (bin.len() >= 10).then(|| {
        let mut id = [0u8; 8];
        id.copy_from_slice(&bin[2..10]);
        format!("{:016X}", u64::from_le_bytes(id))
    })
}

impl TrustedKeys {
    /// The keys in `dir` (`*.pub`, missing dir = none) plus `extra` (config strings).
    pub fn load(dir: &Path, extra: &[String]) -> Result<Self> {
        let mut keys = Vec::new();
        match fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<_> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                    .collect();
                paths.sort();
                for p in paths {
                    let text = fs::read_to_string(&p).map_err(|e| BundleError::BadKey {
                        origin: p.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    keys.push(parse_public_key(&text, &p.display().to_string())?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BundleError::BadKey {
                    origin: dir.display().to_string(),
                    reason: e.to_string(),
                })
            }
        }
        for (i, k) in extra.iter().enumerate() {
            keys.push(parse_public_key(k, &format!("upgrade.trusted_keys[{i}]"))?);
        }
        Self::from_keys(keys, &dir.display().to_string())
    }

    pub fn from_keys(keys: Vec<TrustedKey>, where_: &str) -> Result<Self> {
        if keys.is_empty() {
            return Err(BundleError::NoTrustedKeys(where_.to_string()));
        }
        Ok(TrustedKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `sig_text` (a `.minisig` file) over `manifest` and parses the manifest.
    /// Returns the manifest and the id of the key that signed it.
    pub fn verify_manifest(&self, manifest: &[u8], sig_text: &str) -> Result<(Manifest, String)> {
        let sig =
            Signature::decode(sig_text).map_err(|e| BundleError::SignatureFormat(e.to_string()))?;
        let sig_id = sig_key_id(sig_text).unwrap_or_else(|| "?".into());
        let mut matching = self.keys.iter().filter(|k| k.key_id == sig_id).peekable();
        if matching.peek().is_none() {
            return Err(BundleError::UnknownKey {
                key_id: sig_id,
                count: self.keys.len(),
            });
        }
        for k in matching {
            if k.key.verify(manifest, &sig, false).is_ok() {
                let m = Manifest::parse(manifest)?;
                return Ok((m, k.key_id.clone()));
            }
        }
        Err(BundleError::BadSignature { key_id: sig_id })
    }
}

/// The key id a signature names (second line: base64 of alg(2) + key id(8) + sig(64)).
fn sig_key_id(sig_text: &str) -> Option<String> {
    let line = sig_text.lines().nth(1)?;
    key_id_of(&format!("x\n{line}"))
}

#[cfg(all(test, feature = "sign"))]
mod tests {
    use super::*;

    /// The id shown in our errors must be the one minisign writes in the key's own comment
    /// line, or an operator cannot tell which key a refusal is about.
    #[test]
    fn key_id_matches_minisigns_comment() {
        let dir = tempfile::tempdir().unwrap();
        let (pub_path, _) = crate::sign::keygen(dir.path()).unwrap();
        let text = fs::read_to_string(pub_path).unwrap();
        let comment_id = text
            .lines()
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .to_string();
        let key = parse_public_key(&text, "test").unwrap();
        assert_eq!(key.key_id, comment_id);
        assert_eq!(key.key_id.len(), 16);
    }
}
