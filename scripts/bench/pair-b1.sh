#!/usr/bin/env bash
# Two herald binaries side by side on the B=1 push scenario (one recipient per push): for each
# repetition and rate, a fresh server of each, alternately, on core 0 (nice -15, so a busy
# machine disturbs both alike), herald-bench on core 1. One JSON line per run on stdout.
#
#   A=/path/herald-old B=/path/herald-new scripts/bench/pair-b1.sh > pair.jsonl
#
# Knobs: BENCH (herald-bench binary, default target/release/herald-bench), REPS (3),
# RATES ("4000 8000 12000 16000"), SECS (4), CONNS (1000), BASE_PORT (22000).
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${A:?A=path of the first herald binary}" "${B:?B=path of the second herald binary}"
BENCH=${BENCH:-target/release/herald-bench}
REPS=${REPS:-3}; RATES=${RATES:-"4000 8000 12000 16000"}; SECS=${SECS:-4}; CONNS=${CONNS:-1000}
PORT=${BASE_PORT:-22000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for rep in $(seq 1 "$REPS"); do
  for rate in $RATES; do
    for v in A B; do
      bin=${!v}
      PORT=$((PORT + 1))
      d=$(mktemp -d /tmp/pair-b1.XXXXXX)
      HERALD_LOG_LEVEL=warn nice -n -15 taskset -c 0 "$bin" --api-listen 127.0.0.1:$PORT \
        --connector-listen 127.0.0.1:$PORT --secret s --data-dir "$d/data" > "$d/log" 2>&1 &
      pid=$!
      for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
      nice -n -15 taskset -c 1 "$BENCH" --url http://127.0.0.1:$PORT --server-pid $pid --label "$v" \
        --secret s push --conns "$CONNS" --batch 1 --rate "$rate" --secs "$SECS" --drain 5 |
        jq -c --arg v "$v" --argjson rate "$rate" --argjson rep "$rep" \
          '{v:$v,rep:$rep,rate:$rate,rps:.requests_per_s,cpu:.server_cpu,p50:.latency_ms.p50,p99:.latency_ms.p99,lost:.lost}'
      kill $pid; wait $pid 2>/dev/null; rm -rf "$d"
    done
  done
done
