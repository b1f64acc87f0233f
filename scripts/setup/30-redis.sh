#!/usr/bin/env bash
# Debian's redis-server (7.0): the Redis image is built from it (scripts/images/build-redis.sh)
# and the Redis Cluster tests run it directly on loopback ports (it/src/cluster.rs).
# Idempotent: installs only when redis-server is missing; apt-get update only then.
set -euo pipefail

if ! command -v redis-server >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "30-redis: redis-server is missing; run as root or: apt-get install redis-server" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    echo "30-redis: apt-get install redis-server (log: /tmp/herald-apt-redis.log)"
    apt-get install -y -qq --no-install-recommends redis-server >/tmp/herald-apt-redis.log 2>&1 ||
        { cat /tmp/herald-apt-redis.log >&2; echo "30-redis: apt-get install redis-server failed" >&2; exit 1; }
    # Debian's package may start a system instance on 6379; the tests never use it.
fi
echo "redis-server: $(redis-server --version | awk '{print $3}')"
