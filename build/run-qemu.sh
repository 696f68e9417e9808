#!/usr/bin/env bash
# Boots an rkos ISO in QEMU with the serial console on this terminal (Ctrl-a x quits) and an
# empty 8 GiB disk (work/run-disk.qcow2, kept between runs; delete it for a blank disk).
# Uses KVM when a kernel really runs under it (rkos-accel), software emulation otherwise;
# RKOS_ACCEL=kvm|tcg forces the choice.
# Usage: build/run-qemu.sh ISO [extra qemu args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
iso=${1:?usage: build/run-qemu.sh ISO}
shift
[ -f "$iso" ] || { echo "run: $iso not found (make iso)" >&2; exit 1; }
disk="$top/work/run-disk.qcow2"
mkdir -p "$top/work"
[ -f "$disk" ] || qemu-img create -q -f qcow2 "$disk" 8G

# The one accelerator probe (rkos-vm): KVM only when the ISO's own kernel boots under it;
# RKOS_ACCEL=kvm|tcg forces the choice. It prints its verdict and the reason on stderr.
accel=$(cd "$top" && cargo run -q --release -p rkos-vm --bin rkos-accel -- --iso "$iso")
cpu=max
[ "$accel" = kvm ] && cpu=host
echo "run: $iso with $accel; serial console below (Ctrl-a x quits QEMU)" >&2
exec qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -machine q35 -m 2048 -smp 2 \
    -nographic -serial mon:stdio \
    -drive file="$iso",media=cdrom,if=ide,readonly=on \
    -drive file="$disk",format=qcow2,if=virtio \
    -nic user,model=virtio-net-pci "$@"
