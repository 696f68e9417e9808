#!/usr/bin/env bash
# Boots rkos-init under QEMU (software emulation) with small test images and checks what it
# does from the serial console: live boot (with a NoCloud seed and a boot-medium config),
# rescue mode, a missing medium, disk mode (two boots: persistence), disk mode with a
# corrupted image, and a config with errors. Prints rkos-init's stage timings and its size.
#
# Test images are built in work/init-test/ (not committed). Needs: qemu-system-x86_64,
# busybox (static), xorriso, mksquashfs, mkfs.ext4, modinfo, python3 (build/host-deps.sh).
# Usage: init/tests/qemu-smoke.sh [case...]   cases: live rescue missing disk corrupt badconfig usb
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
w="$top/work/init-test"
mkdir -p "$w"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$top/target}

kroot=$("$top/build/fetch-kernel.sh")
kver=$(basename "$kroot")
vmlinuz="$kroot/boot/vmlinuz-$kver"
kmods="$kroot/lib/modules/$kver"

# --- rkos-init, static ---
if [ -z "${INIT_BIN:-}" ]; then
    (cd "$top" && RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release -p rkos-init \
        --target x86_64-unknown-linux-gnu)
    INIT_BIN="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/rkos-init"
fi
file -L "$INIT_BIN" | grep -Eq 'static(ally|-pie) linked' || { echo "FAIL: $INIT_BIN is not statically linked" >&2; exit 1; }
busybox=$(command -v busybox)
file -L "$busybox" | grep -Eq 'static(ally|-pie) linked' || { echo "FAIL: $busybox is not static (install busybox-static)" >&2; exit 1; }

# --- initramfs: the binary, busybox, storage and filesystem modules with their deps ---
mods=(virtio_pci virtio_blk virtio_scsi sd_mod sr_mod ata_piix ahci nvme squashfs overlay loop
      isofs ext4 vfat nls_cp437 nls_iso8859_1 nls_utf8 crc32c_generic crc32c_intel usb_storage
      xhci_pci ehci_pci uhci_hcd sdhci_pci mmc_block virtio_net e1000)
declare -A kofile=() want=()
while IFS= read -r f; do
    b=$(basename "$f" .ko); kofile[${b//-/_}]=$f
done < <(find "$kmods/kernel" -name '*.ko')
add_mod() {
    local n=${1//-/_} d
    [ -n "${want[$n]:-}" ] && return 0
    [ -n "${kofile[$n]:-}" ] || { grep -q "/${1}.ko$" "$kmods/modules.builtin" 2>/dev/null || echo "note: module $1 not found" >&2; return 0; }
    want[$n]=1
    for d in $(modinfo -F depends "${kofile[$n]}" | tr ',' ' '); do add_mod "$d"; done
}
for m in "${mods[@]}"; do add_mod "$m"; done
ir="$w/initramfs"
rm -rf "$ir" && mkdir -p "$ir"/{bin,dev,etc/rkos,lib/modules/$kver}
for n in "${!want[@]}"; do
    rel=${kofile[$n]#$kmods/}
    mkdir -p "$ir/lib/modules/$kver/$(dirname "$rel")"
    cp "${kofile[$n]}" "$ir/lib/modules/$kver/$rel"
done
cp "$kmods/modules.builtin" "$kmods/modules.order" "$ir/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$ir" "$kver"
cp "$INIT_BIN" "$ir/init"
cp "$busybox" "$ir/bin/busybox"
echo "smoke-test" > "$ir/etc/rkos/version"
(cd "$ir" && find . | cpio -o -H newc --quiet) > "$w/initrd.img"
# INITRD=path boots another initramfs (e.g. the image's, from build/initramfs.sh) instead.
initrd=${INITRD:-$w/initrd.img}

# --- a tiny root filesystem: busybox and an /sbin/init that reports and powers off ---
rt="$w/root"
rm -rf "$rt" && mkdir -p "$rt"/{bin,sbin,usr/bin,etc,proc,sys,dev,run,tmp,var/lib,root,home}
cp "$busybox" "$rt/bin/busybox"
echo "image-default" > "$rt/etc/smoke-image-file"
cat > "$rt/sbin/init" <<'EOS'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
echo "SMOKE: reached /sbin/init as pid $$"
echo "SMOKE: root $(awk '$2 == "/" {print $3}' /proc/mounts)"
echo "SMOKE: lower $(awk '$2 == "/run/rkos/image" {print $3}' /proc/mounts)"
for p in /var/lib/kubelet /var/lib/rancher/k3s/agent/containerd /var/lib/rancher /var/lib/rkos /run/rkos/data; do
    t=$(awk -v p="$p" '$2 == p {print $3}' /proc/mounts | tail -1); echo "SMOKE: mount $p ${t:-none}"
done
echo "SMOKE: hostname $(hostname) etc-hostname $(cat /etc/hostname)"
if touch /usr/smoke-write 2>/dev/null; then echo "SMOKE: usr writable"; else echo "SMOKE: usr read-only"; fi
[ -e /etc/smoke-written ] && echo "SMOKE: etc-file survived" || echo "SMOKE: etc-file absent"
echo written > /etc/smoke-written
if [ -d /var/lib/rkos ] && [ -w /var/lib/rkos ]; then
    n=$(cat /var/lib/rkos/smoke-boots 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/lib/rkos/smoke-boots
    echo "SMOKE: boots $n"
    # The persistent config asks for one more persistent path from the next boot on.
    printf 'rkos:\n  persistent_paths: [/srv/smoke]\n' > /var/lib/rkos/config.yaml
    t=$(awk '$2 == "/srv/smoke" {print $3}' /proc/mounts | tail -1); echo "SMOKE: mount /srv/smoke ${t:-none}"
fi
[ -s /etc/machine-id ] && echo "SMOKE: machine-id $(cat /etc/machine-id)"
grep -q '^vfat ' /proc/modules && echo "SMOKE: module vfat loaded"
echo "SMOKE: sysctl printk_ratelimit $(cat /proc/sys/kernel/printk_ratelimit)"
for f in /run/rkos/boot/config.yaml /run/rkos/cidata/user-data /run/rkos/cidata/meta-data; do
    [ -f "$f" ] && echo "SMOKE: have $f $(stat -c %a "$f")"
done
[ -f /run/rkos/config-errors ] && sed 's/^/SMOKE: config-error /' /run/rkos/config-errors
echo "SMOKE: initramfs-left $(ls /run/rkos 2>/dev/null | tr '\n' ' ')"
echo "SMOKE-JSON-BEGIN"; cat /run/rkos/init.json; echo "SMOKE-JSON-END"
sync
echo "SMOKE: done"
poweroff -f
EOS
chmod 755 "$rt/sbin/init"
mksquashfs "$rt" "$w/rootfs.squashfs" -quiet -noappend -comp zstd -all-root

# --- live medium (RKOS_LIVE) with a boot config, and NoCloud seeds ---
lt="$w/live" && rm -rf "$lt" && mkdir -p "$lt/rkos"
cp "$w/rootfs.squashfs" "$lt/"
printf 'hostname: from-medium\nrkos:\n  modules: [vfat]\n  sysctls:\n    kernel.printk_ratelimit: "7"\n' > "$lt/rkos/config.yaml"
xorriso -as mkisofs -quiet -V RKOS_LIVE -o "$w/live.iso" "$lt" 2>/dev/null
st="$w/seed" && rm -rf "$st" && mkdir -p "$st"
printf '#cloud-config\nhostname: smoke-node\n' > "$st/user-data"
printf 'instance-id: smoke-1\n' > "$st/meta-data"
xorriso -as mkisofs -quiet -V cidata -o "$w/seed.iso" "$st" 2>/dev/null
printf '#cloud-config\nhostname: [broken\n' > "$st/user-data"
xorriso -as mkisofs -quiet -V CIDATA -o "$w/seed-bad.iso" "$st" 2>/dev/null

# --- installed disk: RKOS_STATE with slot A (good) and RKOS_DATA; a corrupted copy ---
mkstate() { # $1 image, $2 corrupt?
    local sd="$w/state-tree" sha size
    rm -rf "$sd" && mkdir -p "$sd/slots/A" "$sd/grub"
    cp "$w/rootfs.squashfs" "$sd/slots/A/rootfs.squashfs"
    # QEMU boots the kernel with -kernel here; the slot's own kernel and initrd are stand-ins.
    echo "stand-in kernel" > "$sd/slots/A/vmlinuz"
    echo "stand-in initrd" > "$sd/slots/A/initrd"
    local entries=() f
    for f in vmlinuz initrd rootfs.squashfs; do
        sha=$(sha256sum "$sd/slots/A/$f" | cut -d' ' -f1)
        size=$(stat -c %s "$sd/slots/A/$f")
        entries+=("{\"name\":\"$f\",\"size\":$size,\"sha256\":\"$sha\"}")
    done
    (IFS=,; printf '{"version":"smoke","arch":"amd64","files":[%s]}\n' "${entries[*]}") > "$sd/slots/A/manifest.json"
    if [ "$2" = corrupt ]; then printf 'X' | dd of="$sd/slots/A/rootfs.squashfs" bs=1 seek=5000 conv=notrunc status=none; fi
    rm -f "$1" && truncate -s 64M "$1"
    mkfs.ext4 -q -F -L RKOS_STATE -d "$sd" "$1"
}
mkstate "$w/state.img" good
mkstate "$w/state-bad.img" corrupt
rm -f "$w/data.img" && truncate -s 64M "$w/data.img" && mkfs.ext4 -q -F -L RKOS_DATA "$w/data.img"

# --- the checks ---
pass=0; failed=()
qemu() { # $1 name, $2 timeout, $3 append, rest: extra qemu args; output in $w/$1.log
    local name=$1 t=$2 append=$3; shift 3
    python3 "$top/init/tests/qemu-expect.py" --timeout "$t" --log "$w/$name.log" "$@" -- \
        qemu-system-x86_64 -m 768 -nographic -no-reboot -kernel "$vmlinuz" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 $append" \
        -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56 \
        "${QEMU_EXTRA[@]}"
}
check() { # $1 case, $2 log, rest: regexes that must appear
    local c=$1 log=$2; shift 2
    local ok=1 re
    for re in "$@"; do
        if ! grep -Eq -- "$re" "$log"; then echo "  [$c] missing: $re"; ok=0; fi
    done
    if [ $ok = 1 ]; then pass=$((pass+1)); echo "ok   $c"; else failed+=("$c"); echo "FAIL $c (log: $log)"; fi
}
cases=("$@"); [ ${#cases[@]} -gt 0 ] || cases=(live rescue missing disk corrupt badconfig usb)
for c in "${cases[@]}"; do
    case $c in
    live)
        QEMU_EXTRA=(-drive file="$w/live.iso",media=cdrom,if=ide,index=0,readonly=on
                    -drive file="$w/seed.iso",media=cdrom,if=ide,index=1,readonly=on)
        qemu live 240 "rkos.mode=live ${SMOKE_APPEND:-}" --expect "SMOKE: done" || true
        check live "$w/live.log" "SMOKE: reached /sbin/init as pid 1" "SMOKE: root overlay" "SMOKE: lower squashfs" \
            "SMOKE: mount /var/lib/kubelet tmpfs" "SMOKE: mount /var/lib/rancher/k3s/agent/containerd tmpfs" \
            "SMOKE: hostname smoke-node etc-hostname smoke-node" "SMOKE: usr read-only" "SMOKE: etc-file absent" \
            "SMOKE: have /run/rkos/boot/config.yaml 600" "SMOKE: have /run/rkos/cidata/user-data 600" \
            "SMOKE: have /run/rkos/cidata/meta-data 600" '"mode": "live"' 'rkos-init: mount-overlay [0-9.]+ ms' \
            "SMOKE: module vfat loaded" "SMOKE: sysctl printk_ratelimit 7" \
            'rkos-init: total [0-9.]+ ms, own work'
        ;;
    rescue)
        QEMU_EXTRA=(-drive file="$w/live.iso",media=cdrom,if=ide,index=0,readonly=on)
        qemu rescue 240 "rkos.mode=rescue" --expect "starting the rescue shell as asked" \
            --send 'echo RESCUE-$((6*7)); poweroff -f' --expect "RESCUE-42" || true
        check rescue "$w/rescue.log" "rkos.mode=rescue: starting the rescue shell" "^RESCUE-42"
        ;;
    missing)
        QEMU_EXTRA=()
        start=$(date +%s)
        qemu missing 240 "rkos.mode=live rkos.wait=3" --expect "Starting a rescue shell" \
            --send 'echo RESCUE-$((6*7)); poweroff -f' --expect "RESCUE-42" || true
        echo "     missing medium -> rescue shell in $(( $(date +%s) - start )) s wall clock (TCG, includes kernel boot)"
        check missing "$w/missing.log" "BOOT FAILED: no boot volume found after 3" "Looked for: a volume labelled RKOS_LIVE" \
            "Found these block devices" "^RESCUE-42"
        ;;
    disk)
        rm -f "$w/data-run.img" && cp "$w/data.img" "$w/data-run.img"
        QEMU_EXTRA=(-drive file="$w/state.img",if=virtio,format=raw -drive file="$w/data-run.img",if=virtio,format=raw)
        qemu disk1 240 "rkos.mode=disk rkos.slot=A" --expect "SMOKE: done" || true
        check disk-first-boot "$w/disk1.log" "SMOKE: reached /sbin/init" "SMOKE: root overlay" "verify-image [0-9.]+ ms" \
            "SMOKE: mount /var/lib/rancher ext4" "SMOKE: mount /var/lib/rkos ext4" "SMOKE: mount /var/lib/kubelet ext4" \
            "SMOKE: boots 1" "SMOKE: mount /srv/smoke none" "SMOKE: machine-id [0-9a-f]{32}" "SMOKE: usr read-only" '"mode": "disk"' '"slot": "A"' "SMOKE: hostname rkos-[0-9a-f]{4}"
        # Second boot: slot from the command line, mode detected from the RKOS_STATE label.
        qemu disk2 240 "rkos.slot=A" --expect "SMOKE: done" || true
        check disk-second-boot "$w/disk2.log" '"mode": "disk"' "SMOKE: boots 2" "SMOKE: etc-file absent" \
            "SMOKE: mount /srv/smoke ext4" \
            "SMOKE: machine-id $(tr -d '\r' < "$w/disk1.log" | sed -n 's/^SMOKE: machine-id \([0-9a-f]\{32\}\)$/\1/p')"
        ;;
    corrupt)
        QEMU_EXTRA=(-drive file="$w/state-bad.img",if=virtio,format=raw -drive file="$w/data.img",if=virtio,format=raw,snapshot=on)
        # A slot booted with rkos.slot whose state holds no GRUB environment (unknown trial):
        # rkos-init restarts after its countdown (QEMU's -no-reboot then ends the run).
        qemu corrupt 240 "rkos.mode=disk rkos.slot=A" --expect "restarting in 1 s" || true
        check corrupt "$w/corrupt.log" "BOOT FAILED: verify .*rootfs.squashfs.*has sha256 [0-9a-f]{64}, the manifest says" \
            "RKOS_STATE" "restarting in 10 s so GRUB counts the try"
        ;;
    usb)
        # The live medium on a USB stick behind xHCI: found by the re-scan while waiting, and
        # live mode detected without rkos.mode.
        QEMU_EXTRA=(-device qemu-xhci,id=xhci -drive if=none,id=stick,file="$w/live.iso",format=raw,readonly=on
                    -device usb-storage,bus=xhci.0,drive=stick)
        qemu usb 240 "" --expect "SMOKE: done" || true
        check usb "$w/usb.log" "SMOKE: reached /sbin/init" "SMOKE: root overlay" '"mode": "live"' \
            '"device": "/dev/sd[a-z]"' "usb_storage"
        ;;
    badconfig)
        QEMU_EXTRA=(-drive file="$w/live.iso",media=cdrom,if=ide,index=0,readonly=on
                    -drive file="$w/seed-bad.iso",media=cdrom,if=ide,index=1,readonly=on)
        qemu badconfig 240 "rkos.mode=live rkos.sysctls.vm.no_such_knob=1" --expect "SMOKE: done" || true
        check badconfig "$w/badconfig.log" "config problem\(s\); booting anyway" "error: /run/rkos/cidata/user-data" \
            "SMOKE: config-error error: /run/rkos/cidata/user-data" "SMOKE: reached /sbin/init" \
            "SMOKE: hostname from-medium"
        ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
    esac
done

echo
echo "rkos-init binary: $(stat -c %s "$INIT_BIN") bytes ($(file -L "$INIT_BIN" | grep -Eo 'static(ally|-pie) linked'))"
echo "initramfs booted: $initrd ($(stat -c %s "$initrd") bytes)"
for log in "$w"/live.log "$w"/disk1.log; do
    [ -f "$log" ] || continue
    echo "stage timings from $(basename "$log" .log):"
    tr -d '\r' < "$log" | grep -Eo 'rkos-init: ([a-z-]+ [0-9.]+ ms|total .*|rkos .* started [0-9]+ ms after the kernel)$' \
        | sed 's/^rkos-init: /  /' || true
done
echo "$pass passed, ${#failed[@]} failed ${failed[*]:-}"
[ ${#failed[@]} -eq 0 ]
