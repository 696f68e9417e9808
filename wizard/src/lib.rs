//! rkos-wizard: the interactive configurator (`os-config`). It only asks: the install
//! itself is rkos-install's (`rkos_install::run`), called by the command with the answers.
//!
//! - [`answers`], [`checks`], [`secrets`]: the pure model (answers -> config.yaml).
//! - [`net`]: what the questions look up (GitHub keys, server probes, a config by URL);
//!   the install targets come from `rkos_install::disks`.
//! - [`ui`]: the dialoguer questions, which only fill [`answers::Answers`].
//! - [`progress`]: the install's progress bar.
//! - [`system`]: the configure path (write config.yaml atomically, apply).

pub mod answers;
pub mod answers_file;
pub mod checks;
pub mod current;
pub mod join;
pub mod line;
pub mod net;
pub mod progress;
pub mod secrets;
pub mod system;
pub mod tty;
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
