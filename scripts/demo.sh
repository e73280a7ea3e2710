#!/usr/bin/env bash
# Set everything up, then run the main job: parse a Rex-Omni answer and draw it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/rexomni parse --width 1280 --height 720 \
    '<|object_ref_start|>man<|object_ref_end|><|box_start|><12><40><310><600>,<400><50><700><610><|box_end|>, <|object_ref_start|>laptop<|object_ref_end|><|box_start|>None<|box_end|><|im_end|>'
