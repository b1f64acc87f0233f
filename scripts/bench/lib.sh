# Helpers shared by scripts/bench/run.sh, extra.sh, ab.sh, webhooks.sh and scripts/idle-memory.sh
# (sourced, not run; the caller defines `log`, PORT and IMAGE).

# Waits until something accepts TCP connections on 127.0.0.1:$1 (bounded: 30 s).
wait_port() {
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on port $1 after 30 s"; return 1
}

# Whether the push report $1 kept up at rate $2: nothing lost, p99 under SWEEP_P99_MS
# (default 100 ms, the rule of the tables in docs/benchmarks.md), and at least 95% of the
# offered requests answered. extra.sh sweeps on with a looser p99 (the sustained rate).
rate_ok() {
  echo "$1" | jq -e --argjson rate "$2" --argjson p99 "${SWEEP_P99_MS:-100}" \
    '.lost == 0 and .latency_ms.p99 < $p99 and .requests_per_s >= 0.95 * $rate' >/dev/null
}

# sweep_rates RATES FN ARGS...: for each rate of RATES in turn, runs `FN ARGS... RATE`, which
# leaves its push report in SWEEP_RESULT, or sets SWEEP_SKIP to pass over that rate (FN runs
# under the caller's `set -e`); stops after two rates in a row that do not keep up (rate_ok).
# One alone may be a disturbance: report.py takes the highest rate that passed.
sweep_rates() {
  local rates=$1 failed=0; shift
  for rate in $rates; do
    SWEEP_RESULT=""
    SWEEP_SKIP=""
    "$@" "$rate"
    [ -n "$SWEEP_SKIP" ] && continue
    if rate_ok "$SWEEP_RESULT" "$rate"; then
      failed=0
    else
      failed=$((failed + 1))
      [ "$failed" -ge 2 ] && break
    fi
  done
  return 0
}

# start_mongo NAME DB [DOCKER_RUN_FLAGS...]: a fresh MongoDB-wire server from $IMAGE (by default
# SecantusDB, in memory) on the next port; sets CONTAINER and MONGO_URL (database DB).
start_mongo() {
  local name=$1 db=$2
  shift 2
  stop_mongo
  PORT=$((PORT + 1))
  CONTAINER=$name-$$-$PORT
  docker run -d --rm --name "$CONTAINER" "$@" -p "127.0.0.1:$PORT:27017" "$IMAGE" >/dev/null
  for _ in $(seq 300); do
    docker logs "$CONTAINER" 2>&1 | grep -q "secantus listening on" && break
    sleep 0.1
  done
  MONGO_URL="mongodb://127.0.0.1:$PORT/$db?directConnection=true"
}

stop_mongo() {
  [ -n "$CONTAINER" ] && docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  CONTAINER=""
}
