#!/usr/bin/env bash
# Set everything up, then run the main job: the browser demo on the embedded Rex-Omni-nano model,
# offline, at http://127.0.0.1:7860 (extra arguments go to app.py, e.g. --port 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
