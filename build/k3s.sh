#!/usr/bin/env bash
# Puts the k3s binary for the image at <work>/k3s/k3s and its kind ("release <version>",
# "local <sha256>" or "stand-in") at <work>/k3s/kind, for RKOS_ARCH (build/arch.sh).
# Sources, in order:
#   K3S_STANDIN=1       the test stand-in (build/k3s-standin.sh, a shell script: any arch);
#                       never for a release image
#   K3S_BINARY=/path    a local file (not checked against the pin: it is the caller's choice)
#   otherwise           download the pinned release asset for the architecture (build/k3s.env:
#                       `k3s` for amd64, `k3s-arm64` for arm64) and check its sha256
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=build/arch.sh
. "$top/build/arch.sh"
out="$rkos_work/k3s"
mkdir -p "$out"
# shellcheck source=build/k3s.env
. "$top/build/k3s.env"
case "$rkos_arch" in
    amd64) asset=k3s sha256=$K3S_SHA256_AMD64 ;;
    arm64) asset=k3s-arm64 sha256=$K3S_SHA256_ARM64 ;;
esac

if [ "${K3S_STANDIN:-0}" = 1 ]; then
    install -m 0755 "$top/build/k3s-standin.sh" "$out/k3s.new"
    mv "$out/k3s.new" "$out/k3s"
    echo "stand-in" > "$out/kind"
    exit 0
fi

if [ -n "${K3S_BINARY:-}" ]; then
    [ -f "$K3S_BINARY" ] || { echo "k3s: K3S_BINARY=$K3S_BINARY is not a file" >&2; exit 1; }
    install -m 0755 "$K3S_BINARY" "$out/k3s.new"
    mv "$out/k3s.new" "$out/k3s"
    echo "local $(sha256sum "$out/k3s" | cut -d' ' -f1)" > "$out/kind"
    exit 0
fi

cache="$out/$asset-$K3S_VERSION"
if [ ! -f "$cache" ] || [ "$(sha256sum "$cache" | cut -d' ' -f1)" != "$sha256" ]; then
    url="https://github.com/k3s-io/k3s/releases/download/${K3S_VERSION/+/%2B}/$asset"
    rm -f "$cache.part"
    if ! curl -fL --retry 3 --connect-timeout 20 -o "$cache.part" "$url"; then
        rm -f "$cache.part"
        arch_arg=
        [ "$rkos_arch" = amd64 ] || arch_arg=" ARCH=$rkos_arch"
        cat >&2 <<EOM

k3s: cannot download k3s $K3S_VERSION from
     $url
     (this machine has no route to it). The build stops here. To go on, either:
       K3S_BINARY=/path/to/k3s make iso$arch_arg
           use a k3s binary you have ($rkos_arch; $asset of $K3S_VERSION has sha256
           $sha256)
       K3S_STANDIN=1 make iso$arch_arg
           build a TEST image with the k3s stand-in (named *-standin.iso; it runs no
           Kubernetes)
EOM
        exit 2
    fi
    got=$(sha256sum "$cache.part" | cut -d' ' -f1)
    if [ "$got" != "$sha256" ]; then
        rm -f "$cache.part"
        echo "k3s: downloaded $url has sha256 $got, the pin (build/k3s.env) says $sha256; refusing it" >&2
        exit 1
    fi
    mv "$cache.part" "$cache"
fi
install -m 0755 "$cache" "$out/k3s.new"
mv "$out/k3s.new" "$out/k3s"
echo "release $K3S_VERSION" > "$out/kind"
