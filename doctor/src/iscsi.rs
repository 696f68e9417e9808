//! The node's iSCSI initiator name: the one owner of how it is made. Debian's open-iscsi
//! writes one name into `/etc/iscsi/initiatorname.iscsi` when the package is installed, so
//! every node made from one image would share it (a target's ACLs and sessions then mix
//! nodes up). rkos derives it instead from the node's machine id, which an installed node
//! keeps on `RKOS_DATA` and renews for a new instance (ARCHITECTURE.md, "Identity"): the same
//! node gets the same name at every boot, a clone gets its own, and nothing more needs to
//! persist. `rkos initiator-name --write` (rkos-iscsi-initiator.service, before iscsid) puts
//! it into the file on the overlay root at each boot.
//!
//! The suffix is systemd's app-specific machine id for [`APP_ID`] (HMAC-SHA256 keyed by the
//! machine id, machine-id(5)'s advice against exposing the id itself): on a node,
//! `systemd-id128 machine-id --app-specific=46c8dffb94fc410b9e147b6a52917f67` starts with it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rkos_contract::paths::under;
use sha2::Sha256;

/// The application id the name is derived with (`systemd-id128 new`, fixed once).
pub const APP_ID: &str = "46c8dffb94fc410b9e147b6a52917f67";
/// Debian's prefix (what `iscsi-iname -p` is given by the package), so the name looks like
/// any Debian initiator's.
pub const PREFIX: &str = "iqn.1993-08.org.debian:01:";
/// Hex digits after the prefix, as many as Debian's generated names carry.
pub const SUFFIX_LEN: usize = 12;
/// The file open-iscsi reads the name from.
pub const NAME_FILE: &str = "/etc/iscsi/initiatorname.iscsi";
/// The node's machine id.
pub const MACHINE_ID: &str = "/etc/machine-id";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a machine id (32 hex digits): {found:?}")]
    BadMachineId { path: PathBuf, found: String },
}

/// The 16 bytes of a machine id written as 32 hex digits (dashes allowed), or `None`.
fn id128(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// The initiator name of the node whose machine id is `machine_id`, or `None` when that is
/// not a machine id.
pub fn initiator_name(machine_id: &str) -> Option<String> {
    let key = id128(machine_id)?;
    let app = id128(APP_ID).expect("APP_ID is an id");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(&app);
    let digest = mac.finalize().into_bytes();
    // The leading bytes: systemd's UUID version bits (bytes 6 and 8) are past them.
    Some(format!(
        "{PREFIX}{}",
        hex::encode(&digest[..SUFFIX_LEN / 2])
    ))
}

/// The `InitiatorName=` of an initiatorname.iscsi file, if it has one.
pub fn parse(file: &str) -> Option<String> {
    file.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("InitiatorName="))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

/// Whether `name` is an iSCSI name open-iscsi and targets accept (RFC 3720 3.2.6.3): `iqn.`
/// with a `yyyy-mm.` date and a reversed domain, or `eui.` and 16 hex digits; lower case, at
/// most 223 bytes, no spaces.
pub fn well_formed(name: &str) -> bool {
    let chars_ok = name.len() <= 223
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:".contains(c));
    if !chars_ok {
        return false;
    }
    if let Some(hex) = name.strip_prefix("eui.") {
        return hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let Some(rest) = name.strip_prefix("iqn.") else {
        return false;
    };
    let b = rest.as_bytes();
    let date = b.len() > 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'.';
    date && rest[8..]
        .split(':')
        .next()
        .is_some_and(|d| !d.is_empty() && !d.starts_with('.'))
}

/// The file open-iscsi reads, as Debian's package writes it.
pub fn file_content(name: &str) -> String {
    format!(
        "## Written at boot by rkos (rkos-iscsi-initiator.service) from this node's machine id:\n\
         ## the same node keeps its name, another node or a clone gets its own.\n\
         InitiatorName={name}\n"
    )
}

/// The machine id at `ROOT/etc/machine-id`.
pub fn machine_id(root: &Path) -> Result<String, Error> {
    let path = under(root, MACHINE_ID);
    let found = fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    match id128(&found) {
        Some(_) => Ok(found.trim().to_string()),
        None => Err(Error::BadMachineId { path, found }),
    }
}

/// Writes this node's name into `ROOT/etc/iscsi/initiatorname.iscsi` (mode 0600, as Debian's)
/// unless it holds that name already. Returns the name and whether the file was written.
pub fn write(root: &Path) -> Result<(String, bool), Error> {
    let id = machine_id(root)?;
    let name = initiator_name(&id).expect("machine_id checked the id");
    let path = under(root, NAME_FILE);
    if fs::read_to_string(&path).ok().and_then(|f| parse(&f)) == Some(name.clone()) {
        return Ok((name, false));
    }
    let io_err = |source| Error::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    rkos_io::write_atomic(&path, file_content(&name).as_bytes(), 0o600).map_err(io_err)?;
    Ok((name, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn the_name_is_systemds_app_specific_id() {
        // openssl dgst -sha256 -mac HMAC -macopt hexkey:$ID over APP_ID's 16 bytes starts
        // 780240c5a482 (computed apart from this code).
        assert_eq!(
            initiator_name(ID).as_deref(),
            Some("iqn.1993-08.org.debian:01:780240c5a482")
        );
        // dashes and the newline of the file do not change it
        assert_eq!(
            initiator_name("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\n"),
            initiator_name(ID)
        );
        let other = initiator_name("1f1e2d3c4b5a69788796a5b4c3d2e1f0").unwrap();
        assert_ne!(Some(other.clone()), initiator_name(ID));
        assert!(well_formed(&other));
        assert_eq!(initiator_name("not an id"), None);
        assert_eq!(initiator_name(""), None);
    }

    #[test]
    fn names_well_formed_or_not() {
        for good in [
            "iqn.1993-08.org.debian:01:3a4315c1d857",
            "iqn.2004-10.com.ubuntu:01:abc",
            "iqn.2001-04.com.example",
            "eui.02004567a425678d",
        ] {
            assert!(well_formed(good), "{good}");
        }
        for bad in [
            "",
            "iqn.",
            "iqn.1993-8.org.debian:01:x",
            "iqn.1993-08org.debian",
            "iqn.1993-08.:01:x",
            "IQN.1993-08.org.debian:01:x",
            "iqn.1993-08.org.debian:01:with space",
            "eui.123",
            "naa.52004567ba64678d",
            "GenerateName=yes",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn parse_finds_the_name_line() {
        let debian = "## DO NOT EDIT OR REMOVE THIS FILE!\n\
                      InitiatorName=iqn.1993-08.org.debian:01:3a4315c1d857\n";
        assert_eq!(
            parse(debian).as_deref(),
            Some("iqn.1993-08.org.debian:01:3a4315c1d857")
        );
        assert_eq!(parse("GenerateName=yes\n"), None);
        assert_eq!(parse("InitiatorName=\n"), None);
        assert_eq!(parse(&file_content("iqn.x")).as_deref(), Some("iqn.x"));
    }

    #[test]
    fn write_puts_the_derived_name_and_keeps_a_right_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        assert!(matches!(write(root), Err(Error::Io { .. })));
        fs::create_dir_all(root.join("etc/iscsi")).unwrap();
        fs::write(root.join("etc/machine-id"), "garbage\n").unwrap();
        assert!(matches!(write(root), Err(Error::BadMachineId { .. })));
        fs::write(root.join("etc/machine-id"), format!("{ID}\n")).unwrap();
        // The image's shared name is replaced.
        let file = root.join("etc/iscsi/initiatorname.iscsi");
        fs::write(
            &file,
            "InitiatorName=iqn.1993-08.org.debian:01:3a4315c1d857\n",
        )
        .unwrap();
        let want = initiator_name(ID).unwrap();
        assert_eq!(write(root).unwrap(), (want.clone(), true));
        assert_eq!(
            parse(&fs::read_to_string(&file).unwrap()),
            Some(want.clone())
        );
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The next boot of the same node finds its name and leaves the file alone.
        assert_eq!(write(root).unwrap(), (want, false));
        // A clone (another machine id) gets its own.
        fs::write(
            root.join("etc/machine-id"),
            "1f1e2d3c4b5a69788796a5b4c3d2e1f0\n",
        )
        .unwrap();
        let (name, written) = write(root).unwrap();
        assert!(written);
        assert_eq!(parse(&fs::read_to_string(&file).unwrap()), Some(name));
    }
}
