//! multipath.conf's `blacklist` section: whether multipathd keeps off the SCSI disks Longhorn
//! attaches over iSCSI (`/dev/sdX`). Longhorn's knowledge base: with multipathd claiming them,
//! a volume's mount fails with "already mounted or mount point busy"; the fix is
//! `blacklist { devnode "^sd[a-z0-9]+" }`.

use regex::Regex;

/// The `devnode` patterns directly in `blacklist { ... }` sections of a multipath.conf text
/// (not those of `blacklist_exceptions`, nor `device { }` blocks inside the section).
pub fn blacklisted_devnodes(conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    // nesting depth, and whether the depth-1 section is a blacklist
    let (mut depth, mut in_blacklist) = (0usize, false);
    for raw in conf.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if line.ends_with('{') {
            if depth == 0 {
                in_blacklist = first == "blacklist";
            }
            depth += 1;
            continue;
        }
        if line.starts_with('}') {
            depth = depth.saturating_sub(1);
            continue;
        }
        if depth == 1 && in_blacklist && first == "devnode" {
            let value = line["devnode".len()..].trim().trim_matches('"');
            out.push(value.to_string());
        }
    }
    out
}

/// Whether some pattern of `patterns` matches the device names Longhorn's iSCSI disks get.
pub fn covers_scsi_disks(patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        Regex::new(p).is_ok_and(|re| ["sda", "sdb", "sdz", "sdaa"].iter().all(|d| re.is_match(d)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longhorns_blacklist_is_found() {
        let conf = "defaults {\n    user_friendly_names yes\n}\n\
                    blacklist {\n    devnode \"^sd[a-z0-9]+\"   # Longhorn\n    \
                    device {\n        vendor \"IET\"\n        devnode \"^nope\"\n    }\n}\n";
        let p = blacklisted_devnodes(conf);
        assert_eq!(p, vec!["^sd[a-z0-9]+".to_string()]);
        assert!(covers_scsi_disks(&p));
    }

    #[test]
    fn exceptions_and_other_patterns_do_not_count() {
        let conf = "blacklist_exceptions {\n    devnode \"^sd[a-z]+\"\n}\n\
                    blacklist {\n    devnode \"^(ram|loop|fd|md|dm-|sr|scd|st)[0-9]*\"\n}\n";
        let p = blacklisted_devnodes(conf);
        assert_eq!(p.len(), 1);
        assert!(!covers_scsi_disks(&p));
        assert!(!covers_scsi_disks(&[]));
        // a pattern that is no regular expression covers nothing
        assert!(!covers_scsi_disks(&["^sd[".to_string()]));
    }
}
