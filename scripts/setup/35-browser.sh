#!/usr/bin/env bash
# The browser of the browser tests (apps/herald/tests/browsers.rs): Debian's chromium, run
# headless by npm's puppeteer-core (20-test-clients.sh installs it into test-env/; its own
# browser download cannot work here). Idempotent: installs only when missing.
set -euo pipefail

if ! command -v chromium >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "35-browser: chromium missing; run as root or: apt-get install chromium" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    echo "35-browser: installing chromium (about 100 MB of packages)"
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/tmp/herald-apt-browser.log 2>&1 ||
        { cat /tmp/herald-apt-browser.log >&2; echo "35-browser: apt-get install chromium failed" >&2; exit 1; }
fi
echo "browser: $(chromium --version 2>/dev/null | head -1)"
