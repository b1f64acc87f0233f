#!/usr/bin/env bash
# What webhooks cost on the delivery path: push B=100 at RATE requests/s (default 150) with
# webhooks off and on (every delivered and acked receipt becomes a signed event POSTed to
# `herald-cli webhook-listen`), REPS repetitions, interleaved. The server runs on core 0;
# herald-bench and the receiver on core 1. One JSON line per run: delivered/s, p99, server
# CPU, and with webhooks on the events the receiver verified and the outbox left at the end.
#
# Usage: scripts/bench/webhooks.sh   (env: REPS=3, RATE=150, HOOK_TOML="batch_max = 1000"
# for more keys of the [webhook] section; target/release built)
set -euo pipefail
log() { echo "[$(basename "$0") $(date -u +%H:%M:%S)] $*" >&2; }
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REPS=${REPS:-3}
RATE=${RATE:-150}
HERALD=$ROOT/target/release/herald
BENCH=$ROOT/target/release/herald-bench
CLI=$ROOT/target/release/herald-cli
PORT=${BASE_PORT:-22100}
WORK=$(mktemp -d /tmp/herald-webhooks.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

run() {
  local mode=$1
  PORT=$((PORT + 2))
  local hook=$((PORT + 1)) cfg=$WORK/off.toml lpid=
  : > "$cfg"
  if [ "$mode" = on ]; then
    cfg=$WORK/on-$PORT.toml
    printf '[webhook]\nurl = "http://127.0.0.1:%s/hook"\nsecret = "hook-secret"\n%s\n' "$hook" \
      "${HOOK_TOML:-}" > "$cfg"
    taskset -c 1 "$CLI" webhook-listen --secret hook-secret --port "$hook" > "$WORK/events-$PORT" 2>/dev/null &
    lpid=$!
  fi
  HERALD_LOG_LEVEL=warn taskset -c 0 "$HERALD" --config "$cfg" --api-listen 127.0.0.1:$PORT \
    --connector-listen 127.0.0.1:$PORT --secret wh-secret --data-dir "$WORK/data-$PORT" \
    > "$WORK/log-$PORT" 2>&1 &
  local pid=$!
  wait_port "$PORT" || true
  local line
  line=$(taskset -c 1 "$BENCH" --url http://127.0.0.1:$PORT --server-pid $pid --label "$mode" \
    --secret wh-secret push --conns 1000 --batch 100 --rate "$RATE" --secs 6 --drain 5 \
    | jq -c '{d:.delivered_per_s,p50:.latency_ms.p50,p99:.latency_ms.p99,cpu:.server_cpu,lost}')
  local depth
  depth=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^herald_webhook_outbox_depth/ {print $2; exit}')
  kill -INT $pid; wait $pid 2>/dev/null || true
  if [ -n "$lpid" ]; then
    kill $lpid; wait $lpid 2>/dev/null || true
    local unique
    unique=$(jq -r .id "$WORK/events-$PORT" | sort -u | wc -l)
    line=$(echo "$line" | jq -c --argjson n "$(wc -l < "$WORK/events-$PORT")" \
      --argjson u "$unique" --arg depth "${depth:-?}" \
      '. + {events_received:$n, distinct_events:$u, outbox_left:$depth}')
  fi
  echo "$mode $line"
}

for rep in $(seq "$REPS"); do
  run off
  run on
done
