# kubectl (k3s's, and any other client) uses the cluster-admin kubeconfig of this server:
# k3s writes it 0640, group rkos (the node's admin group, see rkos-config's render), so the
# user rkos runs kubectl without sudo. A KUBECONFIG of the user's own is kept.
: "${KUBECONFIG:=/etc/rancher/k3s/k3s.yaml}"
export KUBECONFIG
