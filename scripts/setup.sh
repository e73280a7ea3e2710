#!/usr/bin/env bash
# Create .venv and install the project with every extra. Safe to re-run: it reinstalls only
# when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.rexomni-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # Pin torch first: on CPU machines this takes the CPU wheel; an unpinned torch would pull
    # gigabytes of CUDA packages.
    .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
    .venv/bin/python -m pip install --quiet -e ".[all]"
    echo "$wanted" > "$stamp"
fi
