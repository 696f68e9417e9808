//! The system side of the wizard that is not the disk install: writing the node's config and
//! applying it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rkos_contract::paths;
use rkos_io::write_atomic;

/// `ROOT/var/lib/rkos/config.yaml`.
pub fn config_path(root: &Path) -> PathBuf {
    paths::under(root, paths::PERSISTENT_CONFIG)
}

/// Writes the persistent config atomically with mode 0600 (it holds the token and the
/// password hash); the directory is made 0700 if it has to be created.
pub fn write_config(root: &Path, yaml: &str) -> std::io::Result<PathBuf> {
    let path = config_path(root);
    let dir = path.parent().expect("config path has a parent");
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    write_atomic(&path, yaml.as_bytes(), 0o600)?;
    Ok(path)
}

/// Runs `rkos config apply --stage network` (the same binary) so the new config takes
/// effect: files rendered, `github:` keys fetched, k3s restarted with the new role. The
/// network stage because the node is up: it is what the boot's second apply does.
pub fn apply(rkos_binary: &Path) -> Result<(), String> {
    let status = Command::new(rkos_binary)
        .args(["config", "apply", "--stage", "network"])
        .status()
        .map_err(|e| format!("could not run {} config apply: {e}", rkos_binary.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rkos config apply --stage network` failed ({status})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_config_0600_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = write_config(t.path(), "hostname: a\n").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        write_config(t.path(), "hostname: b\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "hostname: b\n");
    }
}
