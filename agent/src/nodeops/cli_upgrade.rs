//! `rkos upgrade --bundle URL --expect-version V`: what its human output says about the
//! download (the figures the agent reports in the NodeUpgrade's status).

use std::path::Path;

use super::STATE_MOUNT;

/// The byte count in `rkos upgrade`'s summary line ("... N bytes downloaded, M resumed").
pub fn downloaded_bytes(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        let before = &l[..l.find(" bytes downloaded")?];
        before.rsplit([' ', '(', ';']).next()?.parse().ok()
    })
}

/// The first thing it said (its verdict: what it staged, or why it had nothing to do).
pub(super) fn first_line(stdout: &str) -> Option<&str> {
    stdout.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Size of the files in the slot that is not `active` (the one just staged).
pub(super) fn slot_bytes(host_root: &Path, active: &str) -> Option<u64> {
    let other = if active == "A" { "B" } else { "A" };
    for state in [STATE_MOUNT, "mnt/state"] {
        let dir = host_root.join(state).join("slots").join(other);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            return Some(
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_count_from_the_upgrade_summary() {
        let out = "verifying...\nstaged version 2 in slot B (signed by key 1A2B; 734003200 bytes downloaded, 0 resumed)\nreboot to switch\n";
        assert_eq!(downloaded_bytes(out), Some(734_003_200));
        assert_eq!(
            downloaded_bytes("already running version 2; nothing to do"),
            None
        );
        assert_eq!(first_line(out), Some("verifying..."));
        assert_eq!(first_line("\n  \n"), None);
    }
}
