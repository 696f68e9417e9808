//! rkos-agent: the in-cluster upgrade agent.
//!
//! - [`crd`]: the `UpgradePlan` and `NodeUpgrade` custom resources;
//! - [`machine`]: the pure rollout state machine of one node;
//! - [`select`], [`window`], [`drain`]: pure helpers (label selectors, maintenance windows,
//!   which pods a drain evicts);
//! - [`nodeops`]: the node side behind a trait (the `rkos` command on the host, or a fake);
//! - [`kube_io`]: observing the cluster and carrying out the machine's actions;
//! - [`rollup`]: the plan's status from its NodeUpgrades;
//! - [`metrics`]: Prometheus text exposition.

pub mod crd;
pub mod drain;
pub mod kube_io;
pub mod machine;
pub mod metrics;
pub mod nodeops;
pub mod rollup;
pub mod select;
pub mod window;
