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
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Offline by default: the demo must start with no network (analytics and hub calls off).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
from gradio_image_annotation import image_annotator  # noqa: E402

from .errors import InputError, untrained_task_warnings_said_elsewhere  # noqa: E402
from .images import MAX_APP_SIDE, MAX_IMAGE_SIDE, MAX_UPLOAD_MB, MIN_IMAGE_SIDE, load_image  # noqa: E402
from .model.configuration import NANO_DIR, RELEASED_MODEL_ID  # noqa: E402
from .regions import Prediction, Region  # noqa: E402
from .tasks import (  # noqa: E402
    KEYPOINT_SCHEMAS,
    MAX_CATEGORIES,
    MAX_PHRASE_CHARS,
    OCR_GRANULARITIES,
    get_task,
    split_categories,
)
from .viz import annotate  # noqa: E402

TAB_ENDPOINTS = {
    "Detection": "detect",
    "Pointing": "point",
    "Visual prompting": "visual_prompt",
    "OCR": "ocr",
    "GUI grounding": "gui_ground",
    "Keypoints": "keypoints",
}
# The task a tab stands for, whose training the loaded model's config may deny (`tab_notice`).
TAB_TASKS = {
    "Detection": "detection",
    "Pointing": "pointing",
    "Visual prompting": "visual_prompting",
    "OCR": "ocr_box",
    "GUI grounding": "gui_grounding",
    "Keypoints": "keypoint",
}
EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"
# Where Gradio keeps answered examples; the app files them under the loaded weights' fingerprint.
EXAMPLES_CACHE_ROOT = Path(os.environ.get("GRADIO_EXAMPLES_CACHE", ".gradio/cached_examples"))


@dataclass
class LoadedModel:
    """The model the demo serves, or why there is none."""

    model: Any | None
    name: str
    error: str | None = None


def image_input(label: str = "Image") -> gr.Image:
    """An image upload. The tabs take the uploaded file itself (`preprocess=False`, see
    `_task_tab`) and read it with `images.load_image`, as the Python API and the CLI do."""
    return gr.Image(label=label, type="filepath")


# The choices of the tabs' radio buttons, checked by the handlers (they take raw values).
OCR_SHAPES = ("box", "polygon")
GUI_ANSWERS = ("box", "point")


def about_markdown(loaded: LoadedModel) -> str:
    """What the loaded model knows and what the app accepts, for the "About this model" panel."""
    limits = (
        f"**Limits**: images {MIN_IMAGE_SIDE}–{MAX_IMAGE_SIDE} pixels a side (larger than {MAX_APP_SIDE} "
        f"are answered downscaled), uploads up to {MAX_UPLOAD_MB} MB, at most {MAX_CATEGORIES} phrases of "
        f"{MAX_PHRASE_CHARS} characters a prompt."
    )
    if loaded.model is None:
        return limits
    if loaded.name != EMBEDDED_NAME:
        return (
            f"**{loaded.name}**: a Rex-Omni checkpoint; what it knows is in its model card "
            f"(the released one: https://huggingface.co/{RELEASED_MODEL_ID}).\n\n{limits}"
        )
    from .nano.vocabulary import COLOURS, SHAPES

    results = json.loads((NANO_DIR / "results.json").read_text())
    return (
        "**Rex-Omni-nano** is a 5 M-parameter Rex-Omni (the real Qwen2.5-VL architecture) trained from "
        "scratch on this project's synthetic shapes world, on 2 CPU cores. It knows only that world: "
        f"phrases are '<colour> <shape>' with colours {', '.join(COLOURS)} and shapes {', '.join(SHAPES)}.\n\n"
        "Held-out results (200 scenes each, sound protocol): "
        f"detection F1@0.5 **{results['few_detection']['f1@0.5']:.2f}** on scenes of 1–2 shapes and "
        f"**{results['detection']['f1@0.5']:.2f}** on scenes of 1–8; pointing F1 "
        f"{results['few_pointing']['f1@point']:.2f} / {results['pointing']['f1@point']:.2f}; visual prompting "
        f"F1@0.5 {results['visual_prompting']['f1@0.5']:.2f}. It was **never trained on OCR, GUI or keypoints**: "
        "those tabs show the interface and the answer format, not useful answers. The full table and how it "
        f"was trained: `rexomni_core/assets/nano/README.md`.\n\n{limits}"
    )


EMBEDDED_NAME = "Rex-Omni-nano (embedded)"


def weights_fingerprint(model) -> str:
    """A short hash of a RexOmni model's weights (names, shapes and the first values of every
    tensor): cheap even for the 3B, and different after any training step."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in model.model.state_dict().items():
        head = tensor.detach().reshape(-1)[:64].to("cpu", torch.float32)
        digest.update(f"{name}{tuple(tensor.shape)}".encode() + head.numpy().tobytes())
    return digest.hexdigest()[:16]


def use_examples_cache_of(model) -> Path:
    """Point Gradio's examples cache at a folder of this model's own. Gradio reuses a cached
    example whose folder exists, whatever model answered it, so a new checkpoint served from the
    same directory would otherwise show the old one's answers."""
    folder = EXAMPLES_CACHE_ROOT / weights_fingerprint(model)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder)
    return folder


def load_model(name_or_path: str | None) -> LoadedModel:
    """Load a RexOmni model; on failure keep the message for the page instead of raising."""
    name = name_or_path or EMBEDDED_NAME
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
    field: str = "Categories",
    **inputs,
) -> tuple:
    """Run one task and return every output a tab shows. `image` is the uploaded file (Gradio's
    file payload, or a path). A problem with the input comes back as one message naming the
    image or the tab's `field`, never a bare "Error"."""
    if loaded.model is None:
        raise gr.Error(f"The model {loaded.name} could not be loaded: {loaded.error}")
    if image is None:
        raise gr.Error("Upload an image first (or click an example).")
    image, scale, note = _working_image(image)
    if inputs.get("visual_prompt_boxes") and scale != 1:
        inputs["visual_prompt_boxes"] = [[v * scale for v in box] for box in inputs["visual_prompt_boxes"]]
    untrained = loaded.model.untrained_warning(task)
    try:
        with untrained_task_warnings_said_elsewhere():  # in the tab and beside the answer
            prediction = predict(image, task=task, **inputs)
    except InputError as error:  # the image was checked above: what is left is the tab's field
        raise gr.Error(f"{field}: {error}") from None
    except Exception as error:  # noqa: BLE001  anything else is ours: say so, with its cause
        raise gr.Error(f"The model failed on this input ({type(error).__name__}: {error}).") from None
    return _outputs(image, prediction, inputs.get("categories"), note, untrained)


def tab_notice(loaded: LoadedModel, title: str) -> str | None:
    """What a tab says above its inputs when the loaded model was never trained on its task."""
    if loaded.model is None:
        return None
    untrained = loaded.model.untrained_warning(TAB_TASKS[title])
    return None if untrained is None else f"⚠ **Not trained for this tab.** {untrained}"


def _working_image(upload):
    """The upload as the model and the result panel use it (8-bit RGB, EXIF applied, an animation's
    first frame), the scale applied to it, and a note: an image larger than MAX_APP_SIDE is shown
    and answered downscaled (the model reads it far smaller anyway), so its pixels stay in bounds.
    A file that is no usable image is refused as `images.load_image` refuses it, by the name the
    user gave it."""
    path, name = _uploaded_file(upload)
    try:
        image = load_image(path)
    except InputError as error:
        raise gr.Error(f"Image: {str(error).replace(path, name)}") from None
    if max(image.size) <= MAX_APP_SIDE:
        return image, 1.0, ""
    original = image.size
    image = image.copy()
    image.thumbnail((MAX_APP_SIDE, MAX_APP_SIDE))
    note = f"downscaled from {original[0]}×{original[1]} to {image.width}×{image.height}"
    return image, image.width / original[0], note


def _uploaded_file(upload) -> tuple[str, str]:
    """(path, the name the user knows it by) of an uploaded file: Gradio's payload (a dict with
    the stored `path` and the `orig_name`) or, from Python, a path."""
    if isinstance(upload, dict):
        path = upload.get("path")
        if not isinstance(path, str):
            raise gr.Error("Image: the upload arrived without its file; upload it again.")
        return path, upload.get("orig_name") or Path(path).name
    return str(upload), Path(upload).name


def reference_boxes(annotation: dict) -> list[list[float]]:
    """The annotator's boxes in image pixels: the browser sends them in its canvas's scale
    (`scaleFactor`); an API caller sends pixels. A box that is not four numbers is refused here;
    `tasks.visual_prompt_text` checks the numbers (finite, with area, inside the image)."""
    boxes = []
    for i, box in enumerate(annotation.get("boxes") or []):
        try:
            scale = float(box.get("scaleFactor", 1))
            boxes.append([float(box[key]) / scale for key in ("xmin", "ymin", "xmax", "ymax")])
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError):
            raise gr.Error(f"Reference boxes: box {i + 1} must be numbers xmin, ymin, xmax, ymax; got {box!r}") from None
    return boxes


def _choice(value, choices: tuple[str, ...], field: str) -> str:
    if value not in choices:
        raise gr.Error(f"{field}: {value!r} is not one of {', '.join(repr(c) for c in choices)}.")
    return value


def _outputs(image, prediction: Prediction, asked: list[str] | None, note: str = "",
             untrained: str | None = None) -> tuple:
    has_scores = any(r.score is not None for r in prediction.regions)
    summary = summary_markdown(prediction, asked, note)
    return (
        annotate(image, prediction),
        f"⚠ {untrained}\n\n{summary}" if untrained else summary,
        region_rows(prediction.regions),
        download_files(prediction),
        prediction.parsed_dict(),
        prediction.raw_text,
        prediction.prompt or "",
        (image, prediction),
        gr.update(visible=has_scores, value=0),  # a new answer is shown whole
    )


def summary_markdown(prediction: Prediction, asked: list[str] | None, note: str = "") -> str:
    """Found / not found per asked phrase, what was answered unasked, problems and timing."""
    lines = []
    if asked and get_task(prediction.task).family != "ocr":
        outcome = prediction.outcomes(asked)
        if outcome.found:
            lines.append(f"**Found** ({len(outcome.found)}): {', '.join(outcome.found)}")
        if outcome.not_found:
            lines.append(f"**Not found** ({len(outcome.not_found)}): {', '.join(outcome.not_found)}")
        if outcome.unasked:
            lines.append(f"**Answered without being asked** ({len(outcome.unasked)}): {', '.join(outcome.unasked)}")
    elif not prediction.regions:
        lines.append("**Nothing found.**")
    if prediction.problems:
        lines.append(
            f"⚠ The model's answer had {len(prediction.problems)} part(s) the parser could not read and left out: "
            + "; ".join(str(p) for p in prediction.problems[:3])
        )
    stats = (
        f"{len(prediction.regions)} region{'' if len(prediction.regions) == 1 else 's'} · {prediction.seconds or 0:.2f} s · "
        f"{prediction.num_prompt_tokens or 0} prompt tokens · {prediction.num_output_tokens or 0} output tokens"
    )
    lines.append(stats + (f" · image {note}" if note else ""))
    return "\n\n".join(lines)


REGION_COLUMNS = ["phrase", "kind", "coordinates (pixels)", "score"]


def region_rows(regions: list[Region]) -> list[list[Any]]:
    """One table row per region: coordinates rounded to a tenth of a pixel."""
    rows = []
    for region in regions:
        if region.kind == "keypoints":
            visible = sum(xy is not None for xy in region.coords.values())
            where = f"box {_rounded(region.bounds())}; {visible} visible keypoints"
        elif region.kind == "polygon":
            where = f"{len(region.vertices)} vertices; bounds {_rounded(region.bounds())}"
        else:
            where = _rounded(region.coords)
        score = "" if region.score is None else round(region.score, 3)
        rows.append([region.text or region.phrase, region.kind, where, score])
    return rows


def _rounded(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def download_files(prediction: Prediction) -> list[str]:
    """The answer as JSON (everything `rexomni predict --json` prints) and as COCO results
    (category ids in the order phrases appear); files in a temporary folder Gradio serves."""
    folder = Path(tempfile.mkdtemp(prefix="rexomni-answer-"))
    answer = folder / "answer.json"
    answer.write_text(json.dumps(prediction.to_dict(), indent=1))
    phrases = list(dict.fromkeys([*prediction.phrases, *(r.phrase for r in prediction.regions)]))
    coco = folder / "coco_results.json"
    records = prediction.to_coco(image_id=1, category_ids={p: i + 1 for i, p in enumerate(phrases)})
    categories = [{"id": i + 1, "name": p} for i, p in enumerate(phrases)]
    coco.write_text(json.dumps({"categories": categories, "results": records}, indent=1))
    return [str(answer), str(coco)]


def refilter(state, min_score: float, max_regions: float | None):
    """The shown answer with the confidence slider and the max-regions box applied: the held
    prediction is filtered (`Prediction.filtered`), the model is not run again."""
    if state is None:
        return None, []
    image, prediction = state
    cap = int(max_regions) if max_regions else None
    shown = prediction.filtered(score_threshold=min_score or None, max_regions=cap)
    return annotate(image, shown), region_rows(shown.regions)


def _result_panel():
    with gr.Column(scale=2):
        annotated = gr.Image(
            label="Result", type="pil", format="png", interactive=False, height=520, elem_classes="result-image"
        )
        with gr.Row():
            threshold = gr.Slider(0, 1, value=0, step=0.01, label="Minimum confidence", visible=False)
            max_regions = gr.Number(value=None, minimum=1, precision=0, label="Show at most (regions)")
        summary = gr.Markdown(elem_classes="result-stats")
        table = gr.Dataframe(headers=REGION_COLUMNS, label="Regions", interactive=False, wrap=True)
        files = gr.File(label="Download the answer (JSON, COCO results)", file_count="multiple", interactive=False)
        with gr.Accordion("Parsed regions (JSON)", open=False):
            parsed = gr.JSON(label="Parsed")
        raw = gr.Textbox(label="Raw model text", lines=3, buttons=["copy"], elem_classes="result-raw")
        prompt = gr.Textbox(label="Prompt sent", lines=2)
    state = gr.State(None)
    for control in (threshold, max_regions):
        control.change(refilter, [state, threshold, max_regions], [annotated, table], api_name=False,
                       show_progress="hidden")
    return [annotated, summary, table, files, parsed, raw, prompt, state, threshold]


def example_rows(tab: str) -> list[list]:
    """Example rows of a tab from assets/examples/examples.json (made by scripts/make_examples.py),
    file names made paths."""
    manifest = EXAMPLES_DIR / "examples.json"
    if not manifest.exists():
        return []
    return [resolve_example(row) for row in json.loads(manifest.read_text()).get(tab, [])]


def resolve_example(row: list, folder: Path = EXAMPLES_DIR) -> list:
    """A manifest row with its image file names (alone, or in an annotator's value) made paths in `folder`."""

    def resolve(value):
        if isinstance(value, dict) and "image" in value:
            return {**value, "image": str(folder / value["image"])}
        if isinstance(value, str) and value.endswith(".png"):
            return str(folder / value)
        return value

    return [resolve(value) for value in row]


def build_demo(
    loaded: LoadedModel, gpu: Callable[[Callable], Callable] | None = None, cache_examples: bool = False
) -> gr.Blocks:
    """The multi-tab app. `gpu` wraps the model call (e.g. `spaces.GPU` on ZeroGPU).
    `cache_examples` answers every example once at start-up, so clicking one shows its result
    at once (the launchers turn it on; tests leave it off)."""
    cache = cache_examples and loaded.model is not None
    if cache:
        use_examples_cache_of(loaded.model)
    predict = loaded.model.predict if loaded.model is not None else None
    if predict is not None and gpu is not None:
        predict = gpu(predict)

    def run(image, task, **inputs):
        return run_prediction(loaded, predict, image, task, **inputs)

    def phrases(text: str | None, field: str, example: str) -> list[str]:
        found = split_categories(text) if isinstance(text, str) else []
        if not found:
            raise gr.Error(f"{field}: type what to look for, e.g. '{example}'.")
        return found

    def detect(image, categories, progress=gr.Progress()):
        progress(0, desc="Detecting")
        return run(image, "detection", categories=phrases(categories, "Categories", "red circle, blue star"))

    def point(image, categories, progress=gr.Progress()):
        progress(0, desc="Pointing")
        return run(image, "pointing", categories=phrases(categories, "Categories", "green circle"))

    def visual_prompt(annotation, progress=gr.Progress()):
        progress(0, desc="Finding similar objects")
        annotation = annotation if isinstance(annotation, dict) else {}
        boxes = reference_boxes(annotation)
        if annotation.get("image") is not None and not boxes:
            raise gr.Error("Reference boxes: draw at least one box around an example object on the image.")
        return run(annotation.get("image"), "visual_prompting", field="Reference boxes", visual_prompt_boxes=boxes)

    def ocr(image, granularity, shape, progress=gr.Progress()):
        progress(0, desc="Reading text")
        task = "ocr_polygon" if _choice(shape, OCR_SHAPES, "As") == "polygon" else "ocr_box"
        return run(image, task, field="Read", categories=[_choice(granularity, OCR_GRANULARITIES, "Read")])

    def gui_ground(image, element, mode, progress=gr.Progress()):
        progress(0, desc="Grounding")
        task = "gui_pointing" if _choice(mode, GUI_ANSWERS, "Answer with") == "point" else "gui_grounding"
        element = phrases(element, "Element", "Save button")
        return run(image, task, field="Element", categories=[", ".join(element)])

    def keypoints(image, category, keypoint_type, progress=gr.Progress()):
        progress(0, desc="Finding keypoints")
        category = phrases(category, "Category", "person")
        keypoint_type = _choice(keypoint_type, tuple(KEYPOINT_SCHEMAS), "Keypoint schema")
        return run(image, "keypoint", field="Category", categories=category, keypoint_type=keypoint_type)

    with gr.Blocks(title="Rex-Omni demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Rex-Omni: detect anything by next point prediction\n"
            f"Model: **{loaded.name}**. Coordinates are written as tokens `<0>`…`<999>` and parsed back "
            "into regions in original-image pixels."
        )
        if loaded.error:
            gr.Markdown(f"⚠ **The model could not be loaded.** {loaded.error}", elem_id="load-error")
        with gr.Accordion("About this model", open=False):
            gr.Markdown(about_markdown(loaded), elem_id="about-model")
        _task_tab("Detection", tab_notice(loaded, "Detection"), detect, cache, lambda: [
            image_input(),
            gr.Textbox(label="Categories or a referring phrase (comma separated)", value="red circle, blue star",
                       info="What to find, comma separated. The nano knows '<colour> <shape>' (About this model)."),
        ])
        _task_tab("Pointing", tab_notice(loaded, "Pointing"), point, cache, lambda: [
            image_input(),
            gr.Textbox(label="Categories (comma separated)", value="green circle",
                       info="One point per object found, for each phrase."),
        ])
        _task_tab("Visual prompting", tab_notice(loaded, "Visual prompting"), visual_prompt, cache, lambda: [
            image_annotator(label="Draw reference boxes", image_type="filepath", label_list=["object"],
                            use_default_label=True),
        ])
        _task_tab("OCR", tab_notice(loaded, "OCR"), ocr, cache, lambda: [
            image_input(),
            gr.Radio(list(OCR_GRANULARITIES), value="word", label="Read"),
            gr.Radio(list(OCR_SHAPES), value="box", label="As"),
        ])
        _task_tab("GUI grounding", tab_notice(loaded, "GUI grounding"), gui_ground, cache, lambda: [
            image_input("Screenshot"),
            gr.Textbox(label="Element", value="Save button", info="The label and kind of one element, e.g. 'Save button'."),
            gr.Radio(list(GUI_ANSWERS), value="box", label="Answer with"),
        ])
        _task_tab("Keypoints", tab_notice(loaded, "Keypoints"), keypoints, cache, lambda: [
            image_input(),
            gr.Textbox(label="Category", value="person"),
            gr.Dropdown(list(KEYPOINT_SCHEMAS), value="person", label="Keypoint schema"),
        ])
    return demo


def _task_tab(title: str, notice: str | None, handler: Callable, cache: bool, make_inputs: Callable[[], list]) -> None:
    """One tab: the task's inputs and Run on the left, the result panel on the right.

    The handler takes the inputs as they arrive (`preprocess=False`: the uploaded file, the text,
    the chosen value), so every check is the app's own and its message names the field; Gradio's
    preprocessing would refuse an unreadable file, a NaN box or an unknown choice with a message
    about its component instead (uploads are still kept to Gradio's upload folder)."""
    with gr.Tab(title):
        if notice:
            gr.Markdown(notice, elem_classes="untrained-task")
        with gr.Row():
            with gr.Column():
                inputs = make_inputs()
                button = gr.Button("Run", variant="primary")
            outputs = _result_panel()
        button.click(handler, inputs, outputs, api_name=TAB_ENDPOINTS[title], preprocess=False)
        rows = example_rows(title)
        if rows:
            _gallery(rows, inputs, outputs, handler, cache)


def _gallery(rows: list[list], inputs: list, outputs: list, handler: Callable, cache: bool) -> None:
    """A tab's examples. A row one value longer than the inputs ends with a thumbnail, which the
    gallery shows in place of the inputs: the annotator's own gallery cell shows the image without
    its reference boxes. Clicking loads every column (the thumbnail into a hidden image)."""
    columns, shown, answer = inputs, None, handler
    if len(rows[0]) > len(inputs):
        columns = [*inputs, gr.Image(label="Reference boxes", type="filepath", visible=False)]
        shown = [len(inputs)]

        def answer(*values):  # the thumbnail is for the eye only
            return handler(*values[:-1])

    gr.Examples(rows, columns, outputs=outputs, fn=answer, cache_examples=cache, visible_columns=shown,
                preprocess=False, label="Examples from the nano world")


# One model answers one request at a time (a CPU, or one GPU); up to 16 more wait in line and see
# their place in it, so the longest request the input limits allow (24 s on 2 cores) keeps the
# last in line at most ~6 min; a 17th is told the queue is full at once rather than wait ~25 min.
# Uploads are capped, and an unexpected failure shows its message.
QUEUE_OPTIONS = {"default_concurrency_limit": 1, "max_size": 16}
LAUNCH_OPTIONS = {"max_file_size": f"{MAX_UPLOAD_MB}mb", "show_error": True}


def serve(demo: gr.Blocks) -> gr.Blocks:
    """The app with its queue set as every launcher (this module, the Space) runs it."""
    return demo.queue(**QUEUE_OPTIONS)


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
    demo = serve(build_demo(loaded, cache_examples=True))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)
