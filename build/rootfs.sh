#!/usr/bin/env bash
# Builds the Debian bookworm base root filesystem of rkos into work/rootfs/tree with
# mmdebstrap (variant minbase + build/packages.txt), prunes what a node never needs and
# creates the default user. Rebuilt only when packages.txt or this script change (the
# stamp holds their hash); downloaded .debs are kept in work/debs so a rebuild is fast.
# Usage: build/rootfs.sh   (root)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/work/rootfs"
tree="$out/tree"
debs="$top/work/debs"
stamp="$out/stamp"
want=$(cat "$top/build/packages.txt" "$0" "$top/build/rootfs-customize.sh" "$top/build/prune-modules.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$tree/usr" ]; then
    echo "rootfs: up to date ($tree)"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "rootfs: mmdebstrap must run as root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "rootfs: mmdebstrap missing (run build/host-deps.sh)" >&2; exit 1; }

pkgs=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$top/build/packages.txt" | grep -v '^$' | paste -sd, -)
mkdir -p "$out" "$debs"
rm -rf "$tree" "$tree.tmp"
rm -f "$stamp"
start=$(date +%s)

# Docs, man pages and locales are never unpacked; copyright files stay (licences).
mmdebstrap --mode=root --variant=minbase --arch=amd64 \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/bash-completion/*' \
    --include="$pkgs" \
    --skip=download/empty \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in '$debs' /var/cache/apt/archives" \
    --customize-hook="sync-out /var/cache/apt/archives '$debs'" \
    --customize-hook="'$top/build/rootfs-customize.sh' \"\$1\"" \
    bookworm "$tree.tmp" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
mv "$tree.tmp" "$tree"
echo "$want" > "$stamp"
echo "rootfs: built in $(( $(date +%s) - start )) s, $(du -sh "$tree" | cut -f1) ($tree)"
