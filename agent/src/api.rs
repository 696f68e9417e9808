//! The agent's Kubernetes API context: its configuration, its client, the typed handles it
//! calls, and the permissions those calls need.
//!
//! Resources used (and so the RBAC in `manifests/agent.yaml`): nodes get/list/watch/patch;
//! pods list (all namespaces, by `spec.nodeName`); pods/eviction create; leases in the agent's
//! namespace get/list/create/update/delete; upgradeplans get/list/watch and status patch;
//! nodeupgrades get/list/watch/create/patch/delete and status patch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::Client;

use crate::crd::{NodeUpgrade, UpgradePlan};
use crate::drain::PodRef;
use crate::lease::DEFAULT_LEASE_SECONDS;
use crate::machine;
use crate::nodeops::NodeOpsError;

pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "rkos-agent");

/// The cluster-wide permissions the agent's calls need: (API group, resource, verbs).
/// `manifests/agent.yaml` grants exactly these (checked by `tests/manifests.rs`).
pub const CLUSTER_RBAC: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["get", "list", "watch", "patch"]),
    ("", "pods", &["list"]),
    ("", "pods/eviction", &["create"]),
    ("upgrade.rkos.io", "upgradeplans", &["get", "list", "watch"]),
    ("upgrade.rkos.io", "upgradeplans/status", &["patch"]),
    (
        "upgrade.rkos.io",
        "nodeupgrades",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("upgrade.rkos.io", "nodeupgrades/status", &["patch"]),
];

/// The permissions on leases, in the agent's namespace only.
pub const LEASE_RBAC: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "list", "create", "update", "delete"],
)];

/// The image the DaemonSet runs, as `build/agent-image.sh` names it.
pub const IMAGE: &str = concat!("rkos.local/rkos-agent:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("node: {0}")]
    Node(#[from] NodeOpsError),
    #[error("node {0} not found in the API")]
    NoNode(String),
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name (the Node object, the NodeUpgrade, the lease holder identity).
    pub node_name: String,
    /// Namespace of the leases (the agent's own).
    pub namespace: String,
    /// The agent's own pod, never evicted.
    pub own_pod: Option<PodRef>,
    pub lease_seconds: i32,
    /// Reconcile at least this often, events or not (timeouts and node facts need it).
    pub tick: Duration,
    pub verify_timeout_seconds: u64,
    /// After asking for a reboot, how long to wait before asking again (the node normally
    /// goes down well before).
    pub reboot_wait: Duration,
}

impl AgentConfig {
    pub fn new(node_name: &str, namespace: &str) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            namespace: namespace.into(),
            own_pod: None,
            lease_seconds: DEFAULT_LEASE_SECONDS,
            tick: Duration::from_secs(10),
            verify_timeout_seconds: machine::DEFAULT_VERIFY_TIMEOUT,
            reboot_wait: Duration::from_secs(60),
        }
    }
}

/// The agent's API client. kube's default retry layer is turned off: it retries 429 answers
/// for minutes, and a 429 from the Eviction API is a PodDisruptionBudget refusal that the
/// agent must see at once, to name the blocking pod and to keep its own drain timeout. Every
/// call the agent makes is retried by the next reconcile pass anyway.
pub fn client(mut config: kube::Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Client::try_from(config)
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The HTTP status of an API error answer.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The client and the configuration every API call of the agent goes through.
pub struct Ctx {
    pub client: Client,
    pub cfg: AgentConfig,
}

impl Ctx {
    pub fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
    pub fn plans(&self) -> Api<UpgradePlan> {
        Api::all(self.client.clone())
    }
    pub fn nus(&self) -> Api<NodeUpgrade> {
        Api::all(self.client.clone())
    }
    pub fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }
    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }
    pub fn all_pods(&self) -> Api<Pod> {
        Api::all(self.client.clone())
    }
    /// This node's name.
    pub fn me(&self) -> &str {
        &self.cfg.node_name
    }
}
