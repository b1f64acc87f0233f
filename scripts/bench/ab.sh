#!/usr/bin/env bash
# Interleaved A/B of two herald builds on the three delivery paths: fan-out to 10,000 online
# clients (3 rounds), push B=100 at 300 requests/s, push B=1 at 8,000 requests/s; REPS
# repetitions, each build on a fresh server and data directory per scenario. The server runs
# on core 0 and herald-bench on core 1, one JSON summary line per run on stdout.
#
# Usage: scripts/bench/ab.sh OLD_HERALD NEW_HERALD   (env: REPS=3, BENCH=target/release/herald-bench)
set -euo pipefail
log() { echo "[$(basename "$0") $(date -u +%H:%M:%S)] $*" >&2; }
. "$(dirname "$0")/lib.sh"
OLD=$1 NEW=$2
REPS=${REPS:-3}
BENCH=${BENCH:-$(dirname "$0")/../../target/release/herald-bench}
PORT=${BASE_PORT:-21900}
WORK=$(mktemp -d /tmp/herald-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# run BIN SCENARIO-ARGS...: one server, one herald-bench run; prints the bench's JSON.
run() {
  local bin=$1; shift
  PORT=$((PORT + 1))
  HERALD_LOG_LEVEL=warn taskset -c 0 "$bin" --api-listen 127.0.0.1:$PORT \
    --connector-listen 127.0.0.1:$PORT --secret ab-secret --data-dir "$WORK/data-$PORT" \
    > "$WORK/log-$PORT" 2>&1 &
  local pid=$!
  wait_port "$PORT" || true
  taskset -c 1 "$BENCH" --url http://127.0.0.1:$PORT --server-pid $pid --label ab \
    --secret ab-secret "$@" || echo '{"error":"herald-bench failed"}'
  kill -INT $pid; wait $pid 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
  for v in old new; do
    bin=$OLD; [ $v = new ] && bin=$NEW
    echo "$rep $v fanout $(run "$bin" fanout --conns 10000 --rounds 3 --drain 10 \
      | jq -c '{p50:.latency_ms.p50,p99:.latency_ms.p99,cpu:.server_cpu,lost}')"
    echo "$rep $v B=100@300 $(run "$bin" push --conns 1000 --batch 100 --rate 300 --secs 4 --drain 5 \
      | jq -c '{d:.delivered_per_s,p50:.latency_ms.p50,p99:.latency_ms.p99,cpu:.server_cpu,lost,rss:.server_rss_mb}')"
    echo "$rep $v B=1@8000 $(run "$bin" push --conns 1000 --batch 1 --rate 8000 --secs 4 --drain 5 \
      | jq -c '{d:.delivered_per_s,p50:.latency_ms.p50,p99:.latency_ms.p99,cpu:.server_cpu,lost,rss:.server_rss_mb}')"
  done
done
