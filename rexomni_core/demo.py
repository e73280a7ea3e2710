"""The browser demo: one Gradio tab per task family, thin over `RexOmni.predict` and `viz.annotate`.

Every tab's Run button is also an API endpoint with a stable name (see `TAB_ENDPOINTS`), so
`gradio_client.Client(url).predict(..., api_name="/detect")` works. The model is loaded once; when
loading fails the page still opens and says why, and every Run answers with that message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Offline by default: the demo must start with no network (analytics and hub calls off).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
from gradio_image_annotation import image_annotator  # noqa: E402

from .regions import Prediction  # noqa: E402
from .tasks import KEYPOINT_SCHEMAS, OCR_GRANULARITIES, split_categories  # noqa: E402
from .viz import annotate  # noqa: E402

TAB_ENDPOINTS = {
    "Detection": "detect",
    "Pointing": "point",
    "Visual prompting": "visual_prompt",
    "OCR": "ocr",
    "GUI grounding": "gui_ground",
    "Keypoints": "keypoints",
}
EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"


@dataclass
class LoadedModel:
    """The model the demo serves, or why there is none."""

    model: Any | None
    name: str
    error: str | None = None


def load_model(name_or_path: str | None) -> LoadedModel:
    """Load a RexOmni model; on failure keep the message for the page instead of raising."""
    name = name_or_path or "Rex-Omni-nano (embedded)"
    try:
        from .model import RexOmni

        return LoadedModel(RexOmni.from_pretrained(name_or_path), name)
    except Exception as error:  # any failure becomes a message on the page, never a traceback
        return LoadedModel(None, name, f"{type(error).__name__}: {error}")


def run_prediction(
    loaded: LoadedModel,
    predict: Callable[..., Prediction],
    image,
    task: str,
    **inputs,
) -> tuple:
    """Run one task and return every output a tab shows."""
    if loaded.model is None:
        raise gr.Error(f"The model {loaded.name} could not be loaded: {loaded.error}")
    if image is None:
        raise gr.Error("Upload an image first (or click an example).")
    try:
        prediction = predict(image, task=task, **inputs)
    except ValueError as error:  # bad input: say which, in the page
        raise gr.Error(str(error)) from None
    return _outputs(image, prediction)


def _outputs(image, prediction: Prediction) -> tuple:
    has_scores = any(r.score is not None for r in prediction.regions)
    stats = (
        f"**{len(prediction.regions)}** regions · {prediction.seconds or 0:.2f} s · "
        f"{prediction.num_prompt_tokens or 0} prompt tokens · {prediction.num_output_tokens or 0} output tokens"
        + (f" · ⚠ {len(prediction.problems)} parse problems" if prediction.problems else "")
    )
    return (
        annotate(image, prediction),
        prediction.parsed_dict(),
        prediction.raw_text,
        prediction.prompt or "",
        stats,
        (image, prediction),
        gr.update(visible=has_scores, value=0),  # a new answer is shown whole
    )


def _rethreshold(state, min_score: float):
    if state is None:
        return None
    image, prediction = state
    return annotate(image, prediction, min_score=min_score)


def _result_panel():
    with gr.Column():
        annotated = gr.Image(label="Result", type="pil", format="png", interactive=False, elem_classes="result-image")
        threshold = gr.Slider(0, 1, value=0, step=0.01, label="Minimum confidence", visible=False)
        stats = gr.Markdown(label="Timing and tokens", elem_classes="result-stats")
        with gr.Accordion("Parsed regions (JSON)", open=False):
            parsed = gr.JSON(label="Parsed")
        raw = gr.Textbox(label="Raw model text", lines=3, buttons=["copy"], elem_classes="result-raw")
        prompt = gr.Textbox(label="Prompt sent", lines=2)
    state = gr.State(None)
    threshold.change(_rethreshold, [state, threshold], annotated, api_name=False, show_progress="hidden")
    return [annotated, parsed, raw, prompt, stats, state, threshold]


def _examples(tab: str) -> list[list]:
    """Example rows of a tab from assets/examples/examples.json; file names become paths."""
    manifest = EXAMPLES_DIR / "examples.json"
    if not manifest.exists():
        return []

    def resolve(value):
        if isinstance(value, dict) and "image" in value:
            return {**value, "image": str(EXAMPLES_DIR / value["image"])}
        if isinstance(value, str) and value.endswith(".png"):
            return str(EXAMPLES_DIR / value)
        return value

    return [[resolve(value) for value in row] for row in json.loads(manifest.read_text()).get(tab, [])]


def build_demo(loaded: LoadedModel, gpu: Callable[[Callable], Callable] | None = None) -> gr.Blocks:
    """The multi-tab app. `gpu` wraps the model call (e.g. `spaces.GPU` on ZeroGPU)."""
    predict = loaded.model.predict if loaded.model is not None else None
    if predict is not None and gpu is not None:
        predict = gpu(predict)

    def run(image, task, **inputs):
        return run_prediction(loaded, predict, image, task, **inputs)

    def detect(image, categories, progress=gr.Progress()):
        progress(0, desc="Detecting")
        return run(image, "detection", categories=split_categories(categories or "") or None)

    def point(image, categories, progress=gr.Progress()):
        progress(0, desc="Pointing")
        return run(image, "pointing", categories=split_categories(categories or "") or None)

    def visual_prompt(annotation, progress=gr.Progress()):
        progress(0, desc="Finding similar objects")
        annotation = annotation or {}
        boxes = [[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in annotation.get("boxes") or []]
        if annotation.get("image") is not None and not boxes:
            raise gr.Error("Draw at least one reference box on the image.")
        return run(annotation.get("image"), "visual_prompting", visual_prompt_boxes=boxes)

    def ocr(image, granularity, shape, progress=gr.Progress()):
        progress(0, desc="Reading text")
        task = "ocr_polygon" if shape == "polygon" else "ocr_box"
        return run(image, task, categories=[granularity])

    def gui_ground(image, element, mode, progress=gr.Progress()):
        progress(0, desc="Grounding")
        task = "gui_pointing" if mode == "point" else "gui_grounding"
        return run(image, task, categories=[element] if element and element.strip() else None)

    def keypoints(image, category, keypoint_type, progress=gr.Progress()):
        progress(0, desc="Finding keypoints")
        return run(image, "keypoint", categories=split_categories(category or "") or None, keypoint_type=keypoint_type)

    with gr.Blocks(title="Rex-Omni demo") as demo:
        gr.Markdown(
            "# Rex-Omni: detect anything by next point prediction\n"
            f"Model: **{loaded.name}**. Coordinates are written as tokens `<0>`…`<999>` and parsed back "
            "into regions in original-image pixels."
        )
        if loaded.error:
            gr.Markdown(f"⚠ **The model could not be loaded.** {loaded.error}", elem_id="load-error")
        _task_tab("Detection", detect, lambda: [
            gr.Image(label="Image", type="pil"),
            gr.Textbox(label="Categories or a referring phrase (comma separated)", value="red circle, blue star"),
        ])
        _task_tab("Pointing", point, lambda: [
            gr.Image(label="Image", type="pil"),
            gr.Textbox(label="Categories (comma separated)", value="green circle"),
        ])
        _task_tab("Visual prompting", visual_prompt, lambda: [
            image_annotator(label="Draw reference boxes", image_type="pil", label_list=["object"], use_default_label=True),
        ])
        _task_tab("OCR", ocr, lambda: [
            gr.Image(label="Image", type="pil"),
            gr.Radio(list(OCR_GRANULARITIES), value="word", label="Read"),
            gr.Radio(["box", "polygon"], value="box", label="As"),
        ])
        _task_tab("GUI grounding", gui_ground, lambda: [
            gr.Image(label="Screenshot", type="pil"),
            gr.Textbox(label="Element", value="Save button"),
            gr.Radio(["box", "point"], value="box", label="Answer with"),
        ])
        _task_tab("Keypoints", keypoints, lambda: [
            gr.Image(label="Image", type="pil"),
            gr.Textbox(label="Category", value="person"),
            gr.Dropdown(list(KEYPOINT_SCHEMAS), value="person", label="Keypoint schema"),
        ])
    return demo


def _task_tab(title: str, handler: Callable, make_inputs: Callable[[], list]) -> None:
    """One tab: the task's inputs and Run on the left, the result panel on the right."""
    with gr.Tab(title):
        with gr.Row():
            with gr.Column():
                inputs = make_inputs()
                button = gr.Button("Run", variant="primary")
            outputs = _result_panel()
        button.click(handler, inputs, outputs, api_name=TAB_ENDPOINTS[title])
        rows = _examples(title)
        if rows:
            gr.Examples(rows, inputs, label="Examples from the nano world")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Rex-Omni browser demo")
    parser.add_argument("--model", help="local checkpoint directory or hub id (default: the embedded Rex-Omni-nano)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs network)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.model is None or Path(args.model).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    loaded = load_model(args.model)
    if loaded.error:
        print(f"rexomni demo: the model {loaded.name} could not be loaded: {loaded.error}", file=sys.stderr)
    demo = build_demo(loaded)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)
