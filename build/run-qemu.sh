#!/usr/bin/env bash
# Boots an rkos ISO in QEMU with the serial console on this terminal (Ctrl-a x quits) and an
# empty 8 GiB disk (<work>/run-disk.qcow2, kept between runs; delete it for a blank disk).
# amd64: uses KVM when a kernel really runs under it (rkos-accel), software emulation
# otherwise; RKOS_ACCEL=kvm|tcg forces the choice. arm64 (RKOS_ARCH=arm64, as `make run
# ARCH=arm64` sets): qemu-system-aarch64 -M virt with AAVMF (UEFI), emulated on an x86_64 host.
# Usage: build/run-qemu.sh ISO [extra qemu args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
iso=${1:?usage: build/run-qemu.sh ISO}
shift
[ -f "$iso" ] || { echo "run: $iso not found (make iso)" >&2; exit 1; }
disk="$rkos_work/run-disk.qcow2"
mkdir -p "$rkos_work"
[ -f "$disk" ] || qemu-img create -q -f qcow2 "$disk" 8G

# The one accelerator decision (rkos-vm): KVM only when the ISO's own kernel boots under it,
# never for a guest of another architecture; RKOS_ACCEL=kvm|tcg forces the choice. It prints
# its verdict and the reason on stderr.
accel=$(cd "$top" && cargo run -q --release -p rkos-vm --bin rkos-accel -- --iso "$iso" --arch "$rkos_arch")
echo "run: $iso with $accel; serial console below (Ctrl-a x quits QEMU)" >&2
case "$rkos_arch" in
    amd64)
        cpu=max
        [ "$accel" = kvm ] && cpu=host
        exec qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -machine q35 -m 2048 -smp 2 \
            -nographic -serial mon:stdio \
            -drive file="$iso",media=cdrom,if=ide,readonly=on \
            -drive file="$disk",format=qcow2,if=virtio \
            -nic user,model=virtio-net-pci "$@"
        ;;
    arm64)
        vars="$rkos_work/run-AAVMF_VARS.fd"
        [ -f "$vars" ] || cp /usr/share/AAVMF/AAVMF_VARS.fd "$vars"
        exec qemu-system-aarch64 -accel "$accel" -cpu max,pauth-impdef=on -machine virt \
            -m 2048 -smp 2 -nographic -serial mon:stdio \
            -drive if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
            -drive if=pflash,format=raw,file="$vars" \
            -device virtio-scsi-pci,id=scsi0 \
            -drive file="$iso",media=cdrom,if=none,id=cd0,readonly=on \
            -device scsi-cd,drive=cd0,bus=scsi0.0 \
            -drive file="$disk",format=qcow2,if=virtio \
            -nic user,model=virtio-net-pci "$@"
        ;;
esac
