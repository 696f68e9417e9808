#!/usr/bin/env bash
# What the netboot tests need beyond build/host-deps.sh: iPXE for TFTP (Debian's ipxe) and a
# real dnsmasq (dnsmasq-base: the program without a system service of its own).
set -euo pipefail
need=()
[ -f /usr/lib/ipxe/undionly.kpxe ] || need+=(ipxe)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
[ -f /usr/lib/ipxe/qemu/efi-virtio.rom ] || need+=(ipxe-qemu)
[ "${#need[@]}" -eq 0 ] && exit 0
[ "$(id -u)" -eq 0 ] || { echo "netboot-deps: run as root to install ${need[*]}" >&2; exit 1; }
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
