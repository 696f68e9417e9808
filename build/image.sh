#!/usr/bin/env bash
# Assembles the rkos root filesystem image from the base rootfs (build/rootfs.sh), overlay/,
# the rkos binaries and k3s (build/k3s.sh), then writes, for RKOS_ARCH (build/arch.sh),
#   <work>/image/rootfs.squashfs   (zstd)
#   <work>/image/vmlinuz           (the rootfs's own kernel, taken out of the image)
#   <work>/image/initrd            (build/initramfs.sh, modules from the same kernel)
# Usage: build/image.sh RKOS_BIN RKOS_INIT_BIN VERSION   (root; run by `make iso`)
# Environment: RKOS_TRUSTED_KEY (default work/keys/rkos.pub: the key bundles must be signed
# with), RKOS_AGENT_IMAGE (default dist/rkos-agent-image.tar: the upgrade agent's OCI archive).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
rkos_bin=$1 init_bin=$2 version=$3
# the tree may be a link into the rootfs cache (build/rootfs.sh)
base=$(readlink -f "$rkos_work/rootfs/tree")
out="$rkos_work/image"
root="$out/root"
[ -d "$base/usr" ] || { echo "image: no base rootfs at $base (run build/rootfs.sh)" >&2; exit 1; }
[ -x "$rkos_bin" ] || { echo "image: rkos binary $rkos_bin missing" >&2; exit 1; }
trusted_key=${RKOS_TRUSTED_KEY:-$top/work/keys/rkos.pub}
agent_image=${RKOS_AGENT_IMAGE:-$top/dist/rkos-agent-image.tar}
[ -f "$trusted_key" ] || { echo "image: no signing public key at $trusted_key (build/mkbundle.sh keys makes one)" >&2; exit 1; }
[ -f "$agent_image" ] || { echo "image: no agent image at $agent_image (make agent-image)" >&2; exit 1; }
[ -f "$rkos_work/k3s/k3s" ] || { echo "image: no k3s at $rkos_work/k3s/k3s (run build/k3s.sh)" >&2; exit 1; }
k3s_kind=$(cat "$rkos_work/k3s/kind")

mkdir -p "$out"
rm -rf "$root"
cp -a --reflink=auto "$base" "$root"

# overlay/ as root-owned files; git keeps only the x bit, so stricter modes are set here.
tar -C "$top/overlay" --owner=0 --group=0 --exclude='.gitkeep' -cf - . | tar -C "$root" -xpf -
chmod 0440 "$root/etc/sudoers.d/rkos"
chmod 0755 "$root"/usr/lib/rkos/*.sh "$root"/usr/lib/systemd/system-generators/* 2>/dev/null || true

install -m 0755 "$rkos_bin" "$root/usr/bin/rkos"
ln -sfn rkos "$root/usr/bin/os-config"
# The user docs on the node, where os-config --help and the units point.
install -d -m 0755 "$root/usr/share/doc/rkos"
install -m 0644 "$top"/docs/*.md "$root/usr/share/doc/rkos/"
install -d -m 0755 "$root/usr/local/bin"
install -m 0755 "$rkos_work/k3s/k3s" "$root/usr/local/bin/k3s"
for tool in kubectl crictl ctr; do ln -sfn k3s "$root/usr/local/bin/$tool"; done

# Upgrades: the key bundles are signed with (more only through the node's own config), and
# the upgrade agent with its manifests (CRDs; DaemonSet and RBAC; admission policies), put in
# k3s's import and auto-deploy directories before k3s starts (usr/lib/rkos/k3s-preload.sh),
# so a fresh cluster needs no registry.
install -D -m 0644 "$trusted_key" "$root/usr/lib/rkos/trusted-keys/rkos.pub"
install -D -m 0644 "$agent_image" "$root/usr/lib/rkos/k3s/images/rkos-agent.tar"
install -D -m 0644 "$top/agent/manifests/crds.yaml" "$root/usr/lib/rkos/k3s/manifests/rkos-upgrade-crds.yaml"
install -D -m 0644 "$top/agent/manifests/agent.yaml" "$root/usr/lib/rkos/k3s/manifests/rkos-upgrade-agent.yaml"
install -D -m 0644 "$top/agent/manifests/policy.yaml" "$root/usr/lib/rkos/k3s/manifests/rkos-upgrade-policy.yaml"
if [ "$k3s_kind" = stand-in ]; then
    # The stand-in has no kubelet to ask: a slot is healthy once the stand-in started.
    echo 'RKOS_MARK_GOOD_ARGS=--health-file /run/k3s-standin/argv --timeout 120' \
        > "$root/etc/default/rkos-mark-good"
fi

case "$k3s_kind" in
    stand-in) k3s_field="stand-in" ;;
    *) k3s_field="${k3s_kind#release }" ;;
esac
cat > "$root/usr/lib/os-release" <<EOS
PRETTY_NAME="rkos $version"
NAME="rkos"
VERSION_ID="$version"
VERSION="$version"
ID=rkos
ID_LIKE=debian
HOME_URL="https://github.com/rkos"
RKOS_K3S=$k3s_field
EOS
ln -sfn ../usr/lib/os-release "$root/etc/os-release"
mkdir -p "$root/etc/rkos"
echo "$version" > "$root/etc/rkos/version"

systemctl --root="$root" enable rkos-config-early.service rkos-config-network.service \
    k3s.service rkos-ssh-keygen.service rkos-issue.service rkos-issue-watch.service \
    rkos-grow-data.service rkos-iscsi-initiator.service \
    rkos-mark-good.service >/dev/null
# rkos-install.service is pulled in by a generator, only with rkos.mode=install.

# The kernel boots from the medium, not from the image.
vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -n1)
install -m 0644 "$vmlinuz" "$out/vmlinuz.new"
rm -f "$root"/boot/vmlinuz-* "$root"/boot/System.map-* "$root"/boot/config-* "$root"/boot/initrd.img-* \
    "$root"/vmlinuz* "$root"/initrd.img*

rm -f "$out/rootfs.squashfs.new"
mksquashfs "$root" "$out/rootfs.squashfs.new" -comp zstd -Xcompression-level 15 -b 1M \
    -noappend -quiet -no-progress -wildcards -e 'proc/*' 'sys/*' 'dev/*' 'run/*' 'tmp/*'
mv "$out/rootfs.squashfs.new" "$out/rootfs.squashfs"
mv "$out/vmlinuz.new" "$out/vmlinuz"

"$top/build/initramfs.sh" "$root" "$init_bin" "$version" "$out/initrd"
echo "$k3s_kind" > "$out/k3s-kind"
echo "image: rootfs.squashfs $(du -h "$out/rootfs.squashfs" | cut -f1) (tree $(du -sh "$root" | cut -f1)), k3s: $k3s_kind"
