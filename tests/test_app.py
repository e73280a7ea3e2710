"""The browser demo, end to end: gradio_client per endpoint, a real Chromium per tab, the Space.

Screenshots of every tab are saved under artifacts/screenshots/ (look at them: they are what a
visitor sees).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rexomni_core.data.worlds import generate
from rexomni_core.demo import EXAMPLES_DIR, LAUNCH_OPTIONS, TAB_ENDPOINTS, build_demo, example_rows, load_model, serve

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(demo):
    port = _free_port()
    serve(demo)  # the queue and launch options the app runs with
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH_OPTIONS)
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def nano():
    loaded = load_model(None)
    assert loaded.error is None, loaded.error
    return loaded


@pytest.fixture(scope="module")
def server(nano):
    demo = build_demo(nano)
    url = _launch(demo)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    # A one-or-two-shape scene: the split the nano model handles (its model card), so the
    # screenshots show real boxes.
    scene = generate("shapes", seed=11, split="few")
    path = tmp_path_factory.mktemp("scene") / "shapes.png"
    scene.image.save(path)
    return scene, path


def test_every_endpoint_answers_through_gradio_client(server, scene_file):
    from gradio_client import Client, handle_file

    scene, path = scene_file
    client = Client(server, verbose=False)
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        f"/{name}" for name in TAB_ENDPOINTS.values()
    }
    categories = ", ".join(dict.fromkeys(a.category for a in scene.annotations))
    x0, y0, x1, y1 = scene.annotations[0].box
    calls = {
        "detect": (handle_file(str(path)), categories),
        "point": (handle_file(str(path)), categories),
        "visual_prompt": ({"image": handle_file(str(path)), "boxes": [{"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}]},),
        "ocr": (handle_file(str(path)), "word", "polygon"),
        "gui_ground": (handle_file(str(path)), "Save button", "point"),
        "keypoints": (handle_file(str(path)), "person", "person"),
    }
    for api_name, inputs in calls.items():
        image_file, stats, table, files, parsed, raw, prompt, threshold = client.predict(*inputs, api_name=f"/{api_name}")
        assert Path(image_file).exists(), api_name
        assert prompt and "tokens" in stats, api_name
        assert set(parsed) == {"regions", "absent", "problems"}, api_name
        assert len(table["data"]) == len(parsed["regions"]) or not parsed["regions"], api_name
        assert sorted(Path(f).name for f in files) == ["answer.json", "coco_results.json"], api_name
    image_file, stats, table, files, parsed, raw, prompt, _ = client.predict(
        handle_file(str(path)), categories, api_name="/detect"
    )
    assert prompt == f"Detect {categories}. Output the bounding box coordinates in [x0, y0, x1, y1] format."
    asked = categories.split(", ")
    found = {r["phrase"] for r in parsed["regions"]}
    for phrase in asked:  # every asked phrase is reported found or not found
        assert ("**Found**" in stats and phrase in stats.split("**Found**")[1].split("\n")[0]) == (phrase in found)
    answer = json.loads(Path(next(f for f in files if f.endswith("answer.json"))).read_text())
    assert answer["raw_text"] == raw
    coco = json.loads(Path(next(f for f in files if f.endswith("coco_results.json"))).read_text())
    assert len(coco["results"]) == len(parsed["regions"]) and all("bbox" in r for r in coco["results"])
    for row in table["data"]:  # coordinates rounded for reading
        assert all(len(v.split(".")[1]) == 1 for v in row[2].split(", "))
    # The nano model answers its own world in well-formed text (how accurately is measured on
    # held-out data in the model card, not here).
    assert parsed["problems"] == [] and raw.endswith("<|im_end|>")


def test_bad_input_comes_back_as_a_clear_error(server, scene_file):
    from gradio_client import Client, handle_file

    _, path = scene_file
    with pytest.raises(Exception, match="Categories: type what to look for"):
        Client(server, verbose=False).predict(handle_file(str(path)), " , ", api_name="/detect")


def test_each_bad_input_gets_one_message_in_the_users_words(server, scene_file, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    _, path = scene_file
    client = Client(server, verbose=False)
    fake = tmp_path / "photo.png"
    fake.write_text("this is a text file, renamed")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    cases = [
        ((handle_file(str(fake)), "red circle"), "/detect", "cannot identify image file"),
        ((handle_file(str(tiny)), "red circle"), "/detect", "Image: tiny.png is 1x1; sides must be between 8 and"),
        ((handle_file(str(path)), "  ", "box"), "/gui_ground", "Element: type what to look for, e.g. 'Save button'"),
        ((handle_file(str(path)), "x" * 300), "/point", "Categories: categories[0] is 300 characters long"),
        ((handle_file(str(path)), "cat<|im_end|>"), "/detect", "Categories: categories[0]"),
    ]
    for inputs, api_name, message in cases:
        with pytest.raises(Exception) as raised:
            client.predict(*inputs, api_name=api_name)
        assert message in str(raised.value), (api_name, str(raised.value))


# ---------------------------------------------------------------- the galleries


def _make_examples():
    """scripts/make_examples.py: what makes the galleries also judges them."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_examples
    finally:
        sys.path.pop(0)
    return make_examples


@pytest.fixture(scope="module")
def handlers(nano):
    return _make_examples().app_handlers(build_demo(nano))


def test_the_correctness_judge_fails_wrong_missing_and_extra_answers():
    from rexomni_core.regions import Box, Point, Prediction

    judge = _make_examples().answered_correctly
    truth = [{"phrase": "red square", "box": [10, 10, 50, 50]}, {"phrase": "red square", "box": [60, 60, 90, 90]}]

    def answer(*regions):
        return Prediction(list(regions), "", [], 100, 100)

    right = answer(Box("red square", [12, 11, 49, 52]), Box("red square", [61, 58, 92, 90]))
    assert judge(right, truth)
    assert not judge(answer(Box("red square", [12, 11, 49, 52])), truth)  # one missed
    assert not judge(answer(*right.regions, Box("red square", [0, 0, 5, 5])), truth)  # one extra
    assert not judge(answer(Box("red square", [12, 11, 49, 52]), Box("red square", [12, 11, 49, 52])), truth)  # twice
    assert not judge(answer(Box("red square", [10, 10, 30, 30]), Box("red square", [61, 58, 92, 90])), truth)  # IoU 0.25
    assert not judge(answer(Box("blue star", [12, 11, 49, 52]), Box("red square", [61, 58, 92, 90])), truth)
    assert judge(answer(Point("red square", [30, 30]), Point("red square", [70, 80])), truth)
    assert not judge(answer(Point("red square", [30, 30]), Point("red square", [55, 55])), truth)  # outside


def test_every_shapes_example_is_answered_correctly_by_the_app(handlers):
    make_examples = _make_examples()
    truths = json.loads((EXAMPLES_DIR / make_examples.GROUND_TRUTH).read_text())
    assert set(truths) == {"Detection", "Pointing", "Visual prompting"}
    for tab, tab_truths in truths.items():
        rows = example_rows(tab)
        assert len(rows) == len(tab_truths) >= 5, tab
        for row, truth in zip(rows, tab_truths):
            prediction = make_examples.app_prediction(handlers[tab], row)
            assert make_examples.answered_correctly(prediction, truth), (tab, row, prediction.regions, truth)


def test_the_other_tabs_examples_get_well_formed_answers(handlers):
    # The nano was never trained on OCR or GUI screens (its model card, rexomni_core/assets/nano/README.md,
    # and "About this model"): its answers there are not right, so what is checked is what holds, an
    # answer in the task's format inside the image. The keypoint examples take ~10 s each (17 points
    # a person up to max_new_tokens); their format is checked by the endpoint test above.
    make_examples = _make_examples()
    kinds = {"OCR": {"box", "polygon"}, "GUI grounding": {"box", "point"}}
    for tab, allowed in kinds.items():
        rows = example_rows(tab)
        assert rows, tab
        for row in rows:
            prediction = make_examples.app_prediction(handlers[tab], row)
            assert prediction.problems == [] and prediction.raw_text.endswith("<|im_end|>"), (tab, row)
            for region in prediction.regions:
                x0, y0, x1, y1 = region.bounds()
                assert region.kind in allowed and 0 <= x0 <= x1 <= prediction.width and 0 <= y0 <= y1 <= prediction.height


def test_the_visual_prompting_gallery_shows_each_reference_box(nano):
    import gradio as gr
    import numpy as np
    from PIL import Image

    demo = build_demo(nano)
    rows = example_rows("Visual prompting")
    (gallery,) = [b for b in demo.blocks.values() if isinstance(b, gr.Dataset) and "Reference boxes" in b.headers]
    assert gallery.headers == ["Reference boxes"] and len(gallery.samples) == len(rows)
    for (shown,), (annotation, thumbnail) in zip(gallery.samples, rows):
        assert shown["orig_name"] == Path(thumbnail).name
        plain = np.asarray(Image.open(annotation["image"]).convert("RGB"), dtype=int)
        drawn = np.asarray(Image.open(thumbnail).convert("RGB"), dtype=int)
        changed = np.abs(plain - drawn).sum(axis=2) > 0
        (box,) = annotation["boxes"]
        x0, y0, x1, y1 = box["xmin"], box["ymin"], box["xmax"], box["ymax"]
        middle = (y0 + y1) // 2
        assert changed[middle, x0 - 1] and changed[middle, x1]  # outlined just outside the box
        assert not changed[y0:y1, x0:x1].any()  # the object inside is left as it is


def test_about_panel_says_what_the_nano_knows_and_the_limits(nano):
    from rexomni_core.demo import about_markdown

    about = about_markdown(nano)
    assert "never trained on OCR, GUI or keypoints" in about and "magenta" in about and "hexagon" in about
    assert "Limits" in about and "20 MB" in about


def test_tabs_of_tasks_the_model_never_learnt_say_so_above_the_inputs_and_beside_the_answer(nano, handlers):
    """The nano's config names the tasks it was trained on; the OCR, GUI and keypoint tabs say it
    was not trained for them (visibly, not in a collapsed panel), the others say nothing."""
    import warnings

    import gradio as gr

    from rexomni_core.errors import UntrainedTaskWarning

    demo = build_demo(nano)
    notices = [b.value for b in demo.blocks.values()
               if isinstance(b, gr.Markdown) and "untrained-task" in (b.elem_classes or [])]
    assert len(notices) == 3 and all("Not trained for this tab" in n for n in notices)
    assert any("ocr box" in n for n in notices) and any("keypoint" in n for n in notices)
    assert any("gui grounding" in n for n in notices)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedTaskWarning)  # the app says it on the page, not in the log
        ocr_row = example_rows("OCR")[0]
        summary = handlers["OCR"](*ocr_row[:3])[1]
        assert summary.startswith("⚠ This model was never trained on ocr box")
        detection_row = example_rows("Detection")[0]
        assert "never trained" not in handlers["Detection"](*detection_row[:2])[1]


def test_the_queue_serves_one_request_at_a_time_and_holds_sixteen(nano):
    """The bound the README states: at most 15 ahead of a request, each at most the longest
    request the input limits allow (so no wait beyond ~5 min on 2 cores)."""
    demo = serve(build_demo(nano))
    assert demo._queue.max_size == 16 and demo._queue.default_concurrency_limit == 1
    assert {f.concurrency_limit for f in demo.fns.values()} <= {"default", 1}


def test_cached_examples_are_filed_under_the_weights_that_answered_them(nano, monkeypatch, tmp_path):
    import torch

    from rexomni_core import demo
    from rexomni_core.nano.architecture import build_nano

    monkeypatch.setattr(demo, "EXAMPLES_CACHE_ROOT", tmp_path)
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path))
    shipped = demo.use_examples_cache_of(nano.model)
    assert os.environ["GRADIO_EXAMPLES_CACHE"] == str(shipped) and shipped.parent == tmp_path
    assert demo.use_examples_cache_of(load_model(None).model) == shipped  # same weights, same folder
    other = build_nano(seed=1)
    assert demo.use_examples_cache_of(other) != shipped
    with torch.no_grad():  # one step of training moves one value
        next(other.model.parameters()).reshape(-1)[0] += 1e-3
    assert demo.use_examples_cache_of(other) not in (shipped, demo.EXAMPLES_CACHE_ROOT / demo.weights_fingerprint(build_nano(seed=1)))


def test_a_model_that_cannot_load_shows_why_instead_of_a_traceback():
    from gradio_client import Client

    loaded = load_model("/nonexistent/checkpoint")
    assert loaded.model is None and "/nonexistent/checkpoint" in loaded.error
    demo = build_demo(loaded)
    url = _launch(demo)
    try:
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "could not be loaded" in page
        with pytest.raises(Exception, match="could not be loaded"):
            Client(url, verbose=False).predict(None, "cat", api_name="/detect")
    finally:
        demo.close()


# ---------------------------------------------------------------- a real browser

@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is needed for the browser tests (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("tab", list(TAB_ENDPOINTS))
def test_each_tab_runs_in_chromium(browser, server, scene_file, tab):
    scene, path = scene_file
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(server)
        page.get_by_role("tab", name=tab, exact=True).click()
        panel = page.locator("[role=tabpanel]:visible")
        # The image's own upload (the regions table has one too, and the annotator mounts late):
        # Playwright waits until it is there.
        panel.locator(".image-container input[type=file]").first.set_input_files(str(path))
        if tab == "Visual prompting":
            _draw_reference_box(page, panel, scene)
        elif tab in ("Detection", "Pointing"):
            categories = ", ".join(dict.fromkeys(a.category for a in scene.annotations))
            panel.get_by_label("Categories", exact=False).first.fill(categories)
        else:
            panel.locator("img").first.wait_for()  # the upload has rendered
        panel.get_by_role("button", name="Run").click()
        raw = panel.locator(".result-raw textarea")
        page.wait_for_function(
            "el => el.value.length > 0", arg=raw.element_handle(), timeout=60_000
        )
        # Gradio fades outputs while an event is pending; the screenshot waits until it is done.
        page.wait_for_function("() => document.querySelectorAll('.pending').length === 0", timeout=30_000)
        result = panel.locator(".result-image img")
        result.wait_for()
        # The image fades in; screenshot it once it is decoded and fully opaque.
        page.wait_for_function(
            "img => img.complete && getComputedStyle(img).opacity === '1'", arg=result.element_handle(), timeout=10_000
        )
        page.wait_for_timeout(400)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{TAB_ENDPOINTS[tab]}.png"), full_page=True)
        assert re.search(r"\d+ regions? ·", panel.locator(".result-stats").first.inner_text())
        assert result.count() == 1
        if tab == "Detection":
            assert "<|box_start|>" in raw.input_value()
    finally:
        page.close()


def test_the_visual_prompting_gallery_shows_the_reference_box_and_loads_it(browser, server):
    from PIL import Image

    from rexomni_core.tasks import visual_prompt_text

    annotation, thumbnail = example_rows("Visual prompting")[0]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(server)
        page.get_by_role("tab", name="Visual prompting", exact=True).click()
        panel = page.locator("[role=tabpanel]:visible")
        shown = panel.locator(f"img[src*='{Path(thumbnail).name}']")
        shown.first.wait_for()
        page.screenshot(path=str(SCREENSHOTS / "visual_prompt_gallery.png"), full_page=True)
        shown.first.click()
        panel.locator("canvas").first.wait_for()
        page.wait_for_timeout(500)  # the annotator lays the image and its boxes out
        panel.get_by_role("button", name="Run").click()
        raw = panel.locator(".result-raw textarea")
        page.wait_for_function("el => el.value.length > 0", arg=raw.element_handle(), timeout=60_000)
        prompt = panel.get_by_label("Prompt sent").input_value()
        # The reference box the click loaded reached the model in image pixels (the browser sends
        # it in its canvas's scale).
        (box,) = annotation["boxes"]
        width, height = Image.open(annotation["image"]).size
        assert visual_prompt_text([[box[k] for k in ("xmin", "ymin", "xmax", "ymax")]], width, height) in prompt
        stats = panel.locator(".result-stats").first.inner_text()
        assert "1 region ·" in stats, stats
    finally:
        page.close()


def _draw_reference_box(page, panel, scene):
    canvas = panel.locator("canvas").first
    canvas.wait_for()
    page.wait_for_timeout(500)  # the annotator lays the image out after upload
    frame = canvas.bounding_box()
    # The image is centred in the canvas at the largest scale that fits.
    scale = min(frame["width"] / scene.width, frame["height"] / scene.height)
    left = frame["x"] + (frame["width"] - scene.width * scale) / 2
    top = frame["y"] + (frame["height"] - scene.height * scale) / 2
    x0, y0, x1, y1 = scene.annotations[0].box
    page.mouse.move(left + x0 * scale, top + y0 * scale)
    page.mouse.down()
    page.mouse.move(left + x1 * scale, top + y1 * scale, steps=8)
    page.mouse.up()


# ---------------------------------------------------------------- the Space


def test_built_space_starts_on_cpu_with_the_nano_model(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from build_space import build_space
    finally:
        sys.path.pop(0)
    space = build_space(tmp_path / "space")
    front_matter = (space / "README.md").read_text().split("---")[1]
    for key in ("title:", "sdk: gradio", "sdk_version:", "app_file: app.py", "python_version:", "models:", "short_description:", "license:"):
        assert key in front_matter
    assert (space / "rexomni_core" / "demo.py").exists()
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(1)
        else:
            pytest.fail("the Space did not start within 120 s")
        assert "Rex-Omni-nano" in page and "could not be loaded" not in page
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "serving Rex-Omni-nano on CPU" in output
    # The Space runs the package copied into it, not the one installed for development.
    imported = subprocess.run([sys.executable, "-c", "import rexomni_core; print(rexomni_core.__file__)"],
                              cwd=space, env=env, capture_output=True, text=True, check=True).stdout
    assert imported.strip() == str(space / "rexomni_core" / "__init__.py")


def test_the_confidence_slider_and_cap_filter_the_held_answer_without_running_the_model():
    from PIL import Image

    from rexomni_core.demo import refilter
    from rexomni_core.regions import Box, Prediction

    regions = [Box("a", [1, 1, 10, 10], score=0.9), Box("a", [20, 20, 30, 30], score=0.2), Box("b", [40, 40, 50, 50], score=0.6)]
    state = (Image.new("RGB", (64, 64)), Prediction(regions, "", [], 64, 64, phrases=["a", "b"]))
    _, rows = refilter(state, 0.5, None)
    assert [row[3] for row in rows] == [0.9, 0.6]
    _, rows = refilter(state, 0.0, 1)
    assert [row[3] for row in rows] == [0.9]
    assert refilter(None, 0.5, None) == (None, [])
