#!/usr/bin/env bash
# The network boot's artefacts (docs/netboot.md), from the image in work/image/:
#   vmlinuz                  the image's kernel
#   initrd                   the image's initramfs with a second archive appended that adds
#                            /usr/lib/rkos/trusted-keys/*.pub: rkos-init checks the image's
#                            signed manifest with them (the kernel unpacks both archives)
#   rootfs.squashfs          the image, downloaded into RAM by rkos-init
#   manifest.json(.minisig)  the bundle format (docs/upgrades.md), signed: this directory is
#                            also an upgrade bundle
#   boot.ipxe                for TFTP-only set-ups: chains to `rkos farm serve` on the TFTP
#                            server's address, port 8080 (dnsmasq set up by `rkos farm
#                            dnsmasq` points iPXE at the farm's own /boot.ipxe instead)
#   undionly.kpxe, ipxe.efi  iPXE for legacy PXE and UEFI, from Debian's ipxe package
#                            (and undionly.0, the same file, for dnsmasq's proxy mode)
# Usage: build/netboot.sh VERSION OUT
# Environment: RKOS_BIN, RKOS_KEYS_DIR, RKOS_IMAGE_DIR (as build/mkbundle.sh), RKOS_TRUSTED_KEY
# (the public key baked into the image and now the initrd; default KEYS_DIR/rkos.pub).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: netboot.sh VERSION OUT}
out=${2:?usage: netboot.sh VERSION OUT}
image=${RKOS_IMAGE_DIR:-$top/work/image}
keys=${RKOS_KEYS_DIR:-$top/work/keys}
pub=${RKOS_TRUSTED_KEY:-$keys/rkos.pub}
rkos=${RKOS_BIN:-$top/work/bin/rkos}
ipxe=/usr/lib/ipxe
for f in vmlinuz initrd rootfs.squashfs; do
    [ -f "$image/$f" ] || { echo "netboot: $image/$f missing (build the image first: make netboot)" >&2; exit 1; }
done
[ -f "$pub" ] && [ -f "$keys/rkos.key" ] || { echo "netboot: no key pair in $keys (build/mkbundle.sh keys)" >&2; exit 1; }
[ -x "$rkos" ] || { echo "netboot: no rkos binary at $rkos" >&2; exit 1; }
if [ ! -f "$ipxe/undionly.kpxe" ] || [ ! -f "$ipxe/ipxe.efi" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "netboot: Debian's ipxe package is missing (apt-get install ipxe)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q ipxe >/dev/null
fi

stage="$out.tmp"
rm -rf "$stage"
mkdir -p "$stage"
cp "$image/vmlinuz" "$stage/vmlinuz"
ln "$image/rootfs.squashfs" "$stage/rootfs.squashfs" 2>/dev/null || cp "$image/rootfs.squashfs" "$stage/"

# The trusted keys as an uncompressed newc archive after the image's own (zstd) one.
keytree=$(mktemp -d "${TMPDIR:-/tmp}/rkos-netboot-keys.XXXXXX")
trap 'rm -rf "$keytree"' EXIT
install -D -m 0644 "$pub" "$keytree/usr/lib/rkos/trusted-keys/$(basename "$pub")"
cp "$image/initrd" "$stage/initrd"
# The kernel takes an uncompressed archive after a compressed one only at a 4-byte boundary
# (it reads anything else as more compressed data and stops unpacking): zero padding first,
# which it skips.
truncate --size=%4 "$stage/initrd"
(cd "$keytree" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
    | cpio --null -o -H newc --reproducible --quiet) >> "$stage/initrd"

cat > "$stage/boot.ipxe" <<'EOS'
#!ipxe
# rkos netboot: chain to `rkos farm serve` on the TFTP server's address (port 8080).
chain --autofree http://${next-server}:8080/boot.ipxe || shell
EOS
cp "$ipxe/undionly.kpxe" "$ipxe/ipxe.efi" "$stage/"
# dnsmasq's proxy mode names legacy PXE boot files without extension and adds ".0".
ln "$stage/undionly.kpxe" "$stage/undionly.0"

"$rkos" bundle create --version "$version" --arch "${ARCH:-amd64}" \
    --key "$keys/rkos.key" --out "$stage" "$stage/vmlinuz" "$stage/initrd" "$stage/rootfs.squashfs" >&2
"$rkos" bundle verify "$stage" --key "$pub" >&2
rm -rf "$out" && mv "$stage" "$out"
echo "netboot: $out (rootfs.squashfs $(du -h "$out/rootfs.squashfs" | cut -f1), initrd $(du -h "$out/initrd" | cut -f1), version $version)"
