"""`eval run`: predict a dataset, then score; checked with a stand-in model that reads the truth."""

import json
import re

import pytest
from PIL import Image

from rexomni_core import Box, Keypoints, Point, Polygon, parse, serialize
from rexomni_core.errors import InputError
from rexomni_core.eval.run import build_queries, evaluate_model, find_dataset
from rexomni_core.grammar import serialize_keypoints

GT = {
    "images": [{"id": 1, "width": 200, "height": 100, "file_name": "a.png"},
               {"id": 2, "width": 200, "height": 100, "file_name": "b.png"}],
    "categories": [{"id": 1, "name": "red circle"}, {"id": 2, "name": "blue star"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 20, 50, 50], "area": 2500, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [60, 40, 30, 30], "area": 900, "iscrowd": 0},
    ],
}


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "images").mkdir()
    for image in GT["images"]:
        Image.new("RGB", (200, 100)).save(tmp_path / "images" / image["file_name"])
    (tmp_path / "annotations.json").write_text(json.dumps(GT))
    return tmp_path


class TruthModel:
    """Answers with the ground truth of the asked phrases, plus one hallucination when told."""

    def __init__(self, hallucinate=False, repeat=False):
        self.calls = 0
        self.hallucinate = hallucinate
        self.repeat = repeat  # write every box twice, as a degenerate SFT model does

    def predict(self, image, task="detection", categories=None, visual_prompt_boxes=None):
        self.calls += 1
        image_id = 1 if image.endswith("a.png") else 2
        names = {c["id"]: c["name"] for c in GT["categories"]}
        truth = [(names[a["category_id"]], a["bbox"]) for a in GT["annotations"] if a["image_id"] == image_id]
        if visual_prompt_boxes:
            reference = visual_prompt_boxes[0]
            phrase = next(n for n, (x, y, w, h) in truth if [x, y, x + w, y + h] == reference)
            truth = [(n, b) for n, b in truth if n == phrase]
        else:
            truth = [(n, b) for n, b in truth if n in categories]
        if task == "pointing":
            regions = [Point(n, [x + w / 2, y + h / 2]) for n, (x, y, w, h) in truth]
        else:
            regions = [Box(n, [x, y, x + w, y + h]) for n, (x, y, w, h) in truth]
        if self.hallucinate:
            regions.append(Box("blue star", [0, 0, 5, 5]))
        if self.repeat:
            regions = [r for region in regions for r in (region, region)]
        text = serialize(regions, 200, 100, task=task, phrases=categories)
        return parse(text, 200, 100, task=task)


def test_dataset_folder_and_queries(dataset):
    gt_file, data_dir = find_dataset(dataset)
    assert gt_file.name == "annotations.json" and data_dir == dataset
    queries = build_queries(GT, data_dir, "detection")
    assert queries[0].image_path == dataset / "images" / "a.png"
    assert [q.categories for q in queries] == [["red circle", "blue star"], ["red circle"]]
    assert [q.categories for q in build_queries(GT, data_dir, "detection", "all")][1] == ["red circle", "blue star"]
    assert [q.visual_prompt_boxes for q in build_queries(GT, data_dir, "visual_prompting")] == [
        [[10, 10, 50, 40]], [[100, 20, 150, 70]], [[60, 40, 90, 70]]]


def test_padded_prompts_ask_the_present_categories_and_seeded_absent_ones_up_to_ten(dataset):
    """`padded`: every present category, absent ones drawn per image (the same on every run) to
    PADDED_PHRASES in all, in the dataset's category order; a dataset of fewer asks all of them."""
    from rexomni_core.eval.run import PADDED_PHRASES

    names = [f"{colour} {shape}" for colour in ("red", "blue", "green") for shape in ("circle", "star", "square", "hexagon")]
    payload = {**GT, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    present = [[names[a["category_id"] - 1] for a in GT["annotations"] if a["image_id"] == image["id"]]
               for image in GT["images"]]
    queries = build_queries(payload, dataset, "detection", "padded")
    assert [len(q.categories) for q in queries] == [PADDED_PHRASES] * len(queries)
    for query, held in zip(queries, present):
        assert set(held) <= set(query.categories) and query.categories == sorted(query.categories, key=names.index)
    assert queries[0].categories != queries[1].categories  # drawn per image
    assert [q.categories for q in build_queries(payload, dataset, "detection", "padded")] == [q.categories for q in queries]
    assert [q.categories for q in build_queries(GT, dataset, "detection", "padded")] == [["red circle", "blue star"]] * 2


@pytest.mark.parametrize("task, key", [("detection", "f1@0.5"), ("pointing", "f1@point"), ("visual_prompting", "f1@0.5")])
def test_a_perfect_model_scores_one(dataset, tmp_path, task, key):
    metrics = evaluate_model(TruthModel(), dataset, task, tmp_path / "out")
    assert metrics[key] == pytest.approx(1.0)
    assert metrics["well_formed"] == 1.0 and metrics["answers"] == (3 if task == "visual_prompting" else 2)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())[key] == pytest.approx(1.0)


def test_hallucinations_lower_precision(dataset, tmp_path):
    metrics = evaluate_model(TruthModel(hallucinate=True), dataset, "detection", tmp_path / "out")
    assert metrics["recall@0.5"] == pytest.approx(1.0) and metrics["precision@0.5"] < 1.0


def test_detection_runs_report_duplicates_and_large_boxes(dataset, tmp_path):
    clean = evaluate_model(TruthModel(), dataset, "detection", tmp_path / "clean")
    assert clean["duplicate_rate"] == 0.0 and clean["large_box_rate"] == 0.0
    repeated = evaluate_model(TruthModel(repeat=True), dataset, "detection", tmp_path / "repeated")
    assert repeated["duplicate_rate"] == pytest.approx(0.5)  # 3 of 6 boxes repeat an earlier one
    assert repeated["precision@0.5"] == pytest.approx(0.5) and repeated["recall@0.5"] == pytest.approx(1.0)
    # The paper's definition also needs a coordinate repeated 10 times in a row: not here.
    assert repeated["degenerate_answer_rate"] == 0.0


def test_an_interrupted_run_resumes_without_asking_again(dataset, tmp_path):
    model = TruthModel()
    evaluate_model(model, dataset, "detection", tmp_path / "out")
    lines = (tmp_path / "out" / "answers.jsonl").read_text().splitlines()
    (tmp_path / "out" / "answers.jsonl").write_text(lines[0] + "\n")  # as if stopped after one image
    model.calls = 0
    metrics = evaluate_model(model, dataset, "detection", tmp_path / "out")
    assert model.calls == 1 and metrics["f1@0.5"] == pytest.approx(1.0)
    # Without resuming, every image is asked again and the file holds only the new answers.
    model.calls = 0
    evaluate_model(model, dataset, "detection", tmp_path / "out", resume=False)
    assert model.calls == len(lines)
    assert len((tmp_path / "out" / "answers.jsonl").read_text().splitlines()) == len(lines)


def test_missing_images_and_unknown_tasks_are_clear_errors(dataset, tmp_path):
    (dataset / "images" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="image 2: b.png is in neither"):
        evaluate_model(TruthModel(), dataset, "detection", tmp_path / "out")
    with pytest.raises(ValueError, match="eval run supports tasks"):
        build_queries(GT, dataset, "segmentation")


class AnnotationModel:
    """Answers OCR, GUI and keypoint queries from a synthesized dataset's own annotations."""

    def __init__(self, payload):
        self.payload = payload

    def predict(self, image, task, categories=None, keypoint_type=None, visual_prompt_boxes=None):
        info = next(i for i in self.payload["images"] if image.endswith(i["file_name"]))
        names = {c["id"]: c for c in self.payload["categories"]}
        mine = [a for a in self.payload["annotations"] if a["image_id"] == info["id"]]
        w, h = info["width"], info["height"]
        if task.startswith("ocr"):
            regions = [Box(a["text"], _xyxy(a["bbox"])) if task == "ocr_box" else Polygon(a["text"], a["segmentation"][0])
                       for a in mine if names[a["category_id"]]["name"] == categories[0]]
        elif task.startswith("gui"):
            target = next(a for a in mine if f"{a['text']} {names[a['category_id']]['name']}" == categories[0])
            x0, y0, x1, y1 = _xyxy(target["bbox"])
            regions = [Box(categories[0], [x0, y0, x1, y1])] if task == "gui_grounding" else [Point(categories[0], [(x0 + x1) / 2, (y0 + y1) / 2])]
        else:
            schema = names[mine[0]["category_id"]]["keypoints"]
            regions = [
                Keypoints("person", {n: a["keypoints"][3 * k: 3 * k + 2] if a["keypoints"][3 * k + 2] else None
                                     for k, n in enumerate(schema)}, box=_xyxy(a["bbox"]))
                for a in mine
            ]
            return parse(serialize_keypoints(regions, w, h), w, h, task=task)
        return parse(serialize(regions, w, h, task=task), w, h, task=task)


def _xyxy(bbox):
    x, y, bw, bh = bbox
    return [x, y, x + bw, y + bh]


@pytest.mark.parametrize("world, task, key", [
    ("ocr", "ocr_box", "e2e_f1@0.5"), ("ocr", "ocr_polygon", "e2e_f1@0.5"),
    ("gui", "gui_grounding", "accuracy"), ("gui", "gui_pointing", "accuracy"),
    ("keypoints", "keypoint", "f1@oks0.5"),
])
def test_region_tasks_score_a_perfect_answer_as_one(tmp_path, world, task, key):
    from rexomni_core.cli import main

    assert main(["data", "synth", "--world", world, "--n", "2", "--seed", "5", "--out", str(tmp_path / "data")]) == 0
    payload = json.loads((tmp_path / "data" / "annotations.json").read_text())
    metrics = evaluate_model(AnnotationModel(payload), tmp_path / "data", task, tmp_path / "out")
    assert metrics[key] == pytest.approx(1.0)
    assert metrics["well_formed"] == 1.0


# ---------------------------------------------------------------- reusing an output folder


def _other_dataset(tmp_path):
    """Same image names as `dataset`, other annotations: answers for one are wrong for the other."""
    other = json.loads(json.dumps(GT))
    for annotation in other["annotations"]:
        annotation["bbox"] = [b + 5 for b in annotation["bbox"]]
    folder = tmp_path / "other"
    (folder / "images").mkdir(parents=True)
    for image in other["images"]:
        Image.new("RGB", (200, 100)).save(folder / "images" / image["file_name"])
    (folder / "annotations.json").write_text(json.dumps(other))
    return folder


def test_answers_of_another_dataset_are_not_reused(dataset, tmp_path):
    out, other = tmp_path / "out", _other_dataset(tmp_path)
    evaluate_model(TruthModel(), dataset, "detection", out)
    kept = (out / "answers.jsonl").read_bytes()
    with pytest.raises(InputError, match=r"answers\.jsonl.*other dataset.*--restart"):
        evaluate_model(TruthModel(), other, "detection", out)
    assert (out / "answers.jsonl").read_bytes() == kept  # refused, and nothing lost
    # Asked afresh, the other dataset gets its real score (TruthModel answers with `dataset`'s boxes).
    metrics = evaluate_model(TruthModel(), other, "detection", out, resume=False)
    assert 0 < metrics["f1@0.5"] < 1


@pytest.mark.parametrize("change", ["model", "categories", "decoding"])
def test_answers_of_another_model_or_setting_are_not_reused(dataset, tmp_path, change):
    class SettingsModel(TruthModel):
        def predict(self, image, task="detection", categories=None, visual_prompt_boxes=None, **generation):
            return super().predict(image, task, categories, visual_prompt_boxes)

    out = tmp_path / "out"
    evaluate_model(SettingsModel(), dataset, "detection", out, model_fingerprint="checkpoint A")
    other = {"model": dict(model_fingerprint="checkpoint B"),
             "categories": dict(model_fingerprint="checkpoint A", categories="all"),
             "decoding": dict(model_fingerprint="checkpoint A", max_new_tokens=7)}[change]
    with pytest.raises(InputError, match=f"other {change}.*--restart.*--out"):
        evaluate_model(SettingsModel(), dataset, "detection", out, **other)
    model = SettingsModel()
    evaluate_model(model, dataset, "detection", out, model_fingerprint="checkpoint A")
    assert model.calls == 0  # the same run resumes


class DecodingModel(TruthModel):
    """`RexOmni.predict`'s decoding arguments, with its defaults, and its coordinate-mass switch."""

    coordinate_mass_decoding = True

    def predict(self, image, task="detection", categories=None, visual_prompt_boxes=None, constrained=True,
                score_threshold=None, max_regions=None, fast_decode=True, **generation):
        return super().predict(image, task, categories, visual_prompt_boxes)


def test_run_json_records_the_decoding_and_a_run_decoded_otherwise_is_not_reused(dataset, tmp_path):
    out = tmp_path / "out"
    evaluate_model(DecodingModel(), dataset, "detection", out)
    recorded = json.loads((out / "run.json").read_text())["decoding"]
    assert recorded == {"constrained": True, "score_threshold": None, "max_regions": None,
                        "coordinate_mass_decoding": True}
    switched_off = DecodingModel()
    switched_off.coordinate_mass_decoding = False
    for model, decoding in [(DecodingModel(), dict(constrained=False)), (DecodingModel(), dict(score_threshold=0.3)),
                            (DecodingModel(), dict(max_regions=5)), (switched_off, {})]:
        with pytest.raises(InputError, match="other decoding.*--restart"):
            evaluate_model(model, dataset, "detection", out, **decoding)
    # The defaults spelt out, or the slower loop that writes the same answers, are the same run.
    model = DecodingModel()
    evaluate_model(model, dataset, "detection", out, constrained=True, max_regions=None, fast_decode=False)
    assert model.calls == 0


def test_a_model_names_itself_through_its_fingerprint(dataset, tmp_path):
    first, second = TruthModel(), TruthModel()
    first.fingerprint, second.fingerprint = "weights 1", "weights 2"
    evaluate_model(first, dataset, "detection", tmp_path / "out")
    with pytest.raises(InputError, match="other model"):
        evaluate_model(second, dataset, "detection", tmp_path / "out")


def test_answers_without_a_run_record_are_not_reused(dataset, tmp_path):
    out = tmp_path / "out"
    evaluate_model(TruthModel(), dataset, "detection", out)
    (out / "run.json").unlink()  # as an older version left its folders
    with pytest.raises(InputError, match="no run.json.*--restart"):
        evaluate_model(TruthModel(), dataset, "detection", out)


# ---------------------------------------------------------------- damaged answers.jsonl


def test_a_torn_last_answer_is_asked_again_on_a_fresh_line(dataset, tmp_path, capsys):
    model, out = TruthModel(), tmp_path / "out"
    evaluate_model(model, dataset, "detection", out)
    answers = out / "answers.jsonl"
    lines = answers.read_text().splitlines()
    answers.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed mid-write
    model.calls = 0
    metrics = evaluate_model(model, dataset, "detection", out)
    assert model.calls == 1 and metrics["f1@0.5"] == pytest.approx(1.0)
    assert f"{answers}: line 2" in capsys.readouterr().err
    assert answers.read_text().splitlines() == lines  # every line is a whole record again


def test_an_answer_without_its_newline_is_kept_and_the_next_starts_a_line(dataset, tmp_path):
    model, out = TruthModel(), tmp_path / "out"
    evaluate_model(model, dataset, "detection", out)
    answers = out / "answers.jsonl"
    lines = answers.read_text().splitlines()
    answers.write_text(lines[0])
    model.calls = 0
    evaluate_model(model, dataset, "detection", out)
    assert model.calls == 1 and answers.read_text().splitlines() == lines


def test_a_damaged_answer_before_the_last_is_an_error_naming_file_and_line(dataset, tmp_path):
    out = tmp_path / "out"
    evaluate_model(TruthModel(), dataset, "detection", out)
    answers = out / "answers.jsonl"
    lines = answers.read_text().splitlines()
    answers.write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    with pytest.raises(InputError, match=r"answers\.jsonl: line 1 "):
        evaluate_model(TruthModel(), dataset, "detection", out)
    assert answers.read_text().splitlines()[1] == lines[1]  # left as it was, for the user to see


# ---------------------------------------------------------------- malformed COCO


def _broken(change):
    payload = json.loads(json.dumps(GT))
    change(payload)
    return payload


@pytest.mark.parametrize("change, words", [
    (lambda p: p.pop("categories"), "field 'categories': missing"),
    (lambda p: p["annotations"][1].pop("category_id"), "annotations: record 1: field 'category_id': missing"),
    (lambda p: p["annotations"][2].update(image_id=9), "annotations: record 2: field 'image_id': unknown image id 9"),
    (lambda p: p["annotations"][0].update(image_id=True), "annotations: record 0: field 'image_id': expected an integer"),
    (lambda p: p["annotations"][0].update(category_id=True), "annotations: record 0: field 'category_id': expected an integer"),
    (lambda p: p["images"][1].update(id=True), "images: record 1: field 'id': expected an integer"),
    (lambda p: p["categories"][0].update(id=False), "categories: record 0: field 'id': expected an integer"),
    (lambda p: p["images"][0].pop("file_name"), "images: record 0: field 'file_name': missing"),
    (lambda p: p["categories"][1].pop("name"), "categories: record 1: field 'name': missing"),
])
def test_malformed_coco_is_a_clear_error_naming_record_and_field(dataset, change, words):
    with pytest.raises(InputError, match=re.escape(words)):
        build_queries(_broken(change), dataset, "detection", file="gt.json")


def test_gui_queries_need_an_integer_id_and_a_text(dataset):
    with pytest.raises(InputError, match=re.escape("annotations: record 0: field 'text': missing")):
        build_queries(GT, dataset, "gui_grounding")
    labelled = _broken(lambda p: [a.update(text="Save") for a in p["annotations"]])
    labelled["annotations"][1]["id"] = True
    with pytest.raises(InputError, match=re.escape("annotations: record 1: field 'id': expected an integer")):
        build_queries(labelled, dataset, "gui_grounding")


def test_an_annotation_of_an_unknown_image_stops_the_run(dataset, tmp_path):
    (dataset / "annotations.json").write_text(json.dumps(_broken(lambda p: p["annotations"][2].update(image_id=9))))
    words = "annotations.json annotations: record 2: field 'image_id': unknown image id 9"
    with pytest.raises(InputError, match=re.escape(words)):
        evaluate_model(TruthModel(), dataset, "detection", tmp_path / "out")


def test_a_boolean_image_id_is_not_image_one(dataset, tmp_path):
    (dataset / "annotations.json").write_text(json.dumps(_broken(lambda p: p["annotations"][2].update(image_id=True))))
    with pytest.raises(InputError, match=re.escape("record 2: field 'image_id': expected an integer image id, got True")):
        evaluate_model(TruthModel(), dataset, "detection", tmp_path / "out")


@pytest.mark.parametrize("task", ["detection", "pointing"])
def test_a_coco_file_without_annotations_stops_the_run_with_a_clear_error(dataset, tmp_path, task):
    (dataset / "annotations.json").write_text(json.dumps(_broken(lambda p: p.pop("annotations"))))
    with pytest.raises(InputError, match=re.escape("annotations.json: record -1: field 'annotations': missing")):
        evaluate_model(TruthModel(), dataset, task, tmp_path / "out")
