//! rkos-agent: the upgrade agent, in-cluster (CRDs, rollout) and on-node.
