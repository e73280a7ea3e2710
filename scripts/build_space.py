"""Build a self-contained Hugging Face Space folder: spaces/ plus the rexomni_core package.

    python scripts/build_space.py OUT_DIR

Push OUT_DIR to a Space repository as it is.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def build_space(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in (REPO / "spaces").iterdir():
        shutil.copy2(item, out_dir / item.name)
    shutil.copytree(REPO / "rexomni_core", out_dir / "rexomni_core", ignore=IGNORED)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/build_space.py OUT_DIR")
    print(f"Space folder written to {build_space(Path(sys.argv[1]))}")
