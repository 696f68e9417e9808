//! The node's identity on an installed disk: its machine id, SSH host keys and default host
//! name (derived from the machine id) belong to one *instance*. A VM cloned from the disk
//! image is a new instance: a new cloud-init `instance-id` in its seed, or, without a seed,
//! a new machine (another SMBIOS system UUID, else another primary MAC). On the first boot
//! of a new instance the old identity is dropped from `RKOS_DATA` and made anew; the same
//! instance keeps it across reboots and upgrades. See ARCHITECTURE.md, "Identity".
//!
//! The decision ([`decide`]) is pure; [`Identity::renew`] removes the old identity under
//! the data volume's mount (a parameter, for the tests).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rkos_contract::paths::{self, under};
use serde::{Deserialize, Serialize};

/// Where the identity record is kept on the data volume mounted at `data`
/// (`RKOS_DATA:/var/lib/rkos/identity.json`, the persistent `/var/lib/rkos`).
pub fn record_path(data: &Path) -> PathBuf {
    under(data, paths::IDENTITY_RECORD)
}

/// Files of an identity on the data volume: removed when the instance is new. The k3s node
/// password is there because the server ties a node name to it; a clone must make its own.
pub const IDENTITY_FILES: &[&str] = &[
    "etc/machine-id",
    "etc/ssh/keys/ssh_host_ed25519_key",
    "etc/ssh/keys/ssh_host_ed25519_key.pub",
    "etc/ssh/keys/ssh_host_ecdsa_key",
    "etc/ssh/keys/ssh_host_ecdsa_key.pub",
    "etc/ssh/keys/ssh_host_rsa_key",
    "etc/ssh/keys/ssh_host_rsa_key.pub",
    "etc/rancher/node/password",
];

/// Which instance this is: the seed's instance id, and the machine (`dmi:UUID` or
/// `mac:ADDRESS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub instance_id: Option<String>,
    pub machine: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same instance: keep the identity.
    Keep,
    /// No record yet, but the node has a machine id (installed before identities were
    /// recorded): adopt it as this instance's.
    Adopt,
    /// A new instance: make a new identity. The reason is logged.
    New(String),
}

/// Decides from the record on the data volume (`stored`), whether the volume holds a
/// machine id already, and the instance now booting.
pub fn decide(stored: Option<&Identity>, has_machine_id: bool, now: &Identity) -> Decision {
    let Some(stored) = stored else {
        return if has_machine_id {
            Decision::Adopt
        } else {
            Decision::New("first boot".into())
        };
    };
    match (&stored.instance_id, &now.instance_id) {
        (Some(a), Some(b)) if a != b => {
            return Decision::New(format!("instance-id `{a}` became `{b}`"))
        }
        (Some(_), Some(_)) => return Decision::Keep,
        (None, Some(b)) => return Decision::New(format!("a seed with instance-id `{b}`")),
        // No seed now (detached after the first boot): the machine tells.
        _ => {}
    }
    match (&stored.machine, &now.machine) {
        (Some(a), Some(b)) if a != b => Decision::New(format!("machine `{a}` became `{b}`")),
        _ => Decision::Keep,
    }
}

/// The machine as the firmware names it: the SMBIOS system UUID when it is a real one (not
/// all zeros or all ones, which hypervisors give when none is set), else the primary MAC.
pub fn machine(product_uuid: Option<&str>, primary_mac: Option<&str>) -> Option<String> {
    let uuid = product_uuid
        .map(|u| u.trim().to_ascii_lowercase())
        .filter(|u| {
            let hex: String = u.chars().filter(char::is_ascii_hexdigit).collect();
            hex.len() == 32 && hex.chars().any(|c| c != '0') && hex.chars().any(|c| c != 'f')
        });
    match (uuid, primary_mac) {
        (Some(u), _) => Some(format!("dmi:{u}")),
        (None, Some(m)) => Some(format!("mac:{}", m.to_ascii_lowercase())),
        (None, None) => None,
    }
}

impl Identity {
    /// The record on the data volume mounted at `data`, if there is a readable one.
    pub fn stored(data: &Path) -> Option<Identity> {
        let text = fs::read_to_string(record_path(data)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes this identity as the record on `data` (atomically, 0644).
    pub fn record(&self, data: &Path) -> io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)? + "\n";
        let path = record_path(data);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        rkos_io::write_atomic(&path, json.as_bytes(), 0o644)
    }

    /// Removes the previous instance's identity from `data`: its machine id, SSH host keys
    /// and k3s node password. Returns what was removed.
    pub fn renew(data: &Path) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for f in IDENTITY_FILES {
            match fs::remove_file(data.join(f)) {
                Ok(()) => removed.push((*f).to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{f}: {e}"))),
            }
        }
        Ok(removed)
    }
}

/// The disk boot's identity stage: a new instance drops the previous one's
/// machine id, SSH host keys and k3s node password from `RKOS_DATA` before the machine id is
/// made. Returns the instance, why its identity is new (if it is), and whether its record
/// on the data volume was written.
/// `sys` is normally `/sys`.
pub fn stage(
    sysroot: &Path,
    data: &Path,
    sys: &Path,
) -> Result<(Identity, Option<String>, bool), String> {
    let instance_id = rkos_config::cloudinit::instance_id(sysroot).map(|(id, _)| id);
    let uuid = fs::read_to_string(sys.join("class/dmi/id/product_uuid")).ok();
    let mac = rkos_config::primary_mac(&sys.join("class/net"));
    let now = Identity {
        instance_id,
        machine: machine(uuid.as_deref(), mac.as_deref()),
    };
    let stored = Identity::stored(data);
    let has_id = data.join("etc/machine-id").is_file();
    let reason = match decide(stored.as_ref(), has_id, &now) {
        Decision::Keep => None,
        Decision::Adopt => {
            tracing::info!("identity: recording this instance for the machine id it has");
            None
        }
        Decision::New(why) => {
            let removed = Identity::renew(data).map_err(|e| format!("identity: {e}"))?;
            tracing::info!(
                "identity: new instance ({why}); removed {}",
                removed.join(", ")
            );
            Some(why)
        }
    };
    let write = stored.as_ref() != Some(&now);
    if write {
        now.record(data)
            .map_err(|e| format!("identity record: {e}"))?;
    }
    Ok((now, reason, write))
}

/// What `/run/rkos/identity.json` (`rkos_contract::paths::IDENTITY_REPORT`) tells the booted
/// system and the tests.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    pub instance_id: Option<&'a str>,
    pub machine: Option<&'a str>,
    /// Whether this boot made a new identity, and why.
    pub new: bool,
    pub reason: Option<&'a str>,
    pub machine_id: Option<&'a str>,
    /// The host name the node has when its config names none.
    pub default_hostname: &'a str,
}

impl Report<'_> {
    /// Writes the report as `ROOT/run/rkos/identity.json`.
    pub fn write(&self, root: &Path) -> io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)? + "\n";
        fs::write(under(root, paths::IDENTITY_REPORT), json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(instance: Option<&str>, machine: Option<&str>) -> Identity {
        Identity {
            instance_id: instance.map(str::to_string),
            machine: machine.map(str::to_string),
        }
    }

    #[test]
    fn a_new_instance_id_or_machine_makes_a_new_identity() {
        let a = id(Some("clone-a"), Some("mac:52:54:00:00:00:01"));
        assert_eq!(decide(None, false, &a), Decision::New("first boot".into()));
        assert_eq!(decide(None, true, &a), Decision::Adopt);
        assert_eq!(decide(Some(&a), true, &a), Decision::Keep);
        // the seed detached after the first boot: the same machine keeps its identity
        let no_seed = id(None, Some("mac:52:54:00:00:00:01"));
        assert_eq!(decide(Some(&a), true, &no_seed), Decision::Keep);
        // a clone with another instance-id, even on the same MAC
        let b = id(Some("clone-b"), Some("mac:52:54:00:00:00:01"));
        assert_eq!(
            decide(Some(&a), true, &b),
            Decision::New("instance-id `clone-a` became `clone-b`".into())
        );
        // the same instance-id on another machine is the same instance (cloud-init's rule)
        let moved = id(Some("clone-a"), Some("dmi:1234"));
        assert_eq!(decide(Some(&a), true, &moved), Decision::Keep);
        // without seeds, a copy of the disk on another machine is a new instance
        let copied = id(None, Some("dmi:99"));
        assert_eq!(
            decide(Some(&no_seed), true, &copied),
            Decision::New("machine `mac:52:54:00:00:00:01` became `dmi:99`".into())
        );
        // a seed attached to a node that had none
        assert!(matches!(decide(Some(&no_seed), true, &a), Decision::New(_)));
        // nothing known about the machine: keep rather than churn
        assert_eq!(
            decide(Some(&no_seed), true, &id(None, None)),
            Decision::Keep
        );
    }

    #[test]
    fn machine_names() {
        assert_eq!(
            machine(
                Some("4C4C4544-0042-3510-8052-B4C04F4E4B32\n"),
                Some("52:54:00:AA:00:01")
            ),
            Some("dmi:4c4c4544-0042-3510-8052-b4c04f4e4b32".into())
        );
        assert_eq!(
            machine(
                Some("00000000-0000-0000-0000-000000000000"),
                Some("52:54:00:AA:00:01")
            ),
            Some("mac:52:54:00:aa:00:01".into())
        );
        assert_eq!(
            machine(Some("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), None),
            None
        );
        assert_eq!(machine(Some("garbage"), None), None);
    }

    #[test]
    fn the_stage_on_a_clone_then_on_its_reboot() {
        let d = tempfile::tempdir().unwrap();
        let (root, data, sys) = (
            d.path().join("root"),
            d.path().join("data"),
            d.path().join("sys"),
        );
        let put = |p: &Path, t: &str| {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, t).unwrap();
        };
        put(
            &root.join("run/rkos/cidata/meta-data"),
            "instance-id: clone-1\n",
        );
        put(
            &sys.join("class/dmi/id/product_uuid"),
            "00000000-0000-0000-0000-000000000000\n",
        );
        // the gold image's first boot: nothing on the data volume yet
        let (now, why, written) = stage(&root, &data, &sys).unwrap();
        assert_eq!(now.instance_id.as_deref(), Some("clone-1"));
        assert_eq!(now.machine, None, "no MAC, no real UUID");
        assert_eq!((why.as_deref(), written), (Some("first boot"), true));
        put(
            &data.join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        );
        put(&data.join("etc/ssh/keys/ssh_host_ed25519_key"), "key");
        // its reboot: kept, nothing written
        assert_eq!(stage(&root, &data, &sys).unwrap(), (now, None, false));
        assert!(data.join("etc/machine-id").exists());
        // the disk cloned again with a new seed
        put(
            &root.join("run/rkos/cidata/meta-data"),
            "instance-id: clone-2\n",
        );
        let (_, why, written) = stage(&root, &data, &sys).unwrap();
        assert_eq!(
            why.as_deref(),
            Some("instance-id `clone-1` became `clone-2`")
        );
        assert!(written);
        assert!(!data.join("etc/machine-id").exists());
        assert!(!data.join("etc/ssh/keys/ssh_host_ed25519_key").exists());
    }

    #[test]
    fn renew_removes_the_old_identity_and_records_the_new() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        for f in [
            "etc/machine-id",
            "etc/ssh/keys/ssh_host_ed25519_key",
            "etc/ssh/keys/other",
            "etc/rancher/node/password",
        ] {
            let p = data.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        }
        let removed = Identity::renew(data).unwrap();
        assert_eq!(
            removed,
            [
                "etc/machine-id",
                "etc/ssh/keys/ssh_host_ed25519_key",
                "etc/rancher/node/password"
            ]
        );
        assert!(
            data.join("etc/ssh/keys/other").exists(),
            "only identity files go"
        );
        let now = id(Some("i-1"), Some("mac:x"));
        assert_eq!(Identity::stored(data), None);
        now.record(data).unwrap();
        assert_eq!(Identity::stored(data), Some(now));
    }
}
