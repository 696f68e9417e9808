#!/usr/bin/env bash
# Removes from the image's /lib/modules the driver families a Kubernetes node never needs,
# then reruns depmod. The policy (also in docs/image.md):
#   removed: sound/, drivers/media/, drivers/staging/, drivers/isdn/, drivers/infiniband/,
#            drivers/comedi/, net/bluetooth/, drivers/bluetooth/, drivers/iio/,
#            drivers/input/{joystick,touchscreen,tablet}/, and the big desktop GPU drivers
#            (drm/amd, drm/nouveau, drm/i915, drm/radeon, drm/gma500): they need firmware the
#            image does not carry and a node has no desktop.
#   kept: everything else: storage (incl. FC/SAS HBAs), network (incl. WiFi), filesystems,
#         netfilter, virtualization, HID, and the simple DRM drivers servers and VMs show
#         their console with (simpledrm, bochs, virtio-gpu, ast and mgag200 for BMCs).
# Usage: build/prune-modules.sh ROOT
set -euo pipefail
root=$1
for mdir in "$root"/lib/modules/*/; do
    kver=$(basename "$mdir")
    k="$mdir/kernel"
    [ -d "$k" ] || continue
    for d in sound drivers/media drivers/staging drivers/isdn drivers/infiniband drivers/comedi \
             net/bluetooth drivers/bluetooth drivers/iio drivers/input/joystick \
             drivers/input/touchscreen drivers/input/tablet drivers/gpu/drm/amd \
             drivers/gpu/drm/nouveau drivers/gpu/drm/i915 drivers/gpu/drm/radeon \
             drivers/gpu/drm/gma500; do
        rm -rf "${k:?}/$d"
    done
    depmod -b "$root" "$kver"
done
