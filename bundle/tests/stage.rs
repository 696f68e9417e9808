//! Staging and flipping against real files and a real (loopback) HTTP server. Every failure
//! case checks that slot A and grubenv are byte-for-byte as they were and that no partial
//! file is left in slot B.

mod common;

use std::fs;

use common::{Faults, Fixture, TestServer};
use rkos_bundle::{flip, sign, BundleError, Source, TrustedKeys};
use rkos_slots::{BootState, Outcome, Slot};

const ROOTFS: usize = 3 * 1024 * 1024 + 12345;

fn assert_untouched(fx: &Fixture, before: &std::collections::BTreeMap<String, Vec<u8>>) {
    assert!(
        fx.snapshot_active() == *before,
        "slot A or grubenv changed after a failed upgrade"
    );
    assert_eq!(
        fx.slot_b_files(),
        Vec::<String>::new(),
        "partial files left in slot B"
    );
}

#[test]
fn dir_bundle_stages_flips_and_boots_on_trial() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let staged = fx.stage(b.to_str().unwrap()).unwrap();
    assert_eq!(staged.slot, Slot::B);
    assert_eq!(staged.manifest.version, "2");
    assert_eq!(staged.downloaded, staged.manifest.total_size());
    for f in ["vmlinuz", "initrd", "rootfs.squashfs"] {
        assert_eq!(
            fs::read(fx.state.slot_dir(Slot::B).join(f)).unwrap(),
            fs::read(b.join(f)).unwrap()
        );
    }
    assert!(!fx.state.staging_dir(Slot::B).exists());
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
    // Staging alone does not touch the boot configuration.
    assert_eq!(fx.state.boot_state().unwrap(), BootState::default());

    let st = flip(&fx.state, &staged, 3).unwrap();
    assert_eq!(st.trial.unwrap().slot, Slot::B);
    assert_eq!(st.trial.unwrap().tries_left, 3);
    let (slot, booted) = st.grub_boot();
    assert_eq!(slot, Slot::B);
    fx.state.write_boot_state(&booted).unwrap();
    let good = fx
        .state
        .update_boot_state(|s| s.mark_good(Slot::B))
        .unwrap();
    assert_eq!(good.default, Slot::B);
    assert_eq!(good.last, Some(Outcome::Good(Slot::B)));
}

#[test]
fn http_bundle_resumes_after_dropped_connection() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let srv = TestServer::start(&b);
    *srv.faults.lock().unwrap() = Faults {
        cut: [("rootfs.squashfs".to_string(), (1_000_000, 2))].into(),
        ignore_range: false,
        ..Faults::default()
    };
    let staged = fx.stage(&srv.url).unwrap();
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
    let ranges = srv.ranges_for("rootfs.squashfs");
    assert_eq!(
        ranges,
        vec![
            None,
            Some("bytes=1000000-".to_string()),
            Some("bytes=2000000-".to_string())
        ],
        "expected two resumes with Range"
    );
    // Resumed, not re-downloaded: exactly the file's bytes crossed the wire.
    assert_eq!(staged.downloaded, staged.manifest.total_size());
}

#[test]
fn http_server_ignoring_range_restarts_file() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let srv = TestServer::start(&b);
    *srv.faults.lock().unwrap() = Faults {
        cut: [("rootfs.squashfs".to_string(), (500_000, 1))].into(),
        ignore_range: true,
        ..Faults::default()
    };
    fx.stage(&srv.url).unwrap();
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
}

#[test]
fn transfer_failure_keeps_part_and_next_run_resumes() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let srv = TestServer::start(&b);
    // Cut more times than the attempts allow.
    *srv.faults.lock().unwrap() = Faults {
        cut: [("rootfs.squashfs".to_string(), (700_000, 4))].into(),
        ignore_range: false,
        ..Faults::default()
    };
    let before = fx.snapshot_active();
    let err = fx.stage(&srv.url).unwrap_err();
    assert!(
        matches!(err, BundleError::Transfer { attempts: 4, .. }),
        "{err}"
    );
    assert!(fx.snapshot_active() == before);
    let part = fx.state.staging_dir(Slot::B).join("rootfs.squashfs.part");
    assert_eq!(fs::metadata(&part).unwrap().len(), 4 * 700_000);
    assert!(!fx.state.manifest(Slot::B).exists());

    let staged = fx.stage(&srv.url).unwrap();
    // The two small files completed in the first run, the big one got 4 cuts' worth.
    assert_eq!(staged.reused, 200_000 + 150_000 + 4 * 700_000);
    assert_eq!(
        staged.downloaded + staged.reused,
        staged.manifest.total_size()
    );
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
}

#[test]
fn tampered_manifest_is_rejected() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let m = fs::read_to_string(b.join("manifest.json")).unwrap();
    fs::write(b.join("manifest.json"), m.replace("\"2\"", "\"3\"")).unwrap();
    let before = fx.snapshot_active();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
    assert_untouched(&fx, &before);
}

#[test]
fn corrupted_signature_is_rejected() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let sig = fs::read_to_string(b.join("manifest.json.minisig")).unwrap();
    let mut lines: Vec<String> = sig.lines().map(String::from).collect();
    // Flip one character of the signature itself (not the key id at its start).
    let l = &mut lines[1];
    let i = l.len() - 10;
    let c = if &l[i..i + 1] == "A" { "B" } else { "A" };
    l.replace_range(i..i + 1, c);
    fs::write(b.join("manifest.json.minisig"), lines.join("\n") + "\n").unwrap();
    let before = fx.snapshot_active();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::BadSignature { .. } | BundleError::SignatureFormat(_)
        ),
        "{err}"
    );
    assert_untouched(&fx, &before);

    fs::write(b.join("manifest.json.minisig"), "garbage\n").unwrap();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, BundleError::SignatureFormat(_)), "{err}");
    assert_untouched(&fx, &before);
}

#[test]
fn bundle_signed_by_untrusted_key_is_rejected() {
    let fx = Fixture::new();
    let other = fx.dir.path().join("other-keys");
    let (_, other_secret) = sign::keygen(&other).unwrap();
    let src = fx.dir.path().join("evil-src");
    let files = common::make_files(&src, 9, 1000);
    let out = fx.dir.path().join("evil");
    sign::create("2", "amd64", &other_secret, &out, &files).unwrap();
    let before = fx.snapshot_active();
    let err = fx.stage(out.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(err, BundleError::UnknownKey { count: 1, .. }),
        "{err}"
    );
    assert_untouched(&fx, &before);

    // Trusting the other key too (as upgrade.trusted_keys would) makes it acceptable.
    let extra = fs::read_to_string(other.join(sign::PUBLIC_KEY_NAME)).unwrap();
    let keys = TrustedKeys::load(&fx.keys_dir, &[extra]).unwrap();
    assert_eq!(keys.len(), 2);
    rkos_bundle::stage(
        &Source::parse(out.to_str().unwrap()).unwrap(),
        &fx.state,
        Slot::A,
        &keys,
        &Fixture::opts(),
        &mut rkos_bundle::NoProgress,
    )
    .unwrap();
}

#[test]
fn no_trusted_keys_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        TrustedKeys::load(dir.path(), &[]),
        Err(BundleError::NoTrustedKeys(_))
    ));
    assert!(matches!(
        TrustedKeys::load(dir.path(), &["not a key".into()]),
        Err(BundleError::BadKey { .. })
    ));
}

#[test]
fn wrong_sha256_is_rejected_over_http_and_dir() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    // Same size, different bytes.
    let mut data = fs::read(b.join("rootfs.squashfs")).unwrap();
    data[ROOTFS / 2] ^= 0xff;
    fs::write(b.join("rootfs.squashfs"), &data).unwrap();
    let before = fx.snapshot_active();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, BundleError::Sha256Mismatch { .. }), "{err}");
    assert_untouched(&fx, &before);

    let srv = TestServer::start(&b);
    let err = fx.stage(&srv.url).unwrap_err();
    assert!(matches!(err, BundleError::Sha256Mismatch { .. }), "{err}");
    assert_untouched(&fx, &before);
}

#[test]
fn truncated_and_oversized_files_are_rejected() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let full = fs::read(b.join("rootfs.squashfs")).unwrap();
    let before = fx.snapshot_active();

    fs::write(b.join("rootfs.squashfs"), &full[..ROOTFS - 1000]).unwrap();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, BundleError::Truncated { .. }), "{err}");
    assert_untouched(&fx, &before);
    let srv = TestServer::start(&b);
    let err = fx.stage(&srv.url).unwrap_err();
    assert!(matches!(err, BundleError::Truncated { .. }), "{err}");
    assert_untouched(&fx, &before);

    let mut longer = full.clone();
    longer.extend_from_slice(b"extra");
    fs::write(b.join("rootfs.squashfs"), &longer).unwrap();
    let err = fx.stage(b.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, BundleError::TooLong { .. }), "{err}");
    assert_untouched(&fx, &before);
    let err = fx.stage(&srv.url).unwrap_err();
    assert!(matches!(err, BundleError::TooLong { .. }), "{err}");
    assert_untouched(&fx, &before);
}

#[test]
fn missing_file_on_server_is_a_clear_404() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    fs::remove_file(b.join("initrd")).unwrap();
    let srv = TestServer::start(&b);
    let before = fx.snapshot_active();
    let err = fx.stage(&srv.url).unwrap_err();
    assert!(
        matches!(err, BundleError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/bundle/initrd"), "{err}");
    assert_untouched(&fx, &before);

    // No bundle at all at that URL.
    let err = fx.stage(&format!("{}/nothing-here", srv.url)).unwrap_err();
    assert!(
        matches!(err, BundleError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert_untouched(&fx, &before);
}

#[test]
fn wrong_arch_same_version_and_unreachable_server() {
    let fx = Fixture::new();
    let src = fx.dir.path().join("arm-src");
    let files = common::make_files(&src, 5, 1000);
    let out = fx.dir.path().join("arm");
    sign::create("2", "arm64", &fx.secret, &out, &files).unwrap();
    let before = fx.snapshot_active();
    let err = fx.stage(out.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(err, BundleError::WrongArch { ref bundle, ref node } if bundle == "arm64" && node == "amd64"),
        "{err}"
    );
    assert_untouched(&fx, &before);

    let same = fx.bundle("1", 1000);
    let err = fx.stage(same.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(err, BundleError::AlreadyRunning(ref v) if v == "1"),
        "{err}"
    );
    assert_untouched(&fx, &before);

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = fx.stage(&format!("http://127.0.0.1:{port}/b")).unwrap_err();
    assert!(matches!(err, BundleError::Transfer { .. }), "{err}");
    assert_untouched(&fx, &before);
}

/// The reverse of the arm64 bundle above: an amd64 bundle, correctly signed, offered to an
/// arm64 node is refused before anything is written, with both architectures named.
#[test]
fn an_amd64_bundle_is_refused_by_an_arm64_node() {
    let fx = Fixture::new();
    let amd64 = fx.bundle("2", 1000);
    let before = fx.snapshot_active();
    let err = fx.stage_on(amd64.to_str().unwrap(), "arm64").unwrap_err();
    assert!(
        matches!(err, BundleError::WrongArch { ref bundle, ref node } if bundle == "amd64" && node == "arm64"),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("amd64") && text.contains("arm64") && text.contains("nothing was written"),
        "{text}"
    );
    assert_untouched(&fx, &before);
    // The same bundle on a node of its own architecture goes through.
    fx.stage_on(amd64.to_str().unwrap(), "amd64").unwrap();
}

#[test]
fn refuses_to_overwrite_the_fallback_of_a_running_trial() {
    let fx = Fixture::new();
    let b2 = fx.bundle("2", 1000);
    let staged = fx.stage(b2.to_str().unwrap()).unwrap();
    flip(&fx.state, &staged, 2).unwrap();
    let (_, booted) = fx.state.boot_state().unwrap().grub_boot();
    fx.state.write_boot_state(&booted).unwrap();
    // Now running B on trial: staging would have to write A, the fallback.
    let b3 = fx.bundle("33", 1000);
    let env_before = fs::read(fx.state.grubenv()).unwrap();
    let err = rkos_bundle::stage(
        &Source::parse(b3.to_str().unwrap()).unwrap(),
        &fx.state,
        Slot::B,
        &fx.keys(),
        &Fixture::opts(),
        &mut rkos_bundle::NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::Refused(_)), "{err}");
    assert_eq!(fs::read(fx.state.grubenv()).unwrap(), env_before);
    rkos_bundle::verify_slot(&fx.state, Slot::A).unwrap();
}

#[test]
fn restaging_over_a_pending_trial_cancels_it_first() {
    let fx = Fixture::new();
    let b2 = fx.bundle("2", 1000);
    let staged = fx.stage(b2.to_str().unwrap()).unwrap();
    flip(&fx.state, &staged, 3).unwrap();
    // Not rebooted; a newer bundle arrives. A failure while rewriting B must not leave GRUB
    // trying a half-written B.
    let b3 = fx.bundle("33", ROOTFS);
    let mut data = fs::read(b3.join("rootfs.squashfs")).unwrap();
    data[0] ^= 1;
    fs::write(b3.join("rootfs.squashfs"), &data).unwrap();
    assert!(fx.stage(b3.to_str().unwrap()).is_err());
    let st = fx.state.boot_state().unwrap();
    assert_eq!(st.trial, None);
    assert_eq!(st.grub_boot().0, Slot::A);
    assert!(!fx.state.manifest(Slot::B).exists());
}

#[test]
fn flip_refuses_a_slot_changed_after_staging() {
    let fx = Fixture::new();
    let b2 = fx.bundle("2", 1000);
    let staged = fx.stage(b2.to_str().unwrap()).unwrap();
    fs::write(fx.state.slot_dir(Slot::B).join("initrd"), b"short").unwrap();
    let env_before = fs::read(fx.state.grubenv()).unwrap();
    assert!(flip(&fx.state, &staged, 3).is_err());
    fs::remove_file(fx.state.manifest(Slot::B)).unwrap();
    assert!(matches!(
        flip(&fx.state, &staged, 3),
        Err(BundleError::Refused(_))
    ));
    assert_eq!(fs::read(fx.state.grubenv()).unwrap(), env_before);
}

#[test]
fn corrupt_part_from_a_crash_is_downloaded_again() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let srv = TestServer::start(&b);
    *srv.faults.lock().unwrap() = Faults {
        cut: [("rootfs.squashfs".to_string(), (700_000, 4))].into(),
        ignore_range: false,
        ..Faults::default()
    };
    assert!(fx.stage(&srv.url).is_err());
    // What a power cut can leave: the tail of the part never written (zeros).
    let part = fx.state.staging_dir(Slot::B).join("rootfs.squashfs.part");
    let mut data = fs::read(&part).unwrap();
    let n = data.len();
    data[n - 4096..].fill(0);
    fs::write(&part, &data).unwrap();
    let staged = fx.stage(&srv.url).unwrap();
    rkos_bundle::verify_slot(&fx.state, Slot::B).unwrap();
    // The bad part was dropped and the file fetched whole; only the small files were reused.
    assert_eq!(
        staged.downloaded,
        staged.manifest.file("rootfs.squashfs").unwrap().size
    );
    assert_eq!(staged.reused, 200_000 + 150_000);
}

/// A network boot's image: one file straight into a directory, resumed across cuts, and
/// retries stop at the deadline rather than after the attempts.
#[test]
fn fetch_into_resumes_and_stops_at_the_deadline() {
    let fx = Fixture::new();
    let b = fx.bundle("2", ROOTFS);
    let (manifest, _) = fx
        .keys()
        .verify_manifest(
            &fs::read(b.join("manifest.json")).unwrap(),
            &fs::read_to_string(b.join("manifest.json.minisig")).unwrap(),
        )
        .unwrap();
    let entry = manifest.file("rootfs.squashfs").unwrap().clone();
    let srv = TestServer::start(&b);
    *srv.faults.lock().unwrap() = Faults {
        cut: [("rootfs.squashfs".to_string(), (1_000_000, 2))].into(),
        ignore_range: false,
        ..Faults::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let source = Source::parse(&srv.url).unwrap();
    let got = rkos_bundle::fetch_into(
        &source,
        dir.path(),
        &entry,
        &Fixture::opts(),
        &mut rkos_bundle::NoProgress,
    )
    .unwrap();
    assert_eq!(got, entry.size);
    rkos_bundle::verify_file(&dir.path().join("rootfs.squashfs"), &entry).unwrap();
    assert!(!dir.path().join("rootfs.squashfs.part").exists());

    // Cut on every request: many attempts allowed, but the deadline ends the retries.
    *srv.faults.lock().unwrap() = Faults {
        cut: [("rootfs.squashfs".to_string(), (100_000, 1000))].into(),
        ignore_range: true,
        ..Faults::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let opts = rkos_bundle::StageOptions {
        attempts: 1000,
        backoff: std::time::Duration::from_millis(100),
        deadline: Some(started + std::time::Duration::from_secs(2)),
        ..Fixture::opts()
    };
    let err = rkos_bundle::fetch_into(
        &source,
        dir.path(),
        &entry,
        &opts,
        &mut rkos_bundle::NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::Transfer { .. }), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
