"""The other evaluators on hand-computed cases: AP, points, GUI, OCR, keypoints, visual
prompting, duplicates and large boxes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rexomni_core.cli import main
from rexomni_core.eval.coco_ap import coco_ap, save_pr_curve
from rexomni_core.eval.duplicates import (
    AnswerShape,
    degenerate_answer_rate,
    duplicate_rate,
    is_degenerate_answer,
    large_box_rate,
    longest_run,
)
from rexomni_core.eval.f1 import counting_mae, sound_f1
from rexomni_core.eval.inputs import detections_from_records, ground_truth_from_payload
from rexomni_core.eval.keypoints import keypoint_f1
from rexomni_core.eval.ocr import ocr_scores
from rexomni_core.eval.points import gui_grounding_accuracy, pointing_f1
from rexomni_core.geometry import COCO_PERSON_SIGMAS, oks
from rexomni_core.regions import Box, Keypoints, Point, Polygon
from rexomni_core.text_similarity import edit_distance, normalised_edit_distance

GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 200, "height": 100}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0},
    ],
}


def test_ap_hand_computed_and_plot(tmp_path):
    """cat: TP (0.9), FP (0.8), TP (0.7) over 2 GT: interpolated precision 1 up to recall 0.5 (51
    steps), 2/3 after (50 steps). dog: one TP (0.6): precision 1 everywhere. AP50 is their mean."""
    gt = ground_truth_from_payload(GT)
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [80, 80, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.7},
        {"image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.6},
    ]
    report = coco_ap(gt, detections_from_records(records, gt))
    cat_ap50 = (51 * 1 + 50 * 2 / 3) / 101
    assert report.stats["AP50"] == pytest.approx((cat_ap50 + 1) / 2)
    assert report.stats["AR100"] == pytest.approx(1.0)
    png = save_pr_curve(report, tmp_path / "pr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ap_refuses_unscored_predictions():
    gt = ground_truth_from_payload(GT)
    with pytest.raises(ValueError, match="needs a score"):
        coco_ap(gt, detections_from_records([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], gt))


def test_pointing_f1_mask_box_fallback_and_one_to_one():
    # cat: two points inside both overlapping boxes -> both GT taken (one-to-one), a third is a FP.
    # dog: the mask is a triangle; (45, 45) is inside it, (58, 58) is inside its box but not the mask.
    samples = [(
        [Point("cat", [5, 5]), Point("cat", [6, 6]), Point("cat", [7, 7]), Point("dog", [58, 58]), Point("dog", [45, 45])],
        [Box("cat", [0, 0, 10, 10]), Box("cat", [4, 4, 20, 20]), Polygon("dog", [40, 40, 60, 40, 40, 60])],
    )]
    report = pointing_f1(samples)
    assert report.micro["0.5"].precision == pytest.approx(3 / 5)
    assert report.micro["0.5"].recall == 1.0
    assert report.at_50.precision == pytest.approx((2 / 3 + 1 / 2) / 2)  # macro over cat, dog


def test_gui_grounding_accuracy():
    target = Box("OK button", [10, 10, 50, 30])
    samples = [(Point("OK button", [20, 20]), target), (Box("OK button", [0, 0, 20, 20]), target), (None, target), (Point("x", [60, 20]), target)]
    assert gui_grounding_accuracy(samples) == 0.5  # the point and the box centre (10, 10) hit


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert normalised_edit_distance("EXIT", "EXT") == 0.25
    assert normalised_edit_distance("", "") == 0.0


def test_ocr_text_must_match_and_polygon_iou():
    preds = [Box("EXIT", [0, 0, 10, 10]), Box("EXT", [20, 0, 30, 10]), Polygon("PUSH", [0, 20, 10, 20, 10, 30, 0, 30])]
    gts = [Box("EXIT", [0, 0, 10, 10]), Box("EXIT", [20, 0, 30, 10]), Polygon("PUSH", [0, 20, 10, 20, 10, 30, 0, 30]), Box("PULL", [80, 80, 90, 90])]
    report = ocr_scores([(preds, gts)])
    assert report.detection.micro["0.95"].precision == 1.0
    assert report.detection.micro["0.95"].recall == 0.75
    assert report.end_to_end.micro["0.5"].precision == pytest.approx(2 / 3)
    assert report.end_to_end.micro["0.5"].recall == 0.5
    assert report.mean_edit_distance == pytest.approx(0.25 / 3)
    assert report.matched_pairs == 3


def test_oks_hand_computed():
    target = Keypoints("person", {"nose": [10, 10], "left eye": [20, 10], "right eye": None}, box=[0, 0, 100, 100])
    guess = Keypoints("person", {"nose": [10, 13], "left eye": None, "right eye": [1, 1]})
    # nose: exp(-9 / (2 * 0.026)^2 / 10000 / 2); left eye missing -> 0; right eye unlabelled in GT.
    expected = (math.exp(-9 / (2 * COCO_PERSON_SIGMAS["nose"]) ** 2 / 10000 / 2) + 0) / 2
    assert oks(guess, target, 10000) == pytest.approx(expected)
    assert oks(target, target, 10000) == 1.0


def test_keypoint_f1_thresholds():
    target = Keypoints("person", {"nose": [50, 50]}, box=[0, 0, 100, 100])
    # d² chosen so that OKS = 0.72: a TP at OKS 0.50..0.70 (5 of 10 thresholds), a FP above.
    d2 = -math.log(0.72) * 2 * 10000 * (2 * COCO_PERSON_SIGMAS["nose"]) ** 2
    guess = Keypoints("person", {"nose": [50 + math.sqrt(d2), 50]})
    report = keypoint_f1([([guess], [target])])
    assert report.at_50.f1 == 1.0 and report.at_95.f1 == 0.0
    assert report.at_miou.precision == pytest.approx(0.5) and report.at_miou.f1 == pytest.approx(0.5)


def test_visual_prompting_pools_categories_and_counts():
    gt = ground_truth_from_payload(GT)
    records = [  # the right box with the wrong category still counts when categories are pooled
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10]},
        {"image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10]},
        {"image_id": 2, "category_id": 2, "bbox": [90, 90, 10, 10]},
    ]
    dets = detections_from_records(records, gt)
    pooled = sound_f1(gt, dets, pool_categories=True)
    assert pooled.at_50.precision == pytest.approx(2 / 3) and pooled.at_50.recall == pytest.approx(2 / 3)
    assert counting_mae(gt, dets) == 1.0  # image 1: |1 - 2|, image 2: |2 - 1|


def test_duplicate_rate_same_phrase_earlier_box_only():
    answers = [
        [("cat", [0, 0, 100, 100]), ("cat", [0, 0, 100, 99]), ("dog", [0, 0, 100, 100]), ("cat", [0, 0, 50, 50])],
        [("cat", [0, 0, 100, 100])],
    ]
    assert duplicate_rate(answers) == pytest.approx(1 / 5)  # only the second cat box (IoU 0.99)


def test_paper_degenerate_answer_definition():
    assert longest_run([1, 5, 5, 5, 2]) == 3
    looping = [10, 20, 30, 40] + [40] * 9 + [7]
    assert longest_run(looping) == 10
    assert is_degenerate_answer(looping, num_boxes=5, num_gt=2)
    assert not is_degenerate_answer(looping, num_boxes=4, num_gt=2)  # not more than 2x the GT
    assert not is_degenerate_answer(looping[:-6], num_boxes=5, num_gt=2)  # run of 4 only
    assert degenerate_answer_rate([AnswerShape(looping, 5, 2), AnswerShape([1, 2], 1, 1)]) == 0.5


def test_large_box_rate():
    boxes = np.array([[0, 0, 100, 100], [-10, -10, 200, 200], [0, 0, 97, 97], [0, 0, 100, 50]])
    sizes = np.array([[100, 100]] * 4)
    assert large_box_rate(boxes, sizes) == 0.5  # 0.9409 of the image is not > 0.95


def test_cli_other_metrics(tmp_path, capsys):
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(GT))
    pred_path.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "point": [5, 5]},
        {"image_id": 1, "category_id": 1, "point": [6, 6]},
        {"image_id": 2, "category_id": 2, "point": [25, 25]},
    ]))
    files = ["--gt", str(gt_path), "--pred", str(pred_path), "--json"]
    assert main(["eval", "points", *files]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["micro_precision@point"] == pytest.approx(2 / 3) and result["micro_recall@point"] == pytest.approx(2 / 3)
    pred_path.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 200, 100]},
    ]))
    assert main(["eval", "duplicates", *files]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["duplicate_rate"] == pytest.approx(1 / 3) and result["large_box_rate"] == pytest.approx(1 / 3)
    assert main(["eval", "vp", *files]) == 0
    assert json.loads(capsys.readouterr().out)["counting_mae"] == 0.0
