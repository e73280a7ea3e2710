"""How long does `rexomni eval f1` take on COCO-scale data, against COCOeval?

Writes synthetic COCO ground truth and predictions to a temporary folder, then runs each
evaluator as its own process and measures that WHOLE process (interpreter start, imports, JSON
reading, scoring) and its peak resident memory (`os.wait4`'s rusage of that child alone):

- ours: `python -m rexomni_core.cli eval f1 --json` (all 10 IoU thresholds, sound protocol);
- pycocotools: COCO() + loadRes() + COCOeval(bbox).evaluate() + accumulate();
- faster-coco-eval: the same calls through its COCOeval_faster, when it is installed.

    python benchmarks/eval_speed.py                 # 5,000 images, ~35k GT, ~100k predictions
    python benchmarks/eval_speed.py --images 50     # a quick smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

COCOEVAL_SCRIPT = """
import sys, time
start = time.perf_counter()
{imports}
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
evaluator = COCOeval(gt, dt, "bbox")
evaluator.evaluate()
evaluator.accumulate()
print("evaluate+accumulate done", round(time.perf_counter() - start, 3), file=sys.stderr)
"""
IMPORTS = {
    "pycocotools": "from pycocotools.coco import COCO\nfrom pycocotools.cocoeval import COCOeval",
    "faster-coco-eval": "from faster_coco_eval import COCO\nfrom faster_coco_eval import COCOeval_faster as COCOeval",
}


def synthetic_coco(num_images: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """COCO-like statistics: ~7 GT per image over ~3 of 80 categories, ~1 % crowd, and ~20
    predictions per image (jittered copies of GT, duplicates, and false positives of present
    and absent categories), with scores."""
    rng = np.random.default_rng(seed)
    num_categories = 80
    images = [{"id": i + 1, "width": 640, "height": 480, "file_name": f"{i + 1}.jpg"} for i in range(num_images)]
    annotations, predictions = [], []

    def random_boxes(n):
        wh = rng.uniform(8, 200, size=(n, 2))
        xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([640, 480]) - wh)
        return np.hstack([xy, wh])

    for image in images:
        present = rng.choice(num_categories, size=rng.integers(1, 6), replace=False) + 1
        gt_categories = rng.choice(present, size=rng.poisson(6) + 1)
        gt_boxes = random_boxes(len(gt_categories))
        for k, box in zip(gt_categories, gt_boxes):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"], "category_id": int(k),
                "bbox": box.round(2).tolist(), "area": float(box[2] * box[3]), "iscrowd": int(rng.random() < 0.01),
            })
        copies = rng.integers(1, 4, size=len(gt_boxes))  # 1-3 predictions near each GT box
        near = np.repeat(gt_boxes, copies, axis=0) * rng.normal(1, 0.05, size=(copies.sum(), 4))
        near_categories = np.repeat(gt_categories, copies)
        num_false = rng.poisson(6)
        false_categories = np.where(rng.random(num_false) < 0.5, rng.choice(present, num_false), rng.integers(1, 81, num_false))
        boxes = np.vstack([near, random_boxes(num_false)])
        for k, box in zip(np.concatenate([near_categories, false_categories]), boxes):
            predictions.append({
                "image_id": image["id"], "category_id": int(k), "bbox": np.abs(box).round(2).tolist(),
                "score": round(float(rng.random()), 3),
            })
    categories = [{"id": k, "name": f"class{k}"} for k in range(1, num_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, predictions


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    peak_rss_mib: float
    note: str


def measure(name: str, command: list[str], env: dict[str, str]) -> Run:
    """Wall time and peak RSS of one child process (rusage of that child only)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed ({process.returncode}):\n{err[-2000:]}")
    note = (out.strip()[:80] if name == "rexomni eval f1" else err.strip().splitlines()[-1])
    return Run(name, seconds, usage.ru_maxrss / 1024, note)


def our_command() -> list[str]:
    """`rexomni eval f1`, the whole process, through the package's command dispatcher."""
    return [sys.executable, "-m", "rexomni_core.cli", "eval", "f1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(IMPORTS), help="evaluators to leave out")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as folder:
        gt, predictions = synthetic_coco(args.images)
        gt_path, pred_path = Path(folder) / "gt.json", Path(folder) / "pred.json"
        gt_path.write_text(json.dumps(gt))
        pred_path.write_text(json.dumps(predictions))
        print(f"{len(gt['images'])} images, {len(gt['annotations'])} GT boxes, {len(predictions)} predictions, "
              f"{len(gt['categories'])} categories")
        command = our_command()
        runs = [measure("rexomni eval f1", command + ["--gt", str(gt_path), "--pred", str(pred_path), "--json"], env)]
        print(f"ours: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(command))}")
        for name, imports in IMPORTS.items():
            module = imports.split()[1]
            if name in args.skip or importlib.util.find_spec(module.split(".")[0]) is None:
                print(f"{name}: not installed or skipped")
                continue
            script = COCOEVAL_SCRIPT.format(imports=imports)
            runs.append(measure(name, [sys.executable, "-c", script, str(gt_path), str(pred_path)], env))
    ours = runs[0]
    print(f"\n{'process':20}{'seconds':>10}{'peak RSS MiB':>15}{'time / ours':>13}")
    for run in runs:
        print(f"{run.name:20}{run.seconds:10.2f}{run.peak_rss_mib:15.0f}{run.seconds / ours.seconds:13.1f}")
    reference = next((run for run in runs if run.name == "pycocotools"), None)
    if reference is not None:
        fast_enough = ours.seconds * 20 <= reference.seconds
        lighter = ours.peak_rss_mib < reference.peak_rss_mib
        print(f"\ntarget vs pycocotools: time <= 1/20 {'met' if fast_enough else 'NOT met'}, "
              f"peak memory lower {'met' if lighter else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
