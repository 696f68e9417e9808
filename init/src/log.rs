//! Logging to the kernel log (`/dev/kmsg`) and to the consoles, and the stage timings.
//!
//! Stage lines have the fixed form `rkos-init: <stage> <ms> ms` so a script can parse the
//! boot-time breakdown out of `dmesg`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

static KMSG: OnceLock<Option<File>> = OnceLock::new();

/// Opens `/dev/kmsg` for all later log lines (call after `/dev` is mounted). Without it, lines
/// go to stderr.
pub fn open_kmsg() {
    KMSG.get_or_init(|| OpenOptions::new().write(true).open("/dev/kmsg").ok());
}

/// Syslog priorities as the kernel log takes them.
pub const ERR: u8 = 3;
pub const WARNING: u8 = 4;
pub const INFO: u8 = 6;
/// Used for copies of what is also written straight to the consoles: the kernel prints a
/// record on the consoles only below the console log level, and debug is above it unless the
/// operator asked for `debug`, so the consoles do not show it twice.
pub const DEBUG: u8 = 7;

const PREFIX: &str = "rkos-init: ";

/// A kernel log record for one line. Console messages already name the init; the record
/// must not name it twice.
fn record(level: u8, line: &str) -> String {
    let line = line.strip_prefix(PREFIX).unwrap_or(line);
    format!("<{level}>{PREFIX}{line}\n")
}

/// Nanoseconds spent inside writes to `/dev/kmsg`: the kernel printing each record on the
/// consoles (a serial line and, on most machines, a VGA or framebuffer console), reported
/// apart from the init's own work like mount(2).
static KMSG_NS: AtomicU64 = AtomicU64::new(0);

pub fn kmsg_kernel_time() -> Duration {
    Duration::from_nanos(KMSG_NS.load(Ordering::Relaxed))
}

/// One kernel log record per line, prefixed `rkos-init: `.
pub fn kmsg(level: u8, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let rec = record(level, line);
        match KMSG.get().and_then(|f| f.as_ref()) {
            // One write per record: /dev/kmsg turns each write into one record.
            Some(mut f) => {
                let t = Instant::now();
                let _ = f.write(rec.as_bytes());
                KMSG_NS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            None => {
                let _ = io::stderr().write_all(&rec.as_bytes()[3..]);
            }
        }
    }
}

/// The console devices to write messages to: each `console=` device, or `/dev/console` when
/// the command line names none. (`/dev/console` is the last `console=` device, so writing to
/// both would print the message twice there.)
pub fn console_paths(consoles: &[String]) -> Vec<PathBuf> {
    if consoles.is_empty() {
        vec![PathBuf::from("/dev/console")]
    } else {
        consoles
            .iter()
            .map(|c| PathBuf::from("/dev").join(c))
            .collect()
    }
}

/// Writes `text` to every console in `paths` (falling back to `/dev/console` when none can be
/// opened) and keeps a copy in the kernel log.
pub fn to_consoles(paths: &[PathBuf], text: &str) {
    let mut wrote = false;
    for p in paths {
        // O_NOCTTY: PID 1 is a session leader and must not acquire a console as its terminal.
        if let Ok(mut f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(p)
        {
            wrote |= f.write_all(text.as_bytes()).is_ok();
        }
    }
    if !wrote {
        if let Ok(mut f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/console")
        {
            let _ = f.write_all(text.as_bytes());
        } else {
            let _ = io::stderr().write_all(text.as_bytes());
        }
    }
    kmsg(DEBUG, text);
}

/// `tracing` events into the kernel log, one record per line, the level mapped to a priority.
/// A subscriber of its own rather than tracing-subscriber's formatter: under emulation every
/// code path is translated the first time it runs, and the formatter's is long for the few
/// lines the init logs. Spans are not used by the init and are ignored.
pub struct KmsgSubscriber {
    max: tracing::Level,
    sink: fn(u8, &str),
}

impl KmsgSubscriber {
    pub fn new(max: tracing::Level) -> Self {
        KmsgSubscriber { max, sink: kmsg }
    }
}

fn priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => ERR,
        tracing::Level::WARN => WARNING,
        tracing::Level::INFO => INFO,
        _ => DEBUG,
    }
}

/// The event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Line(String);

impl tracing::field::Visit for Line {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl tracing::Subscriber for KmsgSubscriber {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        (self.sink)(priority(event.metadata().level()), &line.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Routes `tracing` events to the kernel log; `debug` lowers the threshold to DEBUG.
pub fn init_tracing(debug: bool) {
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let _ = tracing::subscriber::set_global_default(KmsgSubscriber::new(level));
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub ms: f64,
}

/// The duration of each stage, logged as it ends.
#[derive(Debug)]
pub struct Timings {
    start: Instant,
    pub stages: Vec<StageTime>,
}

impl Default for Timings {
    fn default() -> Self {
        Self::new()
    }
}

impl Timings {
    pub fn new() -> Self {
        Timings {
            start: Instant::now(),
            stages: Vec::new(),
        }
    }

    pub fn record(&mut self, stage: &str, d: Duration) {
        let ms = (d.as_secs_f64() * 10_000.0).round() / 10.0;
        kmsg(INFO, &format!("{stage} {ms:.1} ms"));
        match self.stages.iter_mut().find(|s| s.stage == stage) {
            Some(s) => s.ms = ((s.ms + ms) * 10.0).round() / 10.0,
            None => self.stages.push(StageTime {
                stage: stage.to_string(),
                ms,
            }),
        }
    }

    /// Runs `f` as the stage `stage`.
    pub fn stage<T>(&mut self, stage: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.record(stage, t.elapsed());
        r
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Milliseconds in `excluded` stages (waiting for devices, downloading, hashing a large
    /// image: time the init does not control).
    pub fn excluded_ms(&self, excluded: &[&str]) -> f64 {
        let ms: f64 = self
            .stages
            .iter()
            .filter(|s| excluded.contains(&s.stage.as_str()))
            .map(|s| s.ms)
            .sum();
        (ms * 10.0).round() / 10.0
    }

    /// Milliseconds from the start to `at`, minus the `excluded` stages: everything else
    /// counts, including the work between stages.
    pub fn own_ms(&self, at: Duration, excluded: &[&str]) -> f64 {
        let ms = at.as_secs_f64() * 1000.0 - self.excluded_ms(excluded);
        (ms.max(0.0) * 10.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_the_init_once() {
        assert_eq!(record(3, "boot failed"), "<3>rkos-init: boot failed\n");
        assert_eq!(
            record(7, "rkos-init: BOOT FAILED: x"),
            "<7>rkos-init: BOOT FAILED: x\n"
        );
    }

    thread_local! {
        static CAUGHT: std::cell::RefCell<Vec<(u8, String)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    fn catch(level: u8, text: &str) {
        CAUGHT.with(|c| c.borrow_mut().push((level, text.to_string())));
    }

    #[test]
    fn events_become_kernel_log_lines_at_their_priority() {
        let sub = KmsgSubscriber {
            max: tracing::Level::INFO,
            sink: catch,
        };
        tracing::subscriber::with_default(sub, || {
            tracing::info!("mode {}, boot volume {}", "live", "/dev/sr0");
            tracing::warn!(path = "/x", "no kernel modules");
            tracing::error!("boot failed");
            tracing::debug!("not shown at INFO");
        });
        let caught = CAUGHT.with(|c| c.borrow().clone());
        assert_eq!(
            caught,
            [
                (INFO, "mode live, boot volume /dev/sr0".to_string()),
                (WARNING, "no kernel modules path=/x".to_string()),
                (ERR, "boot failed".to_string()),
            ]
        );
    }

    #[test]
    fn repeated_stages_add_up() {
        let mut t = Timings::new();
        t.record("modules", Duration::from_micros(1500));
        t.record("wait-devices", Duration::from_millis(200));
        t.record("modules", Duration::from_micros(2500));
        assert_eq!(t.stages.len(), 2);
        assert_eq!(t.stages[0].ms, 4.0);
        assert_eq!(t.excluded_ms(&["wait-devices"]), 200.0);
        assert_eq!(t.excluded_ms(&[]), 0.0);
        assert_eq!(
            t.own_ms(Duration::from_millis(250), &["wait-devices"]),
            50.0
        );
        assert_eq!(
            t.own_ms(Duration::from_millis(250), &["wait-devices", "modules"]),
            46.0
        );
        assert_eq!(t.own_ms(Duration::from_millis(100), &["wait-devices"]), 0.0);
        let v = t.stage("x", || 7);
        assert_eq!(v, 7);
        assert_eq!(t.stages.len(), 3);
    }

    #[test]
    fn console_choice() {
        assert_eq!(console_paths(&[]), [PathBuf::from("/dev/console")]);
        assert_eq!(
            console_paths(&["tty0".into(), "ttyS0".into()]),
            [PathBuf::from("/dev/tty0"), PathBuf::from("/dev/ttyS0")]
        );
    }
}
