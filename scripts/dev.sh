#!/usr/bin/env bash
# Set everything up and run Anywhere locally: a Synapse from PyPI (SQLite, state in
# .anywhere-dev/), the bridge registered with it, and demo people. Ctrl-C stops both.
# Running it again resumes (also after a crash); the install is redone only when
# pyproject.toml changed. Arguments go to `anywhere dev` (e.g. --person carol).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
STAMP=.venv/.anywhere-installed

if [ ! -x .venv/bin/python ]; then
    echo "==> Creating a virtual environment in .venv ..."
    "$PYTHON" -m venv .venv
fi

# What the install depends on: pyproject.toml, setup.py and the venv's Python.
wanted="$("$PYTHON" - <<'EOF'
import hashlib, pathlib, sys
digest = hashlib.sha256(pathlib.Path("pyproject.toml").read_bytes())
digest.update(pathlib.Path("setup.py").read_bytes())
digest.update(pathlib.Path(".venv/bin/python").resolve().as_posix().encode())
print(digest.hexdigest())
EOF
)"
if [ -x .venv/bin/anywhere ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
    echo "==> Anywhere is installed in .venv and pyproject.toml is unchanged: no install."
else
    echo "==> Installing Anywhere and a Synapse into .venv with pip (the first time takes"
    echo "    about a minute; later starts skip this until pyproject.toml changes) ..."
    rm -f "$STAMP"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$wanted" > "$STAMP"
    echo "==> Installed."
fi
echo "==> Starting the dev stack (anywhere dev) ..."
exec .venv/bin/anywhere dev "$@"
