//! The node's config, read one way by everything that reads it: rkos-init at boot (with the
//! image defaults it parsed ahead, on a second thread), `rkos config apply`, `show` and
//! `render`, `rkos upgrade` (the trusted keys) and `rkos install --from-cmdline` (the
//! `install` section).
//!
//! The rule (docs/config.md, "Sources and the order they merge in"): the sources of
//! [`source::collect`] under the node's root, lowest first, the kernel command line last; a
//! persistent source (`/var/lib/rkos/config.yaml`, `config.d/*.yaml`) with errors is replaced
//! by its last good copy when it has one; any other source with errors is left out; the rest
//! merge. Only `rkos config apply` saves last good copies ([`NodeConfig::save_last_good`]).

use std::path::{Path, PathBuf};

use rkos_contract::paths::{self, under};

use crate::diag::Diagnostic;
use crate::load::{load_parsed, parse_source, Loaded, Parsed, Source, SourceKind};
use crate::source;

/// The image defaults, parsed ahead of the merge, with the problems met reading them.
/// rkos-init's initramfs carries a copy made from the same image, so the init parses them
/// while the kernel probes hardware.
pub struct ImageDefaults {
    parsed: Vec<(String, Parsed)>,
    read_problems: Vec<Diagnostic>,
}

impl ImageDefaults {
    /// The image defaults under `root`, parsed and named as the booted system sees them;
    /// `None` when `root` holds none.
    pub fn parse(root: &Path) -> Option<Self> {
        under(root, paths::IMAGE_DEFAULTS_DIR)
            .is_dir()
            .then(|| Self::read(&Names::as_booted(root)))
    }

    fn read(names: &Names) -> Self {
        let (sources, mut read_problems) = source::image_defaults(&names.root);
        names.rename_diagnostics(&mut read_problems);
        ImageDefaults {
            parsed: sources
                .into_iter()
                .map(|s| {
                    let s = names.rename(s);
                    (s.name.clone(), parse_source(&s))
                })
                .collect(),
            read_problems,
        }
    }
}

/// How source names are shown: as read (under the root), or as the booted system sees them.
struct Names {
    root: PathBuf,
    /// The prefix taken off each name; empty to keep names as read.
    strip: String,
}

impl Names {
    fn as_read(root: &Path) -> Self {
        Names {
            root: root.to_path_buf(),
            strip: String::new(),
        }
    }

    fn as_booted(root: &Path) -> Self {
        let strip = root.to_string_lossy().trim_end_matches('/').to_string();
        Names {
            root: root.to_path_buf(),
            strip,
        }
    }

    fn name(&self, name: &str) -> String {
        match name.strip_prefix(self.strip.as_str()) {
            Some(rest) if !self.strip.is_empty() && rest.starts_with('/') => rest.to_string(),
            _ => name.to_string(),
        }
    }

    fn rename(&self, mut s: Source) -> Source {
        s.name = self.name(&s.name);
        s
    }

    fn rename_diagnostics(&self, diags: &mut [Diagnostic]) {
        for d in diags {
            d.source = self.name(&d.source);
        }
    }
}

/// The node's config at a root: which sources, and how they are read. [`load`](Self::load)
/// gives the merged config with every diagnostic (reading, last good copies, parsing,
/// checks), in that order.
pub struct NodeConfig {
    root: PathBuf,
    cmdline: Option<String>,
    defaults: Option<ImageDefaults>,
    names_as_booted: bool,
    save_last_good: bool,
}

impl NodeConfig {
    /// The node whose root is `root`: its standard sources and its kernel command line
    /// (`ROOT/proc/cmdline`; none when that cannot be read).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        NodeConfig {
            root: root.into(),
            cmdline: None,
            defaults: None,
            names_as_booted: false,
            save_last_good: false,
        }
    }

    /// This kernel command line instead of `ROOT/proc/cmdline`.
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = Some(cmdline.into());
        self
    }

    /// Image defaults parsed ahead (rkos-init's initramfs copy); `None` reads them under the
    /// root.
    pub fn image_defaults(mut self, defaults: Option<ImageDefaults>) -> Self {
        self.defaults = defaults;
        self
    }

    /// Name sources as the booted system sees them, without the root (rkos-init reads the
    /// new root at `/sysroot`; its messages must name `/var/lib/rkos/config.yaml`).
    pub fn names_as_booted(mut self) -> Self {
        self.names_as_booted = true;
        self
    }

    /// Also keep a last good copy of each persistent source that has no errors (and drop
    /// the copies of sources that are gone): `rkos config apply`'s job, done once per boot.
    pub fn save_last_good(mut self) -> Self {
        self.save_last_good = true;
        self
    }

    /// Collects, substitutes last good copies for broken persistent sources, parses and
    /// merges.
    pub fn load(self) -> Loaded {
        let names = if self.names_as_booted {
            Names::as_booted(&self.root)
        } else {
            Names::as_read(&self.root)
        };
        let cmdline = self.cmdline.unwrap_or_else(|| kernel_cmdline(&self.root));
        let defaults = self.defaults.unwrap_or_else(|| ImageDefaults::read(&names));
        let mut diagnostics = defaults.read_problems;
        let (sources, mut read_problems) =
            source::collect_report_after_defaults(&self.root, &cmdline);
        names.rename_diagnostics(&mut read_problems);
        diagnostics.extend(read_problems);
        if self.save_last_good {
            if let Err(e) = source::save_last_good(&self.root, &sources) {
                diagnostics.push(Diagnostic::warning(
                    "last-good",
                    "",
                    format!("cannot save the last good config: {e}"),
                ));
            }
        }
        let mut parsed = defaults.parsed;
        for s in sources {
            parsed.push(parse_or_last_good(&names, s, &mut diagnostics));
        }
        let mut loaded = load_parsed(parsed);
        diagnostics.append(&mut loaded.diagnostics);
        loaded.diagnostics = diagnostics;
        loaded
    }
}

/// The kernel command line of the system at `root` (`ROOT/proc/cmdline`), empty when it
/// cannot be read.
pub fn kernel_cmdline(root: &Path) -> String {
    std::fs::read_to_string(under(root, paths::PROC_CMDLINE)).unwrap_or_default()
}

/// `s` parsed; a persistent source with errors is replaced by its last good copy when it
/// has one, its own problems then reported here as it is not loaded.
fn parse_or_last_good(names: &Names, s: Source, diags: &mut Vec<Diagnostic>) -> (String, Parsed) {
    let path = s.name.clone();
    let s = names.rename(s);
    let parsed = parse_source(&s);
    if s.kind != SourceKind::Persistent || !parsed.has_errors() {
        return (s.name, parsed);
    }
    let Some(copy) = source::last_good_path(&names.root, &path) else {
        return (s.name, parsed);
    };
    let Ok(text) = std::fs::read_to_string(&copy) else {
        return (s.name, parsed);
    };
    let copy = names.name(&copy.to_string_lossy());
    diags.extend(parsed.diagnostics);
    diags.push(Diagnostic::error(
        s.name,
        "",
        format!("has errors; using its last good copy {copy} instead"),
    ));
    let copy = Source::new(SourceKind::Persistent, copy, text);
    (copy.name.clone(), parse_source(&copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, path: &str, text: &str) {
        let p = under(root, path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn messages(l: &Loaded) -> Vec<String> {
        l.diagnostics.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_broken_persistent_file_is_replaced_by_its_last_good_copy() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, paths::PERSISTENT_CONFIG, "hostname: good\n");
        let first = NodeConfig::at(r).cmdline("").save_last_good().load();
        assert_eq!(first.config.hostname.as_deref(), Some("good"));
        let copy = under(r, paths::LAST_GOOD_DIR).join("config.yaml");
        assert_eq!(fs::read_to_string(&copy).unwrap(), "hostname: good\n");

        write(r, paths::PERSISTENT_CONFIG, "hostname: [oops\n");
        let l = NodeConfig::at(r).cmdline("").save_last_good().load();
        assert_eq!(l.config.hostname.as_deref(), Some("good"));
        let msgs: Vec<&str> = l.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("not valid YAML"), "{msgs:?}");
        assert!(msgs[1].contains("last good copy"), "{msgs:?}");
        assert!(l.rejected.is_empty(), "{:?}", l.rejected);
        // A broken file does not overwrite its good copy.
        assert_eq!(fs::read_to_string(&copy).unwrap(), "hostname: good\n");
        // Without a copy, the broken file is left out like any other source.
        fs::remove_file(&copy).unwrap();
        let l = NodeConfig::at(r).cmdline("").load();
        assert_eq!(l.config.hostname, None);
        assert_eq!(l.rejected.len(), 1, "{:?}", l.rejected);
        // A removed source loses its copy.
        write(r, paths::PERSISTENT_CONFIG, "hostname: again\n");
        NodeConfig::at(r).cmdline("").save_last_good().load();
        assert!(copy.exists());
        fs::remove_file(under(r, paths::PERSISTENT_CONFIG)).unwrap();
        NodeConfig::at(r).cmdline("").save_last_good().load();
        assert!(!copy.exists());
    }

    #[test]
    fn names_as_booted_leave_the_root_out_of_every_message() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            &format!("{}/config.yaml", paths::LAST_GOOD_DIR),
            "hostname: good\n",
        );
        write(r, paths::PERSISTENT_CONFIG, "hostname: [oops\n");
        write(r, paths::BOOT_CONFIG, "rkos: [unclosed\n");
        let l = NodeConfig::at(r).cmdline("").names_as_booted().load();
        assert_eq!(l.config.hostname.as_deref(), Some("good"));
        let msgs = messages(&l);
        let root = r.to_string_lossy();
        assert!(!msgs.iter().any(|m| m.contains(&*root)), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("/run/rkos/boot/config.yaml:")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("using its last good copy /var/lib/rkos/last-good/config.yaml")),
            "{msgs:?}"
        );
        // As read, the names keep the root.
        let l = NodeConfig::at(r).cmdline("").load();
        assert!(
            messages(&l).iter().all(|m| m.starts_with(&*root)),
            "{:?}",
            messages(&l)
        );
    }

    #[test]
    fn the_kernel_command_line_is_read_under_the_root_unless_given() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, paths::PERSISTENT_CONFIG, "hostname: file\n");
        assert_eq!(kernel_cmdline(r), "");
        write(r, paths::PROC_CMDLINE, "quiet rkos.hostname=cmdline\n");
        let l = NodeConfig::at(r).load();
        assert_eq!(l.config.hostname.as_deref(), Some("cmdline"));
        let l = NodeConfig::at(r).cmdline("rkos.hostname=given").load();
        assert_eq!(l.config.hostname.as_deref(), Some("given"));
    }

    #[test]
    fn image_defaults_parsed_ahead_stand_for_the_roots() {
        let d = tempfile::tempdir().unwrap();
        let (initramfs, sysroot) = (d.path().join("initramfs"), d.path().join("sysroot"));
        let defaults = format!("{}/00-image.yaml", paths::IMAGE_DEFAULTS_DIR);
        write(&sysroot, &defaults, "rkos:\n  modules: [from_sysroot]\n");
        // No copy in the initramfs: the new root's defaults.
        assert!(ImageDefaults::parse(&initramfs).is_none());
        let l = NodeConfig::at(&sysroot)
            .cmdline("")
            .image_defaults(ImageDefaults::parse(&initramfs))
            .load();
        assert_eq!(l.config.rkos.modules, ["from_sysroot"]);
        write(&initramfs, &defaults, "rkos:\n  modules: [from_initramfs\n");
        let l = NodeConfig::at(&sysroot)
            .cmdline("")
            .names_as_booted()
            .image_defaults(ImageDefaults::parse(&initramfs))
            .load();
        assert!(
            l.config.rkos.modules.is_empty(),
            "{:?}",
            l.config.rkos.modules
        );
        // Named as the booted system sees the file, not by the initramfs path.
        let msgs = messages(&l);
        assert!(
            msgs[0].starts_with("/usr/lib/rkos/config.d/00-image.yaml"),
            "{msgs:?}"
        );
        write(
            &initramfs,
            &defaults,
            "rkos:\n  modules: [from_initramfs]\n",
        );
        let l = NodeConfig::at(&sysroot)
            .cmdline("")
            .image_defaults(ImageDefaults::parse(&initramfs))
            .load();
        assert_eq!(l.config.rkos.modules, ["from_initramfs"]);
    }
}
