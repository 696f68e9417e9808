#!/usr/bin/env bash
# Removes from the image's /lib/modules the driver families a Kubernetes node never needs,
# then reruns depmod. The policy (also in docs/image.md):
#   removed: sound/, drivers/media/, drivers/staging/, drivers/isdn/, drivers/infiniband/,
#            drivers/comedi/, net/bluetooth/, drivers/bluetooth/, drivers/iio/,
#            drivers/input/{joystick,touchscreen,tablet}/, and the big desktop GPU drivers
#            (drm/amd, drm/nouveau, drm/i915, drm/radeon, drm/gma500): they need firmware the
#            image does not carry and a node has no desktop; filesystems of other systems
#            and eras no node mounts (fs/{adfs,affs,afs,befs,bfs,coda,efs,freevxfs,gfs2,dlm,
#            hfs,hfsplus,hpfs,jffs2,jfs,minix,nilfs2,ocfs2,omfs,orangefs,qnx4,qnx6,reiserfs,
#            sysv,ubifs,ufs}); radio, field-bus and legacy network families no cluster node
#            speaks (ATM, CAN, ham radio, ARCnet, FDDI, WAN, 802.15.4/6LoWPAN, NFC, X.25 and
#            AX.25 relatives, AppleTalk, batman-adv, DCCP, RDS, TIPC).
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
             drivers/gpu/drm/gma500 \
             fs/adfs fs/affs fs/afs fs/befs fs/bfs fs/coda fs/efs fs/freevxfs fs/gfs2 fs/dlm \
             fs/hfs fs/hfsplus fs/hpfs fs/jffs2 fs/jfs fs/minix fs/nilfs2 fs/ocfs2 fs/omfs \
             fs/orangefs fs/qnx4 fs/qnx6 fs/reiserfs fs/sysv fs/ubifs fs/ufs \
             drivers/atm drivers/net/can drivers/net/hamradio drivers/net/arcnet \
             drivers/net/fddi drivers/net/wan drivers/net/ieee802154 net/atm net/can \
             net/ieee802154 net/6lowpan net/nfc net/ax25 net/netrom net/rose net/x25 \
             net/appletalk net/batman-adv net/dccp net/rds net/tipc; do
        rm -rf "${k:?}/$d"
    done
    depmod -b "$root" "$kver"
done
