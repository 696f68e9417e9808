#!/usr/bin/env bash
# cargo for another architecture with Debian's own Rust toolchain (docs/image.md, "Cross
# build"): Debian's cargo and rustc (cargo-web, rustc-web), the target's standard library
# from Debian's archive for that architecture (libstd-rust-web-dev:arm64), Debian's cross
# gcc as linker and C compiler (gcc-aarch64-linux-gnu; libc6-dev-arm64-cross has the static
# glibc a static rkos-init links). The host's own cargo (rustup) is never involved, and the
# build has a target directory of its own, so the two never share an artefact.
#   build/cargo-cross.sh ARCH CARGO-ARGS...    e.g. build/cargo-cross.sh arm64 build --release -p rkos-cli
# Prints nothing of its own; the artefacts are in $(build/cargo-cross.sh ARCH --target-dir)/<triple>/.
# Environment: RKOS_CROSS_TARGET_DIR (default <CARGO_TARGET_DIR or target>/<triple arch>-debian).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
RKOS_ARCH=${1:?usage: build/cargo-cross.sh ARCH CARGO-ARGS...}
shift
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
[ "$rkos_arch" != amd64 ] || { echo "cargo-cross: amd64 is built with the host's cargo" >&2; exit 2; }
gnu=${rkos_triple%%-*}-linux-gnu
target_dir=${RKOS_CROSS_TARGET_DIR:-${CARGO_TARGET_DIR:-$top/target}/${rkos_triple%%-*}-debian}
if [ "${1:-}" = --target-dir ]; then
    echo "$target_dir"
    exit 0
fi
for f in /usr/bin/cargo /usr/bin/rustc "/usr/lib/rustlib/$rkos_triple/lib" "/usr/bin/$gnu-gcc"; do
    [ -e "$f" ] || { echo "cargo-cross: $f missing (run build/host-deps.sh)" >&2; exit 1; }
done
upper=$(echo "$rkos_triple" | tr 'a-z-' 'A-Z_')
lower=${rkos_triple//-/_}
export CARGO_TARGET_DIR=$target_dir
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
export "CC_${lower}=$gnu-gcc" "AR_${lower}=$gnu-ar"
# rustup's proxies must not pick the toolchain for build scripts that run `cargo` or `rustc`
unset RUSTUP_TOOLCHAIN
cd "$top"
exec /usr/bin/cargo "$@" --target "$rkos_triple"
