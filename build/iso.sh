#!/usr/bin/env bash
# Builds the live ISO (grub-mkrescue) from <work>/image/ for RKOS_ARCH (build/arch.sh): a
# BIOS + UEFI hybrid for amd64 (the host's GRUB), UEFI only for arm64 (GRUB arm64-efi from
# the arm64 root filesystem's grub-efi-arm64-bin, so the host needs no arm64 GRUB package):
# volume id RKOS_LIVE, /rootfs.squashfs, /boot/vmlinuz, /boot/initrd, /boot/grub/grub.cfg.
# Usage: build/iso.sh OUT.iso
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
iso=$1
img="$rkos_work/image"
grub_dirs=()
if [ "$rkos_arch" != amd64 ]; then
    # -d names one platform's directory: the ISO then carries that platform alone
    grub_lib="$rkos_work/image/root/usr/lib/grub/$rkos_arch-efi"
    [ -f "$grub_lib/modinfo.sh" ] || { echo "iso: no GRUB $rkos_arch-efi at $grub_lib (the image's root filesystem)" >&2; exit 1; }
    grub_dirs=(-d "$grub_lib")
fi
for f in rootfs.squashfs vmlinuz initrd; do
    [ -f "$img/$f" ] || { echo "iso: $img/$f missing (run build/image.sh)" >&2; exit 1; }
done
stage=$(mktemp -d "${TMPDIR:-/tmp}/rkos-iso.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/boot/grub" "$stage/rkos"
# hard links: the staging tree costs no copy of the 100+ MB squashfs
ln "$img/rootfs.squashfs" "$stage/rootfs.squashfs" 2>/dev/null || cp "$img/rootfs.squashfs" "$stage/"
cp "$img/vmlinuz" "$stage/boot/vmlinuz"
cp "$img/initrd" "$stage/boot/initrd"
cp "$top/iso/grub.cfg" "$stage/boot/grub/grub.cfg"
# A boot medium config is optional; a remaster drops one into iso/config.yaml.
[ ! -f "$top/iso/config.yaml" ] || cp "$top/iso/config.yaml" "$stage/rkos/config.yaml"
mkdir -p "$(dirname "$iso")"
# GRUB talks text on serial and VGA: no fonts, themes or translations needed.
grub-mkrescue "${grub_dirs[@]}" --compress=xz --fonts= --locales= --themes= -o "$iso.tmp" "$stage" -- -volid RKOS_LIVE 2>"$stage.log" || {
    cat "$stage.log" >&2; rm -f "$stage.log"; exit 1; }
rm -f "$stage.log"
mv "$iso.tmp" "$iso"
echo "iso: $iso ($(du -h "$iso" | cut -f1))"
