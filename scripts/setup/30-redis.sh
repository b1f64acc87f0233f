#!/usr/bin/env bash
# Debian's redis-server (7.0) and redis-sentinel: the Redis image is built from redis-server
# (scripts/images/build-redis.sh); the Redis Cluster tests run redis-server directly on loopback
# ports (it/src/cluster.rs) and the Sentinel failover tests run redis-server and redis-sentinel
# processes (it/src/sentinel.rs).
# Idempotent: installs only what is missing; apt-get update only then.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "30-redis: ${missing[*]} missing; run as root or: apt-get install ${missing[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    echo "30-redis: apt-get install ${missing[*]} (log: /tmp/herald-apt-redis.log)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/herald-apt-redis.log 2>&1 ||
        { cat /tmp/herald-apt-redis.log >&2; echo "30-redis: apt-get install ${missing[*]} failed" >&2; exit 1; }
    # Debian's packages may start system instances on 6379 and 26379; the tests never use them
    # (they run their own processes on free ports).
fi
echo "redis-server: $(redis-server --version | awk '{print $3}'); redis-sentinel: $(redis-sentinel --version | awk '{print $3}')"
