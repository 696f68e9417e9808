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
# virtual size, e.g. 8G; default: the smallest the layout takes, 4 GiB), DISK_IMAGE_FORMATS
# (default "qcow2 raw.xz"; the QEMU tests need only qcow2, and xz over the whole virtual
# disk takes minutes on a small machine).
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

formats=${DISK_IMAGE_FORMATS:-qcow2 raw.xz}
up_to_date=yes
for f in $formats; do
    case $f in qcow2|raw.xz) ;; *) echo "disk-image: unknown format $f (qcow2, raw.xz)" >&2; exit 1 ;; esac
    for input in "$img/stamp" "$rkos" "$0"; do
        [ -f "$out.$f" ] && [ "$out.$f" -nt "$input" ] || up_to_date=no
    done
done
if [ "$up_to_date" = yes ]; then
    echo "disk-image: $out.{${formats// /,}} up to date"
    exit 0
fi
qcow2="$out.qcow2" rawxz="$out.raw.xz"
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
mib() { echo "$(( ($1 + 524288) / 1048576 )) MiB"; }
made=()
for f in $formats; do
    case $f in
        # zlib: every qemu-img that reads qcow2 reads it (zstd needs QEMU 5.1 or later)
        qcow2) qemu-img convert -c -O qcow2 "$raw" "$qcow2.tmp" && mv "$qcow2.tmp" "$qcow2" ;;
        raw.xz) xz -T0 -6 -c "$raw" > "$rawxz.tmp" && mv "$rawxz.tmp" "$rawxz" ;;
    esac
    made+=("$out.$f ($(mib "$(stat -c %s "$out.$f")"))")
done
echo "disk-image: ${made[*]}: virtual disk $(mib "$virtual"), $(mib "$data") of data," \
    "in $(( $(date +%s) - start )) s"
