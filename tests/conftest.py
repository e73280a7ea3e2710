"""Shared test set-up: offline by default, and where the shared specs and fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`shared/` sits beside the repository root (in CI and in every checkout here)."""
    for candidate in (REPO_ROOT.parent / "shared", Path("/work/shared")):
        if (candidate / "spec").is_dir():
            return candidate
    raise FileNotFoundError(f"no shared/ folder beside {REPO_ROOT}")


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()
