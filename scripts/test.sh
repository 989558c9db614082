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
.venv/bin/python -m pip install --quiet -e '.[test]' -e examples/hello -e examples/acme-roaming

# The storage tests run on SQLite and on PostgreSQL; start the local cluster if needed.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
fi

exec .venv/bin/python -m pytest "$@"
