#!/usr/bin/env bash
# Builds the rkos-agent container image as an OCI image archive, without a container engine:
# one layer holding the static agent binary, the image config, manifest and index as JSON with
# sha256 digests, and a Docker-style manifest.json beside them so both `ctr import` (what k3s
# runs on tarballs in /var/lib/rancher/k3s/agent/images/) and `docker load` read it.
#
#   build/agent-image.sh [OUT.tar]        default: dist/rkos-agent-image.tar
#
# Environment:
#   RKOS_ARCH        amd64 | arm64 (default: this machine's)
#   RKOS_AGENT_BIN   package this prebuilt static binary instead of building one
#   SOURCE_DATE_EPOCH  timestamps in the archive (default 0): same inputs, same bytes
#
# The image name is rkos.local/rkos-agent:<crate version>, as in agent/manifests/agent.yaml
# (the DaemonSet uses imagePullPolicy: Never: the image must come from this archive).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/dist/rkos-agent-image.tar}
EPOCH=${SOURCE_DATE_EPOCH:-0}

die() { echo "agent-image: $*" >&2; exit 1; }

for tool in sha256sum gzip tar readelf; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install coreutils gzip tar binutils)"
done

ARCH=${RKOS_ARCH:-$(case "$(uname -m)" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)}
case "$ARCH" in
    amd64) TRIPLE=x86_64-unknown-linux-gnu ;;
    arm64) TRIPLE=aarch64-unknown-linux-gnu ;;
    *) die "unsupported architecture $ARCH (amd64 or arm64)" ;;
esac

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
[ -n "$VERSION" ] || die "cannot read the workspace version from $ROOT/Cargo.toml"
IMAGE="rkos.local/rkos-agent:$VERSION"

BIN=${RKOS_AGENT_BIN:-}
if [ -z "$BIN" ]; then
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    echo "agent-image: building a static rkos-agent for $TRIPLE" >&2
    # glibc's static libc (libc6-dev) and crt-static give a binary with no loader and no
    # shared libraries, so the image needs nothing else.
    (cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p rkos-agent --target "$TRIPLE") \
        || die "cargo build failed (for arm64: rustup target add $TRIPLE and a cross linker)"
    BIN=$TARGET_DIR/$TRIPLE/release/rkos-agent
fi
[ -f "$BIN" ] || die "no agent binary at $BIN"
if readelf -l "$BIN" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$BIN is dynamically linked; the image has no libc: build it with -C target-feature=+crt-static"
fi
readelf -h "$BIN" >/dev/null 2>&1 || die "$BIN is not an ELF binary"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/rootfs" "$WORK/image/blobs/sha256"
install -m 0755 "$BIN" "$WORK/rootfs/rkos-agent"
# Symbols are of no use in the image; stripping them halves the layer. The host's strip
# reads only its own architecture's binaries: another's takes its cross binutils.
case "$ARCH" in
    arm64) STRIP=aarch64-linux-gnu-strip ;;
    *) STRIP=strip ;;
esac
if command -v "$STRIP" >/dev/null; then
    "$STRIP" --strip-all "$WORK/rootfs/rkos-agent" 2>/dev/null || true
fi
mkdir -p "$WORK/rootfs/tmp"
chmod 1777 "$WORK/rootfs/tmp"

# Reproducible tar: sorted names, fixed owner and time, no atime/ctime.
rtar() {
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime "$@"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Moves a file into blobs/ under its digest and prints the digest.
blob() {
    local d
    d=$(sha "$1")
    mv "$1" "$WORK/image/blobs/sha256/$d"
    echo "$d"
}

rtar -C "$WORK/rootfs" -cf "$WORK/layer.tar" .
DIFF_ID=$(sha "$WORK/layer.tar")
gzip -n -9 -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
LAYER_SIZE=$(size "$WORK/layer.tar.gz")
LAYER=$(blob "$WORK/layer.tar.gz")

CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
printf '%s' "{\"architecture\":\"$ARCH\",\"os\":\"linux\",\"created\":\"$CREATED\",\
\"config\":{\"Entrypoint\":[\"/rkos-agent\"],\"Cmd\":[\"run\"],\"Env\":[\"PATH=/\"],\
\"Labels\":{\"org.opencontainers.image.title\":\"rkos-agent\",\"org.opencontainers.image.version\":\"$VERSION\"}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$DIFF_ID\"]},\
\"history\":[{\"created\":\"$CREATED\",\"created_by\":\"build/agent-image.sh: static rkos-agent\"}]}" \
    >"$WORK/config.json"
CONFIG_SIZE=$(size "$WORK/config.json")
CONFIG=$(blob "$WORK/config.json")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$CONFIG\",\"size\":$CONFIG_SIZE},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$LAYER\",\"size\":$LAYER_SIZE}]}" \
    >"$WORK/manifest.json"
MANIFEST_SIZE=$(size "$WORK/manifest.json")
MANIFEST=$(blob "$WORK/manifest.json")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$MANIFEST\",\
\"size\":$MANIFEST_SIZE,\"platform\":{\"architecture\":\"$ARCH\",\"os\":\"linux\"},\
\"annotations\":{\"io.containerd.image.name\":\"$IMAGE\",\"org.opencontainers.image.ref.name\":\"$VERSION\"}}]}" \
    >"$WORK/image/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$WORK/image/oci-layout"
printf '%s' "[{\"Config\":\"blobs/sha256/$CONFIG\",\"RepoTags\":[\"$IMAGE\"],\"Layers\":[\"blobs/sha256/$LAYER\"]}]" \
    >"$WORK/image/manifest.json"

# Every blob must hash to its name, and every digest named must be present.
for f in "$WORK"/image/blobs/sha256/*; do
    [ "$(sha "$f")" = "$(basename "$f")" ] || die "blob $(basename "$f") does not match its digest"
done
for d in "$CONFIG" "$LAYER" "$MANIFEST"; do
    [ -f "$WORK/image/blobs/sha256/$d" ] || die "blob $d missing"
done

mkdir -p "$(dirname "$OUT")"
rtar -C "$WORK/image" -cf "$OUT.tmp" oci-layout index.json manifest.json blobs
mv "$OUT.tmp" "$OUT"
echo "agent-image: $OUT ($(size "$OUT") bytes)"
echo "  image     $IMAGE ($ARCH)"
echo "  manifest  sha256:$MANIFEST"
echo "  config    sha256:$CONFIG"
echo "  layer     sha256:$LAYER ($LAYER_SIZE bytes gzip; diff_id sha256:$DIFF_ID)"
echo "  install   copy to /var/lib/rancher/k3s/agent/images/ (k3s imports it at start)"
