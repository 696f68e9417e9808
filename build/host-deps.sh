#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need on the host (Debian bookworm).
# QEMU comes from bookworm-backports: machines that already carry its qemu-utils (as CI's do)
# cannot install bookworm's older qemu-system beside it.
# RKOS_ARCH=arm64 (as `make ... ARCH=arm64` and the arm64 targets set; docs/image.md, "arm64")
# adds what the arm64 build needs on top: the arm64 architecture in dpkg, for Debian's Rust
# standard library of the target (libstd-rust-web-dev:arm64) and the initramfs's
# busybox-static:arm64; Debian's own Rust toolchain (rustc-web, cargo-web: the cross build
# never uses rustup's), the cross gcc and static glibc, qemu-user-static (the arm64 root
# filesystem's maintainer scripts, through binfmt_misc), qemu-system-arm, AAVMF and U-Boot
# for QEMU's virt board (the arm64 disk image's boot chain under test). Without
# it (amd64, CI) the host gets exactly the amd64 set.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "host-deps: run as root (or: sudo make host-deps)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/rkos-backports.sources <<'EOS'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
fi
# One stamp per architecture set, so adding arm64 later installs only what it adds.
arch=${RKOS_ARCH:-amd64}
case "$arch" in
    amd64) stamp=/var/lib/rkos-host-deps.stamp ;;
    arm64) stamp=/var/lib/rkos-host-deps-arm64.stamp ;;
    *) echo "host-deps: RKOS_ARCH=$arch: expected amd64 or arm64" >&2; exit 2 ;;
esac
want=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
if [ "$arch" = arm64 ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    # The Raspberry Pi's boot firmware (raspi-firmware, fetched by build/rpi-boot.sh, never
    # installed on the host) is in Debian's non-free-firmware component.
    if ! grep -rqs non-free-firmware /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat > /etc/apt/sources.list.d/rkos-non-free-firmware.sources <<'EOS'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
    fi
fi
apt-get update -q
apt-get install -y -q -t bookworm-backports qemu-system-x86 qemu-utils
apt-get install -y -q \
    mmdebstrap squashfs-tools xorriso mtools dosfstools e2fsprogs gdisk parted fdisk \
    grub-pc-bin grub-efi-amd64-bin grub-common grub2-common udev ovmf busybox-static cpio zstd kmod \
    tmux iproute2 ca-certificates curl openssh-client
if [ "$arch" = arm64 ]; then
    apt-get install -y -q -t bookworm-backports qemu-system-arm qemu-user-static
    apt-get install -y -q arch-test qemu-efi-aarch64 u-boot-qemu \
        rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
echo "$want" > "$stamp"
