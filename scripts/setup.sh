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
    # pip's warnings about this machine's extra package indexes are noise here.
    .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
    # Pin torch first: on CPU machines this takes the CPU wheel; an unpinned torch would pull
    # gigabytes of CUDA packages.
    .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
    .venv/bin/python -m pip install --quiet -e ".[all]"
    echo "$wanted" > "$stamp"
fi

# Browser tests drive Debian's chromium through Playwright (Playwright's own browser download
# cannot work offline). Install it where we can: as root with apt-get (CI, fresh machines).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: chromium is missing; install Debian's 'chromium' package for the browser tests" >&2
    fi
fi
