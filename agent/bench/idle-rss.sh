#!/usr/bin/env bash
# The agent's resident memory when idle (target: under 16 MB).
#
# Starts the API server stand-in (agent/examples/standin_server.rs), then the release
# `rkos-agent run` binary against it, with a stand-in `rkos` command on the node side that
# reports version 1 (the plan's version, so the node settles at Succeeded). After the agent
# has settled it samples VmRSS from /proc every second and prints the figures.
#
#   agent/bench/idle-rss.sh [SECONDS]     (default 30 s of idle sampling)
#   RKOS_AGENT_BIN=path/to/rkos-agent agent/bench/idle-rss.sh   (measure a given binary)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_IDLE=${1:-30}
TARGET_KB=16384
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# The agent measured is the release binary (or RKOS_AGENT_BIN, e.g. the static one from
# build/agent-image.sh); the stand-in's own speed does not matter, so it is a debug build.
if [ -n "${RKOS_AGENT_BIN:-}" ]; then
    AGENT=$RKOS_AGENT_BIN
else
    echo "building rkos-agent (release)" >&2
    (cd "$ROOT" && cargo build --release -q -p rkos-agent --bin rkos-agent)
    AGENT=$CARGO_TARGET_DIR/release/rkos-agent
fi
echo "building the API server stand-in (debug)" >&2
(cd "$ROOT" && cargo build -q -p rkos-agent --example standin_server)
SERVER=$CARGO_TARGET_DIR/debug/examples/standin_server

WORK=$(mktemp -d)
SERVER_PID=
AGENT_PID=
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkfifo "$WORK/server-in"
"$SERVER" <"$WORK/server-in" >"$WORK/server.out" &
SERVER_PID=$!
exec 3>"$WORK/server-in"
for _ in $(seq 100); do
    URL=$(head -n1 "$WORK/server.out" 2>/dev/null || true)
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "$URL" ] || { echo "the stand-in did not start" >&2; exit 1; }

cat >"$WORK/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: standin, cluster: {server: "$URL"}}]
users: [{name: bench, user: {}}]
contexts: [{name: bench, context: {cluster: standin, user: bench}}]
current-context: bench
YAML
cat >"$WORK/rkos" <<'SH'
#!/bin/sh
# Stand-in for the node's `rkos status --json`: slot A runs version 1, nothing staged.
echo '{"active":"A","default":"A","fallback":null,"trial":null,"running_on_trial":false,"last_outcome":null,"slots":[{"slot":"A","version":"1","arch":"amd64","error":null},{"slot":"B","version":null,"arch":null,"error":null}]}'
SH
chmod +x "$WORK/rkos"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

KUBECONFIG="$WORK/kubeconfig" NODE_NAME=bench-node RUST_LOG=warn \
    "$AGENT" run --host-root / --rkos "$WORK/rkos" --metrics-addr "127.0.0.1:$PORT" \
    --namespace rkos-system >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!

# Settled: the node reports Succeeded on its metrics endpoint.
settled=
for _ in $(seq 200); do
    if python3 - "$PORT" <<'PY' 2>/dev/null
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=1).read().decode()
sys.exit(0 if 'rkos_upgrade_phase{node="bench-node",phase="Succeeded"} 1' in body else 1)
PY
    then settled=1; break; fi
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$settled" ] || { echo "the agent never settled" >&2; cat "$WORK/agent.log" >&2; exit 1; }
# Let the echoes of its own last writes (watch events) die down: measure the steady state.
sleep 5

rss() { awk '/^VmRSS/ {print $2}' "/proc/$AGENT_PID/status"; }
REQ0=$(tail -n1 "$WORK/server.out" | awk '{print $2}')
max=0; sum=0; n=0
for _ in $(seq "$SECONDS_IDLE"); do
    sleep 1
    r=$(rss); sum=$((sum + r)); n=$((n + 1))
    [ "$r" -gt "$max" ] && max=$r
done
REQ1=$(tail -n1 "$WORK/server.out" | awk '{print $2}')
HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT_PID/status")
THREADS=$(awk '/^Threads/ {print $2}' "/proc/$AGENT_PID/status")
SIZE=$(stat -c %s "$AGENT")

echo "rkos-agent idle (against the API server stand-in, ${SECONDS_IDLE}s after settling):"
echo "  VmRSS mean  $((sum / n)) kB"
echo "  VmRSS max   $max kB   (target < $TARGET_KB kB)"
echo "  VmHWM       $HWM kB   (peak since start, settling included)"
echo "  threads     $THREADS"
echo "  API calls   $((REQ1 - REQ0)) in ${SECONDS_IDLE}s"
echo "  binary      $SIZE bytes"
if [ "$max" -lt "$TARGET_KB" ]; then echo "  result      under target"; else echo "  result      OVER TARGET"; fi
