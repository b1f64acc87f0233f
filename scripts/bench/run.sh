#!/usr/bin/env bash
# Runs Herald and its peers (Node socket.io, socketioxide plain and acknowledging) through the same herald-bench
# scenarios in one session and writes docs/benchmarks.md (medians and min-max).
#
#   scripts/bench/run.sh            # everything, REPS=3
#   REPS=1 QUICK=1 scripts/bench/run.sh   # a fast look (small sizes)
#
# Knobs (environment): REPS, SERVERS ("herald socketio-node socketioxide socketioxide-ack"), SCENARIOS
# ("idle fanout push"), IDLE_CONNS,
# IDLE_HOLD, FANOUT_CONNS, FANOUT_ROUNDS, PUSH_CONNS, PUSH_SECS, RATES_B100, RATES_B1,
# EXTRA ("mongo cluster": Herald on MongoDB (SecantusDB in docker) and a two-node cluster
# with Redis), APPEND_TO (earlier results to keep), OUT (default docs/benchmarks.md),
# CARGO_TARGET_DIR.
# The server runs on core 0 and the load generator on core 1 (taskset). Everything listens
# and connects on 127.0.0.0/8 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

REPS=${REPS:-3}
QUICK=${QUICK:-0}
SERVERS=${SERVERS-"herald socketio-node socketioxide socketioxide-ack"}
SCENARIOS=${SCENARIOS:-"idle fanout push"}
EXTRA=${EXTRA:-}
if [ "$QUICK" = 1 ]; then
  IDLE_CONNS=${IDLE_CONNS:-2000}; IDLE_HOLD=${IDLE_HOLD:-3}
  FANOUT_CONNS=${FANOUT_CONNS:-2000}; FANOUT_ROUNDS=${FANOUT_ROUNDS:-3}
  PUSH_CONNS=${PUSH_CONNS:-500}; PUSH_SECS=${PUSH_SECS:-2}
  RATES_B100=${RATES_B100:-"50 100 200"}; RATES_B1=${RATES_B1:-"1000 2000 4000"}
fi
IDLE_CONNS=${IDLE_CONNS:-19000}
IDLE_HOLD=${IDLE_HOLD:-30}
FANOUT_CONNS=${FANOUT_CONNS:-10000}
FANOUT_ROUNDS=${FANOUT_ROUNDS:-5}
PUSH_CONNS=${PUSH_CONNS:-1000}
PUSH_SECS=${PUSH_SECS:-4}
RATES_B100=${RATES_B100:-"25 50 100 150 200 300 400 600 800 1200 1600"}
RATES_B1=${RATES_B1:-"1000 2000 3000 4000 6000 8000 12000 16000 24000 32000"}
OUT=${OUT:-docs/benchmarks.md}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
SECRET=bench-secret
# Below the ephemeral port range (32768-60999 here), so that no client socket holds it.
PORT=${BASE_PORT:-21000}

WORK=$(mktemp -d /tmp/herald-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
# APPEND_TO=FILE: start from an earlier run's results (e.g. SERVERS="" EXTRA=mongo after a
# main run) so that one report holds both.
if [ -n "${APPEND_TO:-}" ]; then cp "$APPEND_TO" "$RESULTS"; else : > "$RESULTS"; fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

# File descriptors: as many as the hard limit allows (root may raise the hard limit too).
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
log "file descriptor limit: $(ulimit -n)"

log "building herald and herald-bench (release)"
cargo build --release --locked -p herald -p herald-bench >&2
HERALD=$TARGET/release/herald
BENCH=$TARGET/release/herald-bench
log "installing the Node socket.io peer (npm ci)"
(cd bench/peers/socketio-node && npm ci --no-audit --no-fund --loglevel=error >&2)
log "building the socketioxide peer"
cargo build --release --locked --manifest-path bench/peers/socketioxide/Cargo.toml \
  --target-dir "$TARGET/peer-socketioxide" >&2
SIOXIDE=$TARGET/peer-socketioxide/release/socketioxide-peer

. scripts/bench/lib.sh

# start_server NAME: starts a fresh server on core $SERVER_CPU; sets SERVER_PID, SERVER_URL,
# BENCH_ARGS (extra herald-bench flags: the secret for Herald).
start_server() {
  local name=$1
  PORT=$((PORT + 1))
  SERVER_URL=http://127.0.0.1:$PORT
  BENCH_ARGS=()
  local logf=$WORK/$name-$PORT.log
  case $name in
    herald)
      local data=$WORK/data-$PORT
      HERALD_LOG_LEVEL=warn taskset -c "$SERVER_CPU" "$HERALD" \
        --api-listen 127.0.0.1:$PORT --connector-listen 127.0.0.1:$PORT \
        --secret "$SECRET" --data-dir "$data" > "$logf" 2>&1 &
      BENCH_ARGS=(--secret "$SECRET") ;;
    socketio-node)
      taskset -c "$SERVER_CPU" node bench/peers/socketio-node/server.js 127.0.0.1:$PORT \
        > "$logf" 2>&1 & ;;
    socketioxide)
      taskset -c "$SERVER_CPU" "$SIOXIDE" 127.0.0.1:$PORT > "$logf" 2>&1 & ;;
    socketioxide-ack)
      # The same peer asking every client to acknowledge each message and awaiting the acks.
      taskset -c "$SERVER_CPU" "$SIOXIDE" --ack 127.0.0.1:$PORT > "$logf" 2>&1 & ;;
    *) log "unknown server $name"; exit 2 ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  if ! wait_port "$PORT"; then
    log "$name did not start; its log: $(tail -3 "$logf")"
    stop_server
    return 1
  fi
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# bench NAME REP ARGS...: one herald-bench run on core $BENCH_CPU; appends its JSON line
# (with the repetition number) to the results and echoes it.
bench() {
  local name=$1 rep=$2; shift 2
  local line
  if ! line=$(taskset -c "$BENCH_CPU" "$BENCH" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
      --label "$name" "${BENCH_ARGS[@]}" "$@"); then
    log "herald-bench $* failed against $name"
    line=$(jq -nc --arg s "$name" --arg a "$*" '{server:$s,error:$a}')
  fi
  line=$(echo "$line" | jq -c --argjson rep "$rep" '. + {rep:$rep}')
  echo "$line" >> "$RESULTS"
  echo "$line"
}

# push_at NAME REP BATCH RATE: one push run on a fresh server, its report in SWEEP_RESULT.
push_at() {
  local name=$1 rep=$2 batch=$3 rate=$4
  if ! start_server "$name"; then
    SWEEP_SKIP=1
    return 0
  fi
  SWEEP_RESULT=$(bench "$name" "$rep" push --conns "$PUSH_CONNS" --batch "$batch" \
    --rate "$rate" --secs "$PUSH_SECS" --drain 5)
  stop_server
  log "$name B=$batch R=$rate: $(echo "$SWEEP_RESULT" | jq -c '{delivered_per_s,p99:.latency_ms.p99,lost,requests_per_s,server_cpu,bench_cpu}')"
}

# sweep NAME REP BATCH RATES: push at increasing rates on one fresh server each, until two
# rates in a row break p99 < 100 ms, lose a message, or answer fewer requests than offered.
sweep() {
  sweep_rates "$4" push_at "$1" "$2" "$3"
}

# Whether scenario $1 is among SCENARIOS.
wanted() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

run_server() {
  local name=$1 rep=$2
  if wanted idle && start_server "$name"; then
    log "$name rep $rep: idle $IDLE_CONNS"
    bench "$name" "$rep" idle --conns "$IDLE_CONNS" --hold "$IDLE_HOLD" >/dev/null
    stop_server
  fi
  if wanted fanout && start_server "$name"; then
    log "$name rep $rep: fanout $FANOUT_CONNS x $FANOUT_ROUNDS"
    bench "$name" "$rep" fanout --conns "$FANOUT_CONNS" --rounds "$FANOUT_ROUNDS" --drain 10 >/dev/null
    stop_server
  fi
  if wanted push; then
    log "$name rep $rep: push B=100"
    sweep "$name" "$rep" 100 "$RATES_B100"
    log "$name rep $rep: push B=1"
    sweep "$name" "$rep" 1 "$RATES_B1"
  fi
}

STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq "$REPS"); do
  for name in $SERVERS; do
    run_server "$name" "$rep"
  done
done

for extra in $EXTRA; do
  log "extra: $extra"
  "$ROOT/scripts/bench/extra.sh" "$extra" "$RESULTS" "$BENCH" "$HERALD"
done

cp "$RESULTS" "$TARGET/bench-results.jsonl"
log "raw results: $TARGET/bench-results.jsonl"

SIO_VERSION=$(jq -r .version bench/peers/socketio-node/node_modules/socket.io/package.json)
SIOXIDE_VERSION=$(grep -A1 '^name = "socketioxide"$' bench/peers/socketioxide/Cargo.lock \
  | sed -n 's/^version = "\(.*\)"/\1/p')
python3 scripts/bench/report.py "$RESULTS" "$OUT" \
  --started "$STARTED" \
  --rev "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' ':!scripts/bench' || echo '+changes')" \
  --versions "socket.io $SIO_VERSION; socketioxide $SIOXIDE_VERSION; node $(node --version); $(rustc --version)" \
  --machine "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r); fd limit $(ulimit -n)" \
  --command "${BENCH_COMMAND:-REPS=$REPS QUICK=$QUICK EXTRA=\"$EXTRA\" scripts/bench/run.sh}" \
  --load "before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)" \
  --settings "idle $IDLE_CONNS conns hold ${IDLE_HOLD}s; fanout $FANOUT_CONNS conns x $FANOUT_ROUNDS rounds; push $PUSH_CONNS conns, ${PUSH_SECS}s per rate; rates B=100: $RATES_B100; rates B=1: $RATES_B1"
log "wrote $OUT"
