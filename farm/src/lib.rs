//! rkos-farm: the netboot farm's logic, pure and unit-tested. The inventory (`farm.yaml`:
//! pools of nodes by MAC, tags, the cluster to join, a catch-all pool) read and checked with
//! line, column and key path like `config.yaml`; each node's iPXE script and `config.yaml`;
//! dnsmasq's configuration; what `rkos farm serve` answers for each path. The edges
//! (`rkos farm serve`, `rkos farm dnsmasq`) are in cli/src/farm_cmd.rs; docs/netboot.md is
//! the operator's guide.

pub mod inventory;
pub mod render;
pub mod routes;

pub use inventory::{Inventory, NodePlan};
