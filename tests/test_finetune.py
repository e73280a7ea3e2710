"""`rexomni finetune`: the novel split, the input checks (each on a bad dataset built here), the
conversations from records, and runs on a micro model: the report, resume after a SIGKILL,
LoRA merged into an ordinary checkpoint, a run bounded by minutes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rexomni_core.cli import main as cli_main
from rexomni_core.data.checks import check_dataset
from rexomni_core.data.synth import write_synthetic_dataset
from rexomni_core.data.worlds.shapes import SPLITS, generate_shapes
from rexomni_core.errors import InputError
from rexomni_core.nano.vocabulary import NOVEL_COLOURS, NOVEL_SHAPE_CATEGORIES, SHAPE_CATEGORIES

pytest.importorskip("transformers")


# --------------------------------------------------------------------------- the novel split


def test_novel_split_draws_only_its_two_colours_on_backgrounds_far_from_them():
    assert len(NOVEL_SHAPE_CATEGORIES) == 10 and not set(NOVEL_SHAPE_CATEGORIES) & set(SHAPE_CATEGORIES)
    palette = np.array(list(NOVEL_COLOURS.values()), dtype=np.float64)
    seen = set()
    for seed in range(12):
        scene = generate_shapes(seed, "novel")
        pixels = np.asarray(scene.image, dtype=np.float64)
        drawn = np.zeros(pixels.shape[:2], dtype=bool)
        for annotation in scene.annotations:
            assert annotation.category in NOVEL_SHAPE_CATEGORIES
            seen.add(annotation.attributes["colour"])
            full = annotation.mask.full(scene.width, scene.height)
            colour = np.median(pixels[full], axis=0)
            assert np.abs(colour - NOVEL_COLOURS[annotation.attributes["colour"]]).max() <= 25
            drawn |= full
        # Away from the objects (their anti-aliased and blurred edges), no pixel is near their colours.
        from rexomni_core.data.worlds.common import dilate

        far = ~dilate(drawn, 3)[3:-3, 3:-3]
        assert np.linalg.norm(pixels[far][:, None] - palette[None], axis=2).min() >= 70
    assert seen == set(NOVEL_COLOURS)


def test_novel_split_is_never_in_the_nano_training_stream_and_synth_writes_only_its_categories(tmp_path):
    from rexomni_core.train.configs import read_recipe, recipe_names

    assert list(SPLITS)[-1] == "novel"  # appended: the other splits keep their streams (test_data_shapes)
    for name in recipe_names():
        mixture = read_recipe(name).get("data", {}).get("kwargs", {}).get("mixture", [])
        assert all(entry.get("split") != "novel" for entry in mixture), name
    assert cli_main(["data", "synth", "--world", "shapes", "--split", "novel", "--n", "3", "--out", str(tmp_path / "d")]) == 0
    coco = json.loads((tmp_path / "d" / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(NOVEL_SHAPE_CATEGORIES)


# --------------------------------------------------------------------------- bad datasets


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small novel-split COCO folder (images/ and annotations.json), every category in use."""
    folder = tmp_path_factory.mktemp("novel")
    write_synthetic_dataset(folder, "shapes", 8, seed=3, split="novel")
    coco = json.loads((folder / "annotations.json").read_text())
    used = {a["category_id"] for a in coco["annotations"]}
    coco["categories"] = [c for c in coco["categories"] if c["id"] in used]
    (folder / "annotations.json").write_text(json.dumps(coco))
    return folder


def _variant(folder: Path, name: str, change) -> Path:
    """A copy of the dataset's COCO file beside it (same images) with `change(coco)` applied."""
    coco = json.loads((folder / "annotations.json").read_text())
    change(coco)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(coco))
    return path


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(data: Path, out: Path, match: str, **options) -> str:
    """finetune() stops with an InputError matching `match`, having written nothing."""
    from rexomni_core.finetune import finetune

    before = _files(data.parent if data.is_file() else data)
    with pytest.raises(InputError, match=match) as error:
        finetune(data, out, steps=1, **options)
    assert not out.exists(), "a refused run wrote into --out"
    assert _files(data.parent if data.is_file() else data) == before, "the user's data changed"
    return str(error.value)


def _set_bbox(index: int, bbox):
    def change(coco):
        coco["annotations"][index]["bbox"] = bbox

    return change


def test_missing_image_names_file_record_and_field(dataset, tmp_path):
    def change(coco):
        coco["images"][2]["file_name"] = "images/gone.png"

    message = _refused(_variant(dataset, "missing", change), tmp_path / "out", "image file not found")
    assert "missing.json" in message and "image id 3" in message and "field 'file_name'" in message


def test_box_outside_the_image_and_zero_area_box_are_named(dataset, tmp_path):
    message = _refused(_variant(dataset, "outside", _set_bbox(0, [150.0, 20.0, 400.0, 30.0])), tmp_path / "a", "outside")
    assert "outside.json" in message and "annotation id 1" in message and "field 'bbox'" in message
    message = _refused(_variant(dataset, "flat", _set_bbox(1, [10.0, 20.0, 0.0, 30.0])), tmp_path / "b", "zero area")
    assert "annotation id 2" in message and "field 'bbox'" in message


def test_corners_in_cocos_size_slot_are_diagnosed_with_their_count(dataset, tmp_path):
    def corners_as_sizes(coco):
        for annotation in coco["annotations"]:
            x, y, w, h = annotation["bbox"]
            annotation["bbox"] = [x, y, x + w, y + h]

    message = _refused(_variant(dataset, "xyxy", corners_as_sizes), tmp_path / "out", "look like xyxy")
    total = len(json.loads((dataset / "annotations.json").read_text())["annotations"])
    assert f"of {total} boxes look like xyxy [x0, y0, x1, y1] stored in the xywh slot" in message
    assert "field 'bbox'" in message and "xyxy.json" in message


def test_sizes_in_a_corner_slot_are_diagnosed_too(dataset, tmp_path):
    from rexomni_core.data.formats import open_dataset, write_jsonl

    path = tmp_path / "data.jsonl"
    write_jsonl(iter(open_dataset(dataset / "annotations.json", "coco")), path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for record in lines:
        for annotation in record["annotations"]:
            x0, y0, x1, y1 = annotation["bbox"]
            annotation["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    path.write_text("".join(json.dumps(record) + "\n" for record in lines))
    message = _refused(path, tmp_path / "out", "look like xywh")
    assert "stored in the xyxy slot" in message and "data.jsonl" in message


def test_categories_without_annotations_and_images_of_another_size_are_named(dataset, tmp_path):
    def extra_category(coco):
        coco["categories"].append({"id": 99, "name": "green dodecahedron"})

    message = _refused(_variant(dataset, "unused", extra_category), tmp_path / "a", "has no annotation")
    assert "'green dodecahedron'" in message and "category id 99" in message

    def wrong_size(coco):
        coco["images"][0]["width"] += 10
        for annotation in coco["annotations"]:
            del annotation["segmentation"]  # its RLE would be refused first, for its size

    message = _refused(_variant(dataset, "resized", wrong_size), tmp_path / "b", "but the image is")
    assert "image id 1" in message and "field 'width, height'" in message


def test_every_problem_is_listed_and_lenient_reading_skips_them(dataset):
    from rexomni_core.data.formats import open_dataset
    from rexomni_core.errors import SkipReport

    def two_problems(coco):
        coco["images"][2]["file_name"] = "images/gone.png"
        coco["annotations"][0]["bbox"] = [10.0, 20.0, 0.0, 30.0]

    path = _variant(dataset, "two", two_problems)
    with pytest.raises(InputError, match="2 problems in records"):
        check_dataset(open_dataset(path, "coco"))
    report = SkipReport()
    checked = check_dataset(open_dataset(path, "coco", lenient=True, report=report), lenient=True, report=report)
    # The record with the image left out; the bad box alone left out of its record.
    assert len(checked.records) == 7 and dict(report.counts) == {"bad annotations": 1, "bad images": 1}


def test_an_empty_split_is_refused(dataset, tmp_path):
    def one_image(coco):
        coco["images"] = coco["images"][:1]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] == coco["images"][0]["id"]]
        used = {a["category_id"] for a in coco["annotations"]}
        coco["categories"] = [c for c in coco["categories"] if c["id"] in used]

    single = _variant(dataset, "single", one_image)
    _refused(single, tmp_path / "a", "no record is left to train on")
    _refused(single, tmp_path / "b", "the validation split is empty", held_out=0.0)


def test_a_category_the_tokenizer_cannot_write_back_is_named(dataset, tmp_path):
    def padded(coco):
        coco["categories"][0]["name"] = " orange circle"

    message = _refused(_variant(dataset, "padded", padded), tmp_path / "out", "categories this model cannot write")
    assert "' orange circle'" in message


def test_the_command_prints_one_line_and_refuses_a_folder_that_is_not_a_run(dataset, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert cli_main(["finetune", str(dataset), "--out", str(taken), "--steps", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "not a fine-tuning run to resume" in error
    assert (taken / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- conversations from records


def _rich_jsonl(tmp_path: Path) -> Path:
    """Records with boxes, a mask, OCR text and polygons, a person's keypoints and a crowd region."""
    from PIL import Image

    from rexomni_core.tasks import KEYPOINT_SCHEMAS

    Image.new("RGB", (100, 80), (200, 200, 200)).save(tmp_path / "a.png")
    mask = np.zeros((80, 100), dtype=np.uint8)
    mask[10:30, 10:20] = 1  # an L: its box centre (15, 25) lies outside it
    mask[25:30, 10:40] = 1
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask))
    keypoints = {name: [50.0 + i, 40.0] for i, name in enumerate(KEYPOINT_SCHEMAS["person"])}
    annotations = [
        {"category": "bracket", "bbox": [10, 10, 40, 30], "mask": {"size": [80, 100], "counts": rle["counts"].decode()}},
        {"category": "word", "bbox": [60, 5, 90, 15], "text": "OPEN", "polygon": [60, 5, 90, 5, 90, 15, 60, 15]},
        {"category": "person", "bbox": [45, 35, 75, 60], "keypoints": keypoints},
        {"category": "crowd", "bbox": [0, 60, 30, 80], "attributes": {"iscrowd": "1"}},
    ]
    path = tmp_path / "rich.jsonl"
    path.write_text(json.dumps({"name": "a", "image": "a.png", "width": 100, "height": 80, "annotations": annotations}) + "\n")
    return path


def test_records_pose_every_task_their_annotations_allow(tmp_path):
    from rexomni_core.train.finetune import pose, resolve_source, trainable_tasks

    source = resolve_source(_rich_jsonl(tmp_path))
    checked = check_dataset(source.open())
    tasks = trainable_tasks(checked.records, None, source.path)
    assert tasks == ["detection", "pointing", "visual_prompting", "ocr_box", "ocr_polygon", "keypoint"]
    record = checked.records[0][1]
    vocabulary = checked.categories + ["kettle"]
    answers = {task: [pose(record, task, random.Random(seed), vocabulary) for seed in range(30)] for task in tasks}
    # Negatives come from the dataset's own list and are answered None; a crowd region is neither.
    asked = {phrase for c in answers["detection"] for phrase in c.phrases}
    assert "kettle" in asked and "crowd" not in asked
    negative = next(c for c in answers["detection"] if "kettle" in c.phrases)
    assert "<|object_ref_start|>kettle<|object_ref_end|><|box_start|>None<|box_end|>" in negative.answer
    # Pointing: the point comes from the mask (on the L), not the box centre (15, 25), which is off it.
    x, y = next(r for c in answers["pointing"] for r in c.regions if r.phrase == "bracket").coords
    assert (10 <= x < 20 and 10 <= y < 30) or (10 <= x < 40 and 25 <= y < 30)
    assert all(r.text == "OPEN" for c in answers["ocr_box"] + answers["ocr_polygon"] for r in c.regions)
    assert all(c.regions[0].kind == "keypoints" for c in answers["keypoint"])
    boxes_only = dataclasses.replace(record, annotations=record.annotations[:1])
    with pytest.raises(InputError, match="--tasks keypoint: no record holds keypoints"):
        trainable_tasks([(0, boxes_only)], ["keypoint"], "x")


def test_record_conversations_are_pure_in_seed_and_index(dataset):
    from rexomni_core.train.finetune import RecordConversations

    source = {"path": str(dataset / "annotations.json"), "fmt": "coco", "image_root": str(dataset),
              "records": {"detection": [0, 1, 2], "pointing": [3, 4]}, "vocabulary": list(NOVEL_SHAPE_CATEGORIES)}
    first, again = RecordConversations(**source), RecordConversations(**source)
    assert [first[i].answer for i in range(12)] == [again[i].answer for i in range(12)]
    assert {first[i].task for i in range(40)} == {"detection", "pointing"}
    rehearsing = RecordConversations(**source, rehearsal=0.5, rehearsal_stream={"seed": 1})
    assert {c.phrases[0] in SHAPE_CATEGORIES for c in (rehearsing[i] for i in range(20)) if c.phrases} == {True, False}


def test_split_is_seeded_and_holds_out_at_least_one():
    from rexomni_core.train.finetune import split_records

    train, val = split_records(list(range(20)), 0.1, seed=0)
    assert (len(train), len(val)) == (18, 2) and sorted(train + val) == list(range(20))
    assert split_records(list(range(20)), 0.1, seed=0) == (train, val) != split_records(list(range(20)), 0.1, seed=1)
    assert len(split_records([0, 1, 2], 0.1, seed=0)[1]) == 1


def test_training_clock_stops_on_budget_and_resumes_its_count():
    from transformers import TrainerControl, TrainerState

    from rexomni_core.train.finetune import TrainingClock

    clock = TrainingClock(budget_seconds=0.05)
    state = TrainerState(stateful_callbacks=[clock])
    control = TrainerControl()
    clock.on_train_begin(None, state, control)
    clock.on_step_end(None, state, control)
    assert not control.should_training_stop
    time.sleep(0.06)
    clock.on_step_end(None, state, control)
    assert control.should_training_stop and control.should_save
    saved = TrainerState(stateful_callbacks=[clock])  # as a checkpoint's trainer_state.json holds it
    resumed = TrainingClock(budget_seconds=10)
    resumed.on_train_begin(None, saved, TrainerControl())
    assert resumed.elapsed >= 0.06
    resumed.pause()
    time.sleep(0.03)
    resumed.resume()
    resumed.on_step_end(None, saved, TrainerControl())
    assert resumed.elapsed < clock.elapsed + 0.02  # the paused time is not counted


# --------------------------------------------------------------------------- runs on a micro model


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    from rexomni_core.nano.architecture import build_nano
    from tests.test_model_sft import MICRO

    folder = tmp_path_factory.mktemp("micro")
    model = build_nano(seed=0, **MICRO)
    model.model.generation_config.max_new_tokens = 12  # untrained: keep its answers short
    model.save_pretrained(folder)
    return folder


FAST = {"batch_size": 2, "held_out": 0.25, "curve_points": 1, "curve_images": 2, "samples": 2}


def test_a_run_writes_the_report_and_an_ordinary_checkpoint(dataset, micro, tmp_path):
    from rexomni_core.finetune import finetune
    from rexomni_core.model import RexOmni

    data_files = _files(dataset)
    result = finetune(dataset, tmp_path / "ft", model=str(micro), steps=4, **FAST)
    assert _files(dataset) == data_files
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["tasks"] == ["detection", "pointing", "visual_prompting"] and metrics["steps"] == 4
    assert set(metrics["before"]) == set(metrics["after"]) == set(metrics["tasks"])
    assert "per_category" in metrics["after"]["detection"] and "AP" in metrics["after"]["detection"]
    assert [point["step"] for point in metrics["curve"]] == [0, 2, 4]
    report = result.report.read_text()
    assert "| detection | f1@0.5 |" in report and "## Detection per category" in report
    for plot in ("loss", "validation_f1", "samples"):
        assert (tmp_path / "ft" / "plots" / f"{plot}.png").stat().st_size > 1000
    model = RexOmni.from_pretrained(result.final)
    model.predict(dataset / "images" / "000000.png", categories=["orange circle"])
    # A finished run, run again, is found done: same report, no training.
    assert finetune(dataset, tmp_path / "ft", model=str(micro), steps=4, **FAST).final == result.final
    with pytest.raises(InputError, match="other options: steps 4"):
        finetune(dataset, tmp_path / "ft", model=str(micro), steps=5, **FAST)


def test_lora_is_merged_into_the_checkpoint_and_the_adapter_kept_on_request(dataset, micro, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rexomni_core.finetune import finetune

    result = finetune(dataset, tmp_path / "lora", model=str(micro), steps=3, lora=True, keep_adapter=True,
                      learning_rate=1e-2, **FAST)
    assert not any(result.final.glob("adapter_*")), "final/ must be a plain checkpoint"
    final = Qwen2_5_VLForConditionalGeneration.from_pretrained(result.final).state_dict()
    start = Qwen2_5_VLForConditionalGeneration.from_pretrained(micro)
    expected = PeftModel.from_pretrained(start, tmp_path / "lora" / "adapter").merge_and_unload().state_dict()
    assert set(final) == set(expected)
    assert all(torch.allclose(final[name], expected[name], atol=1e-6) for name in final)
    untouched = Qwen2_5_VLForConditionalGeneration.from_pretrained(micro).state_dict()
    moved = [name for name in final if not torch.equal(final[name], untouched[name])]
    assert moved and all("language_model" in name and "proj" in name for name in moved)


def test_a_killed_run_resumes_with_its_checkpoint_and_its_answers(dataset, micro, tmp_path):
    from rexomni_core.finetune import finetune
    from rexomni_core.train.common import latest_checkpoint
    from tests.test_training_resume import _train_and_kill

    out = tmp_path / "ft"
    options = dict(model=str(micro), steps=16, **FAST)
    script = ("import sys, json; from rexomni_core.finetune import finetune; "
              "finetune(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))")
    command = [sys.executable, "-c", script, str(dataset), str(out), json.dumps(options)]
    killed_at = int(_train_and_kill(command, out, after_step=6).name.split("-")[1])
    before_answers = (out / "eval" / "before" / "detection" / "answers.jsonl").read_bytes()

    result = finetune(dataset, out, **options)  # the same command again
    state = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())
    assert state["global_step"] == 16
    logged = sorted(entry["step"] for entry in state["log_history"] if "loss" in entry)
    assert logged[0] <= killed_at < logged[-1]  # the history from before the kill carried over
    assert (out / "eval" / "before" / "detection" / "answers.jsonl").read_bytes() == before_answers
    assert result.metrics["steps"] == 16 and result.metrics["training_minutes"] > 0


def test_a_run_bounded_by_minutes_fits_its_schedule_and_stops_on_time(dataset, micro, tmp_path):
    from rexomni_core.finetune import finetune

    result = finetune(dataset, tmp_path / "ft", model=str(micro), minutes=0.05, **{**FAST, "curve_points": 0})
    plan = json.loads((tmp_path / "ft" / "finetune.json").read_text())["plan"]
    assert plan["max_steps"] >= 1 and 1 <= result.metrics["steps"] <= plan["max_steps"]
    assert result.metrics["training_minutes"] < 0.05 + 0.05


# --------------------------------------------------------------------------- how it trains: the plan


def _plan(parameters: int, cuda: bool = False, bf16: bool = False, bitsandbytes: bool = False, **flags):
    from rexomni_core.train.finetune import DeviceFacts, training_plan

    return training_plan(parameters, DeviceFacts(cuda, bf16, bitsandbytes), **flags)


NANO, RELEASED = 5_000_000, 3_750_000_000


def test_the_nano_on_a_cpu_trains_in_fp32_without_checkpointing():
    lora, full = _plan(NANO, lora=True), _plan(NANO, lora=False)
    assert (lora.lora, lora.quantization, lora.bf16, lora.gradient_checkpointing) == (True, None, False, False)
    assert (lora.batch_size, lora.gradient_accumulation_steps, lora.learning_rate) == (16, 1, 1e-3)
    assert (full.lora, full.learning_rate) == (False, 3e-4)
    assert "every weight; fp32; gradient checkpointing off" in full.describe()


def test_the_released_model_on_a_gpu_trains_lora_in_bf16_with_checkpointing():
    plan = _plan(RELEASED, cuda=True, bf16=True, lora=True)
    assert (plan.lora, plan.quantization, plan.bf16, plan.gradient_checkpointing) == (True, None, True, True)
    assert (plan.batch_size, plan.gradient_accumulation_steps, plan.learning_rate) == (4, 4, 2e-4)
    assert "LoRA on the language model, vision tower frozen; bf16; gradient checkpointing on" in plan.describe()
    assert _plan(RELEASED, cuda=True, bf16=False, lora=True).bf16 is False  # a GPU without bf16 (V100): fp32
    assert _plan(RELEASED, cuda=True, bf16=True, lora=False).learning_rate == 1e-5


def test_qlora_needs_bitsandbytes_and_a_gpu_and_implies_lora():
    plan = _plan(RELEASED, cuda=True, bf16=True, bitsandbytes=True, lora=False, qlora=True)
    assert (plan.lora, plan.quantization, plan.gradient_checkpointing) == (True, "nf4", True)
    assert "over its 4-bit (nf4) weights" in plan.describe()
    with pytest.raises(InputError, match="runs on a CUDA GPU, and none is visible"):
        _plan(RELEASED, bitsandbytes=True, lora=True, qlora=True)
    with pytest.raises(InputError, match=r"needs bitsandbytes.*rexomni-core\[gpu\]"):
        _plan(RELEASED, cuda=True, bf16=True, lora=True, qlora=True)


def test_flags_override_the_plans_defaults():
    assert _plan(NANO, lora=True, gradient_checkpointing=True).gradient_checkpointing
    assert not _plan(RELEASED, cuda=True, lora=True, gradient_checkpointing=False).gradient_checkpointing
    plan = _plan(RELEASED, cuda=True, lora=True, batch_size=2, learning_rate=5e-5)
    assert (plan.batch_size, plan.gradient_accumulation_steps, plan.learning_rate) == (2, 4, 5e-5)


def test_the_plan_reaches_the_sft_config_which_checks_quantization(tmp_path):
    from rexomni_core.train.configs import LoraSettings, SFTConfig
    from rexomni_core.train.finetune import finetune_config

    plan = _plan(RELEASED, cuda=True, bf16=True, bitsandbytes=True, lora=True, qlora=True)
    config = finetune_config(tmp_path, "IDEA-Research/Rex-Omni", {}, plan, max_steps=100, lora_rank=8)
    assert (config.bf16, config.gradient_checkpointing, config.quantization, config.lora.r) == (True, True, "nf4", 8)
    assert (config.batch_size, config.gradient_accumulation_steps, config.learning_rate) == (4, 4, 2e-4)
    config.check()
    with pytest.raises(InputError, match="set lora.r > 0"):
        dataclasses.replace(config, lora=LoraSettings()).check()
    with pytest.raises(InputError, match="must be nf4 or null"):
        SFTConfig(quantization="int3").check()


def test_qlora_on_a_machine_without_a_gpu_is_refused_before_anything_is_written(dataset, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _refused(dataset, tmp_path / "out", "none is visible", qlora=True)
    assert cli_main(["finetune", str(dataset), "--out", str(tmp_path / "cli"), "--qlora", "--steps", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "--qlora holds the model in 4 bits" in error and not (tmp_path / "cli").exists()


def test_gradient_checkpointing_recomputes_on_the_nano_with_the_same_loss(dataset, tmp_path):
    """Two LoRA steps of the shipped nano with and without checkpointing: inside a decoder layer
    the MLP runs twice a step with it (the forward, then its recomputation in the backward) and
    once without; the losses agree (step 1: the same weights and batch)."""
    from transformers import TrainerCallback

    from rexomni_core.train.finetune import DeviceFacts, finetune_config, training_plan
    from rexomni_core.train.sft import train_sft

    class LayerCalls(TrainerCallback):
        def __init__(self):
            self.calls = 0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            # Not the layer itself: transformers checkpoints its forward, leaving its own hooks outside;
            # and a pre-hook, as the recomputation stops early, once it has what the backward needs.
            mlp = model.get_base_model().model.language_model.layers[0].mlp
            mlp.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))

    data = {"path": str(dataset / "annotations.json"), "fmt": "coco", "image_root": str(dataset),
            "records": {"detection": list(range(8))}, "vocabulary": list(NOVEL_SHAPE_CATEGORIES)}
    runs = {}
    for checkpointing in (False, True):
        plan = training_plan(NANO, DeviceFacts(False, False, False), lora=True, batch_size=2,
                             gradient_checkpointing=checkpointing)
        config = dataclasses.replace(finetune_config(tmp_path / str(checkpointing), None, data, plan, max_steps=2),
                                     save_steps=10)
        counter = LayerCalls()
        final = train_sft(config, callbacks=[counter])
        losses = [entry["loss"] for entry in json.loads((final / "log_history.json").read_text()) if "loss" in entry]
        runs[checkpointing] = (counter.calls, losses)
    (plain_calls, plain), (checkpointed_calls, checkpointed) = runs[False], runs[True]
    assert (plain_calls, checkpointed_calls) == (2, 4)
    assert len(checkpointed) == 2 and all(np.isfinite(checkpointed))
    assert checkpointed[0] == pytest.approx(plain[0], rel=1e-5)
    assert checkpointed[1] == pytest.approx(plain[1], rel=1e-2)  # after an Adam step on float-level differences


def test_an_adapter_trained_over_a_quantized_base_is_merged_into_full_precision_weights(micro):
    """QLoRA's last step, on a CPU (no bitsandbytes here): the adapter moves onto the base loaded
    again in bf16, and merging it there gives the weights merging in place gives."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rexomni_core.train.common import apply_lora
    from rexomni_core.train.configs import LoraSettings
    from rexomni_core.train.qlora import with_full_precision_base

    trained = apply_lora(Qwen2_5_VLForConditionalGeneration.from_pretrained(micro), LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, weights in trained.named_parameters():
            if "lora_B" in name:
                weights.normal_(0, 0.5)  # as if trained: B starts at zero
    moved = with_full_precision_base(trained, micro)
    assert next(moved.parameters()).dtype == torch.bfloat16
    merged, expected = moved.merge_and_unload().state_dict(), trained.merge_and_unload().state_dict()
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(micro).state_dict()
    assert set(merged) == set(expected)
    changed = [name for name in expected if not torch.allclose(expected[name], base[name], atol=1e-3)]
    assert changed and all("language_model" in name for name in changed)
    for name in changed:
        assert torch.allclose(merged[name].float(), expected[name], atol=2e-2, rtol=2e-2), name
