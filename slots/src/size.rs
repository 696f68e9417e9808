//! Byte counts for people: disks in the installer and the boot failure message, slot files.

/// `512 B`, `1.5 KiB`, `8.0 GiB`: binary units, one decimal above bytes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(8 << 30), "8.0 GiB");
        assert_eq!(human_size(3 << 40), "3.0 TiB");
        assert_eq!(human_size(5 << 50), "5120.0 TiB");
    }
}
