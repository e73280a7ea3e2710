"""Data commands never destroy or corrupt what they are given: convert refuses to write onto its
source or (without --overwrite) an existing dataset, every writer replaces its files atomically,
synth resumes only a folder it made with the same parameters, image paths stay inside their
root, and malformed COCO / JSONL input is a one-line error naming the field, never a traceback."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rexomni_core.cli import main
from rexomni_core.data.formats import JsonlDataset, TsvDataset, write_coco, write_jsonl, write_tsv
from rexomni_core.data.formats.records import Record
from rexomni_core.data.worlds import generate
from rexomni_core.errors import BadRecordError, InputError, RecordProblem


def quiet_main(*argv) -> int:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return main(list(argv))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A shapes dataset of 3 images: images/ and annotations.json (read-only for the tests)."""
    out = tmp_path_factory.mktemp("synth")
    assert quiet_main("data", "synth", "--world", "shapes", "--n", "3", "--seed", "0", "--out", str(out)) == 0
    return out


@pytest.fixture()
def coco_copy(synth, tmp_path) -> Path:
    """A private copy of the synth dataset (so a test may edit it); returns its COCO file."""
    folder = tmp_path / "coco"
    shutil.copytree(synth, folder)
    return folder / "annotations.json"


def pixel_records(prefix: str, count: int, seed: int = 0) -> list[Record]:
    scene = generate("shapes", seed)
    return [Record(scene.image, scene.width, scene.height, scene.annotations, name=f"{prefix}{i}") for i in range(count)]


# --- 1. convert onto its source, over an existing destination, and failed writes -----------------


def test_convert_refuses_to_write_onto_its_own_jsonl_source(coco_copy, capsys):
    jsonl = coco_copy.parent / "d.jsonl"
    assert quiet_main("data", "convert", str(coco_copy), str(jsonl), "--from", "coco", "--to", "jsonl") == 0
    before = jsonl.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "data", "convert", str(jsonl), str(jsonl), "--from", "jsonl", "--to", "jsonl", *extra)
        assert code == 2 and "source" in err and len(err.strip().splitlines()) == 1
    assert jsonl.read_bytes() == before


def test_convert_refuses_to_write_onto_its_own_tsv_source(coco_copy, tmp_path, capsys):
    folder = tmp_path / "t"
    assert quiet_main("data", "convert", str(coco_copy), str(folder), "--from", "coco", "--to", "tsv") == 0
    before = snapshot(folder)
    (tmp_path / "link").symlink_to(folder)  # the same folder by another name
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "data", "convert", str(folder), str(tmp_path / "link"), "--from", "tsv", "--to", "tsv", *extra)
        assert code == 2 and "source" in err
    assert snapshot(folder) == before and len(TsvDataset(folder)) == 3


def test_convert_refuses_an_existing_destination_unless_overwrite(coco_copy, tmp_path, capsys):
    jsonl = tmp_path / "d.jsonl"
    argv = ["data", "convert", str(coco_copy), str(jsonl), "--from", "coco", "--to", "jsonl"]
    assert run(capsys, *argv)[0] == 0
    jsonl.write_text("")  # the user's file: must survive a plain convert
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--overwrite" in err and str(jsonl) in err
    assert jsonl.read_text() == ""
    assert run(capsys, *argv, "--overwrite")[0] == 0
    assert len(list(JsonlDataset(jsonl))) == 3


def _failing(records):
    """The records, then a bad one: a write that fails half-way."""
    yield from records
    raise BadRecordError(RecordProblem("the source", "record 'bad'", None, "broken on purpose"))


@pytest.mark.parametrize("writer, target", [(write_tsv, "dst"), (write_jsonl, "dst/d.jsonl"), (write_coco, "dst/d.json")])
def test_a_failed_write_leaves_the_old_destination_untouched(tmp_path, writer, target):
    destination = tmp_path / target
    writer(pixel_records("old", 6), destination)
    before = snapshot(tmp_path / "dst")
    with pytest.raises(BadRecordError, match="broken on purpose"):
        writer(_failing(pixel_records("new", 3, seed=1)), destination)
    assert snapshot(tmp_path / "dst") == before  # no partial file, no new image, no temporary left


def test_failed_strict_convert_keeps_the_old_tsv_whole(tmp_path, capsys):
    folder = tmp_path / "t"
    write_tsv(pixel_records("old", 6), folder)
    scene = generate("shapes", 2)
    scene.image.save(tmp_path / "img.png")
    good = {"name": "a", "image": "img.png", "width": scene.width, "height": scene.height, "annotations": []}
    (tmp_path / "d.jsonl").write_text("\n".join([json.dumps(good), "{not json", json.dumps(good)]) + "\n")
    code, _, err = run(capsys, "data", "convert", str(tmp_path / "d.jsonl"), str(folder), "--from", "jsonl", "--to", "tsv", "--overwrite")
    assert code == 2 and "line 2" in err
    assert [r.name for r in TsvDataset(folder)] == [f"old{i}" for i in range(6)]


def test_a_lineidx_that_does_not_fit_its_tsv_is_refused(tmp_path):
    """A TSV cut short beside its old index (as the writer used to leave one) reads as an error."""
    write_tsv(pixel_records("old", 6), tmp_path)
    lines = (tmp_path / "annotations.tsv").read_text().splitlines(keepends=True)
    (tmp_path / "annotations.tsv").write_text("".join(lines[:3]))
    with pytest.raises(InputError, match=r"annotations.lineidx: .*annotations.tsv"):
        TsvDataset(tmp_path)


def test_convert_never_overwrites_a_different_image_of_the_user(tmp_path):
    write_tsv(pixel_records("r", 2), tmp_path / "t")
    (tmp_path / "out" / "images").mkdir(parents=True)
    theirs = tmp_path / "out" / "images" / "r0.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(theirs)
    before = theirs.read_bytes()
    assert quiet_main("data", "convert", str(tmp_path / "t"), str(tmp_path / "out" / "d.jsonl"), "--from", "tsv", "--to", "jsonl") == 0
    assert theirs.read_bytes() == before
    originals = list(TsvDataset(tmp_path / "t"))
    for original, again in zip(originals, JsonlDataset(tmp_path / "out" / "d.jsonl")):
        assert np.array_equal(np.asarray(original.load_image()), np.asarray(again.load_image()))


def test_convert_into_another_folder_stays_readable(coco_copy, tmp_path):
    """Images outside the destination's folder are copied beside it (readers refuse '..' paths)."""
    for fmt, target in (("jsonl", "elsewhere/d.jsonl"), ("coco", "other/c.json")):
        assert quiet_main("data", "convert", str(coco_copy), str(tmp_path / target), "--from", "coco", "--to", fmt) == 0
    assert len(list(JsonlDataset(tmp_path / "elsewhere/d.jsonl"))) == 3
    assert quiet_main("data", "convert", str(tmp_path / "other/c.json"), str(tmp_path / "t"), "--from", "coco", "--to", "tsv") == 0
    assert len(TsvDataset(tmp_path / "t")) == 3


# --- 2. synth resumes only its own folder ---------------------------------------------------------


SYNTH = ["data", "synth", "--world", "shapes", "--split", "normal", "--n", "2", "--seed", "1"]


@pytest.mark.parametrize("change, named", [
    (["--world", "ocr"], "world"), (["--seed", "2"], "seed"), (["--split", "dense"], "split"),
])
def test_synth_refuses_a_folder_made_with_other_parameters(tmp_path, capsys, change, named):
    out = str(tmp_path / "d")
    assert run(capsys, *SYNTH, "--out", out)[0] == 0
    before = snapshot(tmp_path / "d")
    code, _, err = run(capsys, *SYNTH, *change, "--out", out)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path / "d") == before


def test_synth_refuses_images_without_a_manifest(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "000000.png")
    code, _, err = run(capsys, *SYNTH, "--out", str(tmp_path))
    assert code == 2 and "synth.json" in err
    assert not (tmp_path / "annotations.json").exists()


def test_synth_resumes_and_grows_with_a_matching_manifest(tmp_path, capsys):
    assert run(capsys, *SYNTH, "--out", str(tmp_path))[0] == 0
    grown = [*SYNTH[:-4], "--n", "3", "--seed", "1", "--out", str(tmp_path)]
    code, out, _ = run(capsys, *grown)
    assert code == 0 and "wrote 1 images (2 already there)" in out
    assert len(json.loads((tmp_path / "annotations.json").read_text())["images"]) == 3
    manifest = json.loads((tmp_path / "synth.json").read_text())
    assert manifest == {"world": "shapes", "split": "normal", "seed": 1, "n": 3}


def test_write_synthetic_dataset_is_what_the_cli_writes(synth, tmp_path):
    from rexomni_core.data.synth import write_synthetic_dataset

    result = write_synthetic_dataset(tmp_path, "shapes", 3, seed=0)
    assert result.annotations == tmp_path / "annotations.json" and (result.written, result.reused) == (3, 0)
    assert result.annotations.read_bytes() == (synth / "annotations.json").read_bytes()
    with pytest.raises(InputError, match="seed"):
        write_synthetic_dataset(tmp_path, "shapes", 3, seed=5)


def test_synth_writes_annotations_atomically(tmp_path, monkeypatch):
    assert quiet_main(*SYNTH, "--out", str(tmp_path)) == 0
    before = snapshot(tmp_path)
    real_write_text = Path.write_text

    def half_then_disk_full(self, text, *args, **kwargs):
        if text.startswith('{"images"'):
            real_write_text(self, text[: len(text) // 2])
            raise OSError("disk full")
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", half_then_disk_full)
    with pytest.raises(OSError, match="disk full"):
        quiet_main(*SYNTH, "--out", str(tmp_path))
    assert snapshot(tmp_path) == before


# --- 3. image paths stay inside their root ---------------------------------------------------------


def _escapes(tmp_path: Path) -> list[str]:
    """Image names that leave the dataset folder, each naming a real file."""
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    return ["../secret.png", str(secret), "../" * 12 + "etc/passwd"]


def test_coco_file_name_outside_the_image_root_is_refused_or_skipped(coco_copy, tmp_path, capsys):
    for i, name in enumerate(_escapes(tmp_path)):
        data = json.loads(coco_copy.read_text())
        data["images"][1]["file_name"] = name
        coco_copy.write_text(json.dumps(data))
        out = tmp_path / f"t{i}"
        code, _, err = run(capsys, "data", "convert", str(coco_copy), str(out), "--from", "coco", "--to", "tsv")
        assert code == 2 and "file_name" in err and "image id 2" in err and len(err.strip().splitlines()) == 1
        assert not out.exists() or not any(out.iterdir())
        code, printed, _ = run(capsys, "data", "convert", str(coco_copy), str(out), "--from", "coco", "--to", "tsv", "--lenient")
        assert code == 0 and "skipped 1: 1 bad records" in printed and "file_name" in printed
        assert [r.name for r in TsvDataset(out)] == ["000000", "000002"]


def test_jsonl_image_outside_its_folder_is_refused_or_skipped(tmp_path, capsys):
    folder = tmp_path / "j"
    folder.mkdir()
    for name in _escapes(tmp_path):
        record = {"name": "r", "image": name, "width": 8, "height": 8, "annotations": []}
        (folder / "d.jsonl").write_text(json.dumps(record) + "\n")
        with pytest.raises(BadRecordError, match=r"d.jsonl, line 1: field 'image'"):
            list(JsonlDataset(folder / "d.jsonl"))
        code, printed, _ = run(capsys, "data", "convert", str(folder / "d.jsonl"), str(tmp_path / "o.json"),
                               "--from", "jsonl", "--to", "coco", "--lenient", "--overwrite")
        assert code == 0 and "skipped 1: 1 bad records" in printed


# --- 4. malformed COCO and JSONL: one line naming the field, or a counted skip ---------------------


def _first_annotation(data):
    return data["annotations"][0]


def _category_of_first_annotation(data):
    return next(c for c in data["categories"] if c["id"] == data["annotations"][0]["category_id"])


def _size_of_first_annotation_image(data):
    image = next(i for i in data["images"] if i["id"] == data["annotations"][0]["image_id"])
    return [image["height"], image["width"]]


COCO_CASES = {
    # name: (edit of the parsed file, returning the new top level; field named; lenient outcome)
    "image without width": (lambda d: d["images"][0].pop("width") and d, "width", "bad records"),
    "file_name not a string": (lambda d: d["images"][0].update(file_name=7) or d, "file_name", "bad records"),
    "height not an integer": (lambda d: d["images"][0].update(height="64") or d, "height", "bad records"),
    "bbox with strings": (lambda d: _first_annotation(d).update(bbox=["1", "2", "3", "4"]) or d, "bbox", "bad annotations"),
    "bbox mixed types": (lambda d: _first_annotation(d).update(bbox=[1, "2", 3, 4]) or d, "bbox", "bad annotations"),
    "keypoints too short": (
        lambda d: _category_of_first_annotation(d).update(keypoints=["a", "b"]) or _first_annotation(d).update(keypoints=[1, 2, 2]) or d,
        "keypoints", "bad annotations"),
    "keypoints not numbers": (
        lambda d: _category_of_first_annotation(d).update(keypoints=["a"]) or _first_annotation(d).update(keypoints=[1, 2, "v"]) or d,
        "keypoints", "bad annotations"),
    "RLE size short": (lambda d: _first_annotation(d).update(segmentation={"size": [2]}) or d, "segmentation", "bad annotations"),
    "RLE counts wrong type": (
        lambda d: _first_annotation(d).update(segmentation={"size": _size_of_first_annotation_image(d), "counts": 5}) or d,
        "segmentation", "bad annotations"),
    "RLE counts garbage": (
        lambda d: _first_annotation(d).update(segmentation={"size": _size_of_first_annotation_image(d), "counts": "abc"}) or d,
        "segmentation", "bad annotations"),
    "RLE counts too few": (
        lambda d: _first_annotation(d).update(segmentation={"size": _size_of_first_annotation_image(d), "counts": "0"}) or d,
        "segmentation", "bad annotations"),
    "polygon too short": (lambda d: _first_annotation(d).update(segmentation=[[1, 2]]) or d, "segmentation", "bad annotations"),
    "segmentation a string": (lambda d: _first_annotation(d).update(segmentation="x") or d, "segmentation", "bad annotations"),
    "text not a string": (lambda d: _first_annotation(d).update(text=5) or d, "text", "bad annotations"),
    "attributes not an object": (lambda d: _first_annotation(d).update(attributes="x") or d, "attributes", "bad annotations"),
    "annotation not an object": (lambda d: d["annotations"].append(3) or d, "annotations", "bad annotations"),
    "annotation for no image": (lambda d: _first_annotation(d).update(image_id=999) or d, "image_id", "bad annotations"),
    "categories missing": (lambda d: d.pop("categories") and d, "categories", None),
    "category without name": (lambda d: d["categories"][0].pop("name") and d, "name", None),
    "images not a list": (lambda d: d.update(images={}) or d, "images", None),
    "image without id": (lambda d: d["images"][0].pop("id") and d, "id", None),
    "top level a list": (lambda d: [d], "JSON object", None),
}


def _convert(capsys, source, fmt, destination, *extra):
    return run(capsys, "data", "convert", str(source), str(destination), "--from", fmt, "--to", "tsv", *extra)


def _assert_one_line_naming(code, err, field):
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert field in err


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_malformed_coco_is_one_line_naming_the_field(synth, tmp_path, capsys, case):
    edit, field, lenient_reason = COCO_CASES[case]
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(edit(json.loads((synth / "annotations.json").read_text()))))
    code, _, err = _convert(capsys, source, "coco", tmp_path / "t", "--image-root", str(synth))
    _assert_one_line_naming(code, err, field)
    assert str(source) in err
    code, printed, err = _convert(capsys, source, "coco", tmp_path / "t", "--image-root", str(synth), "--lenient")
    if lenient_reason is None:  # the file as a whole is broken: lenient reading cannot skip it
        _assert_one_line_naming(code, err, field)
    else:
        assert code == 0 and f"1 {lenient_reason}" in printed and field in printed


JSONL_CASES = {
    "mask size short": ({"mask": {"size": [2]}}, "mask", "bad annotations"),
    "mask counts wrong type": ({"mask": {"size": [64, 64], "counts": {"a": 1}}}, "mask", "bad annotations"),
    "mask size not the image's": ({"mask": {"size": [3, 3], "counts": [9]}}, "mask", "bad annotations"),
    "polygon not numbers": ({"polygon": ["a", 1, 2, 3, 4, 5]}, "polygon", "bad annotations"),
    "keypoints not an object": ({"keypoints": [1, 2]}, "keypoints", "bad annotations"),
    "keypoint not a point": ({"keypoints": {"nose": [1]}}, "keypoints", "bad annotations"),
    "annotations not a list": ({"annotations": 5}, "annotations", "bad records"),
}


@pytest.mark.parametrize("case", list(JSONL_CASES))
def test_malformed_jsonl_is_one_line_naming_the_field(tmp_path, capsys, case):
    change, field, lenient_reason = JSONL_CASES[case]
    Image.new("RGB", (64, 64)).save(tmp_path / "img.png")
    annotation = {"category": "red circle", "bbox": [1, 1, 9, 9]}
    record = {"name": "r", "image": "img.png", "width": 64, "height": 64, "annotations": [annotation]}
    if "annotations" in change:
        record.update(change)
    else:
        annotation.update(change)
    source = tmp_path / "d.jsonl"
    source.write_text(json.dumps(record) + "\n")
    code, _, err = _convert(capsys, source, "jsonl", tmp_path / "t")
    _assert_one_line_naming(code, err, field)
    assert "d.jsonl, line 1" in err
    code, printed, _ = _convert(capsys, source, "jsonl", tmp_path / "t", "--lenient")
    assert code == 0 and f"1 {lenient_reason}" in printed and field in printed
