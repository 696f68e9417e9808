//! Download progress: a bar on a terminal, periodic log lines otherwise (journal, agent).

use std::time::Duration;

#[cfg(feature = "progress-bar")]
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::BundleError;

pub trait Progress {
    fn file_started(&mut self, _name: &str, _size: u64, _have: u64) {}
    fn advanced(&mut self, _bytes: u64) {}
    fn file_done(&mut self, _name: &str) {}
    fn retrying(&mut self, _name: &str, _attempt: u32, _delay: Duration, _err: &BundleError) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A progress bar when stderr is a terminal, else a `tracing` line every 10 %.
#[cfg(feature = "progress-bar")]
pub struct ConsoleProgress {
    bar: Option<ProgressBar>,
    tty: bool,
    name: String,
    size: u64,
    done: u64,
    next_log: u64,
}

#[cfg(feature = "progress-bar")]
impl Default for ConsoleProgress {
    fn default() -> Self {
        ConsoleProgress {
            bar: None,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            name: String::new(),
            size: 0,
            done: 0,
            next_log: 0,
        }
    }
}

#[cfg(feature = "progress-bar")]
impl Progress for ConsoleProgress {
    fn file_started(&mut self, name: &str, size: u64, have: u64) {
        self.name = name.to_string();
        self.size = size;
        self.done = have;
        self.next_log = have + size / 10;
        if self.tty {
            let bar = ProgressBar::new(size);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(name.to_string());
            bar.set_position(have);
            self.bar = Some(bar);
        } else {
            tracing::info!(file = name, size, resumed_at = have, "downloading");
        }
    }

    fn advanced(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(b) = &self.bar {
            b.inc(bytes);
        } else if self.done >= self.next_log && self.size > 0 {
            tracing::info!(
                file = %self.name,
                percent = self.done * 100 / self.size,
                "downloading"
            );
            self.next_log = self.done + self.size / 10;
        }
    }

    fn file_done(&mut self, name: &str) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        tracing::info!(file = name, bytes = self.size, "verified");
    }

    fn retrying(&mut self, name: &str, attempt: u32, delay: Duration, err: &BundleError) {
        if let Some(b) = &self.bar {
            b.println(format!(
                "{name}: {err}; retrying in {delay:?} (attempt {attempt})"
            ));
        }
        tracing::warn!(file = name, attempt, ?delay, error = %err, "transfer failed, retrying");
    }
}
