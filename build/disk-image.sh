#!/usr/bin/env bash
# Builds the hypervisor gold disk image from the pieces of the ISO (work/image: vmlinuz,
# initrd, rootfs.squashfs, made by build/image.sh) with the installer itself
# (`rkos install --image`: the same partitions, slot A, GRUB for BIOS and UEFI as an install
# to a disk), then converts the raw disk:
#   OUT.qcow2    qcow2, compressed (qemu-img): QEMU, libvirt, Proxmox, OpenStack
#   OUT.raw.xz   the raw disk, xz-compressed: bhyve/CBSD, dd to a disk, anything else
# RKOS_DATA is small in the image and grows to the virtual disk's end on first boot.
# Usage: build/disk-image.sh OUT_BASE VERSION   (root: a loop device; run by `make disk-image`)
# Environment: ARCH (amd64), BOARD (none), RKOS_BIN (work/bin/rkos), DISK_IMAGE_SIZE (the
# virtual size, e.g. 8G; default: the smallest the layout takes, 4 GiB).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: build/disk-image.sh OUT_BASE VERSION}
version=${2:?usage: build/disk-image.sh OUT_BASE VERSION}
arch=${ARCH:-amd64}
board=${BOARD:-}
if [ "$arch" != amd64 ] || [ -n "$board" ]; then
    echo "disk-image: ARCH=$arch${board:+ BOARD=$board} is not built yet (amd64 only)" >&2
    exit 1
fi
img="$top/work/image"
for f in vmlinuz initrd rootfs.squashfs; do
    [ -f "$img/$f" ] || { echo "disk-image: $img/$f missing (run build/image.sh)" >&2; exit 1; }
done
rkos=${RKOS_BIN:-$top/work/bin/rkos}
[ -x "$rkos" ] || { echo "disk-image: no rkos binary at $rkos" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "disk-image: run as root (the install uses a loop device)" >&2; exit 1; }
for tool in qemu-img xz; do
    command -v "$tool" >/dev/null || { echo "disk-image: $tool missing (run build/host-deps.sh)" >&2; exit 1; }
done

qcow2="$out.qcow2" rawxz="$out.raw.xz"
if [ -f "$qcow2" ] && [ -f "$rawxz" ] && [ "$qcow2" -nt "$img/stamp" ] && [ "$qcow2" -nt "$rkos" ] \
    && [ "$qcow2" -nt "$0" ]; then
    echo "disk-image: $qcow2 is up to date"
    exit 0
fi
work="$top/work/disk"
mkdir -p "$work" "$(dirname "$out")"
raw="$work/disk.raw"
trap 'rm -f "$raw" "$qcow2.tmp" "$rawxz.tmp"' EXIT
start=$(date +%s)
size_args=()
[ -z "${DISK_IMAGE_SIZE:-}" ] || size_args=(--size "$DISK_IMAGE_SIZE")
"$rkos" install --image "$raw" "${size_args[@]}" --source "$img" --image-version "$version"
data=$(du -B1 "$raw" | cut -f1)
virtual=$(stat -c %s "$raw")
# zlib compression: every qemu-img that reads qcow2 reads it (zstd needs QEMU 5.1 or later)
qemu-img convert -c -O qcow2 "$raw" "$qcow2.tmp"
mv "$qcow2.tmp" "$qcow2"
xz -T0 -6 -c "$raw" > "$rawxz.tmp"
mv "$rawxz.tmp" "$rawxz"
mib() { echo "$(( ($1 + 524288) / 1048576 )) MiB"; }
echo "disk-image: $qcow2 ($(mib "$(stat -c %s "$qcow2")")), $rawxz ($(mib "$(stat -c %s "$rawxz")")):" \
    "virtual disk $(mib "$virtual"), $(mib "$data") of data, in $(( $(date +%s) - start )) s"
