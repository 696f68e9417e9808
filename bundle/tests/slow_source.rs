//! Issue 16, item 15: a server that trickles must not keep a node staging for ever. The
//! HTTP client's per-read timeout never fires while a byte arrives now and then; the minimum
//! rate drops such a transfer, and the overall deadline ends the run.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{Faults, Fixture, TestServer};
use rkos_bundle::{BundleError, Limits, MinRate, NoProgress, Source, StageOptions};
use rkos_slots::Slot;

/// vmlinuz (200,000 bytes in every fixture bundle) sent `piece` bytes every 50 ms.
fn trickling(fx: &Fixture, piece: usize) -> TestServer {
    let b = fx.bundle("2", 10_000);
    let srv = TestServer::start(&b);
    *srv.faults.lock().unwrap() = Faults {
        trickle: [("vmlinuz".to_string(), (piece, Duration::from_millis(50)))].into(),
        ..Faults::default()
    };
    srv
}

fn stage_with(fx: &Fixture, url: &str, limits: Limits) -> rkos_bundle::Result<rkos_bundle::Staged> {
    let opts = StageOptions {
        attempts: 2,
        limits,
        ..Fixture::opts()
    };
    rkos_bundle::stage(
        &Source::parse(url).unwrap(),
        &fx.state,
        Slot::A,
        &fx.keys(),
        &opts,
        &mut NoProgress,
    )
}

#[test]
fn a_transfer_below_the_minimum_rate_is_dropped() {
    let fx = Fixture::new();
    let before = fx.snapshot_active();
    // 2 KB/s: 100 s for vmlinuz, each read well inside the client's per-read timeout.
    let srv = trickling(&fx, 100);
    let limits = Limits {
        deadline: None,
        min_rate: Some(MinRate {
            bytes_per_sec: 20_000,
            window: Duration::from_millis(300),
        }),
    };
    let t = Instant::now();
    let err = stage_with(&fx, &srv.url, limits).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        matches!(&err, BundleError::Transfer { attempts: 2, last, .. } if last.contains("below the minimum rate")),
        "{err}"
    );
    // Both attempts asked for the file: the second resumed where the first was dropped.
    let ranges = srv.ranges_for("vmlinuz");
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(ranges[1].is_some(), "{ranges:?}");
    assert!(fx.snapshot_active() == before, "slot A or grubenv changed");
}

#[test]
fn the_deadline_ends_staging_and_keeps_the_parts() {
    let fx = Fixture::new();
    let before = fx.snapshot_active();
    // 20 KB/s, fast enough for any minimum rate here: 10 s for vmlinuz.
    let srv = trickling(&fx, 1000);
    let limits = Limits {
        deadline: Some(Duration::from_secs(1)),
        min_rate: None,
    };
    let t = Instant::now();
    let err = stage_with(&fx, &srv.url, limits).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(matches!(err, BundleError::Deadline(_)), "{err}");
    assert!(fx.snapshot_active() == before, "slot A or grubenv changed");
    let part = fx.state.staging_dir(Slot::B).join("vmlinuz.part");
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0, "the part is kept for the next run");

    // The next run, with the server at full speed again, resumes it.
    srv.faults.lock().unwrap().trickle.clear();
    let staged = stage_with(&fx, &srv.url, Limits::default()).unwrap();
    assert!(staged.reused >= kept, "{staged:?}");
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
}
