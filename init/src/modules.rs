//! Kernel module resolution from depmod's text indexes (`modules.dep`, `modules.alias`,
//! `modules.softdep`, `modules.builtin`): which `.ko` files to load, in which order, for a
//! module name, an alias or a device's `modalias`. Pure; loading is in [`crate::system`].

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no module or alias named {0:?} in modules.dep/modules.alias")]
    Unknown(String),
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    /// Names, in modules.dep order (load them in reverse).
    deps: Vec<String>,
}

/// The parsed indexes of one `/lib/modules/<kver>` directory.
#[derive(Debug, Default, Clone)]
pub struct ModuleIndex {
    entries: HashMap<String, Entry>,
    /// Alias patterns keyed by the bus prefix before the first ':' (or the whole literal
    /// prefix for aliases without one), so a modalias is only matched against its own bus.
    aliases: HashMap<String, Vec<(String, String)>>,
    softdeps: HashMap<String, (Vec<String>, Vec<String>)>,
    builtin: HashSet<String>,
}

/// Module names use '_' and '-' interchangeably; the kernel reports them with '_'.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/fs/ext4/ext4.ko` -> `ext4` (also for compressed `.ko.xz` and friends).
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalize(stem)
}

fn alias_key(pattern: &str) -> &str {
    match pattern.find(':') {
        Some(i) => &pattern[..i],
        None => "",
    }
}

impl ModuleIndex {
    /// Parses the text of the indexes; module paths are resolved against `dir`.
    pub fn parse(dir: &Path, dep: &str, alias: &str, softdep: &str, builtin: &str) -> Self {
        let mut idx = ModuleIndex::default();
        for line in dep.lines() {
            let Some((module, deps)) = line.split_once(':') else {
                continue;
            };
            let module = module.trim();
            if module.is_empty() {
                continue;
            }
            let path = if module.starts_with('/') {
                PathBuf::from(module)
            } else {
                dir.join(module)
            };
            let deps = deps.split_whitespace().map(name_of).collect();
            idx.entries.insert(name_of(module), Entry { path, deps });
        }
        for line in alias.lines() {
            let mut it = line.split_whitespace();
            if let (Some("alias"), Some(pat), Some(module)) = (it.next(), it.next(), it.next()) {
                let key = if pat.contains(':') {
                    alias_key(pat)
                } else {
                    ""
                };
                idx.aliases
                    .entry(key.to_string())
                    .or_default()
                    .push((pat.to_string(), normalize(module)));
            }
        }
        for line in softdep.lines() {
            let mut it = line.split_whitespace();
            if it.next() != Some("softdep") {
                continue;
            }
            let Some(module) = it.next() else { continue };
            let (mut pre, mut post) = (Vec::new(), Vec::new());
            let mut into_pre = true;
            for w in it {
                match w {
                    "pre:" => into_pre = true,
                    "post:" => into_pre = false,
                    m if into_pre => pre.push(m.to_string()),
                    m => post.push(m.to_string()),
                }
            }
            let e = idx.softdeps.entry(normalize(module)).or_default();
            e.0.extend(pre);
            e.1.extend(post);
        }
        idx.builtin = builtin
            .lines()
            .map(|l| name_of(l.trim()))
            .filter(|n| !n.is_empty())
            .collect();
        idx
    }

    /// Reads the indexes from a modules directory. `modules.dep` is required; the others
    /// are optional (a minimal initramfs may carry no soft dependencies).
    pub fn load(dir: &Path) -> Result<Self, ModulesError> {
        let read = |name: &str, required: bool| -> Result<String, ModulesError> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
                Err(source) => Err(ModulesError::Read { path, source }),
            }
        };
        Ok(Self::parse(
            dir,
            &read("modules.dep", true)?,
            &read("modules.alias", false)?,
            &read("modules.softdep", false)?,
            &read("modules.builtin", false)?,
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn has_module(&self, name: &str) -> bool {
        self.entries.contains_key(&normalize(name))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// Module names whose alias patterns match `alias` (a device modalias or a name such as
    /// `fs-ext4`), in index order, without duplicates.
    pub fn match_alias(&self, alias: &str) -> Vec<String> {
        let key = if alias.contains(':') {
            alias_key(alias)
        } else {
            ""
        };
        let mut out: Vec<String> = Vec::new();
        let groups = [
            self.aliases.get(key),
            if key.is_empty() {
                None
            } else {
                self.aliases.get("")
            },
        ];
        for group in groups.into_iter().flatten() {
            for (pat, module) in group {
                if fnmatch(pat.as_bytes(), alias.as_bytes()) && !out.contains(module) {
                    out.push(module.clone());
                }
            }
        }
        out
    }

    /// The files to load for `name` (a module name or an alias), dependencies and soft
    /// `pre:` dependencies first. Built-in modules resolve to nothing.
    pub fn resolve(&self, name: &str) -> Result<Vec<PathBuf>, ModulesError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.resolve_into(name, &mut out, &mut seen)?;
        Ok(out)
    }

    /// Like [`resolve`](Self::resolve) but appends to `out`, skipping what `seen` holds, so a
    /// caller can resolve several names into one load order.
    pub fn resolve_into(
        &self,
        name: &str,
        out: &mut Vec<PathBuf>,
        seen: &mut HashSet<String>,
    ) -> Result<(), ModulesError> {
        let n = normalize(name);
        if self.builtin.contains(&n) {
            return Ok(());
        }
        if self.entries.contains_key(&n) {
            self.visit(&n, out, seen);
            return Ok(());
        }
        let matches = self.match_alias(name);
        if matches.is_empty() {
            return Err(ModulesError::Unknown(name.to_string()));
        }
        for m in matches {
            if self.builtin.contains(&m) {
                continue;
            }
            if self.entries.contains_key(&m) {
                self.visit(&m, out, seen);
            }
        }
        Ok(())
    }

    fn visit(&self, name: &str, out: &mut Vec<PathBuf>, seen: &mut HashSet<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        let soft = self.softdeps.get(name);
        // Soft dependencies are best effort, as in modprobe: a missing one is not an error.
        for pre in soft.map(|s| s.0.as_slice()).unwrap_or_default() {
            let _ = self.resolve_into(pre, out, seen);
        }
        // depmod lists the full dependency closure with the deepest last.
        for dep in entry.deps.iter().rev() {
            if !self.builtin.contains(dep) {
                self.visit(dep, out, seen);
            }
        }
        out.push(entry.path.clone());
        for post in soft.map(|s| s.1.as_slice()).unwrap_or_default() {
            let _ = self.resolve_into(post, out, seen);
        }
    }
}

/// Shell-style pattern match (`*`, `?`, `[...]` with `!`/`^` and ranges), the subset of
/// fnmatch(3) that kmod applies to `modules.alias`. No path special cases: a modalias has none.
pub fn fnmatch(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    // Where to resume after the last '*': (pattern index after it, string index it covers up to).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p + 1, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&pat[p..], s[i]) {
                        if matched {
                            p += next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        // An unterminated '[' is a literal.
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pat`; returns whether it
/// matched and the expression's length, or `None` when the bracket is not closed.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut j = 1;
    let negate = matches!(pat.get(j), Some(b'!') | Some(b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() {
        if pat[j] == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if pat[j] <= c && c <= pat[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/fs/isofs/isofs.ko.xz:
";
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias fs-ext4 ext4
alias ext3 ext4
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias fs-iso9660 isofs
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v0BC2p[23]3[0-3]2d*dc*dsc*dp*ic*isc*ip*in* usb_storage
";
    const SOFTDEP: &str = "softdep ext4 pre: crc32c post: missing_mod\n";
    const BUILTIN: &str = "kernel/drivers/block/loop.ko\n";

    fn idx() -> ModuleIndex {
        ModuleIndex::parse(Path::new("/m"), DEP, ALIAS, SOFTDEP, BUILTIN)
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| name_of(&p.to_string_lossy()))
            .collect()
    }

    #[test]
    fn resolves_deps_and_softdeps_in_load_order() {
        let i = idx();
        let order = i.resolve("ext4").unwrap();
        assert_eq!(
            names(&order),
            ["crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"]
        );
        assert_eq!(order[4], PathBuf::from("/m/kernel/fs/ext4/ext4.ko"));
        // By alias, and through the '-'/'_' equivalence.
        assert_eq!(names(&i.resolve("fs-ext4").unwrap()), names(&order));
        assert_eq!(
            names(&i.resolve("usb-storage").unwrap()),
            ["scsi_mod", "usb_storage"]
        );
        assert_eq!(names(&i.resolve("fs-iso9660").unwrap()), ["isofs"]);
    }

    #[test]
    fn shared_deps_load_once() {
        let i = idx();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        i.resolve_into("virtio_pci", &mut out, &mut seen).unwrap();
        i.resolve_into("virtio_blk", &mut out, &mut seen).unwrap();
        assert_eq!(
            names(&out),
            [
                "virtio",
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci",
                "virtio_blk"
            ]
        );
    }

    #[test]
    fn builtin_and_unknown() {
        let i = idx();
        assert!(i.resolve("loop").unwrap().is_empty());
        assert!(i.is_builtin("loop"));
        let e = i.resolve("nvme").unwrap_err();
        assert!(matches!(e, ModulesError::Unknown(ref n) if n == "nvme"));
        assert!(e.to_string().contains("\"nvme\""));
    }

    #[test]
    fn modalias_matching() {
        let i = idx();
        assert_eq!(
            i.match_alias("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"),
            ["virtio_pci"]
        );
        assert_eq!(
            i.match_alias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            Vec::<String>::new()
        );
        assert_eq!(i.match_alias("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(
            i.match_alias("usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"),
            ["usb_storage"]
        );
        assert_eq!(
            i.match_alias("usb:v0BC2p3312d0100dc00dsc00dp00icFFiscFFipFFin00"),
            ["usb_storage"]
        );
        assert!(i
            .match_alias("usb:v0BC2p3342d0100dc00dsc00dp00icFFiscFFipFFin00")
            .is_empty());
        assert!(i.match_alias("acpi:PNP0A03:").is_empty());
    }

    #[test]
    fn fnmatch_cases() {
        let m = |p: &str, s: &str| fnmatch(p.as_bytes(), s.as_bytes());
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "abX"));
        assert!(m("*ab", "aab"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("[]]", "]"));
        assert!(m("a[", "a["));
        assert!(!m("abc", "abcd"));
        assert!(m(
            "pci:v*d*sv*sd*bc01sc06i01*",
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
        ));
    }

    #[test]
    fn tolerates_junk_lines() {
        let i = ModuleIndex::parse(
            Path::new("/m"),
            "garbage\n: x.ko\n",
            "alias\nalias onlyone\n",
            "softdep\n",
            "",
        );
        assert!(i.is_empty());
    }

    #[test]
    fn load_requires_modules_dep_only() {
        let d = tempfile::tempdir().unwrap();
        let e = ModuleIndex::load(d.path()).unwrap_err();
        assert!(e.to_string().contains("modules.dep"), "{e}");
        fs::write(
            d.path().join("modules.dep"),
            "kernel/fs/squashfs/squashfs.ko:\n",
        )
        .unwrap();
        let i = ModuleIndex::load(d.path()).unwrap();
        assert_eq!(
            i.resolve("squashfs").unwrap(),
            [d.path().join("kernel/fs/squashfs/squashfs.ko")]
        );
    }
}
