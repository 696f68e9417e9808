//! rkos-wizard: the interactive configurator (`os-config`) and the install-to-disk path.
//!
//! - [`answers`], [`checks`], [`secrets`]: the pure model (answers -> config.yaml).
//! - [`disks`], [`net`]: what the questions offer (install targets, GitHub keys, probes).
//! - [`ui`]: the dialoguer questions, which only fill [`answers::Answers`].
//! - [`system`]: the configure path (write config.yaml atomically, apply) and the
//!   unattended install parameters from the kernel command line.
//! - [`install`]: partitions, file systems, slot A, GRUB, the config on the data volume.

pub mod answers;
pub mod atomic;
pub mod checks;
pub mod disks;
pub mod grow;
pub mod install;
pub mod net;
pub mod secrets;
pub mod system;
pub mod ui;

pub use answers::{Action, Answers, Role};

/// The errors of a config text as rkos-config reports them ("SOURCE:LINE:COL: key: message").
/// Warnings (e.g. unknown keys) are not errors: they come back in the second list.
pub fn validate_config(name: &str, text: &str) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for d in rkos_config::validate_text(name, text) {
        if d.is_error() {
            errors.push(d.to_string());
        } else {
            warnings.push(d.to_string());
        }
    }
    (errors, warnings)
}
