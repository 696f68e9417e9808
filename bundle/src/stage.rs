//! Node side of an upgrade: stage a bundle into the inactive slot, then flip the GRUB
//! environment so the next boot tries it.
//!
//! Order matters for crash safety (a power cut at any instant must leave a node that boots a
//! complete version):
//! 1. read the boot state and decide the target slot (the one not running, never the
//!    fallback of a running trial);
//! 2. fetch and verify the signed manifest (signature, arch) and check free space — nothing
//!    is written before both pass;
//! 3. invalidate the target slot (its pending trial, if any, then its manifest, then its
//!    files); GRUB never boots it from now until step 6;
//! 4. stream each file into `slots/<X>/.staging/<name>.part`, sha256 on the fly, resume with
//!    `Range`, retry with backoff; fsync;
//! 5. rename the parts into the slot, then write the signature and, last, the manifest;
//!    fsync the directory;
//! 6. [`flip`]: put the slot on trial in `grubenv` (one atomic rename).

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkos_contract::files::{MANIFEST, SIGNATURE};
use rkos_io::{fsync_dir, HashReader, HashWriter, VerifyError};
use rkos_slots::manifest::FileEntry;
use rkos_slots::{BootState, Manifest, Slot, StateDir};

use crate::error::{BundleError, IoContext, Result};
use crate::keys::TrustedKeys;
use crate::pace::{Breach, Clock, Limits};
use crate::progress::Progress;
use crate::source::Source;
use crate::verified::{Verified, VersionPolicy};

const CHUNK: usize = 1 << 20;
/// A part being downloaded is flushed to disk every this many bytes. Without it a power cut
/// loses everything still in the page cache (ext4's delayed allocation leaves such a part
/// 0 bytes long), so a resumed download of a large root filesystem starts over; measured in
/// tests/tests/upgrade_node.rs, where the VM is killed in the middle of one.
const SYNC_EVERY: u64 = 16 << 20;
/// Room kept for the manifest, signature and directory entries.
const SPACE_MARGIN: u64 = 1 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct StageOptions {
    /// The node's arch; a bundle for another is refused. By default this machine's
    /// ([`rkos_contract::arch`]).
    pub arch: String,
    /// Attempts per file on transient failures (dropped connection, 5xx).
    pub attempts: u32,
    /// First retry delay; doubled each time up to 30 s.
    pub backoff: Duration,
    /// No retry starts after this instant (a network boot's overall deadline); `None`: only
    /// `attempts` bounds the retries.
    pub deadline: Option<Instant>,
    /// The versions accepted (expected version, downgrades).
    pub versions: VersionPolicy,
    /// The overall deadline and the minimum transfer rate.
    pub limits: Limits,
}

impl Default for StageOptions {
    fn default() -> Self {
        StageOptions {
            arch: rkos_contract::arch().to_string(),
            attempts: 6,
            backoff: Duration::from_secs(1),
            deadline: None,
            versions: VersionPolicy::default(),
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Staged {
    pub slot: Slot,
    pub manifest: Manifest,
    /// Id of the trusted key that signed the manifest.
    pub key_id: String,
    /// Bytes fetched from the source in this run.
    pub downloaded: u64,
    /// Bytes reused from partial files of an earlier, interrupted run.
    pub reused: u64,
}

/// What [`preflight`] established, before anything is written.
struct Checked {
    boot: BootState,
    target: Slot,
}

/// Checks what can be checked without writing: boot state, target slot, and the verified
/// manifest's arch and version.
fn preflight(
    verified: &Verified,
    state: &StateDir,
    booted: Slot,
    opts: &StageOptions,
) -> Result<Checked> {
    let boot = state.boot_state()?;
    if let Some(t) = boot.trial {
        if t.slot == booted {
            return Err(BundleError::Refused(format!(
                "the running slot {booted} is on trial and not yet marked good; its fallback {} must stay intact",
                boot.default
            )));
        }
    }
    if booted != boot.default {
        return Err(BundleError::Refused(format!(
            "running slot {booted} but the default slot is {}; reboot into the default first",
            boot.default
        )));
    }
    let target = booted.other();
    let manifest = &verified.manifest;
    if manifest.arch != opts.arch {
        return Err(BundleError::WrongArch {
            bundle: manifest.arch.clone(),
            node: opts.arch.clone(),
        });
    }
    let running = opts.versions.check_node(&manifest.version, state, booted)?;
    if running.as_deref() == Some(manifest.version.as_str()) {
        return Err(BundleError::AlreadyRunning(manifest.version.clone()));
    }
    Ok(Checked { boot, target })
}

/// Downloads and verifies `source` into the inactive slot: [`Verified::fetch`], then
/// [`stage_verified`].
pub fn stage(
    source: &Source,
    state: &StateDir,
    booted: Slot,
    keys: &TrustedKeys,
    opts: &StageOptions,
    progress: &mut dyn Progress,
) -> Result<Staged> {
    let verified = Verified::fetch(source, keys)?;
    stage_verified(source, &verified, state, booted, opts, progress)
}

/// Stages the bundle whose manifest was verified as `verified` (its files come from
/// `source`; its manifest and signature are written from `verified`'s bytes, never fetched
/// again). The running slot and `grubenv` are not modified, except that a trial pending for
/// the target slot (staged earlier, never booted) is cancelled before that slot is rewritten.
pub fn stage_verified(
    source: &Source,
    verified: &Verified,
    state: &StateDir,
    booted: Slot,
    opts: &StageOptions,
    progress: &mut dyn Progress,
) -> Result<Staged> {
    let clock = Clock::start(opts.limits);
    let Checked { boot, target } = preflight(verified, state, booted, opts)?;
    let Verified {
        manifest_bytes,
        sig_bytes,
        manifest,
        key_id,
    } = verified.clone();
    let slot_dir = state.slot_dir(target);
    let staging = state.staging_dir(target);

    // Parts of an interrupted run are reused only for the very same manifest.
    let staging_manifest = staging.join(MANIFEST);
    let resumable = fs::read(&staging_manifest).is_ok_and(|b| b == manifest_bytes);
    let mut reusable = 0u64;
    if resumable {
        for f in &manifest.files {
            if let Ok(m) = fs::metadata(part_path(&staging, &f.name)) {
                if m.len() <= f.size {
                    reusable += m.len();
                }
            }
        }
    }
    let reclaimable = dir_bytes(&slot_dir, resumable.then_some(staging.as_path()))?;
    let needed = manifest.total_size() - reusable + SPACE_MARGIN;
    let available = free_bytes(state.root())? + reclaimable;
    if needed > available {
        return Err(BundleError::NoSpace {
            path: state.root().to_path_buf(),
            needed,
            available,
        });
    }

    // From here on the target slot is being rewritten: make sure nothing boots it.
    if boot.trial.is_some_and(|t| t.slot == target) {
        state.write_boot_state(&boot.cancel_trial())?;
    }
    invalidate_slot(&slot_dir, &staging, resumable)?;
    fs::create_dir_all(&staging).ctx(|| format!("creating {}", staging.display()))?;
    if !resumable {
        rkos_io::write_atomic(&staging_manifest, &manifest_bytes, 0o644)
            .ctx(|| format!("writing {}", staging_manifest.display()))?;
    }

    let mut downloaded = 0;
    let mut reused = 0;
    for entry in &manifest.files {
        let had_part = part_path(&staging, &entry.name).exists();
        let mut result = fetch_file(source, &staging, entry, opts, &clock, progress);
        if had_part && matches!(result, Err(BundleError::Sha256Mismatch { .. })) {
            // The part left by an interrupted run may end in bytes a crash never wrote
            // properly; its mismatch says nothing about the source. The part is gone now:
            // fetch the file once more from its start.
            tracing::warn!(file = %entry.name, "resumed file did not verify; downloading it again");
            result = fetch_file(source, &staging, entry, opts, &clock, progress);
        }
        match result {
            Ok((d, r)) => {
                downloaded += d;
                reused += r;
            }
            Err(e) => {
                // A dropped transfer (or one stopped by the deadline) keeps its part for the
                // next run to resume; anything else (bad data, server refusal, local error)
                // leaves no partial files behind.
                if !keeps_part(&e) {
                    let _ = fs::remove_dir_all(&staging);
                }
                return Err(e);
            }
        }
    }

    let install = || -> Result<()> {
        for entry in &manifest.files {
            let to = slot_dir.join(&entry.name);
            fs::rename(part_path(&staging, &entry.name), &to)
                .ctx(|| format!("moving {} into place", to.display()))?;
        }
        fsync_dir(&slot_dir).ctx(|| format!("fsync {}", slot_dir.display()))?;
        rkos_io::write_atomic(&state.signature(target), &sig_bytes, 0o644)
            .ctx(|| format!("writing {}", state.signature(target).display()))?;
        // The manifest last: it is what makes the slot complete.
        rkos_io::write_atomic(&state.manifest(target), &manifest_bytes, 0o644)
            .ctx(|| format!("writing {}", state.manifest(target).display()))?;
        fs::remove_dir_all(&staging).ctx(|| format!("removing {}", staging.display()))?;
        fsync_dir(&slot_dir).ctx(|| format!("fsync {}", slot_dir.display()))
    };
    if let Err(e) = install() {
        let _ = fs::remove_file(state.manifest(target));
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    tracing::info!(slot = %target, version = %manifest.version, downloaded, reused, "staged");
    Ok(Staged {
        slot: target,
        manifest,
        key_id,
        downloaded,
        reused,
    })
}

/// Puts the staged slot on trial: the next boot runs it, with `tries` boots to be marked good
/// before GRUB goes back to the current slot by itself. Checks first that the slot on disk is
/// the one staged (manifest equal, file sizes right).
pub fn flip(state: &StateDir, staged: &Staged, tries: u8) -> Result<BootState> {
    let on_disk = state.read_manifest(staged.slot)?;
    if on_disk.as_ref() != Some(&staged.manifest) {
        return Err(BundleError::Refused(format!(
            "slot {} no longer holds the staged version {}",
            staged.slot, staged.manifest.version
        )));
    }
    for f in &staged.manifest.files {
        let p = state.slot_dir(staged.slot).join(&f.name);
        let len = fs::metadata(&p)
            .ctx(|| format!("stat {}", p.display()))?
            .len();
        if len != f.size {
            return Err(BundleError::Truncated {
                file: p.display().to_string(),
                expected: f.size,
                got: len,
            });
        }
    }
    Ok(state.update_boot_state(|b| b.put_on_trial(staged.slot, tries))?)
}

/// Re-reads every file of `slot` and checks it against the slot's manifest.
pub fn verify_slot(state: &StateDir, slot: Slot) -> Result<Manifest> {
    let manifest = state.read_manifest(slot)?.ok_or_else(|| {
        BundleError::Refused(format!("slot {slot} has no manifest (empty or incomplete)"))
    })?;
    for f in &manifest.files {
        verify_file(&state.slot_dir(slot).join(&f.name), f)?;
    }
    Ok(manifest)
}

/// Checks one file's size and sha256 against its manifest entry.
pub fn verify_file(path: &Path, entry: &FileEntry) -> Result<()> {
    entry.verify(path).map_err(|e| match e {
        VerifyError::Size {
            path,
            expected,
            found,
        } => BundleError::Truncated {
            file: path.display().to_string(),
            expected,
            got: found,
        },
        VerifyError::Sha256 {
            path,
            expected,
            found,
        } => BundleError::Sha256Mismatch {
            file: path.display().to_string(),
            expected,
            actual: found,
        },
        VerifyError::Io { path, source } => BundleError::Io {
            context: format!("reading {}", path.display()),
            source,
        },
    })
}

/// Downloads `entry` from `source` into `dir/NAME` (through `dir/NAME.part`, resumed with
/// `Range` and retried as [`stage`] does), checking its size and sha256: a network boot's
/// image. Returns the bytes downloaded. A file that does not verify is removed.
pub fn fetch_into(
    source: &Source,
    dir: &Path,
    entry: &FileEntry,
    opts: &StageOptions,
    progress: &mut dyn Progress,
) -> Result<u64> {
    let clock = Clock::start(opts.limits);
    let (downloaded, _) = fetch_file(source, dir, entry, opts, &clock, progress)?;
    let to = dir.join(&entry.name);
    fs::rename(part_path(dir, &entry.name), &to)
        .ctx(|| format!("moving {} into place", to.display()))?;
    Ok(downloaded)
}

/// Whether a failed file's part is worth keeping for the next run.
fn keeps_part(err: &BundleError) -> bool {
    Source::is_transient(err) || matches!(err, BundleError::Deadline(_))
}

fn part_path(staging: &Path, name: &str) -> PathBuf {
    staging.join(format!("{name}.part"))
}

/// Removes the slot's manifest (first: the slot is incomplete from this instant), then its
/// signature and files; keeps `.staging` when its parts are reusable.
fn invalidate_slot(slot_dir: &Path, staging: &Path, keep_staging: bool) -> Result<()> {
    fs::create_dir_all(slot_dir).ctx(|| format!("creating {}", slot_dir.display()))?;
    for name in [MANIFEST, SIGNATURE] {
        remove_if_exists(&slot_dir.join(name))?;
    }
    fsync_dir(slot_dir).ctx(|| format!("fsync {}", slot_dir.display()))?;
    for e in fs::read_dir(slot_dir).ctx(|| format!("listing {}", slot_dir.display()))? {
        let e = e.ctx(|| format!("listing {}", slot_dir.display()))?;
        let p = e.path();
        if p == staging {
            if !keep_staging {
                fs::remove_dir_all(&p).ctx(|| format!("removing {}", p.display()))?;
            }
        } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            fs::remove_dir_all(&p).ctx(|| format!("removing {}", p.display()))?;
        } else {
            remove_if_exists(&p)?;
        }
    }
    fsync_dir(slot_dir).ctx(|| format!("fsync {}", slot_dir.display()))
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).ctx(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// Bytes in regular files under `dir`, not counting `skip`.
fn dir_bytes(dir: &Path, skip: Option<&Path>) -> Result<u64> {
    let mut total = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
    };
    for e in entries {
        let e = e.ctx(|| format!("listing {}", dir.display()))?;
        let p = e.path();
        if Some(p.as_path()) == skip {
            continue;
        }
        let m = e.metadata().ctx(|| format!("stat {}", p.display()))?;
        if m.is_dir() {
            total += dir_bytes(&p, skip)?;
        } else if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// Space an unprivileged writer may still use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let s = rustix::fs::statvfs(path)
        .map_err(std::io::Error::from)
        .ctx(|| format!("statvfs {}", path.display()))?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Fetches one file into its `.part`, hashing as it goes; returns (downloaded, reused) bytes.
fn fetch_file(
    source: &Source,
    staging: &Path,
    entry: &FileEntry,
    opts: &StageOptions,
    clock: &Clock,
    progress: &mut dyn Progress,
) -> Result<(u64, u64)> {
    let path = part_path(staging, &entry.name);
    let what = source.describe(&entry.name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    let mut len = file
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    if len > entry.size {
        file.set_len(0)
            .ctx(|| format!("truncating {}", path.display()))?;
        len = 0;
    }
    // A part left by an earlier run: hash what is there so the digest covers the whole file.
    let mut prefix = HashReader::new((&file).take(len));
    rkos_io::copy(&mut prefix, io::sink(), |_| {}).ctx(|| format!("reading {}", path.display()))?;
    let (_, hasher) = prefix.into_parts();
    let reused = hasher.len();
    (&file)
        .seek(SeekFrom::Start(reused))
        .ctx(|| format!("seeking {}", path.display()))?;
    // From here the hash covers the part from its first byte: its length is the part's.
    let mut out = HashWriter::with_hasher(file, hasher);
    progress.file_started(&entry.name, entry.size, reused);

    let mut downloaded = 0u64;
    let mut attempt = 0u32;
    let mut delay = opts.backoff;
    let mut buf = vec![0u8; CHUNK];
    loop {
        attempt += 1;
        let result: Result<bool> = (|| {
            clock.check_deadline().map_err(deadline)?;
            let opened = source.open(&entry.name, out.len())?;
            if opened.start != out.len() {
                // The server ignored the Range request: start the file over.
                let f = out.get_mut();
                f.set_len(0)
                    .ctx(|| format!("truncating {}", path.display()))?;
                f.seek(SeekFrom::Start(0))
                    .ctx(|| format!("seeking {}", path.display()))?;
                out.restart();
            }
            if let Some(total) = opened.total {
                if total > entry.size {
                    return Err(BundleError::TooLong {
                        file: what.clone(),
                        expected: entry.size,
                    });
                }
                if total < entry.size {
                    return Err(BundleError::Truncated {
                        file: what.clone(),
                        expected: entry.size,
                        got: total,
                    });
                }
            }
            let mut reader = opened.reader;
            let mut meter = clock.meter();
            loop {
                let read = reader.read(&mut buf);
                clock.check_deadline().map_err(deadline)?;
                let too_slow = meter.add(*read.as_ref().unwrap_or(&0) as u64);
                let n = match read {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(BundleError::Transfer {
                            what: what.clone(),
                            attempts: attempt,
                            last: e.to_string(),
                        })
                    }
                };
                if let Err(slow) = too_slow {
                    // Dropped like a broken connection: the retry resumes where it stopped.
                    return Err(BundleError::Transfer {
                        what: what.clone(),
                        attempts: attempt,
                        last: slow.to_string(),
                    });
                }
                let len = out.len();
                if len + n as u64 > entry.size {
                    return Err(BundleError::TooLong {
                        file: what.clone(),
                        expected: entry.size,
                    });
                }
                out.write_all(&buf[..n])
                    .ctx(|| format!("writing {}", path.display()))?;
                if len / SYNC_EVERY != (len + n as u64) / SYNC_EVERY {
                    out.get_ref()
                        .sync_data()
                        .ctx(|| format!("fsync {}", path.display()))?;
                }
                downloaded += n as u64;
                progress.advanced(n as u64);
            }
            Ok(out.len() == entry.size)
        })();
        let err = match result {
            Ok(true) => break,
            // The stream ended early: for a local file that is the file; over the network
            // it is a dropped connection, worth resuming.
            Ok(false) if matches!(source, Source::Dir(_)) => BundleError::Truncated {
                file: what.clone(),
                expected: entry.size,
                got: out.len(),
            },
            Ok(false) => BundleError::Transfer {
                what: what.clone(),
                attempts: attempt,
                last: format!(
                    "connection closed after {} of {} bytes",
                    out.len(),
                    entry.size
                ),
            },
            Err(e) => e,
        };
        if !keeps_part(&err) {
            drop(out);
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        let late = opts
            .deadline
            .is_some_and(|d| Instant::now() + delay.min(MAX_BACKOFF) >= d);
        if attempt >= opts.attempts || late || matches!(err, BundleError::Deadline(_)) {
            out.get_ref()
                .sync_all()
                .ctx(|| format!("fsync {}", path.display()))?;
            return Err(match err {
                BundleError::Transfer { what, last, .. } => BundleError::Transfer {
                    what,
                    attempts: attempt,
                    last,
                },
                other => other,
            });
        }
        progress.retrying(&entry.name, attempt, delay, &err);
        std::thread::sleep(clock.remaining().map_or(delay, |left| delay.min(left)));
        delay = (delay * 2).min(MAX_BACKOFF);
    }

    let (file, hashed) = out.finish();
    file.sync_all()
        .ctx(|| format!("fsync {}", path.display()))?;
    drop(file);
    if hashed.sha256 != entry.sha256 {
        let _ = fs::remove_file(&path);
        return Err(BundleError::Sha256Mismatch {
            file: what,
            expected: entry.sha256.clone(),
            actual: hashed.sha256,
        });
    }
    progress.file_done(&entry.name);
    Ok((downloaded, reused))
}

fn deadline(breach: Breach) -> BundleError {
    BundleError::Deadline(breach.to_string())
}
