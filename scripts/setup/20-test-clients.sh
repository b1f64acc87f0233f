#!/usr/bin/env bash
# The official Socket.IO clients the interop and end-to-end tests drive:
# socket.io-client (npm) into test-env/node_modules, python-socketio (PyPI) into test-env/venv.
# Idempotent: reinstalls only when the manifests changed.
set -euo pipefail
cd "$(dirname "$0")/../../test-env"

command -v node >/dev/null || { echo "node is required (Node 20+)"; exit 1; }
if [ ! -f node_modules/.stamp ] || ! cmp -s package-lock.json node_modules/.stamp; then
    echo "20-test-clients: npm ci (test-env/package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.stamp
fi

if [ ! -x venv/bin/python ] || ! cmp -s requirements.txt venv/.stamp; then
    rm -rf venv
    echo "20-test-clients: pip install -r test-env/requirements.txt into test-env/venv"
    python3 -m venv venv
    venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt venv/.stamp
fi
echo "test clients: $(node -p "require('./node_modules/socket.io-client/package.json').version") (npm), $(venv/bin/python -c 'import socketio; print(socketio.__version__)' 2>/dev/null || venv/bin/pip show python-socketio | sed -n 's/^Version: //p') (PyPI)"
