#!/usr/bin/env bash
# Builds the Debian bookworm base root filesystem of rkos for RKOS_ARCH (build/arch.sh) into
# <work>/rootfs/tree with mmdebstrap (variant minbase + build/packages.txt), prunes what a
# node never needs and creates the default user. Rebuilt only when its inputs change (the
# stamp holds their hash); downloaded .debs are kept in <work>/debs so a rebuild is fast.
# A foreign architecture (arm64 on an amd64 host) runs its maintainer scripts under
# qemu-user-static through binfmt_misc, registered here when missing.
#
# Cache: with RKOS_ROOTFS_CACHE=DIR (default /var/cache/rkos for arm64, none for amd64; empty
# turns it off) the tree is kept at DIR/rootfs-<arch>-<hash of the inputs>/tree, outside the
# clone, and <work>/rootfs/tree links to it: a later build or CI run on the same machine
# with the same inputs reuses it, a fresh machine builds it. Older entries of the same
# architecture are removed once a new one is complete.
# Usage: build/rootfs.sh   (root)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
out="$rkos_work/rootfs"
tree="$out/tree"
debs="$rkos_work/debs"
stamp="$out/stamp"
inputs=("$top/build/packages.txt" "$0" "$top/build/arch.sh" "$top/build/rootfs-customize.sh"
        "$top/build/prune-modules.sh")
want=$( (echo "arch $rkos_arch"; cat "${inputs[@]}") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$tree/usr" ]; then
    echo "rootfs: up to date ($tree)"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "rootfs: mmdebstrap must run as root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "rootfs: mmdebstrap missing (run build/host-deps.sh)" >&2; exit 1; }

if [ "$rkos_arch" = amd64 ]; then
    cache=${RKOS_ROOTFS_CACHE-}
else
    cache=${RKOS_ROOTFS_CACHE-/var/cache/rkos}
fi
mkdir -p "$out" "$debs"
rm -f "$stamp"
rm -rf "$tree" "$tree.tmp"
if [ -n "$cache" ]; then
    entry="$cache/rootfs-$rkos_arch-$want"
    if [ -f "$entry/stamp" ] && [ "$(cat "$entry/stamp")" = "$want" ] && [ -d "$entry/tree/usr" ]; then
        ln -sfn "$entry/tree" "$tree"
        echo "$want" > "$stamp"
        echo "rootfs: from the cache ($entry, built in $(cat "$entry/build-seconds" 2>/dev/null || echo '?') s)"
        exit 0
    fi
    mkdir -p "$entry"
    dest="$entry/tree"
else
    dest="$tree"
fi
rm -rf "$dest" "$dest.tmp"
rkos_binfmt

pkgs=$(rkos_list "$top/build/packages.txt" | paste -sd, -)
start=$(date +%s)

# The image boots with its own initramfs (build/initramfs.sh) and drops Debian's, whose
# making runs modprobe for every module: under emulation that is the longest step of the
# whole build. A foreign build diverts update-initramfs to a no-op until the tree is done.
no_initramfs=()
if [ -n "$rkos_qemu_user" ]; then
    no_initramfs=(
        --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"'
        --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs'
    )
fi

# Docs, man pages and locales are never unpacked; copyright files stay (licences).
mmdebstrap --mode=root --variant=minbase --arch="$rkos_arch" \
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
    "${no_initramfs[@]}" \
    --customize-hook="'$top/build/rootfs-customize.sh' \"\$1\"" \
    bookworm "$dest.tmp" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
mv "$dest.tmp" "$dest"
seconds=$(( $(date +%s) - start ))
if [ -n "$cache" ]; then
    echo "$seconds" > "$entry/build-seconds"
    echo "$want" > "$entry/stamp"
    for old in "$cache/rootfs-$rkos_arch-"*; do
        [ "$old" = "$entry" ] || rm -rf "$old"
    done
    ln -sfn "$dest" "$tree"
fi
echo "$want" > "$stamp"
echo "rootfs: $rkos_arch built in $seconds s, $(du -sh "$dest" | cut -f1) ($dest)"
