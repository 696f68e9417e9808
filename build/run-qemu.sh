#!/usr/bin/env bash
# Boots an rkos ISO in QEMU with the serial console on this terminal (Ctrl-a x quits) and an
# empty 8 GiB disk (work/run-disk.qcow2, kept between runs; delete it for a blank disk).
# Uses KVM when /dev/kvm works, software emulation otherwise.
# Usage: build/run-qemu.sh ISO [extra qemu args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
iso=${1:?usage: build/run-qemu.sh ISO}
shift
[ -f "$iso" ] || { echo "run: $iso not found (make iso)" >&2; exit 1; }
disk="$top/work/run-disk.qcow2"
mkdir -p "$top/work"
[ -f "$disk" ] || qemu-img create -q -f qcow2 "$disk" 8G

accel=tcg cpu=max
# /dev/kvm may exist and still refuse to run a vCPU: a working probe is still running
# (firmware looking for a boot device) when timeout ends it (status 124).
if [ -w /dev/kvm ]; then
    rc=0
    timeout 3 qemu-system-x86_64 -accel kvm -cpu host -machine q35 -nodefaults -display none \
        -m 64 -monitor none -serial none >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 124 ] && accel=kvm cpu=host
fi
echo "run: $iso with $accel; serial console below (Ctrl-a x quits QEMU)" >&2
exec qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -machine q35 -m 2048 -smp 2 \
    -nographic -serial mon:stdio \
    -drive file="$iso",media=cdrom,if=ide,readonly=on \
    -drive file="$disk",format=qcow2,if=virtio \
    -nic user,model=virtio-net-pci "$@"
