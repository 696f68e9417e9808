//! `/proc/self/mountinfo` (proc(5)): which mount holds a path, from which device, with which
//! propagation.

use std::path::Path;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device.
    pub device: String,
    /// The directory of the file system mounted here (a bind's source inside it).
    pub root: String,
    pub mount_point: String,
    /// Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
}

impl Mount {
    /// Mount propagation `shared`: mounts made under it show in other namespaces that share
    /// it (what the kubelet's and a CSI plugin's `Bidirectional` mounts need).
    pub fn shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts of a mountinfo text, in order; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let mut h = head.split_whitespace();
            let (_id, _parent) = (h.next()?, h.next()?);
            let device = h.next()?.to_string();
            let root = unescape(h.next()?);
            let mount_point = unescape(h.next()?);
            let _options = h.next()?;
            let optional = h.map(str::to_string).collect();
            let mut t = tail.split_whitespace();
            Some(Mount {
                device,
                root,
                mount_point,
                optional,
                fstype: t.next()?.to_string(),
                source: unescape(t.next().unwrap_or("")),
            })
        })
        .collect()
}

/// The mount that holds `path`: the longest mount point that is `path` or a directory above
/// it, the last one mounted when several are stacked.
pub fn containing<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let path = Path::new(path);
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.len(), *i))
        .map(|(_, m)| m)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const INSTALLED: &str = "\
22 1 0:20 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/run/rkos/image
25 22 254:4 / /run/rkos/data rw,relatime shared:5 - ext4 /dev/vda4 rw
26 22 254:4 /var/lib/longhorn /var/lib/longhorn rw,relatime shared:5 - ext4 /dev/vda4 rw
27 22 254:4 /var/lib/kubelet /var/lib/kubelet rw,relatime shared:5 - ext4 /dev/vda4 rw
28 22 0:30 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let m = parse(INSTALLED);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].mount_point, "/");
        assert!(m[0].shared());
        assert_eq!(m[2].device, "254:4");
        assert_eq!(m[2].root, "/var/lib/longhorn");
        assert_eq!(m[2].source, "/dev/vda4");
        assert_eq!(m[4].mount_point, "/mnt/with space");
        assert!(!m[4].shared());
        assert!(parse("garbage\n").is_empty());
    }

    #[test]
    fn the_longest_and_latest_mount_holds_a_path() {
        let mut m = parse(INSTALLED);
        let at = |m: &[Mount], p: &str| containing(m, p).map(|x| x.mount_point.clone());
        assert_eq!(
            at(&m, "/var/lib/longhorn/replicas").as_deref(),
            Some("/var/lib/longhorn")
        );
        assert_eq!(at(&m, "/var/lib/longhornish").as_deref(), Some("/"));
        assert_eq!(at(&m, "/etc").as_deref(), Some("/"));
        // a later mount on the same point hides the earlier one
        m.extend(parse(
            "40 26 0:44 / /var/lib/longhorn rw - tmpfs tmpfs rw\n",
        ));
        assert_eq!(containing(&m, "/var/lib/longhorn").unwrap().fstype, "tmpfs");
        assert_eq!(containing(&[], "/"), None);
    }
}
