#!/usr/bin/env bash
# Set everything up and run Anywhere locally: a Synapse from PyPI (SQLite, state in
# .anywhere-dev/), the bridge registered with it, and a demo user. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
exec .venv/bin/anywhere dev "$@"
