"""`eval run`: predict a dataset, then score; checked with a stand-in model that reads the truth."""

import json

import pytest
from PIL import Image

from rexomni_core import Box, Point, parse, serialize
from rexomni_core.eval.run import build_queries, evaluate_model, find_dataset

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

    def __init__(self, hallucinate=False):
        self.calls = 0
        self.hallucinate = hallucinate

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
        text = serialize(regions, 200, 100, task=task, phrases=categories)
        return parse(text, 200, 100, task=task)


def test_dataset_folder_and_queries(dataset):
    gt_file, image_root = find_dataset(dataset)
    assert gt_file.name == "annotations.json" and image_root.name == "images"
    queries = build_queries(GT, image_root, "detection")
    assert [q.categories for q in queries] == [["red circle", "blue star"], ["red circle"]]
    assert [q.categories for q in build_queries(GT, image_root, "detection", "all")][1] == ["red circle", "blue star"]
    assert [q.visual_prompt_boxes for q in build_queries(GT, image_root, "visual_prompting")] == [
        [[10, 10, 50, 40]], [[100, 20, 150, 70]], [[60, 40, 90, 70]]]


@pytest.mark.parametrize("task, key", [("detection", "f1@0.5"), ("pointing", "f1@point"), ("visual_prompting", "f1@0.5")])
def test_a_perfect_model_scores_one(dataset, tmp_path, task, key):
    metrics = evaluate_model(TruthModel(), dataset, task, tmp_path / "out")
    assert metrics[key] == pytest.approx(1.0)
    assert metrics["well_formed"] == 1.0 and metrics["answers"] == (3 if task == "visual_prompting" else 2)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())[key] == pytest.approx(1.0)


def test_hallucinations_lower_precision(dataset, tmp_path):
    metrics = evaluate_model(TruthModel(hallucinate=True), dataset, "detection", tmp_path / "out")
    assert metrics["recall@0.5"] == pytest.approx(1.0) and metrics["precision@0.5"] < 1.0


def test_an_interrupted_run_resumes_without_asking_again(dataset, tmp_path):
    model = TruthModel()
    evaluate_model(model, dataset, "detection", tmp_path / "out")
    lines = (tmp_path / "out" / "answers.jsonl").read_text().splitlines()
    (tmp_path / "out" / "answers.jsonl").write_text(lines[0] + "\n")  # as if stopped after one image
    model.calls = 0
    metrics = evaluate_model(model, dataset, "detection", tmp_path / "out")
    assert model.calls == 1 and metrics["f1@0.5"] == pytest.approx(1.0)


def test_missing_images_and_unknown_tasks_are_clear_errors(dataset, tmp_path):
    (dataset / "images" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="image 2: .*b.png does not exist"):
        evaluate_model(TruthModel(), dataset, "detection", tmp_path / "out")
    with pytest.raises(ValueError, match="eval run supports tasks"):
        build_queries(GT, dataset, "keypoint")
