# Sourced by the build scripts: the target architecture and what follows from it. The one
# place that maps RKOS_ARCH to names; `make ARCH=...` sets RKOS_ARCH and RKOS_WORK.
#   RKOS_ARCH   amd64 (default) | arm64
#   RKOS_WORK   the architecture's build directory: work/ for amd64 (as it always was),
#               work/<arch>/ for the others, so two architectures never share a tree
# Sets: rkos_arch, rkos_work, rkos_triple (Rust), rkos_qemu_user (binfmt name, foreign
# arches only), rkos_kernel_pkg.
# shellcheck shell=bash
rkos_arch=${RKOS_ARCH:-amd64}
case "$rkos_arch" in
    amd64)
        rkos_triple=x86_64-unknown-linux-gnu
        rkos_qemu_user=
        ;;
    arm64)
        rkos_triple=aarch64-unknown-linux-gnu
        rkos_qemu_user=aarch64
        ;;
    *)
        echo "$(basename "$0"): RKOS_ARCH=$rkos_arch: expected amd64 or arm64" >&2
        exit 2
        ;;
esac
rkos_kernel_pkg=linux-image-$rkos_arch
if [ -n "${RKOS_WORK:-}" ]; then
    rkos_work=$RKOS_WORK
elif [ "$rkos_arch" = amd64 ]; then
    rkos_work=$top/work
else
    rkos_work=$top/work/$rkos_arch
fi

# A list file (build/packages.txt, build/initramfs.modules) for this architecture: one name
# a line, comments dropped, a line `name [arch ...]` kept only when it names this one.
rkos_list() {
    awk -v a="$rkos_arch" '
        { sub(/#.*/, "") }
        NF == 0 { next }
        {
            if (NF == 1) { print $1; next }
            rest = $0; sub(/^[^[:space:]]+[[:space:]]*/, "", rest)
            if (rest !~ /^\[[^]]*\]$/) { print FILENAME ": bad line: " $0 > "/dev/stderr"; exit 1 }
            gsub(/[][,]/, " ", rest)
            n = split(rest, arches, " ")
            for (i = 1; i <= n; i++) if (arches[i] == a) { print $1; next }
        }' "$1"
}

# Runs of foreign binaries (mmdebstrap's maintainer scripts, chroot in the customize hook)
# go through qemu-user-static by binfmt_misc: mounted and registered here when missing,
# from the package's own binfmt.d entry (its F flag opens the interpreter once, so it works
# inside the chroot too).
rkos_binfmt() {
    [ -n "$rkos_qemu_user" ] || return 0
    local fmt=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-$rkos_qemu_user.conf
    if [ ! -e "$fmt/register" ]; then
        mount -t binfmt_misc binfmt_misc "$fmt" || {
            echo "$(basename "$0"): cannot mount binfmt_misc at $fmt" >&2
            return 1
        }
    fi
    if [ ! -e "$fmt/qemu-$rkos_qemu_user" ]; then
        [ -f "$conf" ] || {
            echo "$(basename "$0"): $conf missing (apt-get install qemu-user-static)" >&2
            return 1
        }
        cat "$conf" > "$fmt/register"
        echo "$(basename "$0"): registered qemu-$rkos_qemu_user with binfmt_misc" >&2
    fi
    grep -qx enabled "$fmt/qemu-$rkos_qemu_user" || {
        echo "$(basename "$0"): binfmt_misc entry qemu-$rkos_qemu_user is disabled" >&2
        return 1
    }
}
