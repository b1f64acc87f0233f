#!/usr/bin/env bash
# Resident memory per idle connection of one Herald node, in one run: on the embedded store
# (in-process broker), on MongoDB (SecantusDB in docker), and as a cluster node (MongoDB +
# a local redis-server). Prints herald-bench's `idle` report of each and the ratios to the
# embedded figure (docs/benchmarks.md, "Idle memory in a cluster").
#
#   scripts/idle-memory.sh                 # N=3000 connections, REPS=3
#   N=5000 REPS=1 scripts/idle-memory.sh
#
# Knobs: N, REPS, HOLD (seconds held before measuring), MONGO_IMAGE, BASE_PORT, CARGO_TARGET_DIR.
# Only Herald's own RSS is in rss_per_conn_kb; redis-server's growth over the same connections
# is printed beside it (the cluster's subscriptions live there too).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${N:-3000}
REPS=${REPS:-3}
HOLD=${HOLD:-3}
IMAGE=${MONGO_IMAGE:-herald-test/secantusdb:0.7.0b3}
PORT=${BASE_PORT:-24100}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/herald-idle-memory.XXXXXX)
PIDS=()
CONTAINER=""
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -n "$CONTAINER" ] && docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
}
trap cleanup EXIT
log() { echo "[idle-memory $(date -u +%H:%M:%S)] $*" >&2; }
. scripts/bench/lib.sh
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p herald -p herald-bench >&2
HERALD=$TARGET/release/herald
BENCH=$TARGET/release/herald-bench

# one LABEL HERALD_FLAGS...: a fresh node, N idle connections; prints its report line.
one() {
  local label=$1; shift
  PORT=$((PORT + 1))
  HERALD_LOG_LEVEL=warn "$HERALD" --api-listen 127.0.0.1:$PORT --connector-listen 127.0.0.1:$PORT \
    --secret s --node-id "idle-$PORT" --data-dir "$WORK/data-$PORT" "$@" > "$WORK/herald-$PORT.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$PORT"
  local redis_before=""
  [ -n "${REDIS_PID:-}" ] && redis_before=$(rss_kb "$REDIS_PID")
  local line
  line=$("$BENCH" --url "http://127.0.0.1:$PORT" --server-pid "$pid" --secret s --label "$label" \
    idle --conns "$N" --hold "$HOLD")
  if [ -n "$redis_before" ]; then
    local grown=$(( $(rss_kb "$REDIS_PID") - redis_before ))
    line=$(echo "$line" | jq -c --argjson g "$grown" --argjson n "$N" \
      '. + {redis_rss_per_conn_kb: (($g / $n * 1000 | round) / 1000)}')
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$line" | jq -c '{server, rss_per_conn_kb, redis_rss_per_conn_kb, connections_held: .connected, still_open}'
}

for rep in $(seq "$REPS"); do
  log "rep $rep: embedded"
  emb=$(one embedded)
  start_mongo herald-idle-memory herald_idle
  log "rep $rep: mongo"
  mongo=$(one mongo --mongo "$MONGO_URL")
  start_mongo herald-idle-memory herald_idle
  PORT=$((PORT + 1))
  redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    > "$WORK/redis-$PORT.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$PORT"
  log "rep $rep: cluster node"
  cluster=$(one cluster-node --role all --mongo "$MONGO_URL" --redis "redis://127.0.0.1:$PORT")
  kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
  base=$(echo "$emb" | jq .rss_per_conn_kb)
  for l in "$emb" "$mongo" "$cluster"; do
    echo "$l" | jq -c --argjson b "$base" --argjson rep "$rep" \
      '. + {rep: $rep, ratio_to_embedded: ((.rss_per_conn_kb / $b * 100 | round) / 100)}'
  done
done
