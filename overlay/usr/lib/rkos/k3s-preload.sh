#!/bin/sh
# Run by k3s.service before k3s starts. Puts the upgrade agent's image archive where k3s
# imports images at start, and on servers every file of $src/manifests (its CRDs, DaemonSet
# and RBAC, admission policies) where k3s auto-deploys manifests. These directories are on
# RKOS_DATA on installed nodes, so the image's copies are written again on every boot: after
# an OS upgrade the new agent replaces the old one.
set -eu
src=/usr/lib/rkos/k3s
k3s=/var/lib/rancher/k3s
place() { # place SRC DEST: write DEST only when it differs, atomically
    if ! cmp -s "$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        cp "$1" "$2.rkos-tmp"
        mv "$2.rkos-tmp" "$2"
    fi
}
for f in "$src"/images/*; do
    [ -e "$f" ] && place "$f" "$k3s/agent/images/$(basename "$f")"
done
if [ "${RKOS_K3S_ROLE:-server}" = server ]; then
    for f in "$src"/manifests/*; do
        [ -e "$f" ] && place "$f" "$k3s/server/manifests/$(basename "$f")"
    done
fi
exit 0
