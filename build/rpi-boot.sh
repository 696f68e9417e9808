#!/usr/bin/env bash
# Lays out what a Raspberry Pi boots from, for the arm64 disk image's boot partition (the ESP,
# build/disk-image.sh BOARD=rpi): the Pi's firmware from Debian's raspi-firmware
# (non-free-firmware: bootcode.bin for the Pi 3, start*.elf/fixup*.dat), U-Boot from Debian's
# u-boot-rpi (rpi_arm64: one binary for the Pi 3 and 4 families), the boards' device trees
# from the image's own kernel (linux-image-arm64's broadcom/*.dtb), build/rpi/config.txt and
# README.txt. The .debs are fetched once (apt-get download; build/host-deps.sh with
# RKOS_ARCH=arm64 adds the component) and kept in <work>/rpi/debs.
# Usage: build/rpi-boot.sh OUT_DIR   (RKOS_ARCH=arm64; the arm64 root filesystem built)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: build/rpi-boot.sh OUT_DIR}
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
[ "$rkos_arch" = arm64 ] || { echo "rpi-boot: the Raspberry Pi image is arm64 (RKOS_ARCH=$rkos_arch)" >&2; exit 2; }
tree="$rkos_work/rootfs/tree"
[ -d "$tree/usr/lib" ] || { echo "rpi-boot: no arm64 root filesystem at $tree (build/rootfs.sh)" >&2; exit 1; }
debs="$rkos_work/rpi/debs"
mkdir -p "$debs"

# The packages and the files taken from each.
fetch() { # NAME
    local f
    f=$(find "$debs" -maxdepth 1 -name "${1%%:*}_*.deb" | sort | tail -n 1)
    if [ -z "$f" ]; then
        (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$1" >/dev/null) || {
            echo "rpi-boot: cannot download $1 (run: make host-deps-arm64, which adds Debian's" \
                "non-free-firmware component)" >&2
            exit 1
        }
        f=$(find "$debs" -maxdepth 1 -name "${1%%:*}_*.deb" | sort | tail -n 1)
    fi
    echo "$f"
}
x="$rkos_work/rpi/extract"
rm -rf "$x" "$out"
mkdir -p "$x" "$out"
for pkg in raspi-firmware u-boot-rpi:arm64; do
    deb=$(fetch "$pkg")
    dpkg-deb -x "$deb" "$x"
    echo "rpi-boot: $(basename "$deb")"
done

fw="$x/usr/lib/raspi-firmware"
# Pi 3 family: bootcode.bin, start.elf, fixup.dat; Pi 4 family: start4.elf, fixup4.dat
# (its bootcode lives in the board's EEPROM). The _x/_cd/_db variants are for camera and
# memory settings a node never makes.
for f in bootcode.bin start.elf fixup.dat start4.elf fixup4.dat; do
    install -m 0644 "$fw/$f" "$out/$f"
done
install -m 0644 "$x/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$out/u-boot.bin"

# The device trees of the kernel in the image (upstream names, config.txt's upstream_kernel).
dtbdir=$(find "$tree/usr/lib" -maxdepth 2 -type d -path '*/linux-image-*/broadcom' | sort | tail -n 1)
[ -n "$dtbdir" ] || { echo "rpi-boot: no broadcom device trees in $tree/usr/lib/linux-image-*" >&2; exit 1; }
n=0
for dtb in "$dtbdir"/bcm2837-rpi-3-*.dtb "$dtbdir"/bcm2711-rpi-*.dtb; do
    [ -f "$dtb" ] || continue
    install -m 0644 "$dtb" "$out/$(basename "$dtb")"
    n=$((n + 1))
done
[ -f "$out/bcm2711-rpi-4-b.dtb" ] || { echo "rpi-boot: $dtbdir has no bcm2711-rpi-4-b.dtb" >&2; exit 1; }

install -m 0644 "$top/build/rpi/config.txt" "$out/config.txt"
install -m 0644 "$top/build/rpi/README.txt" "$out/README.txt"
rm -rf "$x"
echo "rpi-boot: $out: firmware, U-Boot rpi_arm64, $n device trees ($(du -sh "$out" | cut -f1))"
