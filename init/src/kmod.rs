//! Loading kernel modules: coldplug (every device's `modalias` matched against
//! `modules.alias`) and by name, dependencies first, with `finit_module(2)`.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::kmod::{finit_module, ModuleInitFlags};

use crate::log::{in_kernel, KernelWork};
use crate::modules::ModuleIndex;

/// Reads the `modalias` of every device. Walking `/sys/bus/*/devices/*` (symlinks to every
/// device on each bus) reaches the same files as a recursive walk of `/sys/devices` in far
/// fewer directory reads: a modalias is always provided by the device's bus.
pub fn read_modaliases(sys_bus: &Path) -> Vec<String> {
    read_new_modaliases(sys_bus, &mut HashSet::new())
}

/// As [`read_modaliases`], for the devices not in `seen` only (a device's modalias never
/// changes); adds them to `seen`. Later coldplug rounds then cost a directory listing per bus
/// instead of a file read per device, which under emulation is most of a round.
pub fn read_new_modaliases(sys_bus: &Path, seen: &mut HashSet<PathBuf>) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(buses) = fs::read_dir(sys_bus) else {
        return out;
    };
    for bus in buses.filter_map(|e| e.ok()) {
        let Ok(devs) = fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devs.filter_map(|e| e.ok()) {
            let path = dev.path();
            if seen.contains(&path) {
                continue;
            }
            if let Ok(a) = fs::read_to_string(path.join("modalias")) {
                let a = a.trim();
                if !a.is_empty() {
                    out.push(a.to_string());
                }
            }
            seen.insert(path);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The running kernel's release (`uname -r`): the name of its modules directory.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The module index of the initramfs's modules for the running kernel.
pub fn initramfs_index() -> Result<ModuleIndex, crate::modules::ModulesError> {
    ModuleIndex::load(&Path::new("/lib/modules").join(kernel_release()))
}

/// Loads modules from one modules directory, remembering what it tried.
pub struct Loader {
    pub index: ModuleIndex,
    tried: HashSet<PathBuf>,
    seen_aliases: HashSet<String>,
    seen_devices: HashSet<PathBuf>,
    pub loaded: Vec<String>,
    /// Modules the kernel refused, with its reason (a driver for absent hardware, a CPU
    /// feature missing): reported in `init.json`, never fatal by themselves.
    pub failed: Vec<String>,
}

impl Loader {
    pub fn new(index: ModuleIndex) -> Self {
        Loader {
            index,
            tried: HashSet::new(),
            seen_aliases: HashSet::new(),
            seen_devices: HashSet::new(),
            loaded: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Loads `files` in order, each at most once. Returns how many loaded now.
    fn load_files(&mut self, files: Vec<PathBuf>) -> usize {
        let mut n = 0;
        for f in files {
            if !self.tried.insert(f.clone()) {
                continue;
            }
            let name = crate::modules::name_of(&f.to_string_lossy());
            let r = in_kernel(KernelWork::ModuleInit, || load_file(&f));
            match r {
                Ok(()) => {
                    tracing::debug!("loaded module {name}");
                    self.loaded.push(name);
                    n += 1;
                }
                Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    tracing::debug!("module {name} not loaded: {e}");
                    self.failed.push(format!("{name}: {e}"));
                }
            }
        }
        n
    }

    /// Loads a module (or everything an alias names) with its dependencies.
    pub fn load(&mut self, name: &str) -> Result<usize, crate::modules::ModulesError> {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        self.index.resolve_into(name, &mut files, &mut seen)?;
        Ok(self.load_files(files))
    }

    /// Makes sure the driver for filesystem `fstype` is there (built in, loaded, or loaded now).
    /// Unknown names are left to the mount to report.
    pub fn ensure_fs(&mut self, fstype: &str) {
        let _ = self.load(&format!("fs-{fstype}"));
    }

    /// Takes `seen` (filled by [`read_new_modaliases`] before the loader existed) as the
    /// devices already handled.
    pub fn with_seen_devices(mut self, seen: HashSet<PathBuf>) -> Self {
        self.seen_devices = seen;
        self
    }

    /// One coldplug round: loads the modules for every device not seen before. Returns how
    /// many modules it loaded (new drivers can expose new devices: call again until 0).
    pub fn coldplug(&mut self, sys_bus: &Path) -> usize {
        let t = Instant::now();
        let aliases = read_new_modaliases(sys_bus, &mut self.seen_devices);
        tracing::debug!(
            "coldplug: {} new modaliases read in {:.1} ms",
            aliases.len(),
            t.elapsed().as_secs_f64() * 1000.0
        );
        self.load_for_modaliases(aliases)
    }

    /// Loads the modules matching `modaliases` not handled before. Returns how many loaded.
    pub fn load_for_modaliases(&mut self, modaliases: Vec<String>) -> usize {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        for alias in modaliases {
            if !self.seen_aliases.insert(alias.clone()) {
                continue;
            }
            for m in self.index.match_alias(&alias) {
                let _ = self.index.resolve_into(&m, &mut files, &mut seen);
            }
        }
        self.load_files(files)
    }
}

fn load_file(path: &Path) -> Result<(), nix::errno::Errno> {
    let f = File::open(path)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let s = path.to_string_lossy();
    // The kernel decompresses itself when the module was shipped compressed.
    let flags = if s.ends_with(".ko") {
        ModuleInitFlags::empty()
    } else {
        ModuleInitFlags::from_bits_retain(4)
    };
    finit_module(&f, &CString::default(), flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modaliases_from_a_fake_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let mk = |bus: &str, dev: &str, alias: Option<&str>| {
            let p = d.path().join(bus).join("devices").join(dev);
            fs::create_dir_all(&p).unwrap();
            if let Some(a) = alias {
                fs::write(p.join("modalias"), format!("{a}\n")).unwrap();
            }
        };
        mk(
            "pci",
            "0000:00:01.0",
            Some("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"),
        );
        mk(
            "pci",
            "0000:00:00.0",
            Some("pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00"),
        );
        mk("virtio", "virtio0", Some("virtio:d00000002v00001AF4"));
        mk("scsi", "host0", None);
        mk("scsi", "0:0:0:0", Some(""));
        fs::create_dir_all(d.path().join("nodevices")).unwrap();
        assert_eq!(
            read_modaliases(d.path()),
            [
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
                "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
                "virtio:d00000002v00001AF4"
            ]
        );
        assert!(read_modaliases(&d.path().join("missing")).is_empty());
        // Devices already read are skipped; one that appears later is read.
        let mut seen = HashSet::new();
        assert_eq!(read_new_modaliases(d.path(), &mut seen).len(), 3);
        assert!(read_new_modaliases(d.path(), &mut seen).is_empty());
        mk(
            "usb",
            "1-1",
            Some("usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00"),
        );
        assert_eq!(
            read_new_modaliases(d.path(), &mut seen),
            ["usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00"]
        );
    }

    #[test]
    fn coldplug_reports_failures_without_stopping() {
        // As non-root (or without the file) finit_module fails: the loader records it,
        // tries each file once, and carries on.
        let d = tempfile::tempdir().unwrap();
        let mdir = d.path().join("modules");
        fs::create_dir_all(&mdir).unwrap();
        let idx = ModuleIndex::parse(
            &mdir,
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n",
            "alias virtio:d00000002v* a\n",
            "",
            "",
        );
        let sys = d.path().join("bus");
        fs::create_dir_all(sys.join("virtio/devices/virtio0")).unwrap();
        fs::write(
            sys.join("virtio/devices/virtio0/modalias"),
            "virtio:d00000002v00001AF4\n",
        )
        .unwrap();
        let mut l = Loader::new(idx);
        assert_eq!(l.coldplug(&sys), 0);
        assert_eq!(l.failed.len(), 2, "{:?}", l.failed);
        assert!(l.failed[0].starts_with("b: "), "{:?}", l.failed);
        // A second round sees no new device and tries nothing again.
        assert_eq!(l.coldplug(&sys), 0);
        assert_eq!(l.failed.len(), 2);
        assert!(l.load("nonexistent").is_err());
    }
}
