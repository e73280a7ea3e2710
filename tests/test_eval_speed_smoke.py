"""The speed benchmark still runs (tiny sizes; the real numbers are in its own run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_runs_on_tiny_data(capsys):
    spec = importlib.util.spec_from_file_location("eval_speed", REPO_ROOT / "benchmarks" / "eval_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_speed"] = module
    spec.loader.exec_module(module)
    assert module.main(["--images", "5", "--skip", "pycocotools", "faster-coco-eval"]) == 0
    out = capsys.readouterr().out
    assert "rexomni eval f1" in out and "peak RSS MiB" in out
