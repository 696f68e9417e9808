#!/usr/bin/env bash
# Upgrade bundles (see docs/upgrades.md).
#   build/mkbundle.sh keys                 make the signing key pair in work/keys/ if missing;
#                                          prints the public key's path (the image bakes it in
#                                          at /usr/lib/rkos/trusted-keys/rkos.pub)
#   build/mkbundle.sh bundle VERSION [ARCH] sign work/image/{vmlinuz,initrd,rootfs.squashfs}
#                                          into dist/rkos-VERSION-ARCH-bundle/ (next to the ISO)
# Environment: RKOS_BIN (default work/bin/rkos, else the release build), RKOS_KEYS_DIR
# (default work/keys), RKOS_IMAGE_DIR (default work/image), RKOS_DIST (default dist),
# RKOS_MIN_VERSION (the release's rollback floor, `rkos bundle create --min-version`; unset:
# no floor).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
keys=${RKOS_KEYS_DIR:-$top/work/keys}
image=${RKOS_IMAGE_DIR:-$top/work/image}
dist=${RKOS_DIST:-$top/dist}
rkos=${RKOS_BIN:-}
if [ -z "$rkos" ]; then
    for c in "$top/work/bin/rkos" "${CARGO_TARGET_DIR:-$top/target}/release/rkos"; do
        [ -x "$c" ] && { rkos=$c; break; }
    done
fi
[ -n "$rkos" ] && [ -x "$rkos" ] || { echo "mkbundle: no rkos binary (build it: cargo build --release -p rkos-cli, or set RKOS_BIN)" >&2; exit 1; }

ensure_keys() {
    if [ ! -f "$keys/rkos.pub" ] || [ ! -f "$keys/rkos.key" ]; then
        if [ -e "$keys/rkos.pub" ] || [ -e "$keys/rkos.key" ]; then
            echo "mkbundle: $keys holds only half a key pair; refusing to replace it" >&2
            exit 1
        fi
        "$rkos" bundle keygen --out "$keys" >&2
    fi
}

case "${1:-}" in
    keys)
        ensure_keys
        echo "$keys/rkos.pub"
        ;;
    bundle)
        version=${2:?usage: mkbundle.sh bundle VERSION [ARCH]}
        arch=${3:-amd64}
        ensure_keys
        for f in vmlinuz initrd rootfs.squashfs; do
            [ -f "$image/$f" ] || { echo "mkbundle: $image/$f missing (build the image first)" >&2; exit 1; }
        done
        out="$dist/rkos-$version-$arch-bundle"
        floor=()
        [ -n "${RKOS_MIN_VERSION:-}" ] && floor=(--min-version "$RKOS_MIN_VERSION")
        rm -rf "$out.tmp"
        "$rkos" bundle create --version "$version" "${floor[@]}" --arch "$arch" --key "$keys/rkos.key" \
            --out "$out.tmp" "$image/vmlinuz" "$image/initrd" "$image/rootfs.squashfs" >&2
        "$rkos" bundle verify "$out.tmp" --key "$keys/rkos.pub" >&2
        rm -rf "$out" && mv "$out.tmp" "$out"
        echo "$out"
        ;;
    *)
        sed -n '2,11p' "$0" >&2
        exit 2
        ;;
esac
