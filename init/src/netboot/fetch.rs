//! The downloads of a network boot, through the node's one HTTP client (`rkos-http`, built
//! here without TLS) and the upgrade path's verified, resumable download (`rkos-bundle`):
//! the signed manifest checked with the initramfs's trusted keys, the image streamed into
//! RAM with its sha256 computed on the way, resumed with `Range` and retried with backoff
//! until the deadline, and the node's config. Progress goes to the consoles.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rkos_bundle::{BundleError, Progress, Source, StageOptions, TrustedKeys};
use rkos_contract::{files, paths};
use rkos_slots::manifest::FileEntry;

use super::{check_manifest, NetbootError, Params};
use crate::log;

/// Largest config.yaml accepted (they are a few KiB).
const CONFIG_LIMIT: u64 = 1 << 20;
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Retries `f` on transient failures with a doubling pause until `deadline`.
fn retrying<T>(
    what: &str,
    deadline: Instant,
    consoles: &[PathBuf],
    transient: impl Fn(&BundleError) -> bool,
    mut f: impl FnMut() -> Result<T, BundleError>,
) -> Result<T, BundleError> {
    let mut pause = Duration::from_secs(1);
    loop {
        match f() {
            Err(e) if transient(&e) && Instant::now() + pause < deadline => {
                log::to_consoles(
                    consoles,
                    &format!(
                        "rkos-init: netboot: {what}: {e}; trying again in {} s\n",
                        pause.as_secs()
                    ),
                );
                sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
            r => return r,
        }
    }
}

/// The node's config from `url` into `dest` (mode 0600: it holds the join token).
pub fn config(
    url: &str,
    dest: &Path,
    deadline: Instant,
    consoles: &[PathBuf],
) -> Result<usize, NetbootError> {
    let fail = |reason: String| NetbootError::Config {
        url: url.to_string(),
        reason,
    };
    let client = rkos_http::Client::for_downloads(Duration::from_secs(15), Duration::from_secs(30))
        .map_err(|e| fail(e.reason()))?;
    let mut pause = Duration::from_secs(1);
    let text =
        loop {
            match client.get_bytes(url, CONFIG_LIMIT) {
                Ok(t) => break t,
                Err(e) if e.is_transient() && Instant::now() + pause < deadline => {
                    log::to_consoles(
                        consoles,
                        &format!(
                            "rkos-init: netboot: {e}; trying again in {} s\n",
                            pause.as_secs()
                        ),
                    );
                    sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(rkos_http::HttpError::Status { status: 404, .. }) => return Err(fail(
                    "HTTP 404: the farm has no config for this node (is its MAC in the inventory?)"
                        .into(),
                )),
                Err(e) => return Err(fail(e.reason())),
            }
        };
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(super::io_err(format!("mkdir {}", dir.display())))?;
    }
    rkos_io::write_atomic(dest, &text, 0o600)
        .map_err(super::io_err(format!("write {}", dest.display())))?;
    Ok(text.len())
}

/// What [`image`] fetched.
pub struct Fetched {
    pub file: PathBuf,
    /// The signed manifest's version and the id of the key that signed it (not with
    /// `rkos.image.sha256`).
    pub version: Option<String>,
    pub key_id: Option<String>,
}

/// The image into `dir`, checked against the signed manifest beside it (or against
/// `rkos.image.sha256`).
pub fn image(
    params: &Params,
    dir: &Path,
    initramfs_version: &str,
    deadline: Instant,
    consoles: &[PathBuf],
) -> Result<Fetched, NetbootError> {
    let img = &params.image;
    let source = Source::parse(&img.base).map_err(|e| NetbootError::Image(e.to_string()))?;
    let transient = Source::is_transient;
    let (entry, version, key_id) = match &params.sha256 {
        Some(sha256) => {
            // No manifest: the size comes from the server (the digest is the check).
            let opened = retrying(&img.image(), deadline, consoles, transient, || {
                source.open(&img.file, 0)
            })
            .map_err(|e| NetbootError::Image(e.to_string()))?;
            let size = opened.total.ok_or_else(|| {
                NetbootError::Image(format!(
                    "{}: the server does not say the file's length, which a download checked \
                     only by rkos.image.sha256 needs (or serve the signed manifest beside it)",
                    img.image()
                ))
            })?;
            let entry = FileEntry {
                name: img.file.clone(),
                size,
                sha256: sha256.clone(),
            };
            (entry, None, None)
        }
        None => {
            let manifest_url = img.manifest();
            let sig_url = format!("{}/{}", img.base, files::SIGNATURE);
            let keys = TrustedKeys::load(Path::new(paths::TRUSTED_KEYS_DIR), &[]).map_err(|e| {
                NetbootError::Image(format!(
                    "{manifest_url}: {e} (the netboot initrd carries them)"
                ))
            })?;
            let manifest_bytes = retrying(&manifest_url, deadline, consoles, transient, || {
                source.read_small(files::MANIFEST)
            })
            .map_err(|e| NetbootError::Image(format!("the image's signed manifest: {e}")))?;
            let sig = retrying(&sig_url, deadline, consoles, transient, || {
                source.read_small(files::SIGNATURE)
            })
            .map_err(|e| NetbootError::Image(format!("the manifest's signature: {e}")))?;
            let sig = String::from_utf8_lossy(&sig);
            let (manifest, key_id) = keys
                .verify_manifest(&manifest_bytes, &sig)
                .map_err(|e| NetbootError::Image(format!("{manifest_url}: {e}")))?;
            check_manifest(&manifest, rkos_contract::arch(), initramfs_version)
                .map_err(|e| NetbootError::Image(format!("{manifest_url}: {e}")))?;
            let entry = manifest.file(&img.file).cloned().ok_or_else(|| {
                NetbootError::Image(format!(
                    "{manifest_url} lists no {:?}, the file rkos.image names",
                    img.file
                ))
            })?;
            (entry, Some(manifest.version.clone()), Some(key_id))
        }
    };
    let opts = StageOptions {
        attempts: u32::MAX,
        backoff: Duration::from_secs(1),
        deadline: Some(deadline),
        ..StageOptions::default()
    };
    let mut progress = ConsoleProgress::new(consoles, img.image());
    rkos_bundle::fetch_into(&source, dir, &entry, &opts, &mut progress).map_err(|e| {
        NetbootError::Image(match e {
            BundleError::Sha256Mismatch { .. }
            | BundleError::Truncated { .. }
            | BundleError::TooLong { .. } => {
                format!("{e}; the image is refused")
            }
            BundleError::HttpStatus { status: 404, .. } => {
                format!("{e} (expected the image there)")
            }
            e => e.to_string(),
        })
    })?;
    Ok(Fetched {
        file: dir.join(&entry.name),
        version,
        key_id,
    })
}

/// Download progress on the consoles: the start, every tenth, retries, the end with the rate.
struct ConsoleProgress<'a> {
    consoles: &'a [PathBuf],
    url: String,
    size: u64,
    done: u64,
    next: u64,
    started: Instant,
}

impl<'a> ConsoleProgress<'a> {
    fn new(consoles: &'a [PathBuf], url: String) -> Self {
        ConsoleProgress {
            consoles,
            url,
            size: 0,
            done: 0,
            next: 0,
            started: Instant::now(),
        }
    }

    fn say(&self, text: &str) {
        log::to_consoles(self.consoles, &format!("rkos-init: netboot: {text}\n"));
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

impl Progress for ConsoleProgress<'_> {
    fn file_started(&mut self, _name: &str, size: u64, have: u64) {
        self.size = size;
        self.done = have;
        self.next = have + size / 10;
        self.started = Instant::now();
        self.say(&format!(
            "downloading {} ({:.1} MiB) into RAM",
            self.url,
            mib(size)
        ));
    }

    fn advanced(&mut self, bytes: u64) {
        self.done += bytes;
        if self.done >= self.next && self.done < self.size {
            self.next = self.done + self.size / 10;
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            self.say(&format!(
                "{:>3}% ({:.1} of {:.1} MiB, {:.1} MiB/s)",
                self.done * 100 / self.size.max(1),
                mib(self.done),
                mib(self.size),
                mib(self.done) / secs
            ));
        }
    }

    fn file_done(&mut self, _name: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.say(&format!(
            "{} verified: {:.1} MiB in {:.1} s ({:.1} MiB/s)",
            self.url,
            mib(self.size),
            secs,
            mib(self.size) / secs
        ));
    }

    fn retrying(&mut self, _name: &str, attempt: u32, delay: Duration, err: &BundleError) {
        self.say(&format!(
            "{err}; resuming at {:.1} MiB in {} s (attempt {attempt})",
            mib(self.done),
            delay.as_secs()
        ));
    }
}
