//! rkos-init and `rkos config apply` read the node's config through the one entry point
//! (`rkos_config::NodeConfig`), so they agree: with a broken /var/lib/rkos/config.yaml and a
//! good last copy, the hostname, sysctls and persistent paths rkos-init applies at boot are
//! the ones `config apply` renders afterwards (before, rkos-init took none of the copy's).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rkos_config::NodeConfig;
use rkos_contract::paths::{self, under};
use rkos_init::early;

use crate::config_apply::{self, ApplyArgs, Stage};

const CMDLINE: &str = "rkos.mode=disk";
const LAST_GOOD: &str = "hostname: last-good-node\nrkos:\n  sysctls:\n    vm.swappiness: \"7\"\n  persistent_paths:\n    - /srv/keep\n    - /srv/keep/db\n";

/// A node root whose config.yaml is broken and whose last good copy is [`LAST_GOOD`].
fn broken_node(root: &Path) {
    let write = |path: PathBuf, text: &str| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write(
        under(root, paths::LAST_GOOD_DIR).join("config.yaml"),
        LAST_GOOD,
    );
    write(
        under(root, paths::PERSISTENT_CONFIG),
        "hostname: [broken\nrkos:\n  sysctls: {vm.swappiness: \"99\"}\n",
    );
}

fn sysctls(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_entry_point_takes_the_last_good_copy_of_a_broken_config() {
    let d = tempfile::tempdir().unwrap();
    broken_node(d.path());
    let loaded = NodeConfig::at(d.path()).cmdline(CMDLINE).load();
    assert_eq!(loaded.config.hostname.as_deref(), Some("last-good-node"));
    assert_eq!(
        loaded.config.rkos.sysctls,
        sysctls(&[("vm.swappiness", "7")])
    );
    assert_eq!(
        loaded.config.rkos.persistent_paths,
        ["/srv/keep", "/srv/keep/db"]
    );
    assert!(
        loaded
            .errors()
            .any(|d| d.message.contains("using its last good copy")),
        "{:?}",
        loaded.diagnostics
    );
}

#[test]
fn rkos_init_and_config_apply_apply_the_same_last_good_values() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("node");
    broken_node(&root);

    // rkos-init's early config path, as far as it runs without root: the config loaded
    // from the new root, the hostname file, the sysctls into a stand-in /proc/sys, the
    // extra persistent paths' bind plan.
    let init = early::load_config(None, &root, CMDLINE, None);
    let init_etc = d.path().join("init");
    early::write_hostname(&init_etc, &init.hostname).unwrap();
    let proc_sys = d.path().join("proc/sys");
    fs::create_dir_all(proc_sys.join("vm")).unwrap();
    fs::write(proc_sys.join("vm/swappiness"), "60\n").unwrap();
    let problems = early::write_sysctls(&proc_sys, &init.config.rkos.sysctls);
    assert!(problems.is_empty(), "{problems:?}");
    let (groups, problems) = early::persistent_groups(&init.config.rkos.persistent_paths);
    assert!(problems.is_empty(), "{problems:?}");
    let init_binds: Vec<PathBuf> = groups.into_iter().map(|(p, _)| p).collect();
    assert!(
        init.problems
            .iter()
            .any(|p| p.contains("last good copy /var/lib/rkos/last-good/config.yaml")),
        "{:?}",
        init.problems
    );

    // `rkos config apply --stage early`, as rkos-config-early.service runs it.
    config_apply::run(&ApplyArgs {
        stage: Stage::Early,
        root: root.clone(),
        cmdline: Some(CMDLINE.into()),
    })
    .unwrap();
    let apply_hostname = fs::read_to_string(root.join("etc/hostname")).unwrap();
    let apply_sysctls: BTreeMap<String, String> =
        fs::read_to_string(root.join("etc/sysctl.d/90-rkos.conf"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let mut apply_binds: Vec<PathBuf> = fs::read_dir(root.join("etc/systemd/system"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "mount"))
        .filter_map(|e| {
            let unit = fs::read_to_string(e.path()).unwrap();
            let field = |name: &str| unit.lines().find_map(|l| l.strip_prefix(name));
            let bound_from_data = field("What=")?.starts_with(paths::DATA_MOUNT);
            bound_from_data.then(|| PathBuf::from(field("Where=").unwrap_or_default()))
        })
        .collect();
    apply_binds.sort();

    assert_eq!(init.hostname, "last-good-node");
    assert_eq!(
        fs::read_to_string(init_etc.join("etc/hostname")).unwrap(),
        apply_hostname
    );
    assert_eq!(
        fs::read_to_string(proc_sys.join("vm/swappiness")).unwrap(),
        "7\n"
    );
    assert_eq!(init.config.rkos.sysctls, apply_sysctls);
    assert_eq!(
        init_binds,
        [PathBuf::from("/srv/keep"), PathBuf::from("/srv/keep/db")]
    );
    assert_eq!(init_binds, apply_binds);
    // The copy stays the last good one: apply never saves a broken file over it.
    assert_eq!(
        fs::read_to_string(under(&root, paths::LAST_GOOD_DIR).join("config.yaml")).unwrap(),
        LAST_GOOD
    );
}
