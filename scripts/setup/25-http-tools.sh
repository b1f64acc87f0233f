#!/usr/bin/env bash
# The command-line tools the hostile-client suite (apps/herald/tests/hostile_http.rs) runs:
# curl (a real HTTP client) and prlimit (util-linux: runs herald with a small descriptor limit).
# Idempotent: installs only what is missing; apt-get update only then.
set -euo pipefail

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v prlimit >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "25-http-tools: ${missing[*]} missing; run as root or: apt-get install ${missing[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/herald-apt-http-tools.log 2>&1 ||
        { cat /tmp/herald-apt-http-tools.log >&2; echo "25-http-tools: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
echo "http tools: $(curl --version | head -1 | awk '{print $1, $2}'), $(prlimit --version | head -1)"
