"""COCO, TSV and JSONL: pycocotools loads what synth writes, round trips keep every field,
bad input is an error naming file, record and field, or a counted skip in lenient mode."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from rexomni_core.cli import main
from rexomni_core.data.formats import (
    CocoDataset,
    JsonlDataset,
    TsvDataset,
    write_coco,
    write_jsonl,
    write_tsv,
)
from rexomni_core.data.formats.records import Record
from rexomni_core.data.worlds import WORLDS, generate
from rexomni_core.errors import BadRecordError, SkipReport


@pytest.fixture(scope="module")
def synth_dirs(tmp_path_factory):
    dirs = {}
    for world in WORLDS:
        out = tmp_path_factory.mktemp(world)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            assert main(["data", "synth", "--world", world, "--n", "3", "--seed", "4", "--out", str(out)]) == 0
        dirs[world] = out
    return dirs


def test_pycocotools_loads_every_generated_file(synth_dirs):
    for world, out in synth_dirs.items():
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(out / "annotations.json"))
        assert len(coco.imgs) == 3 and coco.anns
        for ann in coco.anns.values():
            if "segmentation" in ann:
                assert coco.annToMask(ann).any()
        if world == "keypoints":
            assert coco.cats[1]["keypoints"][0] == "nose"
            assert all(len(a["keypoints"]) == 51 for a in coco.anns.values())


def test_synth_is_deterministic_and_resumable(synth_dirs, tmp_path):
    out = tmp_path / "again"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        main(["data", "synth", "--world", "shapes", "--n", "3", "--seed", "4", "--out", str(out)])
    first = synth_dirs["shapes"]
    assert (out / "annotations.json").read_bytes() == (first / "annotations.json").read_bytes()
    assert (out / "images/000002.png").read_bytes() == (first / "images/000002.png").read_bytes()
    (out / "images/000001.png").unlink()
    stdout = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(stdout):
        main(["data", "synth", "--world", "shapes", "--n", "3", "--seed", "4", "--out", str(out)])
    assert "wrote 1 images (2 already there)" in stdout.getvalue()


def _fields(record):
    return [
        (a.category, [round(v, 3) for v in a.box], a.text, a.polygon, a.keypoints,
         None if a.mask is None else (a.mask.x, a.mask.y, a.mask.bits.tobytes()))
        for a in record.annotations
    ]


@pytest.mark.parametrize("world", ["shapes", "ocr", "keypoints"])
def test_coco_tsv_jsonl_round_trip(synth_dirs, tmp_path, world):
    coco = CocoDataset(synth_dirs[world] / "annotations.json")
    originals = list(coco)
    write_tsv(originals, tmp_path / "tsv")
    tsv = TsvDataset(tmp_path / "tsv")
    assert len(tsv) == 3
    from_tsv = list(tsv)
    for original, again in zip(originals, from_tsv):
        assert _fields(original) == _fields(again)
        assert np.array_equal(np.asarray(original.load_image()), np.asarray(again.load_image()))
    write_jsonl(from_tsv, tmp_path / "a.jsonl")
    from_jsonl = list(JsonlDataset(tmp_path / "a.jsonl"))
    assert [_fields(r) for r in from_jsonl] == [_fields(r) for r in originals]
    write_coco(from_jsonl, tmp_path / "back.json")
    assert [_fields(r) for r in CocoDataset(tmp_path / "back.json")] == [_fields(r) for r in originals]


def test_crowd_regions_are_flagged(tmp_path):
    scene = generate("shapes", 1)
    path = tmp_path / "c.json"
    write_coco([Record(scene.image, scene.width, scene.height, scene.annotations, name="x")], path)
    data = json.loads(path.read_text())
    data["annotations"][0]["iscrowd"] = 1
    path.write_text(json.dumps(data))
    record = CocoDataset(path)[0]
    assert record.annotations[0].attributes["iscrowd"] == "1"
    assert record.annotations[0].mask.bits.any()


@pytest.fixture()
def small_tsv(tmp_path):
    scene = generate("shapes", 2)
    records = [Record(scene.image, scene.width, scene.height, scene.annotations, name=f"r{i}") for i in range(3)]
    write_tsv(records, tmp_path)
    return tmp_path


def test_truncated_tsv_line_names_file_and_line(small_tsv):
    lines = (small_tsv / "annotations.tsv").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    (small_tsv / "annotations.tsv").write_text("\n".join(lines) + "\n")
    (small_tsv / "annotations.lineidx").unlink()  # offsets changed: let the reader rescan
    with pytest.raises(BadRecordError, match=r"annotations.tsv, line 2: truncated or invalid JSON"):
        list(TsvDataset(small_tsv))
    report = SkipReport()
    assert len(list(TsvDataset(small_tsv, lenient=True, report=report))) == 2
    assert report.counts["bad records"] == 1 and "line 2" in report.examples[0]


def _jsonl_with(tmp_path, annotation):
    scene = generate("shapes", 3)
    scene.image.save(tmp_path / "img.png")
    record = {"name": "r", "image": "img.png", "width": scene.width, "height": scene.height, "annotations": [annotation]}
    (tmp_path / "d.jsonl").write_text(json.dumps(record) + "\n")
    return tmp_path / "d.jsonl"


@pytest.mark.parametrize(
    "bbox,message",
    [([10, 10, 10, 20], "zero area"), ([10, 10, 9000, 20], "outside"), ([1, 2, 3], "4 numbers")],
)
def test_bad_boxes_are_errors_or_counted_skips(tmp_path, bbox, message):
    path = _jsonl_with(tmp_path, {"category": "red circle", "bbox": bbox})
    with pytest.raises(BadRecordError, match=rf"d.jsonl, line 1, annotation 0: .*{message}"):
        list(JsonlDataset(path))
    report = SkipReport()
    records = list(JsonlDataset(path, lenient=True, report=report))
    assert records[0].annotations == [] and report.counts["bad annotations"] == 1


def test_missing_image_file(tmp_path):
    path = _jsonl_with(tmp_path, {"category": "red circle", "bbox": [1, 1, 5, 5]})
    (tmp_path / "img.png").unlink()
    with pytest.raises(FileNotFoundError, match="img.png"):
        list(JsonlDataset(path))
    report = SkipReport()
    assert list(JsonlDataset(path, lenient=True, report=report)) == []
    assert report.counts["missing images"] == 1


def test_unknown_category_id(tmp_path):
    scene = generate("shapes", 1)
    path = tmp_path / "c.json"
    write_coco([Record(scene.image, scene.width, scene.height, scene.annotations[:1], name="x")], path)
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BadRecordError, match="annotation id 1: unknown category_id 99"):
        CocoDataset(path)[0]
    report = SkipReport()
    assert CocoDataset(path, lenient=True, report=report)[0].annotations == []
    assert report.total == 1


def test_cli_convert_and_show(synth_dirs, tmp_path):
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "convert", str(synth_dirs["gui"] / "annotations.json"), str(tmp_path / "t"), "--from", "coco", "--to", "tsv"]) == 0
        assert main(["data", "show", "--input", str(tmp_path / "t"), "--format", "tsv", "--n", "1", "--out", str(tmp_path / "s")]) == 0
        assert main(["data", "show", "--world", "ocr", "--n", "2", "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("*.png"))) == 3
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["data", "convert", str(tmp_path / "nope.json"), str(tmp_path / "x"), "--from", "coco", "--to", "tsv"]) == 2
    assert "not found" in stderr.getvalue()
