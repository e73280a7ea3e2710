#!/usr/bin/env bash
# Set everything up, then open JupyterLab on the tutorial notebooks at http://127.0.0.1:8888
# (offline, on this machine only; extra arguments go to `jupyter lab`, e.g. --port 8890).
# What the notebooks write goes to notebooks/runs/, which git ignores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# Jupyter refuses to start as root unless told; containers and fresh machines often run as root.
as_root=()
if [ "$(id -u)" = 0 ]; then
    as_root=(--allow-root)
fi
exec .venv/bin/jupyter lab --ip=127.0.0.1 --ServerApp.root_dir="$PWD/notebooks" "${as_root[@]}" "$@"
