//! The install's progress as the wizard and `rkos install` show it on the terminal.

use indicatif::{ProgressBar, ProgressStyle};
use rkos_install::Progress;

/// Install progress: a byte bar for the copy, a line per step.
pub struct BarProgress {
    bar: Option<ProgressBar>,
}

impl BarProgress {
    pub fn new() -> Self {
        BarProgress { bar: None }
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BarProgress {
    fn step(&mut self, what: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!("==> {what}");
        tracing::debug!("install: {what}");
    }
    fn bytes(&mut self, done: u64, total: u64) {
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "    [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        bar.set_position(done);
        if done >= total {
            bar.finish();
        }
    }
}
