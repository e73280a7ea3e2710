"""Regenerate the demo's example galleries (rexomni_core/assets/examples/) from the nano world.

    python scripts/make_examples.py

Every shapes example (detection, pointing, visual prompting) is one the shipped nano answers
correctly through the app's own handler (`answered_correctly`): candidate seeds are tried in
order and the first that pass are kept, so a gallery shows what works; the model card gives the
held-out numbers. `ground_truth.json` keeps the true regions of those examples, so
tests/test_app.py can check that the app still answers them. A visual-prompting example also
ships a thumbnail with its reference box drawn, which the gallery shows in place of the plain
image. The nano decodes greedily, so the same model gives the same picks and the same files.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import ImageDraw

from rexomni_core.annotations import Scene
from rexomni_core.data.samplers import VISUAL_PROMPT_PHRASE, sample_conversation
from rexomni_core.data.worlds import generate
from rexomni_core.geometry import box_iou, inside, one_to_one
from rexomni_core.regions import Box, Point, Prediction

OUT = Path(__file__).resolve().parents[1] / "rexomni_core" / "assets" / "examples"
GROUND_TRUTH = "ground_truth.json"
# One- or two-shape scenes (`few`) first, where the nano is reliable (model card), then fuller ones.
CANDIDATE_SEEDS = {"few": range(301, 361), "normal": range(101, 201)}
PICKS = {"few": 2, "normal": 3}
OTHER_SEEDS = (201, 202)
MIN_IOU = 0.5


def answered_correctly(prediction: Prediction, truth: list[dict]) -> bool:
    """Every true object answered once and nothing else: regions and truth pair one-to-one within
    a phrase, a box at IoU >= MIN_IOU, a point inside the true box."""
    regions = prediction.regions
    quality = [[_match(region, Box(t["phrase"], t["box"])) for t in truth] for region in regions]
    return len(regions) == len(truth) and len(one_to_one(quality)) == len(truth) if truth else not regions


def _match(region: Box | Point, target: Box) -> float:
    if region.phrase != target.phrase:
        return 0.0
    if isinstance(region, Point):
        return float(inside(tuple(region.coords), target))
    iou = box_iou(region.coords, target.coords)
    return iou if iou >= MIN_IOU else 0.0


def app_handlers(demo) -> dict[str, Callable]:
    """The Run function of every tab of a built demo (`demo.build_demo`), by tab title."""
    from rexomni_core.demo import TAB_ENDPOINTS

    by_endpoint = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    return {tab: by_endpoint[endpoint] for tab, endpoint in TAB_ENDPOINTS.items()}


def app_prediction(handler: Callable, row: list) -> Prediction:
    """What the app answers to one gallery row (paths resolved), as the Prediction the result
    panel holds. A row may end with a thumbnail beyond the tab's inputs (`demo._gallery`)."""
    inputs = [p for p in inspect.signature(handler).parameters.values() if p.default is p.empty]
    _, prediction = handler(*row[: len(inputs)])[7]  # the panel's state: (image, prediction)
    return prediction


def _truth(annotations) -> list[dict]:
    return [{"phrase": a.category, "box": [round(v, 2) for v in a.box]} for a in annotations]


def detection_example(scene: Scene, name: str) -> tuple[list, list[dict]]:
    categories = ", ".join(dict.fromkeys(a.category for a in scene.annotations))
    return [name, categories], _truth(scene.annotations)


def pointing_example(scene: Scene, name: str) -> tuple[list, list[dict]]:
    category = scene.annotations[0].category
    return [name, category], _truth(a for a in scene.annotations if a.category == category)


def visual_prompting_example(scene: Scene, name: str) -> tuple[list, list[dict]]:
    """One reference box on the category with the most instances (finding the others is the
    task), every instance of it the truth; the thumbnail is added by `_with_thumbnail`."""
    categories = [a.category for a in scene.annotations]
    category = max(dict.fromkeys(categories), key=categories.count)
    instances = [a for a in scene.annotations if a.category == category]
    x0, y0, x1, y1 = instances[0].box
    box = {"xmin": round(x0), "ymin": round(y0), "xmax": round(x1), "ymax": round(y1), "label": "object"}
    truth = [{"phrase": VISUAL_PROMPT_PHRASE, "box": t["box"]} for t in _truth(instances)]
    return [{"image": name, "boxes": [box]}], truth


SHAPES_TABS = {
    "Detection": detection_example,
    "Pointing": pointing_example,
    "Visual prompting": visual_prompting_example,
}


def _with_thumbnail(row: list, scene: Scene, folder: Path) -> list:
    """The row with a gallery thumbnail (the annotator's own gallery cell shows the image alone):
    the scene with each reference box outlined just outside it, thick enough to see at gallery
    size (about 60 pixels wide), white edged in black to show on any background."""
    (value,) = row
    image = scene.image.copy()
    draw = ImageDraw.Draw(image)
    band = max(3, round(min(image.size) / 40))
    for box in value["boxes"]:
        x0, y0, x1, y1 = box["xmin"], box["ymin"], box["xmax"], box["ymax"]
        draw.rectangle([x0 - band, y0 - band, x1 + band - 1, y1 + band - 1], outline="black", width=band)
        draw.rectangle([x0 - band + 1, y0 - band + 1, x1 + band - 2, y1 + band - 2], outline="white", width=band - 2)
    thumbnail = value["image"].replace(".png", "_reference.png")
    image.save(folder / thumbnail, optimize=True)
    return [value, thumbnail]


def _save(scene: Scene, folder: Path) -> str:
    name = f"{scene.world}_{scene.seed}.png" if scene.split == "normal" else f"{scene.world}_{scene.split}_{scene.seed}.png"
    if not (folder / name).exists():
        scene.image.save(folder / name, optimize=True)
    return name


def _passing_scenes(tab: str, split: str, handler: Callable, scratch: Path) -> Iterator[Scene]:
    """The candidate scenes of `split`, in seed order, whose `tab` example the app answers correctly."""
    from rexomni_core.demo import resolve_example

    for seed in CANDIDATE_SEEDS[split]:
        scene = generate("shapes", seed, split)
        row, truth = SHAPES_TABS[tab](scene, _save(scene, scratch))
        if answered_correctly(app_prediction(handler, resolve_example(row, scratch)), truth):
            yield scene


def pick_shapes_examples(folder: Path, handlers: dict[str, Callable]) -> tuple[dict, dict]:
    """Per shapes tab, the first PICKS candidate scenes of each split the app answers correctly."""
    manifest: dict[str, list] = {tab: [] for tab in SHAPES_TABS}
    truths: dict[str, list] = {tab: [] for tab in SHAPES_TABS}
    with tempfile.TemporaryDirectory(prefix="rexomni-examples-") as scratch:
        for tab, make_example in SHAPES_TABS.items():
            for split, count in PICKS.items():
                scenes = list(itertools.islice(_passing_scenes(tab, split, handlers[tab], Path(scratch)), count))
                if len(scenes) < count:
                    raise SystemExit(f"{tab}: only {len(scenes)} of the {split} seeds {CANDIDATE_SEEDS[split]} "
                                     "are answered correctly")
                print(f"{tab}: {split} seeds {[scene.seed for scene in scenes]}")
                for scene in scenes:
                    row, truth = make_example(scene, _save(scene, folder))
                    manifest[tab].append(_with_thumbnail(row, scene, folder) if tab == "Visual prompting" else row)
                    truths[tab].append(truth)
    return manifest, truths


def other_examples(folder: Path) -> dict[str, list]:
    """OCR, GUI and keypoint examples: the nano was never trained on these (model card), so they
    show the interface and the answer format, not picked answers."""
    manifest: dict[str, list] = {"OCR": [], "GUI grounding": [], "Keypoints": []}
    for seed, shape in zip(OTHER_SEEDS, ("box", "polygon")):
        scene = generate("ocr", seed)
        manifest["OCR"].append([_save(scene, folder), scene.annotations[0].category, shape])
        scene = generate("gui", seed)
        # The element named the way the GUI sampler names it ("Submit button", "settings icon").
        element = sample_conversation(scene, "gui_grounding", random.Random(seed)).phrases[0]
        manifest["GUI grounding"].append([_save(scene, folder), element, shape if shape == "box" else "point"])
        manifest["Keypoints"].append([_save(generate("keypoints", seed), folder), "person", "person"])
    return manifest


def main() -> None:
    # Staged in a sibling folder and swapped in whole: a failed run leaves the shipped gallery as it was.
    staging = OUT.with_name(OUT.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    from rexomni_core.demo import build_demo, load_model

    manifest, truths = pick_shapes_examples(staging, app_handlers(build_demo(load_model(None))))
    manifest.update(other_examples(staging))
    (staging / "examples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (staging / GROUND_TRUTH).write_text(json.dumps(truths, indent=1) + "\n")
    previous = OUT.with_name(OUT.name + ".old")
    if OUT.exists():
        os.replace(OUT, previous)
    os.replace(staging, OUT)
    shutil.rmtree(previous, ignore_errors=True)
    print(f"examples written to {OUT}")


if __name__ == "__main__":
    main()
