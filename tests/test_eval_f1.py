"""F1@IoU: the paper protocol against the released evaluator's numbers, each paper quirk on a
hand-computed case, and the sound protocol against a brute-force pure-Python implementation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from rexomni_core.eval.f1 import (
    IOU_THRESHOLDS,
    paper_f1,
    quirk1_drop_absent_categories,
    quirk2_cap_per_image_category,
    quirk2_constant_score_order,
    quirk3_carry_over_previous_category,
    quirk3_carry_over_previous_threshold,
    quirk3_final_recall,
    quirk3_precision_at_last_recall_step,
    quirk4_mean_of_positive,
    sound_f1,
)
from rexomni_core.eval.inputs import detections_from_records, load_detections, load_ground_truth
from rexomni_core.eval.matching import FALSE_POSITIVE as F
from rexomni_core.eval.matching import IGNORED as I
from rexomni_core.eval.matching import TRUE_POSITIVE as T
from rexomni_core.geometry import polygon_iou

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`shared/` is the sibling of the repository root (worktrees too), else /work/shared."""
    sibling = REPO_ROOT.parent / "shared"
    return sibling if (sibling / "fixtures").is_dir() else Path("/work/shared")


def coco_gt(images, annotations, num_categories=3):
    """A COCO ground-truth dict from (image id, w, h) and (image, category, xywh, crowd) tuples."""
    return {
        "images": [{"id": i, "width": w, "height": h} for i, w, h in images],
        "categories": [{"id": k, "name": f"c{k}"} for k in range(1, num_categories + 1)],
        "annotations": [
            {"id": n + 1, "image_id": i, "category_id": k, "bbox": list(b), "iscrowd": int(c), "area": b[2] * b[3]}
            for n, (i, k, b, c) in enumerate(annotations)
        ],
    }


def load_gt_dict(tmp_path: Path, gt: dict):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return load_ground_truth(path)


# ---------------------------------------------------------------------------------------------
# Paper fixtures


@pytest.mark.parametrize("case", ["case_a", "case_b"])
def test_paper_protocol_matches_released_evaluator(case):
    """shared/fixtures/paper_protocol/{case}: COCO GT and COCO-format predictions (with scores,
    which the released pipeline replaces by 0.2), and expected.json, whose provenance reads:
    "numbers from the released Rex-Omni evaluator (fastevaluate, coco mode, thr 0) with its
    converter's positive-only filter and score 0.2, then its category means that drop values <= 0"
    (IDEA-Research/Rex-Omni evaluation/: utils/convert_coco_lvis_to_standard_format.py,
    fastevaluate, metrics/coco_lvis_metric.py)."""
    folder = shared_dir() / "fixtures" / "paper_protocol" / case
    gt = load_ground_truth(folder / "gt.json")
    report = paper_f1(gt, load_detections(folder / "predictions.json", gt)).to_dict()
    expected = json.loads((folder / "expected.json").read_text())
    for key, value in expected.items():
        if key != "provenance":
            assert report[key] == pytest.approx(value, abs=1e-6), key


def test_paper_fixture_differs_from_sound_protocol():
    """The quirks matter on the fixture: the sound numbers are not the paper ones."""
    folder = shared_dir() / "fixtures" / "paper_protocol" / "case_a"
    gt = load_ground_truth(folder / "gt.json")
    dets = load_detections(folder / "predictions.json", gt)
    assert abs(sound_f1(gt, dets).at_50.f1 - paper_f1(gt, dets).at_50.f1) > 0.01


# ---------------------------------------------------------------------------------------------
# Paper quirks, one by one


def test_quirk1_drops_categories_absent_from_the_image(tmp_path):
    gt = load_gt_dict(tmp_path, coco_gt(
        [(1, 100, 100), (2, 100, 100), (3, 100, 100)],
        [(1, 1, (0, 0, 10, 10), 0), (2, 2, (0, 0, 10, 10), 1)],  # image 2: crowd only; image 3: nothing
    ))
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},  # kept: category 1 in image 1
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10]},  # dropped: absent from image 1
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10]},  # kept: the crowd counts
        {"image_id": 3, "category_id": 3, "bbox": [0, 0, 10, 10]},  # kept: image 3 is unannotated
    ]
    kept = quirk1_drop_absent_categories(gt, detections_from_records(records, gt))
    assert kept.image_index.tolist() == [0, 1, 2]
    assert kept.category_index.tolist() == [0, 1, 2]


def test_quirk2_order_is_gt_image_order_then_output_order_and_scores_are_ignored(tmp_path):
    gt = load_gt_dict(tmp_path, coco_gt([(7, 50, 50), (3, 50, 50)], []))
    records = [
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.1},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.8},
    ]
    order = quirk2_constant_score_order(gt, detections_from_records(records, gt))
    assert np.argsort(order).tolist() == [1, 2, 0]  # image 7 comes first in the GT file


def test_quirk2_caps_at_100_per_image_and_category(tmp_path):
    gt = load_gt_dict(tmp_path, coco_gt([(1, 50, 50)], []))
    records = [{"image_id": 1, "category_id": 1 + (n >= 105), "bbox": [n, 0, 1, 1]} for n in range(110)]
    dets = detections_from_records(records, gt)
    kept = quirk2_cap_per_image_category(dets, quirk2_constant_score_order(gt, dets), 100)
    assert kept.tolist() == list(range(100)) + list(range(105, 110))
    assert len(quirk2_cap_per_image_category(dets, np.arange(110.0), None)) == 110


def test_quirk3_reads_interpolated_precision_below_final_recall():
    # 4 GT; TP, FP, TP, FP: recall .25 .25 .5 .5, precision 1 .5 .667 .5, interpolated 1 .667 .667 .5.
    # The highest step strictly below the final recall 0.5 is 0.49, first reached at the third
    # detection: 2/3, where TP/(TP+FP) would give 0.5.
    outcomes = np.array([[T, F, T, F]])
    assert quirk3_precision_at_last_recall_step(outcomes, 4)[0] == pytest.approx(2 / 3)
    # Final recall exactly on a step (1/4 = 0.25): the step 0.25 is not strictly below it, 0.24 is.
    assert quirk3_precision_at_last_recall_step(np.array([[F, T, F]]), 4)[0] == pytest.approx(0.5)
    # Ignored predictions count for neither; no TP or no GT leaves no reading (NaN).
    assert quirk3_precision_at_last_recall_step(np.array([[I, T]]), 1)[0] == pytest.approx(1.0)
    assert np.isnan(quirk3_precision_at_last_recall_step(np.array([[F, F]]), 2)[0])
    assert np.isnan(quirk3_precision_at_last_recall_step(np.array([[T]]), 0)[0])


def test_quirk3_final_recall_sentinels():
    assert quirk3_final_recall(np.array([[T, F]]), 4).tolist() == [0.25]
    assert quirk3_final_recall(np.zeros((1, 0), dtype=np.int8), 4).tolist() == [0.0]
    assert quirk3_final_recall(np.array([[F]]), 0).tolist() == [-1.0]


def test_quirk3_carries_previous_category_value():
    carried = quirk3_carry_over_previous_category(np.array([np.nan, 0.5, np.nan, 0.7, np.nan]))
    assert carried.tolist() == [0.0, 0.5, 0.5, 0.7, 0.7]


def test_quirk3_carries_previous_threshold_value_then_previous_category():
    readings = np.array([  # (T=3, K=3)
        [0.9, np.nan, 0.3],
        [np.nan, np.nan, np.nan],
        [0.6, np.nan, 0.1],
    ])
    # cat 0: 0.9, 0.9, 0.6; cat 1 inherits cat 0's last reading 0.6 three times; cat 2: .3 .3 .1
    means = quirk3_carry_over_previous_threshold(readings)
    assert means == pytest.approx([0.8, 0.6, 0.7 / 3])


def test_quirk4_mean_drops_values_at_or_below_zero():
    assert quirk4_mean_of_positive(np.array([0.5, 0.0, -1.0, 1.0])) == 0.75
    assert quirk4_mean_of_positive(np.array([0.0, -1.0])) == 0.0


def test_quirk5_f1_of_category_means_end_to_end(tmp_path):
    """Two categories: c1 has 2 GT, one found (R .5, P 1); c2 has 1 GT, found with one FP.
    Paper: P = mean(1, reading .5) ... hand-computed below; F1 is of the mean P and R."""
    gt = load_gt_dict(tmp_path, coco_gt(
        [(1, 100, 100)],
        [(1, 1, (0, 0, 10, 10), 0), (1, 1, (50, 50, 10, 10), 0), (1, 2, (20, 20, 10, 10), 0)],
        num_categories=2,
    ))
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 1, "category_id": 2, "bbox": [80, 80, 5, 5]},  # FP first
        {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10]},
    ]
    report = paper_f1(gt, detections_from_records(records, gt))
    # c1: recall .5, reading at step .49 -> 1.0. c2: recall 1, reading at .99 -> interpolated .5.
    assert report.at_50.precision == pytest.approx(0.75)
    assert report.at_50.recall == pytest.approx(0.75)
    assert report.at_50.f1 == pytest.approx(0.75)  # F1(mean P, mean R), not mean of F1s (0.708)
    sound = sound_f1(gt, detections_from_records(records, gt))
    assert sound.at_50.precision == pytest.approx(0.75)  # mean(1/1, 1/2)
    assert sound.micro["0.5"].precision == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------
# Sound protocol against a brute-force implementation


def brute_iou(a, b, crowd):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    iw = min(ax0 + aw, bx0 + bw) - max(ax0, bx0)
    ih = min(ay0 + ah, by0 + bh) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = aw * ah if crowd else aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def brute_sound(gt: dict, preds: list[dict], categories: list[int]) -> dict:
    """METRICS.md's sound protocol written plainly: loops, no numpy."""
    scored = all("score" in p for p in preds)
    tp = {(t, k): 0 for t in IOU_THRESHOLDS for k in categories}
    fp = dict(tp)
    n_gt = {k: sum(1 for a in gt["annotations"] if a["category_id"] == k and not a["iscrowd"]) for k in categories}
    for image in gt["images"]:
        for k in categories:
            anns = [a for a in gt["annotations"] if a["image_id"] == image["id"] and a["category_id"] == k]
            anns = [a for a in anns if not a["iscrowd"]] + [a for a in anns if a["iscrowd"]]
            mine = [p for p in preds if p["image_id"] == image["id"] and p["category_id"] == k]
            if scored:
                mine = sorted(mine, key=lambda p: -p["score"])
            for t in IOU_THRESHOLDS:
                taken = set()
                for p in mine:
                    best, best_iou = None, t
                    for g, a in enumerate(anns):
                        if a["iscrowd"] or g in taken:
                            continue
                        iou = brute_iou(p["bbox"], a["bbox"], False)
                        if iou >= best_iou:
                            best, best_iou = g, iou
                    if best is not None:
                        taken.add(best)
                        tp[t, k] += 1
                    elif not any(a["iscrowd"] and brute_iou(p["bbox"], a["bbox"], True) >= t for a in anns):
                        fp[t, k] += 1
    macro_p, macro_r, micro_p, micro_r = [], [], [], []
    for t in IOU_THRESHOLDS:
        ps = [tp[t, k] / (tp[t, k] + fp[t, k]) for k in categories if tp[t, k] + fp[t, k] > 0]
        rs = [tp[t, k] / n_gt[k] for k in categories if n_gt[k] > 0]
        macro_p.append(sum(ps) / len(ps) if ps else 0.0)
        macro_r.append(sum(rs) / len(rs) if rs else 0.0)
        all_tp = sum(tp[t, k] for k in categories)
        all_fp = sum(fp[t, k] for k in categories)
        micro_p.append(all_tp / (all_tp + all_fp) if all_tp + all_fp else 0.0)
        micro_r.append(all_tp / sum(n_gt.values()) if sum(n_gt.values()) else 0.0)

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    def mean(xs):
        return sum(xs) / len(xs)

    return {
        "f1@0.5": f1(macro_p[0], macro_r[0]),
        "f1@0.95": f1(macro_p[-1], macro_r[-1]),
        "f1@miou": f1(mean(macro_p), mean(macro_r)),
        "precision@miou": mean(macro_p),
        "micro_f1@0.5": f1(micro_p[0], micro_r[0]),
        "micro_f1@miou": f1(mean(micro_p), mean(micro_r)),
    }


def random_case(rng: random.Random):
    """Boxes on a coarse grid of a small canvas: heavy overlap, equal IoUs with two GT (tie
    rule), exact threshold hits, predictions inside crowd regions."""
    images = [(i, 64, 64) for i in range(1, rng.randint(1, 4) + 1)]
    categories = [1, 2, 3]

    def box(sizes=(4, 8, 12)):
        return (rng.randint(0, 8) * 2, rng.randint(0, 8) * 2, rng.choice(sizes), rng.choice(sizes))

    annotations = []
    for _ in range(rng.randint(0, 12)):
        crowd = rng.random() < 0.25
        annotations.append((rng.choice(images)[0], rng.choice(categories), box((16, 24)) if crowd else box(), crowd))
    preds = []
    for _ in range(rng.randint(0, 25)):
        if annotations and rng.random() < 0.7:  # near a GT box: many true positives and ties
            image_id, k, (x, y, w, h), _ = rng.choice(annotations)
            k = k if rng.random() < 0.85 else rng.choice(categories)
            b = (x + rng.choice([0, 0, 2, -2, 4]), y + rng.choice([0, 0, 2]), w + rng.choice([0, 0, 2]), h)
        else:
            image_id, k, b = rng.choice(images)[0], rng.choice(categories), box()
        preds.append({"image_id": image_id, "category_id": k, "bbox": list(b)})
    if rng.random() < 0.5:
        for p in preds:
            p["score"] = rng.choice([0.1, 0.5, 0.5, 0.9])  # ties test the stable order
    return coco_gt(images, annotations), preds, categories


@pytest.mark.parametrize("seed", range(150))
def test_sound_protocol_matches_brute_force(seed, tmp_path):
    gt_dict, preds, categories = random_case(random.Random(seed))
    gt = load_gt_dict(tmp_path, gt_dict)
    report = sound_f1(gt, detections_from_records(preds, gt)).to_dict()
    expected = brute_sound(gt_dict, preds, categories)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value, abs=1e-12), key


def test_hallucinated_category_is_a_false_positive_in_sound_only(tmp_path):
    gt = load_gt_dict(tmp_path, coco_gt([(1, 50, 50)], [(1, 1, (0, 0, 10, 10), 0)]))
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10]},
    ]
    dets = detections_from_records(records, gt)
    assert sound_f1(gt, dets).micro["0.5"].precision == 0.5
    assert paper_f1(gt, dets).at_50.precision == pytest.approx(1.0)  # COCO adds eps to TP + FP


def test_crowd_region_absorbs_predictions_as_ignored(tmp_path):
    gt = load_gt_dict(tmp_path, coco_gt(
        [(1, 100, 100)], [(1, 1, (0, 0, 10, 10), 0), (1, 1, (40, 40, 50, 50), 1)]
    ))
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 1, "category_id": 1, "bbox": [45, 45, 10, 10]},  # inside the crowd: ignored
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20]},  # inside the crowd: ignored
    ]
    report = sound_f1(gt, detections_from_records(records, gt))
    assert (report.at_95.precision, report.at_95.recall) == (1.0, 1.0)
    assert report.num_ground_truth == 1


def test_polygon_iou_type(tmp_path):
    gt_dict = coco_gt([(1, 100, 100)], [(1, 1, (0, 0, 20, 20), 0)])
    gt_dict["annotations"][0]["segmentation"] = [[0, 0, 20, 0, 20, 20, 0, 20]]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt_dict))
    gt = load_ground_truth(path, with_polygons=True)
    records = [  # a triangle with the same bbox: box IoU 1, polygon IoU 190/400 pixels
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "segmentation": [[0, 0, 20, 0, 0, 20]]},
    ]
    assert polygon_iou([0, 0, 20, 0, 0, 20], [[0, 0, 20, 0, 20, 20, 0, 20]]) == 190 / 400
    assert sound_f1(gt, detections_from_records(records, gt, with_polygons=True)).at_50.f1 == 0.0
    assert sound_f1(gt, detections_from_records(records, gt)).at_95.f1 == 1.0


def test_equal_iou_tie_goes_to_the_later_gt_like_pycocotools(tmp_path):
    """P1 overlaps G1 and G2 equally (IoU 48/80 = 0.6); pycocotools keeps replacing its candidate
    on `>=`, so P1 takes G2 and P2 (identical to G1) is a TP too. First-wins would make P2 a FP."""
    gt = load_gt_dict(tmp_path, coco_gt(
        [(1, 64, 64)], [(1, 1, (0, 0, 8, 8), 0), (1, 1, (4, 0, 8, 8), 0)]
    ))
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [2, 0, 8, 8]},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 8, 8]},
    ]
    report = sound_f1(gt, detections_from_records(records, gt))
    assert [v.precision for v in report.per_threshold[:4]] == [1.0, 1.0, 1.0, 0.5]


# ---------------------------------------------------------------------------------------------
# Per category


def per_category_case(tmp_path):
    """Two 100 x 100 images; c1 in both, c2 in image 1, c3 (never predicted) in image 2."""
    gt = load_gt_dict(tmp_path, coco_gt([(1, 100, 100), (2, 100, 100)], [
        (1, 1, (0, 0, 10, 10), 0), (1, 2, (50, 50, 10, 10), 0), (2, 1, (20, 20, 10, 10), 0), (2, 3, (70, 70, 10, 10), 0),
    ]))
    records = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},  # c1 TP (IoU 1)
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},  # FP: the duplicate
        {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]},  # FP: image 2's box, in image 1
        {"image_id": 2, "category_id": 1, "bbox": [22.5, 20, 10, 10]},  # IoU 75/125 = 0.6: TP at 0.5 only
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10]},  # FP: on c1's box
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 12]},  # c2 TP up to IoU 100/120 = 0.833
        {"image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10]},  # FP: image 2 holds no c2
    ]
    return gt, detections_from_records(records, gt)


def test_per_category_f1_matches_within_image_and_category(tmp_path):
    from rexomni_core.eval.f1 import per_category_f1

    gt, dets = per_category_case(tmp_path)
    at_50 = per_category_f1(gt, dets, 0.5)
    assert set(at_50) == {"c1", "c2", "c3"}
    c1, c2, c3 = at_50["c1"], at_50["c2"], at_50["c3"]
    assert (c1.objects, c1.true_positives, c1.false_positives) == (2, 2, 2)
    assert (c1.at_threshold.precision, c1.at_threshold.recall, c1.at_threshold.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert (c2.objects, c2.true_positives, c2.false_positives) == (1, 1, 2)
    assert c2.at_threshold.f1 == pytest.approx(0.5)
    assert (c3.objects, c3.true_positives, c3.false_positives, c3.at_threshold.f1) == (1, 0, 0, 0.0)
    # c2's TP holds at the 7 thresholds 0.50 ... 0.80: mean P = 7/30, mean R = 7/10, F1 = 0.35.
    assert c2.at_miou.f1 == pytest.approx(0.35)
    at_75 = per_category_f1(gt, dets, 0.75)
    assert (at_75["c1"].true_positives, at_75["c1"].false_positives) == (1, 3)
    assert at_75["c1"].at_threshold.f1 == pytest.approx(1 / 3)  # P 1/4, R 1/2
    assert at_75["c2"].to_dict() == {"objects": 1, "true_positives": 1, "false_positives": 2,
                                     "precision@0.75": pytest.approx(1 / 3), "recall@0.75": 1.0,
                                     "f1@0.75": pytest.approx(0.5), "f1@miou": pytest.approx(0.35)}


def test_per_category_f1_agrees_with_the_macro_headline_and_refuses_a_bad_threshold(tmp_path):
    from rexomni_core.errors import InputError
    from rexomni_core.eval.f1 import per_category_f1

    gt, dets = per_category_case(tmp_path)
    scores = per_category_f1(gt, dets)
    headline = sound_f1(gt, dets)
    assert np.mean([s.at_threshold.recall for s in scores.values()]) == pytest.approx(headline.at_50.recall)
    with pytest.raises(InputError, match="IoU threshold must be in"):
        per_category_f1(gt, dets, 1.5)


def test_eval_f1_command_prints_and_writes_per_category_scores(tmp_path, capsys):
    from rexomni_core.cli import main

    gt, _ = per_category_case(tmp_path)  # writes tmp_path/gt.json
    records = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}, {"image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5]}]
    (tmp_path / "pred.json").write_text(json.dumps(records))
    argv = ["eval", "f1", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"), "--per-category"]
    assert main([*argv, "--json"]) == 0
    per_category = json.loads(capsys.readouterr().out)["per_category"]
    assert per_category["c1"]["recall@0.5"] == 0.5 and per_category["c2"]["false_positives"] == 1
    assert main(argv) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.startswith("c")}
    assert rows["c1"][:3] == ["2", "1", "0"] and rows["c3"][-1] == "0.000"
