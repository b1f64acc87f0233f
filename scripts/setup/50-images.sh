#!/usr/bin/env bash
# The local images the container tests start (no registry is reachable, and testcontainers
# would try to pull a missing image): herald-test/redis:7.0 and herald-test/secantusdb:<pin>.
# Idempotent: builds only the images `docker image inspect` does not find.
# Needs 30-redis.sh and 40-docker.sh first (redis-server, a running engine).
set -euo pipefail
images="$(cd "$(dirname "$0")/../images" && pwd)"

if ! docker image inspect herald-test/redis:7.0 >/dev/null 2>&1; then
    echo "50-images: building herald-test/redis:7.0"
    bash "$images/build-redis.sh" herald-test/redis:7.0
fi

secantus="herald-test/secantusdb:$(sed -n 's/^secantusdb==//p' "$images/secantusdb-requirements.txt")"
if ! docker image inspect "$secantus" >/dev/null 2>&1; then
    missing=()
    [ -x /usr/bin/python3.11 ] || missing+=(python3.11)
    /usr/bin/python3.11 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || { echo "50-images: missing ${missing[*]}; run as root or apt-get install them" >&2; exit 1; }
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/herald-apt-python.log 2>&1 ||
            { cat /tmp/herald-apt-python.log >&2; echo "50-images: apt-get install ${missing[*]} failed" >&2; exit 1; }
    fi
    echo "50-images: building $secantus (about 10 s)"
    bash "$images/build-secantusdb.sh" "$secantus"
fi
echo "images: herald-test/redis:7.0, $secantus"
