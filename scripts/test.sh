#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite:
#   a virtual environment (.venv) with Anywhere, its test extras (a real Synapse from
#   PyPI) and the hello-world example plugin; PostgreSQL on 127.0.0.1:5432 started if it
#   is installed but stopped. Extra arguments go to pytest (e.g. -k sigkill).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]' -e examples/hello -e examples/acme-roaming -e examples/mirror-store

# The storage tests run on SQLite and on PostgreSQL; start the local cluster if needed.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
fi

# System packages the end-to-end tests start: Chromium for the calls plugin's real-browser
# test, Prosody for the XMPP connector (Debian's packages; run as root, as CI does, or
# install them yourself).
need_apt=""
command -v chromium >/dev/null || need_apt="$need_apt chromium"
command -v prosody >/dev/null || need_apt="$need_apt prosody"
command -v litmus >/dev/null || need_apt="$need_apt litmus"  # the drive's WebDAV tests
command -v rclone >/dev/null || need_apt="$need_apt rclone"
if [ -n "$need_apt" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_apt >/dev/null
    else
        echo "warning: install$need_apt (Debian packages) for the tests that need them" >&2
    fi
fi

# matrix-js-sdk and esbuild from npm, for the browser client of that test.
BROWSER_MODULES="${ANYWHERE_BROWSER_MODULES:-$HOME/.cache/anywhere-calls-browser}"
if command -v npm >/dev/null && { [ ! -d "$BROWSER_MODULES/node_modules" ] ||
        ! cmp -s tests/calls/browser/package.json "$BROWSER_MODULES/package.json"; }; then
    mkdir -p "$BROWSER_MODULES"
    cp tests/calls/browser/package.json "$BROWSER_MODULES/package.json"
    npm install --prefix "$BROWSER_MODULES" --no-audit --no-fund --loglevel=error >/dev/null
fi

# playwright-core, axe-core, matrix-js-sdk, matrix-widget-api and esbuild from npm, for
# the drive web app's browser tests (tests/drive/test_webapp_*.py).
WEBAPP_MODULES="${ANYWHERE_WEBAPP_MODULES:-$HOME/.cache/anywhere-drive-webapp}"
if command -v npm >/dev/null && { [ ! -d "$WEBAPP_MODULES/node_modules" ] ||
        ! cmp -s tests/drive/webapp/package.json "$WEBAPP_MODULES/package.json"; }; then
    mkdir -p "$WEBAPP_MODULES"
    cp tests/drive/webapp/package.json "$WEBAPP_MODULES/package.json"
    npm install --prefix "$WEBAPP_MODULES" --no-audit --no-fund --loglevel=error >/dev/null
fi

# matrix-js-sdk (its Rust crypto, WASM) from npm, for the Element-crypto person of
# tests/crypto/test_e2e_js_interop.py.
CRYPTO_JS_MODULES="${ANYWHERE_CRYPTO_JS_MODULES:-$HOME/.cache/anywhere-crypto-js}"
if command -v npm >/dev/null && { [ ! -d "$CRYPTO_JS_MODULES/node_modules" ] ||
        ! cmp -s tests/crypto/js/package.json "$CRYPTO_JS_MODULES/package.json"; }; then
    mkdir -p "$CRYPTO_JS_MODULES"
    cp tests/crypto/js/package.json "$CRYPTO_JS_MODULES/package.json"
    npm install --prefix "$CRYPTO_JS_MODULES" --no-audit --no-fund --loglevel=error >/dev/null
fi

# Lint and formatting are part of the suite.
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .

exec .venv/bin/python -m pytest "$@"
