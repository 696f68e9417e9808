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

use rkos_contract::StageTime;

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

/// Kernel work the init starts and waits on but does not do itself, timed where it is
/// called and reported apart from the init's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelWork {
    /// Inside `finit_module`: linking a module and running its init, which for a driver
    /// includes probing the hardware (seconds for an emulated ATAPI drive).
    ModuleInit,
    /// Inside `mount(2)` and loop device set-up: reading superblocks, replaying journals,
    /// configuring block devices.
    Mount,
    /// Inside writes to `/dev/kmsg`: the kernel printing each record on the consoles (a
    /// serial line and, on most machines, a VGA or framebuffer console).
    Console,
}

impl KernelWork {
    pub const ALL: [KernelWork; 3] = [
        KernelWork::ModuleInit,
        KernelWork::Mount,
        KernelWork::Console,
    ];
}

static KERNEL_NS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Runs `f`, counting its time as kernel work of `kind`.
pub fn in_kernel<T>(kind: KernelWork, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    KERNEL_NS[kind as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}

/// Kernel work of each kind so far, in [`KernelWork::ALL`] order.
fn kernel_times() -> [Duration; 3] {
    KernelWork::ALL.map(|k| Duration::from_nanos(KERNEL_NS[k as usize].load(Ordering::Relaxed)))
}

/// One kernel log record per line, prefixed `rkos-init: `.
pub fn kmsg(level: u8, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let rec = record(level, line);
        match KMSG.get().and_then(|f| f.as_ref()) {
            // One write per record: /dev/kmsg turns each write into one record.
            Some(mut f) => {
                let _ = in_kernel(KernelWork::Console, || f.write(rec.as_bytes()));
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

/// Milliseconds shown with one decimal using integer arithmetic: float formatting's code is
/// long, and under emulation every code path costs its translation the first time it runs.
pub struct Ms(pub f64);

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0 * 10.0).round() as i64;
        let sign = if tenths < 0 { "-" } else { "" };
        let t = tenths.unsigned_abs();
        write!(f, "{sign}{}.{}", t / 10, t % 10)
    }
}

/// Where a stage began: the clock and the kernel work counted so far.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    at: Instant,
    kernel: [Duration; 3],
}

impl Mark {
    pub fn elapsed(&self) -> Duration {
        self.at.elapsed()
    }
}

/// The duration of each stage, logged as it ends, and the split of the whole run into the
/// init's own work and the rest: stages it does not control (`not_own`: waiting for
/// devices, downloading, hashing a large image) and [`KernelWork`].
#[derive(Debug)]
pub struct Timings {
    start: Mark,
    not_own: &'static [&'static str],
    pub stages: Vec<StageTime>,
    /// Kernel work that happened inside `not_own` stages (already left out with them).
    kernel_in_not_own: [Duration; 3],
}

/// `v` rounded to one decimal, as every figure the init reports is.
pub fn tenths(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `d` in milliseconds, to one decimal.
pub fn ms(d: Duration) -> f64 {
    tenths(d.as_secs_f64() * 1000.0)
}

impl Timings {
    pub fn new(not_own: &'static [&'static str]) -> Self {
        Timings {
            start: Self::mark(),
            not_own,
            stages: Vec::new(),
            kernel_in_not_own: [Duration::ZERO; 3],
        }
    }

    pub fn mark() -> Mark {
        Mark {
            at: Instant::now(),
            kernel: kernel_times(),
        }
    }

    /// Ends the stage `stage` that began at `since`.
    pub fn record(&mut self, stage: &str, since: Mark) {
        let now = kernel_times();
        let kernel: [Duration; 3] = std::array::from_fn(|i| now[i].saturating_sub(since.kernel[i]));
        self.add(stage, since.elapsed(), kernel);
    }

    /// Adds a stage that took `wall`, of which `kernel` was [`KernelWork`] by kind.
    fn add(&mut self, stage: &str, wall: Duration, kernel: [Duration; 3]) {
        let wall_ms = ms(wall);
        let own_ms = if self.not_own.contains(&stage) {
            for (sum, k) in self.kernel_in_not_own.iter_mut().zip(kernel) {
                *sum += k;
            }
            kmsg(INFO, &format!("{stage} {} ms", Ms(wall_ms)));
            0.0
        } else {
            let own_ms = ms(wall.saturating_sub(kernel.iter().sum()));
            kmsg(
                INFO,
                &format!("{stage} {} ms (own work {} ms)", Ms(wall_ms), Ms(own_ms)),
            );
            own_ms
        };
        match self.stages.iter_mut().find(|s| s.stage == stage) {
            Some(s) => {
                s.ms = tenths(s.ms + wall_ms);
                s.own_ms = tenths(s.own_ms + own_ms);
            }
            None => self.stages.push(StageTime {
                stage: stage.to_string(),
                ms: wall_ms,
                own_ms,
            }),
        }
    }

    /// Runs `f` as the stage `stage`.
    pub fn stage<T>(&mut self, stage: &str, f: impl FnOnce() -> T) -> T {
        let since = Self::mark();
        let r = f();
        self.record(stage, since);
        r
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Kernel work of `kind` since the start, outside the `not_own` stages, in ms.
    pub fn kernel_ms(&self, kind: KernelWork) -> f64 {
        let i = kind as usize;
        ms((kernel_times()[i] - self.start.kernel[i]).saturating_sub(self.kernel_in_not_own[i]))
    }

    /// Milliseconds from the start to `at`, minus the `not_own` stages and the kernel work
    /// outside them: everything else counts, including the work between stages.
    pub fn own_ms(&self, at: Duration) -> f64 {
        self.own_ms_with(at, KernelWork::ALL.map(|k| self.kernel_ms(k)).iter().sum())
    }

    fn own_ms_with(&self, at: Duration, kernel_ms: f64) -> f64 {
        let not_own: f64 = self
            .stages
            .iter()
            .filter(|s| self.not_own.contains(&s.stage.as_str()))
            .map(|s| s.ms)
            .sum();
        tenths((ms(at) - not_own - kernel_ms).max(0.0))
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
    fn repeated_stages_add_up_and_kernel_work_is_not_own_work() {
        let mut t = Timings::new(&["wait-devices"]);
        let us = Duration::from_micros;
        // [module init, mount, console]
        t.add("modules", us(1500), [us(1000), us(0), us(0)]);
        t.add("wait-devices", us(200_000), [us(50_000), us(0), us(0)]);
        t.add("modules", us(2500), [us(0), us(300), us(200)]);
        assert_eq!(t.stages.len(), 2);
        assert_eq!(t.stages[0].ms, 4.0);
        assert_eq!(t.stages[0].own_ms, 2.5);
        assert_eq!(t.stages[1].ms, 200.0);
        assert_eq!(t.stages[1].own_ms, 0.0);
        // Module init inside the wait is left out with the wait, not a second time.
        assert_eq!(t.kernel_in_not_own, [us(50_000), us(0), us(0)]);
        assert_eq!(t.own_ms_with(Duration::from_millis(250), 1.5), 48.5);
        assert_eq!(t.own_ms_with(Duration::from_millis(100), 0.0), 0.0);
        // Kernel work longer than the stage (a clock step) never makes own work negative.
        t.add("config", us(100), [us(300), us(0), us(0)]);
        assert_eq!(t.stages[2].own_ms, 0.0);
        let v = t.stage("x", || 7);
        assert_eq!(v, 7);
        assert_eq!(t.stages.len(), 4);
    }

    #[test]
    fn milliseconds_with_one_decimal() {
        let shown: Vec<String> = [0.0, 0.04, 0.05, 12.34, 1766.35, -2.5]
            .iter()
            .map(|v| Ms(*v).to_string())
            .collect();
        assert_eq!(shown, ["0.0", "0.0", "0.1", "12.3", "1766.4", "-2.5"]);
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
