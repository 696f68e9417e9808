//! Test-only helpers. Nothing here is shipped.

// Each test binary (and the benchmark's example server) uses a different part of the
// stand-in.
#[allow(dead_code)]
pub mod apiserver_standin;

#[allow(dead_code)]
pub mod node_agent;
