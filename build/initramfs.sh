#!/usr/bin/env bash
# Builds the rkos initramfs (cpio newc + zstd) at work/initramfs/initrd:
#   /init                      rkos-init (static), or INIT=/path for another /init
#   /bin/busybox, /bin/sh      busybox-static, the rescue shell
#   /sbin/modprobe -> busybox  so the kernel's own module requests work
#   /lib/modules/<kver>/       build/initramfs.modules and their dependencies, uncompressed,
#                              with modules.dep/alias/softdep made by depmod -b
#   /etc/rkos/version
#   /usr/lib/rkos/config.d/     the image's default config (from MODULES_ROOT, when it has one)
# Usage: build/initramfs.sh MODULES_ROOT INIT_BINARY VERSION OUT
#   MODULES_ROOT: a tree holding lib/modules/<kver> (the rootfs, so modules match the kernel)
# Environment: RKOS_ARCH (build/arch.sh) picks the module list's entries and the busybox:
# the host's /bin/busybox for amd64, Debian's busybox-static for another architecture
# (fetched once into <work>/busybox/); BUSYBOX=/path overrides.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
mroot=$(cd "$1" && pwd) init=$2 version=$3 outfile=$4
if [ -n "${BUSYBOX:-}" ]; then
    busybox=$BUSYBOX
elif [ "$rkos_arch" = amd64 ]; then
    busybox=/bin/busybox
else
    busybox="$rkos_work/busybox/bin/busybox"
    if [ ! -x "$busybox" ]; then
        bb="$rkos_work/busybox"
        rm -rf "$bb.tmp" && mkdir -p "$bb.tmp/deb"
        (cd "$bb.tmp/deb" && apt-get download -q "busybox-static:$rkos_arch" >&2) || {
            echo "initramfs: cannot fetch busybox-static:$rkos_arch (dpkg --add-architecture $rkos_arch; apt-get update)" >&2
            exit 1
        }
        dpkg-deb -x "$bb.tmp"/deb/busybox-static_*.deb "$bb.tmp"
        rm -rf "$bb" && mv "$bb.tmp" "$bb"
    fi
fi
[ -x "$init" ] || { echo "initramfs: /init binary $init missing (build rkos-init first)" >&2; exit 1; }
kdirs=("$mroot"/lib/modules/*/)
[ "${#kdirs[@]}" -eq 1 ] || { echo "initramfs: expected one kernel in $mroot/lib/modules, found ${#kdirs[@]}" >&2; exit 1; }
kver=$(basename "${kdirs[0]}")
# An unpacked kernel .deb has no modules.dep (its postinst makes it).
[ -f "$mroot/lib/modules/$kver/modules.dep" ] || depmod -b "$mroot" "$kver"

work=$(mktemp -d "${TMPDIR:-/tmp}/rkos-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
t="$work/tree"
mkdir -p "$t"/{bin,sbin,dev,proc,sys,run,tmp,etc/rkos,newroot,lib/modules/"$kver"}
install -m 0755 "$init" "$t/init"
install -m 0755 "$busybox" "$t/bin/busybox"
ln -s busybox "$t/bin/sh"
ln -s ../bin/busybox "$t/sbin/modprobe"
echo "$version" > "$t/etc/rkos/version"
# The image's default config, copied so rkos-init need not read it out of the squashfs (a
# whole compressed block for one small file). MODULES_ROOT is the image tree, so the copy is
# always the one the squashfs holds.
if [ -d "$mroot/usr/lib/rkos/config.d" ]; then
    mkdir -p "$t/usr/lib/rkos"
    cp -a "$mroot/usr/lib/rkos/config.d" "$t/usr/lib/rkos/"
fi

mods=$(rkos_list "$top/build/initramfs.modules")
missing=()
for m in $mods; do
    if ! deps=$(modprobe -d "$mroot" -S "$kver" --show-depends "$m" 2>/dev/null); then
        missing+=("$m")
        continue
    fi
    awk '$1 == "insmod" {print $2}' <<<"$deps" | while read -r ko; do
        rel=${ko#"$mroot"}
        rel=${rel#/}
        mkdir -p "$t/$(dirname "$rel")"
        # Debian ships uncompressed .ko; decompress anyway should that ever change.
        case "$rel" in
            *.ko.xz) xz -dc "$mroot/$rel" > "$t/${rel%.xz}" ;;
            *.ko.zst) zstd -qdc "$mroot/$rel" > "$t/${rel%.zst}" ;;
            *) cp "$mroot/$rel" "$t/$rel" ;;
        esac
    done
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "initramfs: modules not found for $kver: ${missing[*]}" >&2
    exit 1
fi
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$mroot/lib/modules/$kver/$f" ] && cp "$mroot/lib/modules/$kver/$f" "$t/lib/modules/$kver/"
done
depmod -b "$t" "$kver"

mkdir -p "$(dirname "$outfile")"
(cd "$t" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
    | cpio --null -o -H newc --reproducible --quiet) | zstd -q -19 -T0 > "$outfile.tmp"
mv "$outfile.tmp" "$outfile"
echo "initramfs: $outfile ($(du -h "$outfile" | cut -f1), kernel $kver, $(find "$t/lib/modules" -name '*.ko' | wc -l) modules)"
