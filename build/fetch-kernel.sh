#!/usr/bin/env bash
# Fetches Debian's generic amd64 kernel package (the one linux-image-amd64 points at) and
# unpacks it under work/kernel/. Prints the unpacked tree's path. The root filesystem built by
# mmdebstrap carries the same package, so the initramfs modules always match the kernel.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/work/kernel"
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1; }
kver=${pkg#linux-image-}
tree="$out/$kver"
if [ ! -f "$tree/boot/vmlinuz-$kver" ]; then
    mkdir -p "$out/deb"
    (cd "$out/deb" && apt-get download -q "$pkg" >&2)
    rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
    dpkg-deb -x "$out/deb/${pkg}"_*.deb "$tree.tmp"
    rm -rf "$tree" && mv "$tree.tmp" "$tree"
fi
ln -sfn "$kver" "$out/current"
echo "$tree"
