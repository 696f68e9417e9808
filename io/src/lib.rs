//! rkos-io: the one place where rkos writes a file safely or hashes one.
//!
//! - [`atomic`]: replace a file so that a reader, or a power cut, sees the old content or the
//!   new, never a mix; the mode is set before any byte lands.
//! - [`hash`]: sha256 while streaming (a reader and a writer that hash what passes through),
//!   the sha256 of a file, and the check of a file against a manifest entry (size + sha256).
//!
//! Everything is synchronous and small: rkos-init (PID 1 in the initramfs) uses it too.

pub mod atomic;
pub mod hash;

pub use atomic::{fsync_dir, write_atomic, write_lines_or_remove, AtomicFile};
pub use hash::{
    copy, sha256_file, sha256_reader, verify_file, HashReader, HashWriter, Hashed, Hasher,
    VerifyError,
};
