#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need on the host (Debian bookworm).
# QEMU comes from bookworm-backports: machines that already carry its qemu-utils (as CI's do)
# cannot install bookworm's older qemu-system beside it.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "host-deps: run as root (or: sudo make host-deps)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/rkos-backports.sources <<'EOS'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
fi
stamp=/var/lib/rkos-host-deps.stamp
want=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
apt-get update -q
apt-get install -y -q -t bookworm-backports qemu-system-x86 qemu-utils
apt-get install -y -q \
    mmdebstrap squashfs-tools xorriso mtools dosfstools e2fsprogs gdisk parted fdisk \
    grub-pc-bin grub-efi-amd64-bin grub-common grub2-common udev ovmf busybox-static cpio zstd kmod \
    tmux iproute2 ca-certificates curl
echo "$want" > "$stamp"
