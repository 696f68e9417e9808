#!/usr/bin/env bash
# Boots an rkos ISO under QEMU RUNS times (default 3; 1 for arm64) and prints the boot-time
# breakdown (firmware + GRUB, kernel, rkos-init stages from its "rkos-init: <stage> <ms> ms"
# kernel log lines, systemd to the login prompt) of the boot with the median rkos-init own
# work, that figure for every boot, and the sizes of the ISO, squashfs and initramfs; writes
# the figures to docs/benchmarks.md: the whole file for amd64, its "arm64" section (the rest
# kept) for RKOS_ARCH=arm64, which also records the arm64 root filesystem's build time.
# Usage: build/boot-report.sh ISO [RUNS]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
iso=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ "$rkos_arch" = amd64 ]; then runs=${2:-3}; else runs=${2:-1}; fi
cd "$top"
# Emulated boots vary with the host's load: one boot is an anecdote, the median of several a
# figure.
# One accelerator verdict for every boot (the probe prints it once, with its reason).
RKOS_ACCEL=$(cargo run -q --release -p rkos-vm --bin rkos-accel -- --iso "$iso" --arch "$rkos_arch")
export RKOS_ACCEL
declare -a reports owns
for i in $(seq "$runs"); do
    r=$(cargo run -q --release -p rkos-tests --features qemu --bin boot-report -- "$iso" "$rkos_arch")
    own=$(sed -n "s/^| of which rkos-init's own work.* | \([0-9.]*\) |$/\1/p" <<<"$r")
    echo "boot-report: boot $i of $runs: rkos-init own work ${own:-?} s" >&2
    reports+=("$r")
    owns+=("${own:-0}")
done
median=$(for i in "${!owns[@]}"; do echo "${owns[$i]} $i"; done | sort -n | sed -n "$(( (runs + 1) / 2 ))p" | cut -d' ' -f2)
report=${reports[$median]}
all_owns=$(for o in "${owns[@]}"; do awk -v s="$o" 'BEGIN { printf "%.0f ms\n", s * 1000 }'; done | paste -sd, - | sed 's/,/, /g')
report="$report

rkos-init's own work over the $runs boots: $all_owns."
echo "$report"
tree_size=$( [ -d "$rkos_work/image/root" ] && du -sh "$rkos_work/image/root" | cut -f1 || echo "n/a")
doc=docs/benchmarks.md
marker='<!-- arm64: written by `make boot-report-arm64` -->'
if [ "$rkos_arch" = amd64 ]; then
    # Sections measured elsewhere are kept: the disk image (tests/tests/disk_image.rs) and
    # the test suite, netboot (`make test-netboot`), power cuts (`make test-powercut`), after this report's own and before arm64's.
    kept=$( [ -f "$doc" ] && awk -v m="$marker" '$0 == m { exit } /^## (The disk image|The test suite|Power cuts|Netboot)/ { keep = 1 } keep { print }' "$doc" || true)
    arm64_part=$( [ -f "$doc" ] && awk -v m="$marker" '$0 == m { keep = 1 } keep { print }' "$doc" || true)
    cat > "$doc" <<EOM
# rkos benchmarks

Written by \`build/boot-report.sh\` (\`make boot-report\`) on $(date -u +%Y-%m-%d), host
$(nproc) CPUs. $runs boots of the stand-in ISO (the release ISO differs only by the k3s
binary), no seed volume, default GRUB entry "rkos live"; the tables are the boot with the
median rkos-init own work.

$report

Image contents: root filesystem tree $tree_size before compression (squashfs, zstd level 15,
1 MiB blocks). The stand-in k3s is a script of a few KiB, so the stand-in ISO's size is the
size of the ISO without k3s; the release ISO adds the k3s binary (about 70 MiB, 25-30 MiB
compressed).

Targets (issue 3): rkos-init's own work under 150 ms under emulation; ISO without k3s under
150 MB.
EOM
    [ -z "$kept" ] || printf '\n%s\n' "${kept%$'\n'}" >> "$doc"
    [ -z "$arm64_part" ] || printf '\n%s\n' "$arm64_part" >> "$doc"
else
    entry=$(dirname "$(readlink -f "$rkos_work/rootfs/tree")")
    built=$(cat "$entry/build-seconds" 2>/dev/null || echo "?")
    head_part=$( [ -f "$doc" ] && awk -v m="$marker" '$0 == m { exit } { print }' "$doc" || true)
    {
        printf '%s\n\n' "${head_part%$'\n'}"
        cat <<EOM
$marker
## arm64

Written by \`build/boot-report.sh\` (\`make boot-report-arm64\`) on $(date -u +%Y-%m-%d), host
$(nproc) CPUs (x86_64). $runs boot(s) of the arm64 stand-in ISO under
\`qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on\` with AAVMF: an aarch64 guest on an
x86_64 host is emulated instruction by instruction, so these times say what emulation costs,
not what a board does. Firmware + GRUB includes AAVMF's start and GRUB's 3 s menu.

$report

Image contents: root filesystem tree $tree_size before compression. The arm64 kernel is an
uncompressed \`Image\` (GRUB arm64-efi loads it through its EFI stub), about three times the
size of amd64's compressed \`vmlinuz\`.

Root filesystem build (mmdebstrap \`--arch=arm64\`, maintainer scripts under qemu-user-static,
\`build/rootfs.sh\`): $built s on this host, while other builds and QEMU runs shared its two
cores; a later build with the same inputs takes it from the cache
(\`/var/cache/rkos/rootfs-arm64-<hash>\`) in seconds.
EOM
    } > "$doc.new"
    mv "$doc.new" "$doc"
fi
echo "boot-report: wrote $doc" >&2
