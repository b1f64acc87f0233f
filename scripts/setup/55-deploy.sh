#!/usr/bin/env bash
# What the deployment tests need (it/tests/image.rs, it/tests/compose.rs,
# it/tests/kubernetes.rs):
# - a compose tool: the `docker compose` plugin when present, else Debian's docker-compose;
# - Debian's haproxy, from which the load balancer image herald-test/haproxy:2.6 is built
#   (scripts/images/build-haproxy.sh), and the CA bundle the Herald image carries;
# - PyPI's kubernetes-validate (pinned in deploy/kubernetes/requirements.txt) in the venv
#   test-env/k8s-venv, which validates deploy/kubernetes/ offline.
# The Herald image itself is built by the tests, from the binary they test.
# Idempotent: installs and builds only what is missing; apt-get update only then.
# Needs 40-docker.sh first (a running engine).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

missing=()
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v haproxy >/dev/null || missing+=(haproxy)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "55-deploy: ${missing[*]} missing; run as root or: apt-get install ${missing[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # Debian's haproxy package may try to start a system instance; there is no init here,
    # and the tests never use one.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/herald-apt-deploy.log 2>&1 ||
        { cat /tmp/herald-apt-deploy.log >&2; echo "55-deploy: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

if ! docker image inspect herald-test/haproxy:2.6 >/dev/null 2>&1; then
    bash "$repo/scripts/images/build-haproxy.sh" herald-test/haproxy:2.6
fi

venv="$repo/test-env/k8s-venv"
req="$repo/deploy/kubernetes/requirements.txt"
if [ ! -x "$venv/bin/kubernetes-validate" ] || ! cmp -s "$req" "$venv/.stamp"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.stamp"
fi

compose="$(docker compose version --short 2>/dev/null && echo " (plugin)" || docker-compose version --short)"
echo "deploy: compose $(echo $compose), haproxy $(haproxy -v | head -1 | awk '{print $3}'), kubernetes-validate $("$venv/bin/kubernetes-validate" --version 2>&1 | awk '{print $NF}')"
