"""`rexomni eval ...`: output formats, the dispatcher hook-up, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rexomni_core import cli as dispatcher
from rexomni_core import parse
from rexomni_core.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]

GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0},
    ],
}
GOOD = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
    {"image_id": 2, "category_id": 2, "bbox": [50, 50, 10, 10]},
]


@pytest.fixture
def files(tmp_path):
    def write(pred, gt=GT):
        gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
        gt_path.write_text(json.dumps(gt))
        pred_path.write_text(pred if isinstance(pred, str) else json.dumps(pred))
        return ["--gt", str(gt_path), "--pred", str(pred_path)]

    return write


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_has_the_contract_keys(files, capsys):
    code, out, _ = run(["eval", "f1", *files(GOOD), "--json"], capsys)
    result = json.loads(out)
    assert code == 0
    for point in ("0.5", "0.95", "miou"):
        for name in ("f1", "precision", "recall"):
            assert f"{name}@{point}" in result and f"micro_{name}@{point}" in result
    # cat: 1 TP of 1 -> P=R=1; dog: 1 FP, 1 GT missed -> P=R=0; macro 0.5, micro 0.5.
    assert result["precision@0.5"] == 0.5 and result["recall@0.5"] == 0.5 and result["f1@miou"] == 0.5


def test_paper_protocol_and_table(files, capsys):
    code, out, _ = run(["eval", "f1", *files(GOOD), "--protocol", "paper"], capsys)
    assert code == 0
    assert "protocol: paper" in out and "IoU 0.50" in out and "mIoU" in out


def test_registered_in_the_dispatcher(files, capsys):
    assert "rexomni_core.eval.cli" in dispatcher.COMMAND_MODULES
    assert dispatcher.main(["eval", "f1", *files(GOOD), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1@0.5"] == 0.5


def test_malformed_json_names_file_and_position(files, capsys):
    code, _, err = run(["eval", "f1", *files('[{"image_id": 1,')], capsys)
    assert code == 2
    assert "pred.json: malformed JSON at line 1" in err


@pytest.mark.parametrize(
    "record, field, words",
    [
        ({"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}, "image_id", "unknown image id 9"),
        ({"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}, "category_id", "unknown category id 5"),
        ({"image_id": True, "category_id": 1, "bbox": [0, 0, 1, 1]}, "image_id", "expected an integer image id, got True"),
        ({"image_id": 1, "category_id": True, "bbox": [0, 0, 1, 1]}, "category_id", "expected an integer category id, got True"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -3, 1]}, "bbox", "width and height >= 0"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, float("nan"), 1]}, "bbox", "finite"),
        ({"image_id": 1, "category_id": 1}, "bbox", "missing"),
        ("not a record", "(record)", "expected a JSON object"),
    ],
)
def test_bad_record_is_fatal_or_counted_with_lenient(files, capsys, record, field, words):
    argv = ["eval", "f1", *files(GOOD + [record]), "--json"]
    code, out, err = run(argv + ["--lenient"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["num_left_out"] == {"bad_records": 1}
    assert result["num_predictions"] == 2
    assert f"record 2: field '{field}'" in err and words in err
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert "pred.json: record 2" in err and words in err


def test_bad_ground_truth_is_always_fatal(files, capsys):
    gt = json.loads(json.dumps(GT))
    gt["annotations"][1]["bbox"] = [0, 0, 5]
    code, _, err = run(["eval", "f1", *files(GOOD, gt)], capsys)
    assert code == 2 and "annotations: record 1: field 'bbox'" in err


def test_process_entry_point_runs_without_heavy_imports(files):
    """The whole process, as the benchmark runs it; neither torch nor pycocotools gets loaded."""
    probe = (
        "import sys, runpy; sys.argv = ['rexomni'] + sys.argv[1:];"
        "code = 0\n"
        "try: runpy.run_module('rexomni_core.cli', run_name='__main__')\n"
        "except SystemExit as e: code = e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'pycocotools', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "eval", "f1", *files(GOOD), "--json"],
        capture_output=True, text=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


# ---------------------------------------------------------------- eval run


class BlankModel:
    """Stands in for a loaded checkpoint: answers nothing, fast."""

    loaded: list = []

    @classmethod
    def from_pretrained(cls, source):
        cls.loaded.append(source)
        return cls()

    def predict(self, image, task="detection", categories=None, visual_prompt_boxes=None):
        return parse("", 100, 100, task=task)


def _dataset_folder(data):
    """GT as a dataset folder `eval run` reads: annotations.json and blank 100 x 100 images."""
    (data / "images").mkdir(parents=True)
    gt = json.loads(json.dumps(GT))
    for image in gt["images"]:
        image["file_name"] = f"{image['id']}.png"
        Image.new("RGB", (100, 100)).save(data / "images" / image["file_name"])
    (data / "annotations.json").write_text(json.dumps(gt))
    return data


@pytest.fixture
def run_eval(tmp_path, monkeypatch, capsys):
    """`rexomni eval run` on a two-image dataset, with checkpoints `a` and `b` (weights differ)."""
    import types

    monkeypatch.setitem(sys.modules, "rexomni_core.model", types.SimpleNamespace(RexOmni=BlankModel, NANO_DIR=tmp_path / "nano"))
    data = _dataset_folder(tmp_path / "data")
    for name, weights in (("a", b"weights of a"), ("b", b"other weights")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(weights)

    def run_with(*extra):
        argv = ["eval", "run", "--data", str(data), "--task", "detection", "--out", str(tmp_path / "out"), "--json", *extra]
        return run(argv, capsys)

    return run_with


def test_eval_run_refuses_answers_of_another_checkpoint(run_eval, tmp_path):
    assert run_eval("--model", str(tmp_path / "a"))[0] == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["model"].startswith(str((tmp_path / "a").resolve()))
    assert run_eval("--model", str(tmp_path / "a"))[0] == 0  # the same checkpoint resumes
    code, out, err = run_eval("--model", str(tmp_path / "b"))
    assert code == 2 and out == ""
    assert "answers.jsonl: these answers are of another run (other model" in err and "--restart" in err
    assert run_eval("--model", str(tmp_path / "b"), "--restart")[0] == 0


def test_eval_run_refuses_answers_of_a_checkpoint_saved_again_under_its_name(run_eval, tmp_path):
    assert run_eval("--model", str(tmp_path / "a"))[0] == 0
    (tmp_path / "a" / "model.safetensors").write_bytes(b"retrained weights")
    code, _, err = run_eval("--model", str(tmp_path / "a"))
    assert code == 2 and "other model" in err


def test_eval_run_names_the_embedded_checkpoint_and_hub_ids(run_eval, tmp_path):
    (tmp_path / "nano").mkdir()
    (tmp_path / "nano" / "model.safetensors").write_bytes(b"nano")
    assert run_eval()[0] == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["model"].startswith(str((tmp_path / "nano").resolve()))
    assert run_eval("--model", "IDEA-Research/Rex-Omni", "--restart")[0] == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["model"] == "IDEA-Research/Rex-Omni"


def test_eval_run_summary_is_a_short_table_not_a_raw_dict(tmp_path, monkeypatch, capsys):
    import types

    monkeypatch.setitem(sys.modules, "rexomni_core.model", types.SimpleNamespace(RexOmni=BlankModel, NANO_DIR=tmp_path))
    data = _dataset_folder(tmp_path / "data")
    code, out, _ = run(["eval", "run", "--data", str(data), "--task", "detection", "--out", str(tmp_path / "out")], capsys)
    assert code == 0
    assert "{" not in out and "macro IoU 0.50" in out and "well_formed" in out
    assert f"{tmp_path / 'out'}/ (metrics.json)" in out
    assert max(len(line) for line in out.splitlines()[:-1]) < 100  # the last line is the folder
