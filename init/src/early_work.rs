//! Work done on a second thread, off the boot's critical path: the module index while the
//! main thread mounts the API filesystems and reads the devices' modaliases, the image's
//! default config while the kernel probes hardware, and, once the main thread says where
//! the other config sources are, loading the config while it mounts the image (live) or
//! writes the machine id (disk). On one CPU the thread costs nothing but its start; if it
//! cannot be started, the main thread does the same work itself.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rkos_config::ImageDefaults;

use crate::early::{self, EarlyConfig};
use crate::kmod::initramfs_index;
use crate::modules::{ModuleIndex, ModulesError};

/// Where the config loads from (the root its sources are under) and the command line.
type ConfigJob = (PathBuf, String);

pub struct EarlyWork {
    index: mpsc::Receiver<Result<ModuleIndex, ModulesError>>,
    /// The thread, with the way to tell it where to load the config from; `None` when no
    /// thread could be started, or once its config was collected.
    thread: Option<(mpsc::Sender<ConfigJob>, JoinHandle<Option<EarlyConfig>>)>,
    /// Where the config loads from, once said.
    config_from: Option<ConfigJob>,
}

/// The node's config as the init loads it: the image defaults from the initramfs's copy when
/// it has one (made from the same image: reading the squashfs's would cost a 1 MiB block's
/// decompression), the rest from `root`.
fn load(defaults: Option<ImageDefaults>, (root, cmdline): &ConfigJob) -> EarlyConfig {
    let mac = rkos_config::primary_mac(Path::new("/sys/class/net"));
    early::load_config(defaults, root, cmdline, mac.as_deref())
}

impl EarlyWork {
    pub fn start() -> Self {
        let (index_tx, index) = mpsc::channel();
        let (config_tx, config_rx) = mpsc::channel::<ConfigJob>();
        let thread = std::thread::Builder::new()
            .name("early".into())
            .spawn(move || {
                let _ = index_tx.send(initramfs_index());
                let defaults = ImageDefaults::parse(Path::new("/"));
                // No message: the boot failed before the config stage.
                let job = config_rx.recv().ok()?;
                Some(load(defaults, &job))
            })
            // No thread (PID 1 out of memory already): the main thread does it all itself.
            .ok()
            .map(|h| (config_tx, h));
        EarlyWork {
            index,
            thread,
            config_from: None,
        }
    }

    /// The initramfs's module index (parsed on the thread when there is one).
    pub fn index(&self) -> Result<ModuleIndex, ModulesError> {
        match self.thread {
            Some(_) => self.index.recv().unwrap_or_else(|_| initramfs_index()),
            None => initramfs_index(),
        }
    }

    /// Starts loading the config from the sources under `root`; only the first call counts.
    /// Returns where it loads from.
    pub fn load_config_from(&mut self, root: &Path, cmdline: &str) -> ConfigJob {
        let thread = &self.thread;
        self.config_from
            .get_or_insert_with(|| {
                let job = (root.to_path_buf(), cmdline.to_string());
                if let Some((tx, _)) = thread {
                    let _ = tx.send(job.clone());
                }
                job
            })
            .clone()
    }

    /// The config, loaded from `root` unless [`load_config_from`](Self::load_config_from)
    /// named another. Waits for the thread; call once.
    pub fn config(&mut self, root: &Path, cmdline: &str) -> EarlyConfig {
        let job = self.load_config_from(root, cmdline);
        let from_thread = self.thread.take().and_then(|(_, h)| {
            // A panic on the thread is a bug: raised again here (the hook did not stop the
            // thread), it ends in the panic hook's rescue shell like any other.
            h.join().unwrap_or_else(|_| {
                panic!("the early thread failed; its error is in the kernel log")
            })
        });
        from_thread.unwrap_or_else(|| load(ImageDefaults::parse(Path::new("/")), &job))
    }
}
