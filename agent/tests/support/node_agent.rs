//! Running the agent for node "n1" against the API server stand-in with a real
//! [`HostNodeOps`], as the node-side tests do.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rkos_agent::api::AgentConfig;
use rkos_agent::metrics::Metrics;
use rkos_agent::nodeops::HostNodeOps;
use rkos_agent::reconcile::Agent;

use serde_json::json;

use super::apiserver_standin::{StandIn, LEASES, NODES, NUS, PLANS};

/// Writes an executable script.
pub fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Starts the agent with short ticks and returns once `until` holds.
pub async fn run_agent(
    api: &StandIn,
    ops: HostNodeOps,
    until: impl Fn(&StandIn) -> bool,
) -> tokio::task::JoinHandle<()> {
    let mut cfg = AgentConfig::new("n1", "rkos-system");
    cfg.tick = Duration::from_millis(100);
    cfg.lease_seconds = 30;
    cfg.reboot_wait = Duration::from_millis(100);
    let agent = Agent::new(api.client(), cfg, ops, Metrics::new("n1"));
    let h = tokio::spawn(async move { agent.run().await });
    wait_for(api, until).await;
    h
}

/// Waits (60 s at most) until `until` holds.
pub async fn wait_for(api: &StandIn, until: impl Fn(&StandIn) -> bool) {
    let start = Instant::now();
    while !until(api) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out; nodeupgrade: {:?}",
            api.get(NUS, "", "n1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a terminal phase: waits until the node is schedulable again and holds no lease.
/// The agent reports the phase and releases in separate writes, so a test that has seen the
/// phase must wait for the release before it stops the agent: stopped between the two
/// writes (a loaded machine), the agent would never release.
pub async fn released(api: &StandIn) {
    wait_for(api, |api| {
        api.all(LEASES).is_empty()
            && api.get(NODES, "", "n1").unwrap()["spec"]["unschedulable"] != true
    })
    .await;
}

/// The phase n1's NodeUpgrade reports.
pub fn phase(api: &StandIn) -> String {
    api.get(NUS, "", "n1")
        .and_then(|o| o["status"]["phase"].as_str().map(String::from))
        .unwrap_or_default()
}

/// A Ready node "n1" and a plan "p" for `version` from the bundle at `url`.
pub fn seed(api: &StandIn, version: &str, url: &str) {
    api.seed(
        NODES,
        "",
        json!({"metadata": {"name": "n1"}, "spec": {},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    api.seed(
        PLANS,
        "",
        json!({"metadata": {"name": "p"}, "spec": {"version": version, "bundleUrl": url}}),
    );
}
