"""The bad-input matrix: every odd file or argument a user may hand over gets a specific error
(an `InputError` whose message names the problem) or a correct answer, from the Python API and
from `rexomni predict` alike; never a traceback, a hang or a silently wrong result."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from rexomni_core.cli import main as cli_main  # noqa: E402
from rexomni_core.errors import InputError  # noqa: E402
from rexomni_core.images import load_image  # noqa: E402
from rexomni_core.model import RexOmni  # noqa: E402
from rexomni_core.regions import Prediction, region_from_dict  # noqa: E402
from rexomni_core.viz import annotate  # noqa: E402


def _png(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def _scene() -> Image.Image:
    image = Image.new("RGB", (112, 112), (20, 20, 20))
    image.paste((220, 40, 40), (30, 40, 70, 80))
    return image


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    return _png(Image.new("RGB", (120, 40), (200, 200, 200)), format="JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [Image.new("P", (64, 64), i) for i in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    return _png(image, transparency=0)


def _huge_header() -> bytes:
    """A PNG header declaring 100 000 × 100 000 pixels (a decompression bomb), no real pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


REFUSED_FILES = {
    "text renamed .png": (b"just some text, not a picture", "not a readable image"),
    "0-byte file": (b"", "not a readable image"),
    "truncated PNG": (_png(_scene())[:60], "not a readable image"),
    "truncated JPEG": (_png(_scene(), format="JPEG")[:200], "not a readable image"),
    "1x1 image": (_png(Image.new("RGB", (1, 1))), "sides must be between 8"),
    "huge dimensions": (_huge_header(), "sides must be between 8 and 16384"),
}
READ_FILES = {
    "16-bit PNG": (_png(Image.fromarray(np.full((64, 64), 40_000, np.uint16))), (156, 156, 156)),
    "CMYK JPEG": (_png(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), format="JPEG"), None),
    "palette PNG with transparency": (_palette_with_transparency(), (255, 255, 255)),
    "animated GIF": (_animated_gif(), None),
}


@pytest.mark.parametrize("name", list(REFUSED_FILES))
def test_unusable_files_are_refused_with_a_message_naming_the_file(tmp_path, name, capsys):
    content, message = REFUSED_FILES[name]
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_image(path)
    assert cli_main(["predict", str(path), "--categories", "red square"]) == 2
    error = capsys.readouterr().err.strip()
    assert "upload.png" in error and message in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("name", list(READ_FILES))
def test_unusual_but_valid_files_are_read_as_a_viewer_shows_them(tmp_path, name):
    content, corner = READ_FILES[name]
    path = tmp_path / "upload.img"
    path.write_bytes(content)
    image = load_image(path)
    assert image.mode == "RGB" and min(image.size) >= 8
    if corner is not None:
        assert image.getpixel((0, 0)) == corner


def test_exif_rotated_jpeg_is_answered_in_the_displayed_frame(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_exif_rotated_jpeg())
    assert load_image(path).size == (40, 120)
    prediction = RexOmni.from_pretrained().predict(str(path), categories=["red square"], max_new_tokens=24)
    assert (prediction.width, prediction.height) == (40, 120)
    assert all(0 <= v <= 120 for region in prediction.regions for v in region.coords)


@pytest.fixture(scope="module")
def nano():
    return RexOmni.from_pretrained()


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"categories": []}, "needs categories"),
        ({"categories": [f"thing {i}" for i in range(500)]}, "500 categories in one prompt"),
        ({"categories": ["x" * 300]}, "300 characters long"),
        ({"categories": ["cat<|im_end|>"]}, "control or coordinate token"),
        ({"task": "segmentation", "categories": ["cat"]}, "unknown task 'segmentation'"),
        ({"task": "keypoint", "categories": ["person"], "keypoint_type": "robot"}, "unknown keypoint type 'robot'"),
        ({"task": "visual_prompting", "visual_prompt_boxes": [[-50, -50, -10, -10]]}, "outside"),
        ({"task": "visual_prompting", "visual_prompt_boxes": [[60, 60, 20, 20]]}, "has no area"),
        ({"task": "visual_prompting", "visual_prompt_boxes": [[200, 200, 300, 300]]}, "outside"),
        ({"task": "visual_prompting", "visual_prompt_boxes": [[math.nan, 0, 10, 10]]}, "finite numbers"),
    ],
    ids=["empty", "500", "over-long", "control-token", "unknown-task", "bad-keypoint-type", "negative-box",
         "reversed-box", "outside-box", "nan-box"],
)
def test_bad_arguments_get_a_specific_message(nano, arguments, message):
    with pytest.raises(InputError, match=message):
        nano.predict(_scene(), **arguments)


def test_unicode_categories_are_asked_as_written(nano):
    prediction = nano.predict(_scene(), categories=["rouge carré", "红色方块"], max_new_tokens=32)
    assert "rouge carré" in prediction.prompt and "红色方块" in prediction.prompt
    assert prediction.regions is not None  # an answer (the nano does not know these words), no error


# ---------------------------------------------------------------- the app

@pytest.fixture(scope="module")
def app(nano):
    from rexomni_core.demo import EMBEDDED_NAME, LoadedModel, build_demo

    return build_demo(LoadedModel(nano, EMBEDDED_NAME))


def _ask_app(app, endpoint: str, *inputs) -> list:
    """One request as Gradio serves it (its input handling, the tab's handler, its output
    handling), without a browser or a server; a refusal raises `gr.Error` with its message."""
    import asyncio

    (handler,) = [f for f in app.fns.values() if f.api_name == endpoint]
    outputs = asyncio.run(app.process_api(handler, list(inputs)))["data"]
    return [value.model_dump() if hasattr(value, "model_dump") else value for value in outputs]  # as JSON sends them


def _upload(folder, content: bytes, name: str = "upload.png") -> dict:
    """What Gradio hands a tab for an uploaded file."""
    path = folder / name
    path.write_bytes(content)
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def _app_refusal(app, endpoint: str, *inputs) -> str:
    import gradio as gr

    with pytest.raises(gr.Error) as raised:
        _ask_app(app, endpoint, *inputs)
    message = raised.value.message
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    return message


@pytest.mark.parametrize("name", list(REFUSED_FILES))
def test_the_app_refuses_unusable_files_naming_the_image_as_the_user_named_it(app, tmp_path, name):
    content, message = REFUSED_FILES[name]
    refusal = _app_refusal(app, "detect", _upload(tmp_path, content, "holiday.png"), "red square")
    assert refusal.startswith("Image: holiday.png") and message in refusal
    assert str(tmp_path) not in refusal  # the server's copy of the upload is not the user's name for it


@pytest.mark.parametrize("name", list(READ_FILES))
def test_the_app_answers_unusual_files_on_the_image_a_viewer_shows(app, tmp_path, name):
    content, corner = READ_FILES[name]
    upload = _upload(tmp_path, content)
    result, _, _, _, parsed, *_ = _ask_app(app, "detect", upload, "red square")
    read = load_image(upload["path"])
    if corner is not None:
        assert read.getpixel((0, 0)) == corner
    # The result is the answer drawn on the image exactly as the Python API reads the file.
    answer = Prediction([region_from_dict(r) for r in parsed["regions"]], "", [], read.width, read.height)
    shown = np.asarray(Image.open(result["path"]).convert("RGB"))
    assert np.array_equal(shown, np.asarray(annotate(read, answer)))


def test_the_app_answers_an_exif_rotated_jpeg_in_the_displayed_frame(app, tmp_path):
    result, _, _, _, parsed, *_ = _ask_app(app, "detect", _upload(tmp_path, _exif_rotated_jpeg(), "r.jpg"), "red square")
    assert Image.open(result["path"]).size == (40, 120)
    for region in parsed["regions"]:
        x0, y0, x1, y1 = region["coords"]
        assert 0 <= x0 <= x1 <= 40 and 0 <= y0 <= y1 <= 120


@pytest.mark.parametrize(
    "endpoint, inputs, message",
    [
        ("detect", ("",), "Categories: type what to look for"),
        ("detect", (", ".join(f"thing {i}" for i in range(500)),), "Categories: 500 categories in one prompt"),
        ("point", ("x" * 300,), "Categories: categories[0] is 300 characters long"),
        ("detect", (None,), "Categories: type what to look for"),
        ("ocr", ("word", "circle"), "As: 'circle' is not one of 'box', 'polygon'"),
        ("ocr", ("sentence", "box"), "Read: 'sentence' is not one of 'word', 'text line'"),
        ("gui_ground", ("Save button", "line"), "Answer with: 'line' is not one of 'box', 'point'"),
        ("keypoints", ("person", "robot"), "Keypoint schema: 'robot' is not one of 'person', 'animal'"),
    ],
    ids=["empty", "500", "over-long", "missing", "unknown-ocr-shape", "unknown-ocr-granularity",
         "unknown-gui-answer", "bad-keypoint-type"],
)
def test_the_app_names_the_field_of_a_bad_argument(app, tmp_path, endpoint, inputs, message):
    refusal = _app_refusal(app, endpoint, _upload(tmp_path, _png(_scene())), *inputs)
    assert refusal.startswith(message)


def test_the_app_asks_unicode_categories_as_written(app, tmp_path):
    *_, parsed, _, prompt, _, _ = _ask_app(app, "detect", _upload(tmp_path, _png(_scene())), "rouge carré, 红色方块")
    assert "rouge carré" in prompt and "红色方块" in prompt
    assert parsed["problems"] == []


@pytest.mark.parametrize(
    "box, message",
    [
        ([-50, -50, -10, -10], "lies outside the 112x112 image"),
        ([60, 60, 20, 20], "has no area"),
        ([200, 200, 300, 300], "lies outside the 112x112 image"),
        ([math.nan, 0, 10, 10], "must be 4 finite numbers"),
        (["ten", 0, 10, 10], "box 1 must be numbers xmin, ymin, xmax, ymax"),
        (None, "draw at least one box"),
    ],
    ids=["negative", "reversed", "outside", "nan", "not-a-number", "no-box"],
)
def test_the_app_refuses_malformed_reference_boxes_naming_them(app, tmp_path, box, message):
    boxes = [] if box is None else [dict(zip(("xmin", "ymin", "xmax", "ymax"), box))]
    refusal = _app_refusal(app, "visual_prompt", {"image": _upload(tmp_path, _png(_scene())), "boxes": boxes})
    assert refusal.startswith("Reference boxes: ") and message in refusal


def test_the_app_reads_boxes_drawn_in_the_browsers_scale_as_pixels(app, tmp_path):
    # The annotator sends boxes in its canvas's scale with that scale; the reference the model is
    # asked about is the same box in image pixels.
    drawn = {"xmin": 60, "ymin": 80, "xmax": 140, "ymax": 160, "scaleFactor": 2}
    *_, prompt, _, _ = _ask_app(app, "visual_prompt", {"image": _upload(tmp_path, _png(_scene())), "boxes": [drawn]})
    pixels = _ask_app(app, "visual_prompt", {"image": _upload(tmp_path, _png(_scene())),
                                              "boxes": [{"xmin": 30, "ymin": 40, "xmax": 70, "ymax": 80}]})[6]
    assert prompt == pixels
