//! Limits on how long staging may take: an overall deadline for the whole run, and a minimum
//! rate over a sliding window. The HTTP client's per-read timeout alone lets a server keep a
//! node staging for ever by sending one byte just before each read times out.

use std::time::{Duration, Instant};

/// Staging's time limits ([`crate::StageOptions::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole staging run (every file, retries and backoff included) must end within this;
    /// past it staging stops, keeping its parts for the next run to resume.
    pub deadline: Option<Duration>,
    /// A transfer that brings fewer than `bytes_per_sec × window` bytes in any window is
    /// dropped (and retried from where it stopped, like a dropped connection).
    pub min_rate: Option<MinRate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

/// Defaults: `rkos upgrade`'s `--deadline` and `--min-rate`/`--min-rate-window`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3 * 3600);
pub const DEFAULT_MIN_RATE: MinRate = MinRate {
    bytes_per_sec: 4096,
    window: Duration::from_secs(120),
};

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Some(DEFAULT_DEADLINE),
            min_rate: Some(DEFAULT_MIN_RATE),
        }
    }
}

/// What broke a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    Deadline(Duration),
    TooSlow { bytes: u64, window: Duration },
}

/// The clock of one staging run.
#[derive(Debug, Clone)]
pub struct Clock {
    limits: Limits,
    started: Instant,
}

impl Clock {
    pub fn start(limits: Limits) -> Clock {
        Clock {
            limits,
            started: Instant::now(),
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.limits
            .deadline
            .map(|d| d.saturating_sub(self.started.elapsed()))
    }

    pub fn check_deadline(&self) -> Result<(), Breach> {
        match self.limits.deadline {
            Some(d) if self.started.elapsed() >= d => Err(Breach::Deadline(d)),
            _ => Ok(()),
        }
    }

    /// A meter for one transfer (one request's body).
    pub fn meter(&self) -> Meter {
        Meter {
            min_rate: self.limits.min_rate,
            window_start: Instant::now(),
            bytes: 0,
        }
    }
}

/// Bytes of one transfer in the current window.
#[derive(Debug, Clone)]
pub struct Meter {
    min_rate: Option<MinRate>,
    window_start: Instant,
    bytes: u64,
}

impl Meter {
    /// Counts `n` bytes just read (0 for a read that brought none), then checks the window
    /// that ended, if one did.
    pub fn add(&mut self, n: u64) -> Result<(), Breach> {
        self.bytes += n;
        let Some(min) = self.min_rate else {
            return Ok(());
        };
        let elapsed = self.window_start.elapsed();
        if elapsed < min.window {
            return Ok(());
        }
        let wanted = (min.bytes_per_sec as f64 * elapsed.as_secs_f64()) as u64;
        if self.bytes < wanted {
            return Err(Breach::TooSlow {
                bytes: self.bytes,
                window: elapsed,
            });
        }
        self.window_start = Instant::now();
        self.bytes = 0;
        Ok(())
    }
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::Deadline(d) => write!(f, "staging did not finish within its deadline of {d:?}"),
            Breach::TooSlow { bytes, window } => write!(
                f,
                "only {bytes} bytes arrived in {:.1} s, below the minimum rate",
                window.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_below_the_minimum_rate_breaches() {
        let limits = Limits {
            deadline: None,
            min_rate: Some(MinRate {
                bytes_per_sec: 1000,
                window: Duration::from_millis(50),
            }),
        };
        let clock = Clock::start(limits);
        let mut m = clock.meter();
        m.add(10).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(m.add(0), Err(Breach::TooSlow { bytes: 10, .. })));
        let mut m = clock.meter();
        m.add(1000).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        m.add(0).unwrap();
        assert_eq!(clock.check_deadline(), Ok(()));
        assert_eq!(clock.remaining(), None);
    }

    #[test]
    fn the_deadline_covers_the_whole_run() {
        let clock = Clock::start(Limits {
            deadline: Some(Duration::from_millis(30)),
            min_rate: None,
        });
        assert!(clock.remaining().unwrap() > Duration::ZERO);
        clock.check_deadline().unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(clock.remaining(), Some(Duration::ZERO));
        assert!(matches!(clock.check_deadline(), Err(Breach::Deadline(_))));
        // No minimum rate: nothing is too slow.
        clock.meter().add(0).unwrap();
    }
}
