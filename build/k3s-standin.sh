#!/bin/bash
# k3s STAND-IN for rkos boot tests. It is not k3s and runs no Kubernetes. As k3s it records
# its arguments, environment and a copy of /etc/rancher/k3s/config.yaml into
# /run/k3s-standin/ and then stays up, so tests can check how k3s.service started it.
# Called as kubectl, crictl or ctr it says it is a stand-in. Images built with it are named
# *-standin.iso and carry RKOS_K3S=stand-in in /etc/os-release.
name=$(basename "$0")
case "$name" in
    kubectl|crictl|ctr)
        echo "$name: k3s stand-in (test image): no Kubernetes here"
        exit 0 ;;
esac
case "${1:-}" in
    --version|-v|version)
        echo "k3s stand-in (rkos test image)"
        exit 0 ;;
    kubectl|crictl|ctr)
        echo "$1: k3s stand-in (test image): no Kubernetes here"
        exit 0 ;;
esac
dir=/run/k3s-standin
mkdir -p "$dir"
chmod 0700 "$dir"
printf '%s\n' "$@" > "$dir/argv"
env | sort > "$dir/environ"
if [ -f /etc/rancher/k3s/config.yaml ]; then
    cp /etc/rancher/k3s/config.yaml "$dir/config.yaml"
fi
echo "k3s stand-in: started as '$*' (pid $$); recorded in $dir"
exec sleep infinity
