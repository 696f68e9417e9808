//! A node that booted from the network (`init.json`'s mode is `netboot`) has no slots: its
//! image is whatever the farm serves at its next boot. The same plan drives it: "stage" only
//! records, in the node's `/run` (gone at the next boot), the version the reboot is for; the
//! reboot then boots what the farm serves, and the version the node comes back with is
//! checked against the plan's as for a disk (a farm still serving the old image makes the
//! attempt fail as rolled back, counted towards `maxFailures`).

use rkos_contract::{BootMode, InitReport};

use super::{Booted, NodeFacts};

/// The boot report, if it says the node booted from the network.
pub fn netboot_report(init_json: &str) -> Option<InitReport> {
    serde_json::from_str::<InitReport>(init_json)
        .ok()
        .filter(|r| r.mode == BootMode::Netboot)
}

/// The marker "stage" writes: the version and the boot it was written in.
pub fn armed_marker(version: &str, boot_id: &str) -> String {
    format!("{version}\n{}\n", boot_id.trim())
}

/// The facts of a netboot node: the version rkos-init booted (checked equal to the signed
/// manifest's), and the reboot armed for a version when the marker was written in this boot.
pub fn facts(report: &InitReport, boot_id: &str, marker: Option<&str>) -> NodeFacts {
    let boot_id = boot_id.trim().to_string();
    let trial_armed = marker.and_then(|m| {
        let mut lines = m.lines();
        let version = lines.next()?.trim().to_string();
        (lines.next()?.trim() == boot_id && !version.is_empty()).then_some(version)
    });
    NodeFacts {
        version: report.version.clone(),
        slot: Booted::Netboot,
        boot_id,
        staged: None,
        trial_armed,
        running_on_trial: false,
        rolled_back: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_netboot_node_is_known_by_its_boot_report() {
        let r = InitReport::new("0.2.0", BootMode::Netboot);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(netboot_report(&json).unwrap().version, "0.2.0");
        let disk = serde_json::to_string(&InitReport::new("0.2.0", BootMode::Disk)).unwrap();
        assert!(netboot_report(&disk).is_none());
        assert!(netboot_report("not json").is_none());
    }

    #[test]
    fn the_reboot_is_armed_only_in_the_boot_that_armed_it() {
        let r = InitReport::new("0.1.0", BootMode::Netboot);
        let f = facts(&r, "boot-1\n", None);
        assert_eq!((f.version.as_str(), f.slot), ("0.1.0", Booted::Netboot));
        assert_eq!(
            (f.staged, f.trial_armed, f.running_on_trial),
            (None, None, false)
        );
        let marker = armed_marker("0.2.0", "boot-1\n");
        assert_eq!(
            facts(&r, "boot-1", Some(&marker)).trial_armed.as_deref(),
            Some("0.2.0")
        );
        // After the reboot (a new boot id; /run is new too, but a stale copy must not count).
        assert_eq!(facts(&r, "boot-2", Some(&marker)).trial_armed, None);
        assert_eq!(facts(&r, "boot-1", Some("garbage")).trial_armed, None);
    }
}
