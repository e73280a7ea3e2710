"""Regenerate the demo's example galleries (rexomni_core/assets/examples/) from the nano world.

    python scripts/make_examples.py

Deterministic: the same seeds give the same images, so the checked-in files can be rebuilt and
compared at any time.
"""

from __future__ import annotations

import json
from pathlib import Path

from rexomni_core.data.worlds import generate

OUT = Path(__file__).resolve().parents[1] / "rexomni_core" / "assets" / "examples"
SHAPES_SEEDS = (101, 102, 103)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, list] = {"Detection": [], "Pointing": [], "Visual prompting": []}
    for seed in SHAPES_SEEDS:
        scene = generate("shapes", seed)
        name = f"shapes_{seed}.png"
        scene.image.save(OUT / name, optimize=True)
        categories = ", ".join(dict.fromkeys(a.category for a in scene.annotations))
        manifest["Detection"].append([name, categories])
        manifest["Pointing"].append([name, scene.annotations[0].category])
        x0, y0, x1, y1 = scene.annotations[0].box
        box = {"xmin": round(x0), "ymin": round(y0), "xmax": round(x1), "ymax": round(y1), "label": "object"}
        manifest["Visual prompting"].append([{"image": name, "boxes": [box]}])
    (OUT / "examples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"examples written to {OUT}")


if __name__ == "__main__":
    main()
