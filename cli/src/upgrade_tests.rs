//! `rkos upgrade` against a loopback HTTP server that lies: a second request for the
//! manifest gets another signed manifest. The node must act on the one manifest it verified.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rkos_bundle::sign;
use rkos_contract::files;
use rkos_slots::{BootState, Slot, StateDir, UpgradeReport};

use rkos_contract::paths;

use crate::upgrade_cmd::{
    booted_slot, run_mark_good, run_upgrade, stage_and_arm, MarkGoodArgs, UpgradeArgs,
};

/// Serves `manifest.json` and its signature from `bundles[k]` on the k-th request for the
/// manifest (the last bundle from then on), and every other file from the bundle whose
/// manifest was served last. Counts the manifest requests.
struct SwitchingServer {
    url: String,
    manifest_requests: Arc<Mutex<usize>>,
}

impl SwitchingServer {
    fn start(bundles: Vec<PathBuf>) -> SwitchingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/b", listener.local_addr().unwrap());
        let count = Arc::new(Mutex::new(0usize));
        let c = Arc::clone(&count);
        std::thread::spawn(move || {
            let mut current = bundles[0].clone();
            let mut sig_requests = 0usize;
            // One connection at a time: staging asks for one file after another.
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let name = line.split_whitespace().nth(1).unwrap_or("");
                let name = name.rsplit('/').next().unwrap_or("").to_string();
                let pick = |k: usize| bundles[k.min(bundles.len() - 1)].clone();
                if name == files::MANIFEST {
                    let mut n = c.lock().unwrap();
                    current = pick(*n);
                    *n += 1;
                } else if name == files::SIGNATURE {
                    current = pick(sig_requests);
                    sig_requests += 1;
                }
                let head = match fs::read(current.join(&name)) {
                    Ok(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        [head.into_bytes(), body].concat()
                    }
                    Err(_) => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = conn.write_all(&head);
            }
        });
        SwitchingServer {
            url,
            manifest_requests: count,
        }
    }
}

/// A node running `running` in slot A (default, nothing on trial), and signed bundles of
/// `versions` (each with files of its own), all signed by the key `key`.
struct Node {
    dir: tempfile::TempDir,
    root: PathBuf,
    state: StateDir,
    key: String,
    secret: PathBuf,
    bundles: BTreeMap<String, PathBuf>,
}

impl Node {
    fn new(running: &str, versions: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        let (pub_path, secret) = sign::keygen(&t.join("keys")).unwrap();
        let key = fs::read_to_string(pub_path).unwrap();
        let key = key.lines().nth(1).unwrap().to_string();
        let state = StateDir::new(t.join("state"));
        fs::create_dir_all(state.grub_dir()).unwrap();
        state.write_boot_state(&BootState::default()).unwrap();
        let root = t.join("root");
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(root.join("proc/cmdline"), "rkos.mode=disk rkos.slot=A\n").unwrap();
        let mut node = Node {
            root,
            state,
            key,
            secret,
            bundles: BTreeMap::new(),
            dir,
        };
        node.make_release(running, None, &node.state.slot_dir(Slot::A));
        for v in versions {
            node.add_bundle(v, None);
        }
        node
    }

    /// Files of `version` (each its own content), signed into `out`, with `min_version` as
    /// the release's floor.
    fn make_release(&self, version: &str, min_version: Option<&str>, out: &Path) {
        let src = self.dir.path().join(format!("src-{version}"));
        fs::create_dir_all(&src).unwrap();
        let paths: Vec<_> = files::SLOT_FILES
            .iter()
            .map(|n| {
                let p = src.join(n);
                fs::write(&p, format!("{n} of {version}")).unwrap();
                p
            })
            .collect();
        let arch = rkos_contract::arch();
        sign::create_with_floor(version, min_version, arch, &self.secret, out, &paths).unwrap();
    }

    /// A signed bundle of `version` (with the floor `min_version`) in `bundles`.
    fn add_bundle(&mut self, version: &str, min_version: Option<&str>) {
        let out = self.dir.path().join(format!("bundle-{version}"));
        self.make_release(version, min_version, &out);
        self.bundles.insert(version.to_string(), out);
    }

    fn args(&self, bundle: &str) -> UpgradeArgs {
        UpgradeArgs {
            bundle: bundle.to_string(),
            reboot: false,
            state_dir: self.state.root().to_path_buf(),
            tries: 2,
            trusted_keys: vec![self.key.clone()],
            keys_dir: self.root.join("no-image-keys"),
            root: self.root.clone(),
            attempts: 1,
            expect_version: None,
            allow_downgrade: false,
            deadline: 0,
            min_rate: 0,
            min_rate_window: 1,
            json: false,
        }
    }

    fn bundle(&self, version: &str) -> String {
        self.bundles[version].display().to_string()
    }

    fn mark_good_args(&self) -> MarkGoodArgs {
        MarkGoodArgs {
            state_dir: self.state.root().to_path_buf(),
            wait_healthy: false,
            timeout: 1,
            health_url: String::new(),
            health_file: None,
            unit: String::new(),
            root: self.root.clone(),
        }
    }

    /// GRUB boots the slot on trial, as the next boot would.
    fn boot_the_trial(&self) {
        let (slot, next) = self.state.boot_state().unwrap().grub_boot();
        self.state.write_boot_state(&next).unwrap();
        fs::write(
            self.root.join("proc/cmdline"),
            format!("rkos.mode=disk rkos.slot={slot}\n"),
        )
        .unwrap();
    }

    fn slot_b_version(&self) -> Option<String> {
        self.state
            .read_manifest(Slot::B)
            .unwrap()
            .map(|m| m.version)
    }
}

/// Issue 16, item 1: the version was checked on one download of the manifest and staging
/// downloaded it again, so a server answering 2.0 then 1.0 got 1.0 staged and armed on a
/// node running 1.5 that expected 2.0.
#[test]
fn a_manifest_switched_between_requests_is_never_staged() {
    let node = Node::new("1.5", &["2.0", "1.0"]);
    let srv = SwitchingServer::start(vec![
        node.bundles["2.0"].clone(),
        node.bundles["1.0"].clone(),
    ]);
    let args = UpgradeArgs {
        expect_version: Some("2.0".into()),
        ..node.args(&srv.url)
    };
    let result = stage_and_arm(&args);
    let staged = node.slot_b_version();
    assert_ne!(
        staged.as_deref(),
        Some("1.0"),
        "a downgrade to 1.0 was staged ({result:?})"
    );
    let report = result.unwrap();
    assert!(
        matches!(&report, UpgradeReport::Staged { version, .. } if version == "2.0"),
        "{report:?}"
    );
    assert_eq!(staged.as_deref(), Some("2.0"));
    assert_eq!(
        *srv.manifest_requests.lock().unwrap(),
        1,
        "the manifest is fetched once"
    );
    // What was armed is what was verified, byte for byte.
    assert_eq!(
        fs::read(node.state.manifest(Slot::B)).unwrap(),
        fs::read(node.bundles["2.0"].join(files::MANIFEST)).unwrap()
    );
}

#[test]
fn a_lower_version_is_refused_unless_allowed() {
    let node = Node::new("1.5", &["1.0", "1.10.0"]);
    let env_before = fs::read(node.state.grubenv()).unwrap();
    let err = stage_and_arm(&node.args(&node.bundle("1.0"))).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("upgrade refused"), "{msg}");
    assert!(msg.contains("1.0 is lower than the running 1.5"), "{msg}");
    assert_eq!(fs::read(node.state.grubenv()).unwrap(), env_before);
    assert!(!node.state.slot_dir(Slot::B).exists(), "nothing written");

    // Semver order, not string order: 1.10.0 is newer than 1.5.
    let up = stage_and_arm(&node.args(&node.bundle("1.10.0"))).unwrap();
    assert!(matches!(up, UpgradeReport::Staged { .. }), "{up:?}");

    let node = Node::new("1.5", &["1.0"]);
    let args = UpgradeArgs {
        allow_downgrade: true,
        ..node.args(&node.bundle("1.0"))
    };
    let down = stage_and_arm(&args).unwrap();
    assert!(
        matches!(&down, UpgradeReport::Staged { version, slot: Slot::B, .. } if version == "1.0"),
        "{down:?}"
    );
}

/// Issue 16, item 14: two `rkos upgrade` runs at once would rewrite the same slot.
#[test]
fn a_second_concurrent_upgrade_is_refused_and_changes_nothing() {
    let node = Node::new("1", &["2"]);
    let args = node.args(&node.bundle("2"));
    let lock = rkos_contract::paths::under(&node.root, rkos_contract::paths::UPGRADE_LOCK);
    // The other run, holding the lock (as a process of its own would: flock conflicts
    // between two open files).
    let other = rkos_bundle::UpgradeLock::acquire(&lock).unwrap();
    let env_before = fs::read(node.state.grubenv()).unwrap();
    let err = stage_and_arm(&args).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("another `rkos upgrade` is running"), "{msg}");
    assert!(msg.contains(&lock.display().to_string()), "{msg}");
    assert_eq!(fs::read(node.state.grubenv()).unwrap(), env_before);
    assert!(!node.state.slot_dir(Slot::B).exists(), "nothing written");
    drop(other);
    let report = stage_and_arm(&args).unwrap();
    assert!(matches!(report, UpgradeReport::Staged { .. }), "{report:?}");
}

/// The whole node-side path through the command layer: upgrade from a local bundle whose
/// key is trusted only through config.yaml, GRUB's boot (model), mark-good, status.
#[test]
fn upgrade_then_mark_good_via_config_key() {
    let node = Node::new("1", &["2"]);
    let (root, state, bundle) = (node.root.clone(), &node.state, &node.bundles["2"]);
    // No key on the command line: only the node's config may trust one.
    let args = UpgradeArgs {
        trusted_keys: vec![],
        ..node.args(&node.bundle("2"))
    };
    // No trusted key anywhere: refused, nothing changed.
    let env_before = fs::read(state.grubenv()).unwrap();
    let err = run_upgrade(&args).unwrap_err();
    assert!(format!("{err:#}").contains("no trusted keys"), "{err:#}");
    assert_eq!(fs::read(state.grubenv()).unwrap(), env_before);

    // The key in the node's persistent config.
    let key_line = &node.key;
    let config = paths::under(&root, paths::PERSISTENT_CONFIG);
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(
        &config,
        format!("rkos:\n  upgrade:\n    trusted_keys:\n      - {key_line}\n"),
    )
    .unwrap();
    // A bundle of another version than the one expected: refused before any write.
    let wrong = UpgradeArgs {
        expect_version: Some("3".into()),
        ..args
    };
    let err = run_upgrade(&wrong).unwrap_err();
    assert!(
        format!("{err:#}").contains("holds version 2, not the expected 3"),
        "{err:#}"
    );
    assert_eq!(fs::read(state.grubenv()).unwrap(), env_before);
    assert!(!state.slot_dir(Slot::B).exists());
    let args = UpgradeArgs {
        expect_version: Some("2".into()),
        ..wrong
    };
    let report = stage_and_arm(&args).unwrap();
    let boot = state.boot_state().unwrap();
    assert_eq!(
        boot.trial.map(|t| (t.slot, t.tries_left)),
        Some((Slot::B, 2))
    );
    let UpgradeReport::Staged {
        version,
        slot,
        armed,
        downloaded_bytes,
        ..
    } = report
    else {
        panic!("{report:?}")
    };
    assert_eq!((version.as_str(), slot), ("2", Slot::B));
    assert_eq!(Some(armed), boot.trial, "the report names the trial armed");
    let bundle_bytes: u64 = files::SLOT_FILES
        .iter()
        .map(|n| fs::metadata(bundle.join(n)).unwrap().len())
        .sum();
    assert_eq!(downloaded_bytes, bundle_bytes);

    // GRUB boots B; the node is healthy; mark-good makes B the default.
    node.boot_the_trial();
    assert_eq!(booted_slot(&root), Some(Slot::B));
    run_mark_good(&node.mark_good_args()).unwrap();
    let boot = state.boot_state().unwrap();
    assert_eq!(boot.default, Slot::B);
    assert_eq!(boot.trial, None);
    let st = rkos_slots::Status::read(state, booted_slot(&root)).unwrap();
    assert_eq!(st.version_of(Slot::B), Some("2"));
    assert_eq!(st.version_of(Slot::A), Some("1"));
    assert!(st.to_string().contains("slot B passed its trial"), "{st}");
}

/// Issue 16, item 1 (a signed minimum version): a release that sets a floor, once marked
/// good, keeps every older bundle out, `--allow-downgrade` included; before it is marked
/// good it locks nothing.
#[test]
fn below_the_floor_allow_downgrade_is_refused_too() {
    let mut node = Node::new("1.0", &["1.2", "1.6"]);
    node.add_bundle("2.0", Some("1.5"));
    let state = &node.state;
    let allow = |v: &str| UpgradeArgs {
        allow_downgrade: true,
        ..node.args(&node.bundle(v))
    };

    // 2.0 staged and armed: no floor yet (its trial may fail, and 1.0 must stay installable).
    let up = stage_and_arm(&node.args(&node.bundle("2.0"))).unwrap();
    assert!(matches!(up, UpgradeReport::Staged { .. }), "{up:?}");
    assert_eq!(state.min_version().unwrap(), None);
    assert!(!state.min_version_file().exists());

    // It boots and is marked good: the floor is its min_version.
    node.boot_the_trial();
    run_mark_good(&node.mark_good_args()).unwrap();
    assert_eq!(state.boot_state().unwrap().default, Slot::B);
    assert_eq!(state.min_version().unwrap().unwrap().version, "1.5");
    let st = rkos_slots::Status::read(state, booted_slot(&node.root)).unwrap();
    assert_eq!(st.min_version.as_deref(), Some("1.5"));
    let json = serde_json::to_value(rkos_slots::NodeStatus::Installed(st)).unwrap();
    assert_eq!(json["min_version"], "1.5");

    // 1.2, validly signed, below the floor: refused with --allow-downgrade, nothing written.
    let env_before = fs::read(state.grubenv()).unwrap();
    let slot_a_before = fs::read(state.manifest(Slot::A)).unwrap();
    let err = stage_and_arm(&allow("1.2")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("upgrade refused"), "{msg}");
    assert!(
        msg.contains("1.2 is lower than this node's minimum version 1.5"),
        "{msg}"
    );
    assert!(
        msg.contains(&state.min_version_file().display().to_string()),
        "{msg}"
    );
    assert_eq!(fs::read(state.grubenv()).unwrap(), env_before);
    assert_eq!(fs::read(state.manifest(Slot::A)).unwrap(), slot_a_before);

    // Above the floor, below the running version: a downgrade as before, allowed when asked.
    let err = stage_and_arm(&node.args(&node.bundle("1.6"))).unwrap_err();
    assert!(
        format!("{err:#}").contains("1.6 is lower than the running 2.0"),
        "{err:#}"
    );
    let down = stage_and_arm(&allow("1.6")).unwrap();
    assert!(
        matches!(&down, UpgradeReport::Staged { version, slot: Slot::A, .. } if version == "1.6"),
        "{down:?}"
    );
}
