//! The agent's Kubernetes side against the API server stand-in: several agents (one per fake
//! node) run as tasks in this process, each with a fake node behind `NodeOps`.

mod support;

use std::time::{Duration, Instant};

use rkos_agent::api::AgentConfig;
use rkos_agent::crd::{CORDON_ANNOTATION, PLAN_LABEL};
use rkos_agent::metrics::Metrics;
use rkos_agent::nodeops::FakeNodeOps;
use rkos_agent::reconcile::Agent;
use serde_json::{json, Value};
use support::apiserver_standin::{Pdb, StandIn, LEASES, NODES, NUS, PLANS, PODS};
use tokio::task::JoinHandle;

const NS: &str = "rkos-system";

fn node(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "pool": "edge"}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn pod(ns: &str, name: &str, node: &str, owner_kind: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": app,
                "uid": format!("owner-{app}"), "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
    })
}

fn plan(name: &str, version: &str, concurrency: u32, extra: Value) -> Value {
    let mut spec = json!({
        "version": version,
        "bundleUrl": "http://127.0.0.1:1/bundle",
        "concurrency": concurrency,
        "drain": {"timeoutSeconds": 30},
        "maxFailures": 1,
    });
    support::apiserver_standin::merge_patch(&mut spec, &extra);
    json!({"metadata": {"name": name}, "spec": spec})
}

struct Cluster {
    api: StandIn,
    nodes: Vec<(String, FakeNodeOps)>,
}

fn cfg(name: &str) -> AgentConfig {
    let mut c = AgentConfig::new(name, NS);
    c.tick = Duration::from_millis(100);
    c.lease_seconds = 30;
    c.verify_timeout_seconds = 30;
    c.reboot_wait = Duration::from_millis(100);
    c
}

impl Cluster {
    async fn new(n: usize, version: &str) -> Cluster {
        let api = StandIn::start().await;
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("n{i}");
            api.seed(NODES, "", node(&name));
            api.seed(
                PODS,
                "default",
                pod("default", &format!("web-{i}"), &name, "ReplicaSet", "web"),
            );
            api.seed(
                PODS,
                "kube-system",
                pod(
                    "kube-system",
                    &format!("proxy-{i}"),
                    &name,
                    "DaemonSet",
                    "proxy",
                ),
            );
            let ops = FakeNodeOps::new(version);
            // Long enough that rollouts overlap, short enough to keep the suite quick.
            ops.with(|n| n.stage_delay = Duration::from_millis(800));
            nodes.push((name, ops));
        }
        Cluster { api, nodes }
    }

    fn spawn(&self, i: usize) -> JoinHandle<()> {
        let name = self.nodes[i].0.clone();
        self.spawn_with(i, cfg(&name))
    }

    fn spawn_with(&self, i: usize, cfg: AgentConfig) -> JoinHandle<()> {
        let (name, ops) = self.nodes[i].clone();
        let agent = Agent::new(self.api.client(), cfg, ops, Metrics::new(&name));
        tokio::spawn(async move { agent.run().await })
    }

    fn spawn_all(&self) -> Vec<JoinHandle<()>> {
        (0..self.nodes.len()).map(|i| self.spawn(i)).collect()
    }

    fn phase(&self, node: &str) -> String {
        self.api
            .get(NUS, "", node)
            .and_then(|o| o["status"]["phase"].as_str().map(String::from))
            .unwrap_or_default()
    }

    fn cordoned(&self, node: &str) -> bool {
        let n = self.api.get(NODES, "", node).unwrap();
        n["spec"]["unschedulable"] == json!(true)
    }

    async fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > timeout {
                let nus: Vec<Value> = self
                    .api
                    .all(NUS)
                    .into_iter()
                    .map(|o| json!({"name": o["metadata"]["name"], "status": o["status"]}))
                    .collect();
                panic!(
                    "timed out waiting for {what}; nodeupgrades: {}",
                    serde_json::to_string_pretty(&nus).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_concurrency_two_never_exceeded() {
    let c = Cluster::new(5, "1").await;
    c.api.seed(PLANS, "", plan("fleet", "2", 2, json!({})));
    let agents = c.spawn_all();
    c.wait_for("all five Succeeded", Duration::from_secs(60), |c| {
        c.nodes.iter().all(|(n, _)| c.phase(n) == "Succeeded")
    })
    .await;
    assert!(
        c.api.max_in_flight() <= 2,
        "concurrency exceeded: {} nodes past Waiting at once",
        c.api.max_in_flight()
    );
    assert_eq!(
        c.api.max_in_flight(),
        2,
        "the two slots were used in parallel"
    );
    assert!(
        c.api.max_cordoned() <= 2,
        "{} cordoned at once",
        c.api.max_cordoned()
    );
    // Settled: nothing cordoned, every lease released, workloads drained but DaemonSets kept.
    c.wait_for("leases released", Duration::from_secs(10), |c| {
        c.api.all(LEASES).is_empty()
    })
    .await;
    for (n, ops) in &c.nodes {
        assert!(!c.cordoned(n), "{n} left cordoned");
        let f = ops.with(|f| f.facts());
        assert_eq!(
            (f.version.as_str(), f.running_on_trial),
            ("2", false),
            "{n}"
        );
        ops.with(|f| assert_eq!((f.stages, f.reboots), (1, 1), "{n}"));
        let nu = c.api.get(NUS, "", n).unwrap();
        assert_eq!(nu["status"]["currentVersion"], "2");
        assert_eq!(nu["status"]["slot"], "B");
        assert_eq!(nu["status"]["attempts"], 1);
        assert_eq!(nu["metadata"]["labels"][PLAN_LABEL], "fleet");
        assert!(nu["status"]["bytesDownloaded"].as_u64().unwrap() > 0);
    }
    let pods = c.api.all(PODS);
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["labels"]["app"] == "proxy"),
        "only DaemonSet pods remain"
    );
    assert_eq!(pods.len(), 5);
    c.wait_for("plan status complete", Duration::from_secs(10), |c| {
        c.api.get(PLANS, "", "fleet").unwrap()["status"]["succeeded"] == 5
    })
    .await;
    let p = c.api.get(PLANS, "", "fleet").unwrap();
    assert_eq!(p["status"]["conditions"][0]["reason"], "Complete", "{p}");
    for a in agents {
        a.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdb_blocked_drain_fails_after_timeout_with_node_uncordoned() {
    let c = Cluster::new(1, "1").await;
    c.api.seed(
        PODS,
        "default",
        pod("default", "db-0", "n1", "StatefulSet", "db"),
    );
    c.api.add_pdb(Pdb {
        namespace: "default".into(),
        name: "db-pdb".into(),
        match_labels: [("app".to_string(), "db".to_string())].into(),
        min_available: 1,
    });
    c.api.seed(
        PLANS,
        "",
        plan("p", "2", 1, json!({"drain": {"timeoutSeconds": 2}})),
    );
    let start = Instant::now();
    let agents = c.spawn_all();
    c.wait_for("Draining", Duration::from_secs(10), |c| {
        c.phase("n1") == "Draining"
    })
    .await;
    assert!(c.cordoned("n1"), "cordoned while draining");
    c.wait_for("Failed", Duration::from_secs(20), |c| {
        c.phase("n1") == "Failed"
    })
    .await;
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "failed before the timeout"
    );
    let nu = c.api.get(NUS, "", "n1").unwrap();
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("drain timed out after 2s"), "{err}");
    assert!(err.contains("default/db-0"), "blocking pod named: {err}");
    assert!(err.contains("db-pdb"), "PDB named: {err}");
    c.wait_for("lease released", Duration::from_secs(5), |c| {
        c.api.all(LEASES).is_empty()
    })
    .await;
    assert!(!c.cordoned("n1"), "node uncordoned");
    let n = c.api.get(NODES, "", "n1").unwrap();
    assert!(n["metadata"]["annotations"][CORDON_ANNOTATION].is_null());
    // The other pod was evicted, the protected one stays, nothing was staged.
    assert!(c.api.get(PODS, "default", "web-1").is_none());
    assert!(c.api.get(PODS, "default", "db-0").is_some());
    c.nodes[0]
        .1
        .with(|f| assert_eq!((f.stages, f.reboots), (0, 0)));
    // It stays Failed (no retry loop behind the PDB).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.phase("n1"), "Failed");
    assert!(!c.cordoned("n1"));
    for a in agents {
        a.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_plan_releases_everything() {
    let c = Cluster::new(3, "1").await;
    // n1 is held in Draining by a PDB, n2 in Staging by a slow download.
    c.api.seed(
        PODS,
        "default",
        pod("default", "db-0", "n1", "StatefulSet", "db"),
    );
    c.api.add_pdb(Pdb {
        namespace: "default".into(),
        name: "db-pdb".into(),
        match_labels: [("app".to_string(), "db".to_string())].into(),
        min_available: 1,
    });
    c.nodes[1]
        .1
        .with(|n| n.stage_delay = Duration::from_secs(3600));
    c.nodes[2]
        .1
        .with(|n| n.stage_delay = Duration::from_secs(3600));
    c.api.seed(
        PLANS,
        "",
        plan("p", "2", 2, json!({"drain": {"timeoutSeconds": 3600}})),
    );
    let agents = c.spawn_all();
    c.wait_for("two nodes in flight", Duration::from_secs(20), |c| {
        c.nodes
            .iter()
            .filter(|(n, _)| ["Draining", "Staging"].contains(&c.phase(n).as_str()))
            .count()
            == 2
    })
    .await;
    assert_eq!(c.api.all(LEASES).len(), 2);
    assert_eq!(c.nodes.iter().filter(|(n, _)| c.cordoned(n)).count(), 2);
    c.api.delete(PLANS, "", "p");
    c.wait_for("everything released", Duration::from_secs(20), |c| {
        c.api.all(LEASES).is_empty()
            && c.api.all(NUS).is_empty()
            && c.nodes.iter().all(|(n, _)| !c.cordoned(n))
    })
    .await;
    for (n, _) in &c.nodes {
        let node = c.api.get(NODES, "", n).unwrap();
        assert!(
            node["metadata"]["annotations"][CORDON_ANNOTATION].is_null(),
            "{n}"
        );
    }
    // And it stays that way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.api.all(LEASES).is_empty() && c.api.all(NUS).is_empty());
    for a in agents {
        a.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_failures_stops_the_rollout() {
    let c = Cluster::new(4, "1").await;
    for (_, ops) in &c.nodes {
        ops.with(|n| n.broken.push("2".into()));
    }
    c.api.seed(PLANS, "", plan("p", "2", 1, json!({})));
    let agents = c.spawn_all();
    c.wait_for("one node rolled back", Duration::from_secs(30), |c| {
        c.nodes.iter().any(|(n, _)| c.phase(n) == "RolledBack")
    })
    .await;
    // Give the others every chance to (wrongly) start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let phases: Vec<String> = c.nodes.iter().map(|(n, _)| c.phase(n)).collect();
    assert_eq!(
        phases.iter().filter(|p| *p == "RolledBack").count(),
        1,
        "{phases:?}"
    );
    assert_eq!(
        phases.iter().filter(|p| *p == "Waiting").count(),
        3,
        "{phases:?}"
    );
    let rolled = c
        .nodes
        .iter()
        .find(|(n, _)| c.phase(n) == "RolledBack")
        .unwrap();
    let nu = c.api.get(NUS, "", &rolled.0).unwrap();
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("never marked good"), "{err}");
    assert_eq!(nu["status"]["currentVersion"], "1");
    let others: Vec<String> = c
        .nodes
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| *n != rolled.0)
        .collect();
    // Each waiting node says why it waits (written on its next pass, so waited for).
    c.wait_for(
        "RolloutStopped on the waiting nodes",
        Duration::from_secs(10),
        |c| {
            others.iter().all(|n| {
                c.api.get(NUS, "", n).unwrap()["status"]["conditions"][0]["reason"]
                    == "RolloutStopped"
            })
        },
    )
    .await;
    // The rolled-back node reports its phase and releases in separate writes.
    c.wait_for(
        "the rolled-back node released",
        Duration::from_secs(10),
        |c| c.api.all(LEASES).is_empty() && !c.cordoned(&rolled.0),
    )
    .await;
    for (n, ops) in &c.nodes {
        assert!(!c.cordoned(n));
        if *n != rolled.0 {
            ops.with(|f| assert_eq!(f.stages, 0, "{n} started after the limit"));
        }
    }
    let p = c.api.get(PLANS, "", "p").unwrap();
    assert_eq!(p["status"]["failed"], 1);
    assert_eq!(p["status"]["conditions"][0]["reason"], "MaxFailuresReached");
    assert!(p["status"]["message"]
        .as_str()
        .unwrap()
        .contains("rollout stopped"));
    for a in agents {
        a.abort();
    }
}

/// A plan back to an older version: without `allowDowngrade` the node's own refusal fails
/// the attempt and nothing is staged; the operator sets it (and deletes the NodeUpgrade to
/// retry), and the same node goes back. The field travels from the plan through the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_downgrades_only_with_allow_downgrade() {
    let c = Cluster::new(1, "2").await;
    c.api.seed(PLANS, "", plan("back", "1", 1, json!({})));
    let agents = c.spawn_all();
    c.wait_for("the downgrade refused", Duration::from_secs(30), |c| {
        c.phase("n1") == "Failed"
    })
    .await;
    let nu = c.api.get(NUS, "", "n1").unwrap();
    let err = nu["status"]["lastError"].as_str().unwrap();
    assert!(err.contains("staging 1 failed"), "{err}");
    assert!(err.contains("refusing a downgrade"), "{err}");
    let ops = &c.nodes[0].1;
    ops.with(|n| {
        assert_eq!((n.facts().version.as_str(), n.trial), ("2", None));
        assert_eq!(n.slots[1], None, "nothing staged");
    });

    c.api.seed(
        PLANS,
        "",
        plan("back", "1", 1, json!({"allowDowngrade": true})),
    );
    c.api.delete(NUS, "", "n1");
    c.wait_for("the downgrade done", Duration::from_secs(30), |c| {
        c.phase("n1") == "Succeeded"
    })
    .await;
    ops.with(|n| {
        let f = n.facts();
        assert_eq!((f.version.as_str(), f.running_on_trial), ("1", false));
    });
    assert!(!c.cordoned("n1"));
    for a in agents {
        a.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_mid_phase_resumes() {
    let c = Cluster::new(1, "1").await;
    let ops = c.nodes[0].1.clone();
    ops.with(|n| {
        n.stage_delay = Duration::from_secs(1);
        n.healthy = false;
    });
    c.api.seed(PLANS, "", plan("p", "2", 1, json!({})));
    // Killed mid-download.
    let a = c.spawn(0);
    c.wait_for("Staging", Duration::from_secs(10), |c| {
        c.phase("n1") == "Staging"
    })
    .await;
    a.abort();
    let _ = a.await;
    assert_eq!(ops.with(|n| n.stages), 0, "the download was cut");
    // Killed while waiting for health after the reboot.
    let a = c.spawn(0);
    c.wait_for("Verifying", Duration::from_secs(10), |c| {
        c.phase("n1") == "Verifying"
    })
    .await;
    a.abort();
    let _ = a.await;
    assert!(c.cordoned("n1"), "still cordoned while verifying");
    assert_eq!(c.api.all(LEASES).len(), 1, "lease kept across the restart");
    ops.with(|n| n.healthy = true);
    let a = c.spawn(0);
    c.wait_for("Succeeded", Duration::from_secs(10), |c| {
        c.phase("n1") == "Succeeded"
    })
    .await;
    ops.with(|n| {
        assert_eq!((n.stages, n.reboots), (1, 1));
        assert!(!n.running_on_trial);
    });
    assert_eq!(c.api.get(NUS, "", "n1").unwrap()["status"]["attempts"], 1);
    c.wait_for("lease released", Duration::from_secs(5), |c| {
        c.api.all(LEASES).is_empty()
    })
    .await;
    assert!(!c.cordoned("n1"));
    a.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_lease_writes_conflict_and_expired_leases_are_taken_over() {
    // A lease left by a node that crashed: expired, so another node takes it over; a live one
    // is respected.
    let c = Cluster::new(2, "1").await;
    c.api.seed(
        LEASES,
        NS,
        json!({"metadata": {"name": "rkos-upgrade-p-0",
                "labels": {"app.kubernetes.io/managed-by": "rkos-agent", PLAN_LABEL: "p"}},
               "spec": {"holderIdentity": "crashed-node", "leaseDurationSeconds": 1,
                        "renewTime": "2020-01-01T00:00:00.000000Z"}}),
    );
    c.api.seed(
        LEASES,
        NS,
        json!({"metadata": {"name": "rkos-upgrade-p-1",
                "labels": {"app.kubernetes.io/managed-by": "rkos-agent", PLAN_LABEL: "p"}},
               "spec": {"holderIdentity": "busy-node", "leaseDurationSeconds": 3600,
                        "renewTime": k8s_openapi::jiff::Timestamp::from_second(
                            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
                                .unwrap().as_secs() as i64).unwrap().to_string()}}),
    );
    c.api.seed(PLANS, "", plan("p", "2", 2, json!({})));
    let agents = c.spawn_all();
    c.wait_for("both Succeeded", Duration::from_secs(30), |c| {
        c.phase("n1") == "Succeeded" && c.phase("n2") == "Succeeded"
    })
    .await;
    assert_eq!(
        c.api.max_in_flight(),
        1,
        "only the expired lease was usable"
    );
    let busy = c.api.get(LEASES, NS, "rkos-upgrade-p-1").unwrap();
    assert_eq!(
        busy["spec"]["holderIdentity"], "busy-node",
        "a live lease is never taken"
    );
    for a in agents {
        a.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_alone_drive_the_agent() {
    // With an hour between periodic passes, only the list+watch streams (plans, its
    // NodeUpgrade, its Node) can wake the agent up.
    let c = Cluster::new(1, "1").await;
    let mut slow = cfg("n1");
    slow.tick = Duration::from_secs(3600);
    let a = c.spawn_with(0, slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.api.all(NUS).is_empty(), "no plan, nothing to do");
    c.api.seed(PLANS, "", plan("p", "2", 1, json!({})));
    c.wait_for(
        "Succeeded through watch events",
        Duration::from_secs(20),
        |c| c.phase("n1") == "Succeeded",
    )
    .await;
    // A new version, seen as a MODIFIED event, starts the next upgrade.
    let plans: kube::Api<rkos_agent::crd::UpgradePlan> = kube::Api::all(c.api.client());
    plans
        .patch(
            "p",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"version": "3"}})),
        )
        .await
        .unwrap();
    c.wait_for(
        "version 3 through watch events",
        Duration::from_secs(20),
        |c| {
            c.phase("n1") == "Succeeded"
                && c.api.get(NUS, "", "n1").unwrap()["status"]["currentVersion"] == "3"
        },
    )
    .await;
    c.nodes[0]
        .1
        .with(|n| assert_eq!((n.stages, n.reboots), (2, 2)));
    a.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_returns_from_its_reboot_stops_the_rollout() {
    // Concurrency 1, maxFailures 1, a lease of 2 s: whichever node goes first asks for its
    // reboot and is never seen again. Its lease lapses, but its place is not taken over: it
    // counts as failed, and the other node stays Waiting instead of going down as well.
    let c = Cluster::new(2, "1").await;
    for (_, ops) in &c.nodes {
        ops.with(|n| n.never_returns = true);
    }
    c.api.seed(PLANS, "", plan("p", "2", 1, json!({})));
    let agents: Vec<JoinHandle<()>> = (0..2)
        .map(|i| {
            let mut short = cfg(&c.nodes[i].0);
            short.lease_seconds = 2;
            c.spawn_with(i, short)
        })
        .collect();
    let phases = |c: &Cluster| -> Vec<String> { c.nodes.iter().map(|(n, _)| c.phase(n)).collect() };
    c.wait_for("one node rebooting", Duration::from_secs(20), |c| {
        phases(c).contains(&"Rebooting".to_string())
    })
    .await;
    let (gone, other) = if c.phase("n1") == "Rebooting" {
        ("n1", "n2")
    } else {
        ("n2", "n1")
    };
    c.wait_for("the rollout stopped", Duration::from_secs(20), |c| {
        c.api.get(NUS, "", other).unwrap()["status"]["conditions"][0]["reason"] == "RolloutStopped"
    })
    .await;
    // Give the waiting node every chance to (wrongly) take the lapsed lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.phase(gone), "Rebooting");
    assert_eq!(c.phase(other), "Waiting");
    let nu = c.api.get(NUS, "", other).unwrap();
    let msg = nu["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.contains("1 node(s) failed"), "{msg}");
    for (n, ops) in &c.nodes {
        let stages = ops.with(|f| f.stages);
        assert_eq!(stages, u32::from(n == gone), "{n}");
    }
    assert!(!c.cordoned(other));
    let leases = c.api.all(LEASES);
    assert_eq!(leases.len(), 1);
    assert_eq!(
        leases[0]["spec"]["holderIdentity"], gone,
        "never taken over"
    );
    c.wait_for("plan status", Duration::from_secs(10), |c| {
        c.api.get(PLANS, "", "p").unwrap()["status"]["failed"] == 1
    })
    .await;
    let p = c.api.get(PLANS, "", "p").unwrap();
    assert_eq!(p["status"]["conditions"][0]["reason"], "MaxFailuresReached");
    for a in agents {
        a.abort();
    }
}
