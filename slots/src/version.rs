//! How rkos orders release versions: semver precedence, with the short forms bundles have been
//! made with. One rule for every version comparison (no downgrade, the signed minimum version
//! in a manifest, the node's floor), here because rkos-slots owns the manifest and the node's
//! state, and rkos-bundle (the upgrade's checks) links it.

use std::cmp::Ordering;

/// Orders two versions by semver precedence (build metadata ignored), `None` when either is
/// not a version. A leading `v` and a short form (`2`, `1.5`: the missing numbers are 0) are
/// accepted, since bundles have been made with such versions.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_version(a)?.cmp_precedence(&parse_version(b)?))
}

/// Whether `v` is a version [`compare_versions`] can order.
pub fn is_version(v: &str) -> bool {
    parse_version(v).is_some()
}

fn parse_version(v: &str) -> Option<semver::Version> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core_end = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(core_end);
    let numbers = core.split('.').count();
    if numbers == 0 || numbers > 3 {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(3 - numbers));
    semver::Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_semver() {
        let lt = |a, b| assert_eq!(compare_versions(a, b), Some(Ordering::Less), "{a} < {b}");
        lt("1.0", "1.5");
        lt("1.5.0", "2");
        lt("1.9.0", "1.10.0");
        lt("2", "33");
        lt("v0.1.0", "0.2.0");
        lt("1.0.0-rc.1", "1.0.0");
        lt("1.0.0-alpha", "1.0.0-alpha.1");
        assert_eq!(
            compare_versions("1.0.0+a", "1.0.0+b"),
            Some(Ordering::Equal)
        );
        assert_eq!(compare_versions("1", "1.0.0"), Some(Ordering::Equal));
        for bad in ["", "dev", "1.2.3.4", "1..2", "01.2.3", "1.2.x"] {
            assert_eq!(compare_versions(bad, "1.0.0"), None, "{bad:?}");
            assert!(!is_version(bad), "{bad:?}");
        }
        assert!(is_version("v1.5"));
    }
}
