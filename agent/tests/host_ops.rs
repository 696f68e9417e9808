//! The real node-side implementation (`HostNodeOps`, which runs `rkos status --json`,
//! `rkos upgrade --bundle ... --json`, the reboot command, the k3s check and
//! `rkos mark-good`) driven by the agent against the API server stand-in. The host is a temp
//! dir; `rkos` and the reboot command are small shell stand-ins that keep an A/B slot state in
//! files, so the whole command boundary is exercised without root. (`tests/real_rkos.rs`
//! does the same with the real `rkos`.)

mod support;

use std::time::Duration;

use rkos_agent::nodeops::{HostNodeOps, NodeOps};
use rkos_slots::Slot;
use support::apiserver_standin::{StandIn, NUS};
use support::node_agent::{phase, released, run_agent, script, seed, wait_for};

/// `rkos` stand-in: state in `$STATE/{active,A,B,trial,on_trial,last}`, printed in the JSON of
/// rkos-slots' `NodeStatus` and `UpgradeReport`. `upgrade --bundle URL` stages the version
/// named by the URL's last `rkos-V` component into the inactive slot and arms its trial,
/// failing for URLs containing `bad-signature` (as the real command does for a bundle its
/// trusted keys reject), leaving everything untouched.
const RKOS: &str = r#"#!/bin/sh
set -e
STATE="$(dirname "$0")/state"
rd() { cat "$STATE/$1" 2>/dev/null || true; }
q() { if [ -n "$1" ]; then printf '"%s"' "$1"; else printf null; fi; }
case "$1" in
status)
    a=$(rd active); t=$(rd trial); last=$(rd last)
    if [ -n "$t" ]; then trial="{\"slot\":\"$t\",\"tries_left\":3}"; else trial=null; fi
    if [ -n "$last" ]; then lo="{\"outcome\":\"rolled-back\",\"slot\":\"$last\"}"; else lo=null; fi
    slot() { printf '{"slot":"%s","version":%s,"arch":"amd64","error":null}' "$1" "$(q "$(rd "$1")")"; }
    printf '{"installed":true,"active":"%s","default":"%s","fallback":null,"trial":%s,"running_on_trial":%s,"last_outcome":%s,"slots":[%s,%s]}\n' \
        "$a" "$a" "$trial" "$(rd on_trial || echo false)" "$lo" "$(slot A)" "$(slot B)"
    ;;
upgrade)
    [ "$2" = "--bundle" ] || { echo "usage: rkos upgrade --bundle URL" >&2; exit 2; }
    case "$3" in *bad-signature*)
        echo '{"result":"failed","error":["upgrade failed","manifest signature does not verify with any trusted key"]}'
        exit 1;;
    esac
    v=${3##*rkos-}
    if [ "$(rd active)" = A ]; then i=B; else i=A; fi
    mkdir -p "$STATE/../run/rkos/state/slots/$i"
    head -c 4096 /dev/zero > "$STATE/../run/rkos/state/slots/$i/rootfs.squashfs"
    echo "$v" > "$STATE/$i"
    echo "$i" > "$STATE/trial"
    echo "$3" >> "$STATE/log"
    printf '{"result":"staged","version":"%s","slot":"%s","key_id":"0123ABCD","downloaded_bytes":5000,"reused_bytes":0,"armed":{"slot":"%s","tries_left":3}}\n' "$v" "$i" "$i"
    ;;
mark-good)
    echo false > "$STATE/on_trial"; rm -f "$STATE/trial"; echo mark-good >> "$STATE/log"
    ;;
*) echo "unknown command $1" >&2; exit 2;;
esac
"#;

/// Reboot stand-in: boots the armed trial slot (or falls back when that version is listed in
/// `broken`) and gives the kernel a new boot id.
const REBOOT: &str = r#"#!/bin/sh
STATE="$(dirname "$0")/state"
t=$(cat "$STATE/trial" 2>/dev/null || true)
if [ -n "$t" ]; then
    if grep -qx "$(cat "$STATE/$t")" "$STATE/broken" 2>/dev/null; then
        echo "$t" > "$STATE/last"; rm -f "$STATE/trial"
    else
        echo "$t" > "$STATE/active"; echo true > "$STATE/on_trial"; rm -f "$STATE/last"
    fi
fi
echo "boot-$(date +%s%N)" > "$(dirname "$0")/proc/sys/kernel/random/boot_id"
echo reboot >> "$STATE/log"
"#;

fn host(version: &str) -> (tempfile::TempDir, HostNodeOps) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::create_dir_all(root.join("proc/sys/kernel/random")).unwrap();
    std::fs::write(root.join("proc/sys/kernel/random/boot_id"), "boot-0\n").unwrap();
    std::fs::write(root.join("state/active"), "A\n").unwrap();
    std::fs::write(root.join("state/A"), format!("{version}\n")).unwrap();
    std::fs::write(root.join("state/on_trial"), "false\n").unwrap();
    script(&root.join("rkos"), RKOS);
    script(&root.join("reboot"), REBOOT);
    script(&root.join("k3s-active"), "#!/bin/sh\nexit 0\n");
    let ops = HostNodeOps {
        host_root: root.to_path_buf(),
        chroot: false,
        rkos: root.join("rkos"),
        reboot: vec![root.join("reboot").display().to_string()],
        k3s_active: vec![root.join("k3s-active").display().to_string()],
    };
    (dir, ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_through_the_rkos_command() {
    let api = StandIn::start().await;
    seed(&api, "2", "http://127.0.0.1:1/bundles/rkos-2");
    let (dir, ops) = host("1");
    let a = run_agent(&api, ops.clone(), |api| phase(api) == "Succeeded").await;
    released(&api).await;
    a.abort();
    let log = std::fs::read_to_string(dir.path().join("state/log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["http://127.0.0.1:1/bundles/rkos-2", "reboot", "mark-good"]
    );
    let f = ops.facts().await.unwrap();
    assert_eq!((f.version.as_str(), f.slot), ("2", Slot::B.into()));
    assert!(!f.running_on_trial);
    let nu = api.get(NUS, "", "n1").unwrap();
    assert_eq!(nu["status"]["currentVersion"], "2");
    assert_eq!(nu["status"]["slot"], "B");
    assert_eq!(
        nu["status"]["bytesDownloaded"], 5000,
        "from the command's report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_bundle_fails_with_the_commands_error() {
    let api = StandIn::start().await;
    seed(&api, "2", "http://127.0.0.1:1/bad-signature/rkos-2");
    let (dir, ops) = host("1");
    let a = run_agent(&api, ops.clone(), |api| phase(api) == "Failed").await;
    released(&api).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.abort();
    let nu = api.get(NUS, "", "n1").unwrap();
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("staging 2 failed"), "{err}");
    assert!(err.contains("signature does not verify"), "{err}");
    // Nothing on the node changed (the node was uncordoned and the lease released: above).
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/A")).unwrap(),
        "1\n"
    );
    assert!(!dir.path().join("state/B").exists());
    assert!(!dir.path().join("state/log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_boot_reports_rolled_back_and_a_retry_rearms_the_slot() {
    let api = StandIn::start().await;
    seed(&api, "2", "http://127.0.0.1:1/rkos-2");
    let (dir, ops) = host("1");
    std::fs::write(dir.path().join("state/broken"), "2\n").unwrap();
    let a = run_agent(&api, ops, |api| phase(api) == "RolledBack").await;
    released(&api).await;
    let nu = api.get(NUS, "", "n1").unwrap();
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("slot B (2) was never marked good"), "{err}");
    assert_eq!(nu["status"]["currentVersion"], "1");
    assert_eq!(nu["status"]["slot"], "A");
    // Fixed; the operator deletes the NodeUpgrade to retry. Slot B still holds version 2
    // with no trial armed: the agent has `rkos upgrade` re-check and arm it.
    std::fs::remove_file(dir.path().join("state/broken")).unwrap();
    api.delete(NUS, "", "n1");
    wait_for(&api, |api| phase(api) == "Succeeded").await;
    released(&api).await;
    a.abort();
    let log = std::fs::read_to_string(dir.path().join("state/log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "http://127.0.0.1:1/rkos-2",
            "reboot",
            "http://127.0.0.1:1/rkos-2",
            "reboot",
            "mark-good"
        ]
    );
}
