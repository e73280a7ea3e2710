#!/usr/bin/env bash
# Set everything up, lint, then run every test (slow ones excluded; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
.venv/bin/ruff check .  # lint first: a failure here names the file and line
exec .venv/bin/python -m pytest -n 2 -q "$@"
