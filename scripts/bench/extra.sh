#!/usr/bin/env bash
# Herald beyond the embedded store, for docs/benchmarks.md (called by run.sh with EXTRA set):
#   extra.sh mongo   RESULTS BENCH HERALD   one node on MongoDB (SecantusDB in docker)
#   extra.sh cluster RESULTS BENCH HERALD   two nodes, Redis broker, the same MongoDB store
# Smaller sizes than the main runs: SecantusDB, a Python server, is slow. Each repetition
# first measures the database's own bound on a fresh server (herald-bench bound: raw
# insert_many of B copies, Herald's append round trips, acknowledgement updates, for B=100 and
# B=1), so that report.py gives Herald's figures as a share of it. Every run passes --mongo, so
# each report counts its database operations (db_ops). Servers on core 0, herald-bench on 1.
# Knobs: REPS, MONGO_SCENARIOS ("bound idle fanout push"), MONGO_RATES_B100, MONGO_RATES_B1,
# FANOUT_CONNS_DB (1000), BOUND_SECS (4), SWEEP_P99_MS (1000: a sweep goes on while p99 stays
# under it, so that the sustained rate is found as well as the p99 < 100 ms one).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=$1 RESULTS=$2 BENCH=$3 HERALD=$4
IMAGE=${MONGO_IMAGE:-herald-test/secantusdb:0.7.0b3}
SECRET=bench-secret
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
REPS=${REPS:-3}
MONGO_SCENARIOS=${MONGO_SCENARIOS:-"bound idle fanout push"}
FANOUT_CONNS_DB=${FANOUT_CONNS_DB:-1000}
BOUND_SECS=${BOUND_SECS:-4}
export SWEEP_P99_MS=${SWEEP_P99_MS:-1000}
WORK=$(mktemp -d /tmp/herald-bench-extra.XXXXXX)
PORT=${BASE_PORT:-23000}
CONTAINER=""
PIDS=()
log() { echo "[bench-extra $(date -u +%H:%M:%S)] $*" >&2; }
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -n "$CONTAINER" ] && docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

. scripts/bench/lib.sh

# herald_node EXTRA_FLAGS...: one Herald node, single port, on core 0; appends its URL to
# URLS and its pid to NODE_PIDS.
herald_node() {
  PORT=$((PORT + 1))
  HERALD_LOG_LEVEL=warn taskset -c "$SERVER_CPU" "$HERALD" \
    --api-listen 127.0.0.1:$PORT --connector-listen 127.0.0.1:$PORT \
    --secret "$SECRET" --node-id "bench-$PORT" --data-dir "$WORK/data-$PORT" \
    --mongo "$MONGO_URL" "$@" > "$WORK/herald-$PORT.log" 2>&1 &
  NODE_PIDS+=("$!")
  PIDS+=("$!")
  wait_port "$PORT"
  URLS+=(--url "http://127.0.0.1:$PORT")
}

# start_setup: the servers of MODE, fresh; sets URLS, NODE_PIDS, LABEL.
start_setup() {
  URLS=()
  NODE_PIDS=()
  start_mongo herald-bench-mongo herald_bench --cpuset-cpus "$SERVER_CPU"
  case $MODE in
    mongo)
      LABEL=herald-mongo
      herald_node ;;
    cluster)
      LABEL=herald-cluster
      PORT=$((PORT + 1))
      taskset -c "$SERVER_CPU" redis-server --port "$PORT" --bind 127.0.0.1 --save '' \
        --appendonly no > "$WORK/redis-$PORT.log" 2>&1 &
      REDIS_PID=$!
      PIDS+=("$REDIS_PID")
      wait_port "$PORT"
      local redis=redis://127.0.0.1:$PORT
      herald_node --redis "$redis"
      herald_node --redis "$redis"
      NODE_PIDS+=("$REDIS_PID") ;;
    *) log "unknown mode $MODE (expected mongo or cluster)"; exit 2 ;;
  esac
}

stop_setup() {
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  stop_mongo
}

# bench REP ARGS...: one run against the current setup (clients and pushes spread over its
# nodes), its JSON line appended to RESULTS.
bench() {
  local rep=$1; shift
  local line pids=()
  for p in "${NODE_PIDS[@]}"; do pids+=(--server-pid "$p"); done
  if ! line=$(taskset -c "$BENCH_CPU" "$BENCH" "${URLS[@]}" "${pids[@]}" --label "$LABEL" \
      --secret "$SECRET" --drain 10 --mongo "$MONGO_URL" "$@"); then
    log "herald-bench $* failed against $LABEL"
    line=$(jq -nc --arg s "$LABEL" --arg a "$*" '{server:$s,error:$a}')
  fi
  line=$(echo "$line" | jq -c --argjson rep "$rep" '. + {rep:$rep}')
  echo "$line" >> "$RESULTS"
  log "$LABEL: $(echo "$line" | jq -c '{scenario,rate,batch,delivered_per_s,p99:.latency_ms.p99,lost,still_open,rss_per_conn_kb,round_ms_median,db_ops,insert_many:.insert_many.per_s,append_round_trips:.append_round_trips.per_s,ack_update:.ack_update.per_s}')"
  LAST=$line
}

# push_at REP BATCH RATE: one push run on a fresh setup, its report in SWEEP_RESULT. The
# rates here are low, so the runs are longer than run.sh's.
push_at() {
  local rep=$1 batch=$2 rate=$3
  start_setup
  bench "$rep" push --conns 500 --batch "$batch" --rate "$rate" --secs 8
  stop_setup
  SWEEP_RESULT=$LAST
}

# sweep REP BATCH RATES: as run.sh does (fresh servers per rate, stop after two failing
# rates in a row).
sweep() {
  sweep_rates "$3" push_at "$1" "$2"
}

LABEL=herald-$MODE
# Whether scenario $1 is among MONGO_SCENARIOS.
wanted() { case " $MONGO_SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

for rep in $(seq "$REPS"); do
  log "$MODE rep $rep"
  if wanted bound; then
    # The server alone, fresh, on the same core as in the runs below; no Herald node.
    URLS=()
    NODE_PIDS=()
    start_mongo herald-bench-mongo herald_bench --cpuset-cpus "$SERVER_CPU"
    bench "$rep" bound --batch 100 --secs "$BOUND_SECS"
    bench "$rep" bound --batch 1 --secs "$BOUND_SECS"
    stop_mongo
  fi
  if wanted idle; then
    start_setup
    bench "$rep" idle --conns 5000 --hold 5
    stop_setup
  fi
  if wanted fanout; then
    start_setup
    bench "$rep" fanout --conns "$FANOUT_CONNS_DB" --rounds 3
    stop_setup
  fi
  if wanted push; then
    sweep "$rep" 100 "${MONGO_RATES_B100:-1 2 4 8 12 16 24 32 48 64}"
    sweep "$rep" 1 "${MONGO_RATES_B1:-10 25 50 100 200 300 400 600 800}"
  fi
done
