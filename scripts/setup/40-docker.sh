#!/usr/bin/env bash
# The Docker engine the container tests (testcontainers in it/) talk to: Debian's docker.io.
# Idempotent: installs only when dockerd is missing, starts dockerd only when `docker info`
# fails, then waits (bounded) until the engine answers. dockerd runs in the background and
# logs to /tmp/herald-dockerd.log; on this kind of machine its defaults work (overlay2
# storage, iptables on), so it gets no extra flags.
set -euo pipefail

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "40-docker: docker is missing; run as root or: apt-get install docker.io" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    echo "40-docker: apt-get install docker.io (log: /tmp/herald-apt-docker.log)"
    apt-get install -y -qq --no-install-recommends docker.io >/tmp/herald-apt-docker.log 2>&1 ||
        { cat /tmp/herald-apt-docker.log >&2; echo "40-docker: apt-get install docker.io failed" >&2; exit 1; }
fi

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "40-docker: the Docker engine is not running and only root can start it" >&2; exit 1; }
    log=/tmp/herald-dockerd.log
    setsid nohup dockerd >"$log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do # at most 60 s
        docker info >/dev/null 2>&1 && break
        kill -0 $! 2>/dev/null || { tail -n 30 "$log" >&2; echo "40-docker: dockerd exited (log: $log)" >&2; exit 1; }
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -n 30 "$log" >&2; echo "40-docker: dockerd did not answer within 60 s (log: $log)" >&2; exit 1; }
fi
echo "docker engine: $(docker version --format '{{.Server.Version}}')"
