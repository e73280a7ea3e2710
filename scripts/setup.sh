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
# Quiet on success, loud on failure: a step prints one line; its whole log only if it fails.
step() {
    local name=$1 log
    shift
    log=$(mktemp)
    echo "setup: $name"
    if ! "$@" >"$log" 2>&1; then
        echo "setup: $name FAILED; its output:" >&2
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    step "upgrading pip" .venv/bin/python -m pip install --quiet --upgrade pip
    # Pin torch first: on CPU machines this takes the CPU wheel; an unpinned torch would pull
    # gigabytes of CUDA packages.
    step "installing torch ${TORCH_VERSION:-2.13.0}" .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
    step "installing rexomni-core with every extra" .venv/bin/python -m pip install --quiet -e ".[all]"
    echo "$wanted" > "$stamp"
fi

# Browser tests drive Debian's chromium through Playwright (Playwright's own browser download
# cannot work offline). Install it where we can: as root with apt-get (CI, fresh machines).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "installing Debian's chromium" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"
    else
        echo "setup: chromium is missing; install Debian's 'chromium' package for the browser tests" >&2
    fi
fi
