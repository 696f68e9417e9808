#!/bin/sh
# rkos-netboot-scratch.service: mounts the disk labelled as rkos.netboot.scratch= says at
# /run/rkos/scratch and binds its rancher/ on /var/lib/rancher (replacing the RAM-backed
# containerd directory rkos-init mounted there, still empty: k3s has not started). The disk
# keeps its content across boots: a cache of images, and the agent's state.
set -eu
label=$(sed -n 's/.*rkos\.netboot\.scratch=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$label" ] || exit 0
dev=/dev/disk/by-label/$label
i=0
while [ ! -e "$dev" ] && [ "$i" -lt 30 ]; do sleep 1; i=$((i + 1)); done
if [ ! -e "$dev" ]; then
    echo "rkos: no disk labelled $label (rkos.netboot.scratch) after 30 s; /var/lib/rancher stays in RAM" >&2
    exit 0
fi
mkdir -p /run/rkos/scratch
mount -o noatime "$dev" /run/rkos/scratch
mkdir -p /run/rkos/scratch/rancher
umount /var/lib/rancher/k3s/agent/containerd 2>/dev/null || true
mount --bind /run/rkos/scratch/rancher /var/lib/rancher
echo "rkos: /var/lib/rancher is on $dev (label $label)"
