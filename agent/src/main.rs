//! `rkos-agent`: the in-cluster upgrade agent (one per node, from a DaemonSet).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rkos_agent::api::AgentConfig;
use rkos_agent::drain::PodRef;
use rkos_agent::lease::{DEFAULT_LEASE_SECONDS, WORST_CASE_TRIAL_SECONDS};
use rkos_agent::metrics::{self, Metrics};
use rkos_agent::nodeops::HostNodeOps;
use rkos_agent::reconcile::Agent;

#[derive(Parser)]
#[command(
    name = "rkos-agent",
    version,
    about = "rkos in-cluster OS upgrade agent"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent for this node (in-cluster config, or KUBECONFIG).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (the source of manifests/crds.yaml).
    Crds,
}

#[derive(clap::Args)]
struct RunArgs {
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Namespace of the rollout leases (the agent's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "rkos-system")]
    namespace: String,
    /// The agent's own pod name, never evicted by a drain.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Where the host's root filesystem is mounted; `/` runs `rkos` without a chroot.
    #[arg(long, default_value = "/host")]
    host_root: PathBuf,
    /// The `rkos` command, as a path inside the host root.
    #[arg(long, default_value = "/usr/bin/rkos")]
    rkos: PathBuf,
    #[arg(long, default_value = "0.0.0.0:9469")]
    metrics_addr: SocketAddr,
    /// Lease duration. It must outlast the worst-case trial of a new slot (every try's boot
    /// and health deadline, then the fallback boot): a lease that lapses while its node is
    /// in flight counts that node as failed. A node that crashes while draining or staging
    /// frees its place after this long.
    #[arg(long, default_value_t = DEFAULT_LEASE_SECONDS)]
    lease_seconds: i32,
    /// Reconcile at least this often.
    #[arg(long, default_value_t = 10)]
    tick_seconds: u64,
    /// How long a rebooted node may take to become healthy.
    #[arg(long, default_value_t = 600)]
    verify_timeout_seconds: u64,
}

// One thread: the agent mostly waits, and a single-threaded runtime keeps it small.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Crds => {
            print!("{}", rkos_agent::crd::crds_yaml());
            Ok(())
        }
        Cmd::Run(a) => run(a).await,
    }
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let client = rkos_agent::api::client(config).context("building the API client")?;
    let mut cfg = AgentConfig::new(&a.node_name, &a.namespace);
    cfg.own_pod = a.pod_name.map(|name| PodRef {
        namespace: a.namespace.clone(),
        name,
    });
    cfg.lease_seconds = a.lease_seconds;
    if a.lease_seconds <= WORST_CASE_TRIAL_SECONDS {
        tracing::warn!(
            lease_seconds = a.lease_seconds,
            worst_case_trial = WORST_CASE_TRIAL_SECONDS,
            "the lease is shorter than a trial may take: a node whose trial fails slowly \
             will be counted as failed, and the rollout stopped"
        );
    }
    cfg.tick = Duration::from_secs(a.tick_seconds.max(1));
    cfg.verify_timeout_seconds = a.verify_timeout_seconds;
    let ops = HostNodeOps {
        rkos: a.rkos,
        ..HostNodeOps::new(a.host_root)
    };
    let metrics = Metrics::new(&a.node_name);
    let agent = Agent::new(client, cfg, ops, metrics.clone());
    tracing::info!(node = a.node_name, metrics = %a.metrics_addr, "rkos-agent starting");
    tokio::select! {
        r = metrics::serve(a.metrics_addr, metrics) => {
            r.with_context(|| format!("serving metrics on {}", a.metrics_addr))
        }
        _ = agent.run() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
