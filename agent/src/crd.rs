//! The two custom resources of `upgrade.rkos.io/v1alpha1`, as Rust types.
//!
//! The CRD YAML in `agent/manifests/crds.yaml` is generated from these types
//! (`rkos-agent crds`) and pinned by a golden test, so the schema the API server validates
//! against can never drift from what the agent reads and writes.

// kube's `printcolumn(name = .., type_ = .., json_path = ..)` repeats the same keys once per
// column, which clippy takes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "upgrade.rkos.io";
/// Label put on every NodeUpgrade and Lease with the name of the plan they belong to.
pub const PLAN_LABEL: &str = "upgrade.rkos.io/plan";
/// Annotation the agent puts on a Node it cordoned, naming the plan. Only a node carrying it
/// is ever uncordoned by the agent, so a node an operator cordoned by hand stays cordoned.
pub const CORDON_ANNOTATION: &str = "upgrade.rkos.io/cordoned-by";

/// A rollout of one OS version over the nodes it selects. Cluster-scoped.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "upgrade.rkos.io",
    version = "v1alpha1",
    kind = "UpgradePlan",
    plural = "upgradeplans",
    shortname = "uplan",
    status = "UpgradePlanStatus",
    printcolumn(name = "VERSION", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "CONCURRENCY",
        type_ = "integer",
        json_path = ".spec.concurrency"
    ),
    printcolumn(name = "PAUSED", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(name = "SUCCEEDED", type_ = "integer", json_path = ".status.succeeded"),
    printcolumn(name = "FAILED", type_ = "integer", json_path = ".status.failed"),
    printcolumn(name = "MESSAGE", type_ = "string", json_path = ".status.message"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePlanSpec {
    /// The OS version every selected node should run (the bundle manifest's `version`).
    pub version: String,
    /// Where the signed bundle is served (http(s) URL or a directory on the node). The node
    /// verifies it against its own trusted keys; nothing in this object can add a key.
    pub bundle_url: String,
    /// Which nodes the plan applies to; empty selects every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// At most this many nodes are past `Waiting` at once.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: u32,
    #[serde(default)]
    pub drain: DrainSpec,
    /// When nodes may start upgrading; absent means any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// The rollout stops (no new node starts) once this many nodes of the plan's version
    /// ended Failed or RolledBack.
    #[serde(default = "default_max_failures")]
    #[schemars(range(min = 1))]
    pub max_failures: u32,
    /// A paused plan starts no new node; nodes already past `Waiting` finish.
    #[serde(default)]
    pub paused: bool,
    /// Let nodes install `version` even when it is lower than the version they run (or
    /// cannot be ordered with it as semver). Off by default: an older signed release is
    /// genuine but has the holes its successors closed, so going back is a decision the
    /// cluster's administrator takes on purpose (say, to leave a release that broke the
    /// workload), for this one plan, not something a mistyped version does. Every node
    /// refuses a downgrade by itself (`rkos upgrade` without `--allow-downgrade`, whoever
    /// runs it); this field only has the agent pass that flag. Nodes booted from the network
    /// run what the farm serves, and ignore it.
    #[serde(default)]
    pub allow_downgrade: bool,
}

fn default_concurrency() -> u32 {
    1
}
fn default_max_failures() -> u32 {
    1
}

/// How a node is drained before it reboots.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// How long evictions refused by a PodDisruptionBudget are retried before the node fails
    /// cleanly (uncordoned, lease released, phase Failed naming the blocking pod).
    #[serde(default = "default_drain_timeout")]
    pub timeout_seconds: u64,
    /// Evict pods that no controller manages (they are not recreated elsewhere).
    #[serde(default)]
    pub force: bool,
    /// Leave DaemonSet pods in place (they would be recreated on the node at once).
    #[serde(default = "default_true")]
    pub ignore_daemon_sets: bool,
    /// Evict pods using emptyDir volumes, whose data is lost.
    #[serde(default)]
    pub delete_empty_dir_data: bool,
}

fn default_drain_timeout() -> u64 {
    300
}
fn default_true() -> bool {
    true
}

impl Default for DrainSpec {
    fn default() -> Self {
        DrainSpec {
            timeout_seconds: default_drain_timeout(),
            force: false,
            ignore_daemon_sets: true,
            delete_empty_dir_data: false,
        }
    }
}

/// A maintenance window. A node starts upgrading only inside it; one already started
/// finishes even when the window closes (stopping a node half-drained helps nobody).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowSpec {
    /// Days the window opens on: `mon`..`sun` (or full English names); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, local to `timeZone`.
    pub start_time: String,
    /// `HH:MM`; earlier than `startTime` means the window ends the next day.
    pub end_time: String,
    /// `UTC` or a fixed offset such as `+02:00` / `-05:30`. Named zones (Europe/Paris) are not
    /// accepted: the agent's image carries no tz database, and a fixed offset cannot change
    /// under a rollout's feet.
    #[serde(default = "default_tz")]
    pub time_zone: String,
}

fn default_tz() -> String {
    "UTC".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePlanStatus {
    /// Nodes selected by the plan that have a NodeUpgrade.
    #[serde(default)]
    pub nodes: u32,
    #[serde(default)]
    pub pending: u32,
    /// Nodes past `Waiting` and not yet finished.
    #[serde(default)]
    pub in_progress: u32,
    #[serde(default)]
    pub succeeded: u32,
    /// Failed plus RolledBack, for the plan's current version.
    #[serde(default)]
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One node's upgrade. Cluster-scoped, named as the node; created and updated by that
/// node's agent.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "upgrade.rkos.io",
    version = "v1alpha1",
    kind = "NodeUpgrade",
    plural = "nodeupgrades",
    shortname = "nup",
    status = "NodeUpgradeStatus",
    printcolumn(name = "NODE", type_ = "string", json_path = ".metadata.name"),
    printcolumn(name = "PLAN", type_ = "string", json_path = ".spec.plan"),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "CURRENT",
        type_ = "string",
        json_path = ".status.currentVersion"
    ),
    printcolumn(name = "TARGET", type_ = "string", json_path = ".status.targetVersion"),
    printcolumn(name = "SLOT", type_ = "string", json_path = ".status.slot"),
    printcolumn(name = "ATTEMPTS", type_ = "integer", json_path = ".status.attempts"),
    printcolumn(
        name = "ERROR",
        type_ = "string",
        json_path = ".status.lastError",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeUpgradeSpec {
    /// The UpgradePlan this node follows.
    pub plan: String,
    pub target_version: String,
}

/// Where a node is in its upgrade. Every phase can be resumed by a restarted agent from this
/// status plus the node's own slot and boot facts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Not yet looked at, or nothing to do yet.
    #[default]
    Pending,
    /// Needs the upgrade; waiting for a lease, the window, or an unpaused plan.
    Waiting,
    /// Holds a lease; cordoned; evicting pods.
    Draining,
    /// Downloading, verifying and writing the inactive slot, then arming the trial boot.
    Staging,
    /// Reboot requested into the trial slot.
    Rebooting,
    /// Booted the new version; waiting for health before marking the slot good.
    Verifying,
    Succeeded,
    Failed,
    /// Came back on the old slot (boot counting fell back); `lastError` says why.
    RolledBack,
}

impl Phase {
    /// Phases in which the node holds a lease and may be cordoned.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            Phase::Draining | Phase::Staging | Phase::Rebooting | Phase::Verifying
        )
    }
    pub fn is_failure(self) -> bool {
        matches!(self, Phase::Failed | Phase::RolledBack)
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::RolledBack)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Waiting => "Waiting",
            Phase::Draining => "Draining",
            Phase::Staging => "Staging",
            Phase::Rebooting => "Rebooting",
            Phase::Verifying => "Verifying",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::RolledBack => "RolledBack",
        }
    }
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Waiting,
        Phase::Draining,
        Phase::Staging,
        Phase::Rebooting,
        Phase::Verifying,
        Phase::Succeeded,
        Phase::Failed,
        Phase::RolledBack,
    ];
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeUpgradeStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The slot the node runs from (A or B).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// How many times this node started an upgrade to `targetVersion`.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RFC 3339 time the current phase was entered: the drain timeout and the health
    /// deadline count from it, so they survive agent restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<String>,
    /// The version the node ran when this attempt started; coming back on it after the
    /// reboot means the boot counting rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The kernel boot id when the reboot was requested; a different one proves the reboot
    /// happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The most recent eviction refusal while draining (pod and PodDisruptionBudget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_blocker: Option<String>,
    #[serde(default)]
    pub bytes_downloaded: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CRDs as one multi-document YAML file, as kept in `agent/manifests/crds.yaml`.
pub fn crds_yaml() -> String {
    let mut out = String::from(
        "# Generated by `rkos-agent crds` from agent/src/crd.rs. Do not edit by hand;\n\
         # the golden test agent/tests/crds_golden.rs fails when this file is stale.\n",
    );
    for crd in [UpgradePlan::crd(), NodeUpgrade::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serializes to YAML"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_defaults_fill_in() {
        let spec: UpgradePlanSpec =
            serde_json::from_str(r#"{"version":"2","bundleUrl":"http://x/b"}"#).unwrap();
        assert_eq!(spec.concurrency, 1);
        assert_eq!(spec.max_failures, 1);
        assert_eq!(spec.drain.timeout_seconds, 300);
        assert!(spec.drain.ignore_daemon_sets);
        assert!(!spec.drain.force);
        assert!(!spec.paused);
        assert!(!spec.allow_downgrade);
    }

    #[test]
    fn allow_downgrade_round_trips_as_camel_case() {
        let spec: UpgradePlanSpec = serde_json::from_str(
            r#"{"version":"1","bundleUrl":"http://x/b","allowDowngrade":true}"#,
        )
        .unwrap();
        assert!(spec.allow_downgrade);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["allowDowngrade"], true);
        assert_eq!(
            serde_json::from_value::<UpgradePlanSpec>(back).unwrap(),
            spec
        );
        // The API server keeps only what the schema names: the field must be in it, a
        // boolean defaulting to false.
        let crd = serde_json::to_value(UpgradePlan::crd()).unwrap();
        let field = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["allowDowngrade"];
        assert_eq!(field["type"], "boolean", "{field}");
        assert_eq!(field["default"], false, "{field}");
    }

    #[test]
    fn plan_without_version_is_rejected() {
        let err = serde_json::from_str::<UpgradePlanSpec>(r#"{"bundleUrl":"http://x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version"), "{err}");
    }

    #[test]
    fn crds_are_cluster_scoped_with_status_and_columns() {
        let plan = serde_json::to_value(UpgradePlan::crd()).unwrap();
        assert_eq!(plan["spec"]["scope"], "Cluster");
        let nu = serde_json::to_value(NodeUpgrade::crd()).unwrap();
        assert_eq!(nu["spec"]["scope"], "Cluster");
        let version = &nu["spec"]["versions"][0];
        assert!(version["subresources"]["status"].is_object());
        let cols: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for want in [
            "NODE", "PHASE", "CURRENT", "TARGET", "SLOT", "ATTEMPTS", "AGE",
        ] {
            assert!(cols.contains(&want), "missing column {want}: {cols:?}");
        }
    }

    #[test]
    fn phase_enum_is_in_the_schema() {
        let yaml = crds_yaml();
        for p in Phase::ALL {
            assert!(yaml.contains(p.as_str()), "{} not in schema", p.as_str());
        }
    }
}
