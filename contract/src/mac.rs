//! MAC addresses as the farm and the node write them: the farm's inventory and URLs
//! (`/nodes/<MAC>/...`) and rkos-init's NIC choice and `${mac}` must agree on one spelling.

/// A MAC address in any usual spelling (`:` or `-` separated, any case) as `aa:bb:..`.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_in_any_spelling() {
        assert_eq!(
            normalize_mac("52-54-00-AB-CD-EF").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(
            normalize_mac("52:54:00:ab:cd:ef").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(normalize_mac("52:54:00:ab:cd"), None);
        assert_eq!(normalize_mac("52:54:00:ab:cd:eg"), None);
        assert_eq!(normalize_mac("525:4:00:ab:cd:ef"), None);
    }
}
