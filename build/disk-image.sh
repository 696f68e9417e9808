#!/usr/bin/env bash
# Builds the hypervisor gold disk image from the pieces of the ISO (work/image: vmlinuz,
# initrd, rootfs.squashfs, made by build/image.sh) with the installer itself
# (`rkos install --image`: the same partitions, slot A, GRUB for BIOS and UEFI as an install
# to a disk), then converts the raw disk:
#   OUT.qcow2    qcow2, compressed (qemu-img): QEMU, libvirt, Proxmox, OpenStack
#   OUT.raw.xz   the raw disk, xz-compressed: bhyve/CBSD, dd to a disk, anything else
#   OUT.img      the raw disk itself (BOARD=rpi's default: written to an SD card as it is)
# RKOS_DATA is small in the image and grows to the virtual disk's end on first boot.
# Usage: build/disk-image.sh OUT_BASE VERSION   (root: a loop device; run by `make disk-image`)
# Environment: ARCH (amd64, or arm64: built from work/arm64's pieces), BOARD (none, or rpi
# with ARCH=arm64: the Raspberry Pi's firmware and U-Boot added, build/rpi-boot.sh), RKOS_BIN (work/bin/rkos), DISK_IMAGE_SIZE (the
# virtual size, e.g. 8G; default: the smallest the layout takes, 4 GiB), DISK_IMAGE_FORMATS
# (default "qcow2 raw.xz"; the QEMU tests need only qcow2, and xz over the whole virtual
# disk takes minutes on a small machine).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: build/disk-image.sh OUT_BASE VERSION}
version=${2:?usage: build/disk-image.sh OUT_BASE VERSION}
board=${BOARD:-}
export RKOS_ARCH=${ARCH:-${RKOS_ARCH:-amd64}}
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
arch=$rkos_arch
case "$arch/$board" in
    amd64/ | arm64/ | arm64/rpi) ;;
    *) echo "disk-image: ARCH=$arch BOARD=$board: expected amd64, arm64 or arm64 with BOARD=rpi" >&2; exit 1 ;;
esac
img="$rkos_work/image"
# The installer runs on this host; GRUB's modules for another arch come from that arch's
# root filesystem (grub-efi-arm64-bin in build/packages.txt).
arch_args=(--arch "$arch")
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    arch_args+=(--grub-lib "$rkos_work/rootfs/tree/usr/lib/grub")
fi
for f in vmlinuz initrd rootfs.squashfs; do
    [ -f "$img/$f" ] || { echo "disk-image: $img/$f missing (run build/image.sh)" >&2; exit 1; }
done
rkos=${RKOS_BIN:-$top/work/bin/rkos}
[ -x "$rkos" ] || { echo "disk-image: no rkos binary at $rkos" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "disk-image: run as root (the install uses a loop device)" >&2; exit 1; }
for tool in qemu-img xz; do
    command -v "$tool" >/dev/null || { echo "disk-image: $tool missing (run build/host-deps.sh)" >&2; exit 1; }
done

# A Pi image is written to a card as it is: the raw disk (sparse here), `.img`.
if [ "$board" = rpi ]; then default_formats=img; else default_formats="qcow2 raw.xz"; fi
formats=${DISK_IMAGE_FORMATS:-$default_formats}
up_to_date=yes
for f in $formats; do
    case $f in qcow2|raw.xz|img) ;; *) echo "disk-image: unknown format $f (qcow2, raw.xz, img)" >&2; exit 1 ;; esac
    for input in "$img/stamp" "$rkos" "$0" ${board:+"$top/build/rpi-boot.sh" "$top/build/rpi/config.txt"}; do
        [ -f "$out.$f" ] && [ "$out.$f" -nt "$input" ] || up_to_date=no
    done
done
if [ "$up_to_date" = yes ]; then
    echo "disk-image: $out.{${formats// /,}} up to date"
    exit 0
fi
# Sets the type byte of the MBR entry that starts at sector START of DISK (sgdisk gives a
# hybrid entry the type its GPT type maps to, 0xef for an ESP; the Pi's firmware looks for
# FAT types).
mbr_type() { # DISK START TYPE-AS-PRINTF-ESCAPE
    local i off lba
    for i in 0 1 2 3; do
        off=$((446 + 16 * i))
        lba=$(od -An -t u4 -j $((off + 8)) -N 4 "$1" | tr -d ' ')
        if [ "$lba" = "$2" ]; then
            printf "$3" | dd of="$1" bs=1 seek=$((off + 4)) conv=notrunc status=none
            return 0
        fi
    done
    echo "disk-image: no MBR entry starts at sector $2 of $1" >&2
    return 1
}
qcow2="$out.qcow2" rawxz="$out.raw.xz"
work="$rkos_work/disk${board:+-$board}"
mkdir -p "$work" "$(dirname "$out")"
raw="$work/disk.raw"
trap 'rm -f "$raw" "$qcow2.tmp" "$rawxz.tmp" "$out.img.tmp"' EXIT
start=$(date +%s)
size_args=()
[ -z "${DISK_IMAGE_SIZE:-}" ] || size_args=(--size "$DISK_IMAGE_SIZE")
cmdline_args=()
# The Pi's consoles: the screen and, last so it is /dev/console, the mini UART on the GPIO
# pins (ttyS1). They replace GRUB's platform list (rkos_consoles): its ttyAMA0 is the
# Bluetooth chip's UART on a Pi, and its ttyS0 would take the kernel's one 8250 console.
[ "$board" != rpi ] || cmdline_args=(--cmdline "console=tty0 console=ttyS1,115200")
"$rkos" install --image "$raw" "${size_args[@]}" "${arch_args[@]}" "${cmdline_args[@]}" \
    --source "$img" --image-version "$version"
if [ "$board" = rpi ]; then
    # The Pi's firmware, U-Boot and device trees on the ESP, which is the card's boot
    # partition (docs/rpi.md): the firmware reads the first FAT partition of the MBR, so the
    # ESP also gets an entry of type 0x0c in a hybrid MBR (a Pi 3 cannot read a GPT).
    "$top/build/rpi-boot.sh" "$work/boot"
    esp=$(sgdisk -p "$raw" | awk '$NF == "RKOS_EFI" { print $1 }')
    [ -n "$esp" ] || { echo "disk-image: no RKOS_EFI partition in $raw" >&2; exit 1; }
    esp_start=$(sgdisk -i "$esp" "$raw" | awk '/^First sector:/ { print $3 }')
    fat="$raw@@$((esp_start * 512))"
    for f in "$work/boot"/*; do
        mcopy -o -i "$fat" "$f" "::/$(basename "$f")"
    done
    mmd -i "$fat" ::/rkos
    # ESP first, the protective 0xee entry after it (`:EE`): the Pi's boot partition is
    # the first entry, as the firmware expects it.
    sgdisk --hybrid="$esp:EE" "$raw" >/dev/null
    mbr_type "$raw" "$esp_start" '\x0c'
fi
data=$(du -B1 "$raw" | cut -f1)
virtual=$(stat -c %s "$raw")
mib() { echo "$(( ($1 + 524288) / 1048576 )) MiB"; }
made=()
for f in $formats; do
    case $f in
        # zlib: every qemu-img that reads qcow2 reads it (zstd needs QEMU 5.1 or later)
        qcow2) qemu-img convert -c -O qcow2 "$raw" "$qcow2.tmp" && mv "$qcow2.tmp" "$qcow2" ;;
        raw.xz) xz -T0 -6 -c "$raw" > "$rawxz.tmp" && mv "$rawxz.tmp" "$rawxz" ;;
        img) cp --sparse=always "$raw" "$out.img.tmp" && mv "$out.img.tmp" "$out.img" ;;
    esac
    made+=("$out.$f ($(mib "$(stat -c %s "$out.$f")"))")
done
echo "disk-image: ${made[*]}: virtual disk $(mib "$virtual"), $(mib "$data") of data," \
    "in $(( $(date +%s) - start )) s"
