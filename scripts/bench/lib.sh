# Helpers shared by scripts/bench/run.sh and scripts/bench/extra.sh (sourced, not run).

# Waits until something accepts TCP connections on 127.0.0.1:$1 (bounded: 30 s).
wait_port() {
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on port $1 after 30 s"; return 1
}
