use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Everything that can stop an upgrade. Each error happens before the boot configuration is
/// touched, or leaves it as it was (see `stage` and `flip`).
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("no trusted keys: put minisign public keys in {0} or set upgrade.trusted_keys; refusing to trust any bundle")]
    NoTrustedKeys(String),
    #[error("trusted key {origin}: {reason}")]
    BadKey { origin: String, reason: String },
    #[error("manifest signature: cannot read it: {0}")]
    SignatureFormat(String),
    #[error(
        "manifest is signed by key {key_id}, which is not among the node's {count} trusted key(s)"
    )]
    UnknownKey { key_id: String, count: usize },
    #[error("manifest signature does not verify with trusted key {key_id}: the manifest was altered or the signature is forged")]
    BadSignature { key_id: String },
    #[error("invalid manifest: {0}")]
    Manifest(#[from] rkos_slots::manifest::ManifestError),
    #[error("the bundle is for {bundle} machines and this node is {node}: an image of another architecture cannot boot here; refused, nothing was written")]
    WrongArch { bundle: String, node: String },
    #[error("not enough space on {path}: {needed} bytes needed, {available} available")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("{file}: sha256 is {actual}, the signed manifest says {expected}")]
    Sha256Mismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: source has more than the {expected} bytes the manifest says")]
    TooLong { file: String, expected: u64 },
    #[error("{file}: source has {got} bytes, the manifest says {expected} (truncated)")]
    Truncated {
        file: String,
        expected: u64,
        got: u64,
    },
    #[error("{what}: HTTP {status}")]
    HttpStatus { what: String, status: u16 },
    #[error("{what}: transfer failed after {attempts} attempt(s): {last}")]
    Transfer {
        what: String,
        attempts: u32,
        last: String,
    },
    #[error("{0}; the parts downloaded so far are kept for the next run")]
    Deadline(String),
    #[error("{what} is larger than {limit} bytes")]
    SmallFileTooBig { what: String, limit: u64 },
    #[error("the bundle holds version {found}, not the expected {expected}")]
    UnexpectedVersion { found: String, expected: String },
    #[error("the bundle's version {bundle} is {why} the running {running}: refusing a downgrade (--allow-downgrade, or allowDowngrade in the upgrade plan, installs it anyway)")]
    Downgrade {
        bundle: String,
        running: String,
        why: &'static str,
    },
    #[error("the bundle's version {bundle} is {why} this node's minimum version {floor} (in {file}, raised when a release that set it was marked good): refused, and --allow-downgrade does not lift it")]
    BelowFloor {
        bundle: String,
        floor: String,
        file: PathBuf,
        why: &'static str,
    },
    #[error("another `rkos upgrade` is running (it holds {lock}{}); try again once it is done", if holder.is_empty() { String::new() } else { format!(", pid {holder}") })]
    Busy { lock: String, holder: String },
    #[error("this node already runs version {0}")]
    AlreadyRunning(String),
    #[error("refusing to upgrade: {0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    State(#[from] rkos_slots::StateError),
    #[error("invalid bundle source {0:?}: {1}")]
    Source(String, String),
    #[cfg(feature = "sign")]
    #[error("signing: {0}")]
    Sign(String),
}

pub type Result<T, E = BundleError> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BundleError::Io {
            context: context(),
            source,
        })
    }
}
