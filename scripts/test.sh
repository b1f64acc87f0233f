#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: first each setup step in
# scripts/setup/ (idempotent: they install and start only what is missing), then cargo test.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

for step in scripts/setup/*.sh; do
    [ -e "$step" ] || continue
    echo "== setup: $step"
    bash "$step"
done

# Tests find what setup made through these (see scripts/setup/README.md).
export HERALD_TEST_ENV="$PWD/test-env"

echo "== cargo test --workspace $*"
cargo test --workspace --locked "$@"
