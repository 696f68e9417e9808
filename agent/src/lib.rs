//! rkos-agent: the in-cluster upgrade agent.
//!
//! - [`crd`]: the `UpgradePlan` and `NodeUpgrade` custom resources;
//! - [`machine`]: the pure rollout state machine of one node, which takes every decision;
//! - [`select`], [`window`], [`drain`]: pure helpers (label selectors, maintenance windows,
//!   which pods a drain evicts);
//! - [`nodeops`]: the node side behind a trait (the `rkos` command on the host, or a fake);
//! - the I/O around the machine: [`api`] (the API context), [`observe`] (the machine's
//!   input), [`execute`] (one small function per action), [`lease`] (the rollout leases),
//!   [`reconcile`] (the loop);
//! - [`rollup`]: the plan's status from its NodeUpgrades;
//! - [`metrics`]: Prometheus text exposition.

pub mod api;
pub mod crd;
pub mod drain;
pub mod execute;
pub mod lease;
pub mod machine;
pub mod metrics;
pub mod nodeops;
pub mod observe;
pub mod reconcile;
pub mod rollup;
pub mod select;
pub mod window;
