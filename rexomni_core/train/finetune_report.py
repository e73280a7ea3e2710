"""The report of a fine-tuning run: `DIR/report.md`, `DIR/metrics.json` and `DIR/plots/`.

Made from what the run wrote (metrics of both evaluations, the training log, the answers of the
validation images), so it is drawn again unchanged from a finished run. Plots: the training
loss, validation detection F1 at each measurement (step 0: the starting model; the last: the
final model on the whole validation split, the others on its first images), and a grid of
validation images: ground truth, the starting model's answer, the fine-tuned model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..coco import bbox_to_xyxy
from ..data.formats.atomic import staged_files
from ..regions import Box, Prediction, region_from_dict


def curve_points(curve_dir: Path) -> list[dict[str, Any]]:
    """The detection F1 measured during training, by step (`step-N/detection/metrics.json`)."""
    points = []
    for metrics_file in sorted(Path(curve_dir).glob("step-*/detection/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        step = int(metrics_file.parent.parent.name.split("-")[1])
        points.append({"step": step, "f1@0.5": metrics["f1@0.5"], "f1@miou": metrics["f1@miou"], "images": "curve"})
    return points


def write_report(out: Path, metrics: dict[str, Any], log_history: list[dict], val_dir: Path, eval_dir: Path,
                 samples: int) -> Path:
    """Write metrics.json, the plots and report.md into `out`; the path of report.md."""
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    drawn = [plot_loss(log_history, plots / "loss.png")]
    if metrics["curve"]:
        drawn.append(plot_curve(metrics["curve"], plots / "validation_f1.png"))
    task = "detection" if "detection" in metrics["tasks"] else metrics["tasks"][0]
    if samples:
        drawn.append(plot_samples(val_dir, eval_dir, task, samples, plots / "samples.png"))
    with staged_files() as staged:
        staged.path(out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        staged.path(out / "report.md").write_text(report_text(metrics, [path.relative_to(out) for path in drawn]))
    return out / "report.md"


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def report_text(metrics: dict[str, Any], plots: list[Path]) -> str:
    """The Markdown report: what was trained, the before/after table, per category, the plots."""
    minutes = metrics["training_minutes"]
    lines = [
        "# Fine-tuning report",
        "",
        f"- model: {metrics['model']}, {'LoRA (merged)' if metrics['lora'] else 'every weight'}; "
        f"result: `{metrics['final']}`",
        f"- data: `{metrics['data']}` ({metrics['format']}), {metrics['train_records']} training records, "
        f"{metrics['val_records']} validation records, {len(metrics['categories'])} categories",
        f"- tasks: {', '.join(metrics['tasks'])}",
        f"- training: {metrics['training']}",
        f"- trained {metrics['steps']} steps" + (f" in {minutes:g} minutes" if minutes is not None else ""),
        "",
        "## Before and after, on the validation split",
        "",
        "Each prompt asks for the categories its image holds (`rexomni eval run`, sound protocol).",
        "",
        "| task | metric | before | after | change |",
        "|---|---|---|---|---|",
    ]
    for task in metrics["tasks"]:
        before, after = metrics["before"][task], metrics["after"][task]
        names = list(metrics["headline_metrics"][task]) + (["AP"] if "AP" in before else [])
        for name in names:
            old, new = before.get(name), after.get(name)
            change = "—" if old is None or new is None else f"{new - old:+.3f}"
            lines.append(f"| {task} | {name} | {_number(old)} | {_number(new)} | {change} |")
    if any(metrics["before"][task].get("AP", 0) is None for task in metrics["tasks"]):
        lines += ["", "AP: not computed, as this model's answers carry no scores."]
    if "detection" in metrics["tasks"]:
        lines += ["", "## Detection per category", "",
                  "| category | objects | F1@0.5 before | F1@0.5 after | F1@mIoU before | F1@mIoU after |",
                  "|---|---|---|---|---|---|"]
        before, after = metrics["before"]["detection"]["per_category"], metrics["after"]["detection"]["per_category"]
        for name in metrics["categories"]:
            old, new = before.get(name, {}), after.get(name, {})
            objects = new.get("objects", old.get("objects", 0))
            lines.append(f"| {name} | {objects} | {_number(old.get('f1@0.5'))} | {_number(new.get('f1@0.5'))} | "
                         f"{_number(old.get('f1@miou'))} | {_number(new.get('f1@miou'))} |")
    lines += ["", "## Plots", ""] + [f"![{path.stem}]({path.as_posix()})" for path in plots]
    lines += ["", "## Use the model", "", "```bash",
              f"rexomni predict IMAGE --model {metrics['final']} --categories \"{', '.join(metrics['categories'][:2])}\"",
              f"python app.py --model {metrics['final']}", "```", ""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(log_history: list[dict], path: Path) -> Path:
    plt = _pyplot()
    steps = [entry["step"] for entry in log_history if "loss" in entry]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=110)
    axes.plot(steps, [entry["loss"] for entry in log_history if "loss" in entry])
    axes.set(xlabel="step", ylabel="training loss", title="Training loss")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_curve(curve: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=110)
    steps = [point["step"] for point in curve]
    for name in ("f1@0.5", "f1@miou"):
        axes.plot(steps, [point[name] for point in curve], marker="o", label=name)
    axes.set(xlabel="step", ylabel="validation detection F1", ylim=(0, 1), title="Validation F1 "
             "(first and last points: the whole split; between: its first images)")
    axes.title.set_fontsize(8)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _first_answers(answers_file: Path) -> dict[int, dict]:
    """The first answer of each image in an `eval run` answers file."""
    answers: dict[int, dict] = {}
    for line in answers_file.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            answers.setdefault(record["image_id"], record)
    return answers


def _prediction(answer: dict | None, width: float, height: float) -> Prediction:
    regions = [region_from_dict(r) for r in answer["prediction"]["regions"]] if answer else []
    return Prediction(regions, "", [], width, height)


def plot_samples(val_dir: Path, eval_dir: Path, task: str, samples: int, path: Path) -> Path:
    """A grid: one validation image a row; its ground truth, the answer before, the answer after."""
    from ..images import load_image
    from ..viz import annotate

    plt = _pyplot()
    coco = json.loads((val_dir / "annotations.json").read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    before = _first_answers(eval_dir / "before" / task / "answers.jsonl")
    after = _first_answers(eval_dir / "after" / task / "answers.jsonl")
    images = coco["images"][:samples]
    figure, axes = plt.subplots(len(images), 3, figsize=(9, 3 * len(images)), dpi=100, squeeze=False)
    for row, image in zip(axes, images):
        pixels = load_image(val_dir / image["file_name"])
        truth = [Box(names[a["category_id"]], bbox_to_xyxy(a["bbox"])) for a in coco["annotations"]
                 if a["image_id"] == image["id"]]
        panels = (
            ("ground truth", Prediction(truth, "", [], pixels.width, pixels.height)),
            ("before", _prediction(before.get(image["id"]), pixels.width, pixels.height)),
            ("after", _prediction(after.get(image["id"]), pixels.width, pixels.height)),
        )
        for axis, (title, prediction) in zip(row, panels):
            axis.imshow(annotate(pixels, prediction))
            axis.set_title(f"{title} ({len(prediction.regions)})", fontsize=9)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
