"""Regenerate the demo's example galleries (rexomni_core/assets/examples/) from the nano world.

    python scripts/make_examples.py

Deterministic: the same seeds give the same images, so the checked-in files can be rebuilt and
compared at any time.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rexomni_core.data.samplers import sample_conversation
from rexomni_core.data.worlds import generate

OUT = Path(__file__).resolve().parents[1] / "rexomni_core" / "assets" / "examples"
SHAPES_SEEDS = (101, 102, 103)
# Picked among `few` seeds 301-330 where the shipped nano boxes every shape (14 of 30; a gallery shows what
# works; the model card gives the held-out numbers, where two-shape scenes often lose one shape).
FEW_SEEDS = (325, 318)
OTHER_SEEDS = (201, 202)


def _save(world: str, seed: int, split: str = "normal") -> tuple:
    scene = generate(world, seed, split)
    name = f"{world}_{seed}.png" if split == "normal" else f"{world}_{split}_{seed}.png"
    scene.image.save(OUT / name, optimize=True)
    return scene, name


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tabs = ("Detection", "Pointing", "Visual prompting", "OCR", "GUI grounding", "Keypoints")
    manifest: dict[str, list] = {tab: [] for tab in tabs}
    # One- or two-shape scenes first: where the nano model is reliable (model card).
    shapes = [_save("shapes", seed, "few") for seed in FEW_SEEDS] + [_save("shapes", seed) for seed in SHAPES_SEEDS]
    for scene, name in shapes:
        categories = ", ".join(dict.fromkeys(a.category for a in scene.annotations))
        manifest["Detection"].append([name, categories])
        manifest["Pointing"].append([name, scene.annotations[0].category])
        x0, y0, x1, y1 = scene.annotations[0].box
        box = {"xmin": round(x0), "ymin": round(y0), "xmax": round(x1), "ymax": round(y1), "label": "object"}
        manifest["Visual prompting"].append([{"image": name, "boxes": [box]}])
    for seed, shape in zip(OTHER_SEEDS, ("box", "polygon")):
        scene, name = _save("ocr", seed)
        manifest["OCR"].append([name, scene.annotations[0].category, shape])
        scene, name = _save("gui", seed)
        # The element named the way the GUI sampler names it ("Submit button", "settings icon").
        element = sample_conversation(scene, "gui_grounding", random.Random(seed)).phrases[0]
        manifest["GUI grounding"].append([name, element, shape if shape == "box" else "point"])
        scene, name = _save("keypoints", seed)
        manifest["Keypoints"].append([name, "person", "person"])
    (OUT / "examples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"examples written to {OUT}")


if __name__ == "__main__":
    main()
