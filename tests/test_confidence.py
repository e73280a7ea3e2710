"""Region confidences (model/confidence.py): the model's own token probabilities, recorded during
generation, traced to each region; thresholds and caps; calibration measures."""

import math

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch
from PIL import Image

from rexomni_core.errors import InputError
from rexomni_core.eval.calibration import auroc, correct_detections, reliability
from rexomni_core.eval.inputs import detections_from_records, ground_truth_from_payload
from rexomni_core.grammar import BOX_END, BOX_START, IM_END, REF_END, REF_START, parse
from rexomni_core.model import CoordinateMassProcessor, generation_settings
from rexomni_core.model.confidence import (
    CONFIDENCES,
    WINDOW_BINS,
    RegionEvidence,
    TokenProbabilities,
    TokenRecord,
    region_evidence,
)
from rexomni_core.model.decoding import with_processors
from rexomni_core.nano.architecture import build_nano
from rexomni_core.regions import Box, Prediction
from tests.test_model_sft import MICRO


@pytest.fixture(scope="module")
def micro():
    return build_nano(seed=0, text=MICRO["text"], vision=MICRO["vision"])


def image():
    return Image.fromarray(np.random.default_rng(3).integers(0, 255, (112, 112, 3), np.uint8))


def test_the_recorder_keeps_the_models_own_probabilities(micro):
    """What the recorder keeps equals the softmax of the raw logits `generate` returns, though the
    repetition penalty and coordinate-mass decoding changed the logits that chose the tokens."""
    inputs = micro.encode([image()], [micro.chat_text("Detect red circle.")])
    recorder = TokenProbabilities(micro.coordinate_ids)
    mass = CoordinateMassProcessor(micro.coordinate_ids, *micro.box_ids)
    settings = with_processors(generation_settings(None, {"max_new_tokens": 12}), recorder, None, mass,
                               prompt_padding=torch.zeros(1, dtype=torch.long))
    with torch.inference_mode():
        output = micro.model.generate(**inputs, output_logits=True, return_dict_in_generate=True,
                                      pad_token_id=micro.tokenizer.pad_token_id, **settings)
    record = recorder.finish(output.sequences[:, -1])[0]
    tokens = output.sequences[0, inputs["input_ids"].shape[1]:]
    probs = torch.stack(output.logits)[:, 0].float().softmax(dim=-1)
    assert len(record.p) == len(tokens) == len(probs)
    np.testing.assert_allclose(record.p, probs[torch.arange(len(tokens)), tokens].numpy(), rtol=1e-5)
    bins = probs[:, micro.coordinate_ids]
    np.testing.assert_allclose(record.mass, bins.sum(dim=1).numpy(), rtol=1e-5)
    bin_of = {t: b for b, t in enumerate(micro.coordinate_ids)}
    for t, token in enumerate(tokens.tolist()):
        if token in bin_of:
            b = bin_of[token]
            near = bins[t, max(0, b - WINDOW_BINS): b + WINDOW_BINS + 1].sum()
            assert math.isclose(record.window[t], float(near), rel_tol=1e-5)


def test_predict_runs_the_model_once_per_generated_token(micro):
    """Scores come from the generation itself: no second forward pass."""
    calls = []
    hook = micro.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        prediction = micro.predict(image(), categories=["red circle", "blue star"], max_new_tokens=30, do_sample=True)
    finally:
        hook.remove()
    assert len(calls) == prediction.num_output_tokens
    assert prediction.regions and all(0.0 <= r.score <= 1.0 for r in prediction.regions)


def answer_record(micro, text, overrides=None):
    """The tokens of `text` and a record giving each p 0.5, mass 0.8, window 0.6 unless
    `overrides` says otherwise at a position: (p, mass, window)."""
    tokens = micro.tokenizer.encode(text, add_special_tokens=False)
    record = TokenRecord(np.full(len(tokens), 0.5), np.full(len(tokens), 0.8), np.full(len(tokens), 0.6))
    for position, (p, mass, window) in (overrides or {}).items():
        record.p[position], record.mass[position], record.window[position] = p, mass, window
    return tokens, record


def evidence_of(micro, text, task="detection", overrides=None):
    tokens, record = answer_record(micro, text, overrides)
    prediction = parse(micro.tokenizer.decode(tokens, skip_special_tokens=False), 100, 100, task=task)
    return prediction, region_evidence(prediction, tokens, record, micro.answer_vocabulary)


def test_presence_is_the_probability_of_opening_the_region(micro):
    text = (f"{REF_START}red circle{REF_END}{BOX_START}<10><20><30><40>,<50><60><70><80>{BOX_END}, "
            f"{REF_START}blue star{REF_END}{BOX_START}None{BOX_END}{IM_END}")
    tokens = micro.tokenizer.encode(text, add_special_tokens=False)
    first, second = tokens.index(micro.coordinate_ids[10]), tokens.index(micro.coordinate_ids[50])
    comma = second - 1
    overrides = {first: (0.05, 0.7, 0.35), comma: (0.4, 0.0, 0.0), second: (0.2, 0.5, 0.25)}
    _, evidence = evidence_of(micro, text, overrides=overrides)
    assert evidence[0].presence == pytest.approx(0.7)  # a region rather than None
    assert evidence[1].presence == pytest.approx(0.4 * 0.5)  # "," rather than <|box_end|>, then a coordinate
    assert evidence[0].bins == pytest.approx((0.05 / 0.7,) + (0.5 / 0.8,) * 3)  # p(bin | a coordinate)
    assert evidence[1].windows == pytest.approx((0.25 / 0.5,) + (0.6 / 0.8,) * 3)


def test_a_malformed_region_is_skipped_and_the_rest_stay_aligned(micro):
    text = f"{REF_START}red circle{REF_END}{BOX_START}<10><20><30>,<1><2><3><4>,<5><6><7><8>{BOX_END}{IM_END}"
    tokens = micro.tokenizer.encode(text, add_special_tokens=False)
    prediction, evidence = evidence_of(micro, text, overrides={tokens.index(micro.coordinate_ids[5]): (0.08, 0.8, 0.6)})
    assert len(prediction.regions) == 2 and prediction.problems  # the 3-coordinate region is dropped
    assert evidence[0].bins == pytest.approx((0.5 / 0.8,) * 4)
    assert evidence[1].bins[0] == pytest.approx(0.1)


def test_a_keypoint_instance_is_scored_by_its_box(micro):
    text = ('{"person1": {"bbox": " <10> <20> <30> <40> ", "keypoints": {"nose": " <11> <12> ", "left eye": "unvisible"}}, '
            '"person2": {"bbox": " <50> <60> <70> <80> ", "keypoints": {"nose": "unvisible", "left eye": "unvisible"}}}' + IM_END)
    _, evidence = evidence_of(micro, text, task="keypoint")
    assert [len(e.bins) for e in evidence] == [4, 4]
    assert evidence[1].presence < evidence[0].presence  # more text leads into the second instance


def test_every_definition_scores_in_the_unit_interval():
    for evidence in (RegionEvidence(0.0, (0.0, 0.0), (0.0, 0.0)), RegionEvidence(1.0, (1.0,) * 4, (1.0,) * 4),
                     RegionEvidence(0.3, (1e-30, 0.5), (0.2, 0.9))):
        for name, definition in CONFIDENCES.items():
            assert 0.0 <= definition(evidence) <= 1.0, name


def scored_prediction():
    regions = [Box("a", [0, 0, 10, 10], score=0.9), Box("b", [5, 5, 9, 9], score=0.2),
               Box("a", [20, 20, 40, 40], score=0.6), Box("b", [1, 1, 2, 2], score=0.6)]
    return Prediction(regions, "", [], 100, 100, phrases=["a", "b", "c"])


def test_filtered_keeps_high_scores_and_the_best_in_answer_order():
    prediction = scored_prediction()
    assert [r.score for r in prediction.filtered(score_threshold=0.5).regions] == [0.9, 0.6, 0.6]
    assert [r.score for r in prediction.filtered(max_regions=2).regions] == [0.9, 0.6]  # ties: answer order
    assert [r.coords for r in prediction.filtered(max_regions=3).regions][1] == [20, 20, 40, 40]
    assert prediction.filtered(score_threshold=0.95).absent == ["a", "b", "c"]
    assert len(prediction.regions) == 4  # the prediction itself is unchanged
    for bad in ({"score_threshold": 1.5}, {"score_threshold": float("nan")}, {"max_regions": 0}, {"max_regions": 2.5}):
        with pytest.raises(InputError):
            prediction.filtered(**bad)


def test_predict_filters_caps_and_hands_scores_on(micro):
    kwargs = {"categories": ["red circle", "blue star"], "max_new_tokens": 60, "max_regions_per_phrase": 4}
    everything = micro.predict(image(), **kwargs)
    scores = [r.score for r in everything.regions]
    assert len(scores) >= 2, everything.raw_text
    threshold = sorted(scores)[len(scores) // 2]
    high = micro.predict(image(), score_threshold=threshold, **kwargs)
    assert high.raw_text == everything.raw_text
    assert [r.score for r in high.regions] == [s for s in scores if s >= threshold]
    capped = micro.predict(image(), max_regions=1, **kwargs)
    assert len(capped.regions) == 1
    records = everything.to_coco(1, {"red circle": 1, "blue star": 2})
    assert [r["score"] for r in records] == scores
    pytest.importorskip("supervision")
    assert everything.to_supervision().confidence.tolist() == pytest.approx(scores)
    with pytest.raises(InputError, match="confidence must be one of"):
        micro.predict(image(), confidence="vibes", **kwargs)
    with pytest.raises(InputError, match="score_threshold"):
        micro.predict(image(), score_threshold=2, **kwargs)


def test_free_decoding_is_scored_too(micro):
    prediction = micro.predict(image(), categories=["red circle"], max_new_tokens=20, constrained=False, do_sample=True)
    assert all(r.score is not None and 0.0 <= r.score <= 1.0 for r in prediction.regions)


# --------------------------------------------------------------------------- calibration


def test_reliability_bins_and_expected_calibration_error():
    scores = np.array([0.05, 0.15, 0.95, 1.0, 0.92, 0.5])
    correct = np.array([False, False, True, True, False, True])
    curve = reliability(scores, correct, bins=10)
    assert curve.counts.tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 0, 3]
    assert curve.accuracy[9] == pytest.approx(2 / 3) and curve.confidence[9] == pytest.approx((0.95 + 1.0 + 0.92) / 3)
    expected = (abs(0 - 0.05) + abs(0 - 0.15) + abs(1 - 0.5) + 3 * abs(2 / 3 - (0.95 + 1.0 + 0.92) / 3)) / 6
    assert curve.ece == pytest.approx(expected)
    assert reliability(np.array([0.8, 0.8]), np.array([True, False]), bins=5).ece == pytest.approx(0.3)


def test_auroc_is_the_chance_a_right_prediction_outscores_a_wrong_one():
    assert auroc(np.array([0.9, 0.8, 0.1]), np.array([True, True, False])) == 1.0
    assert auroc(np.array([0.1, 0.2, 0.9]), np.array([True, True, False])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert math.isnan(auroc(np.array([0.5]), np.array([True])))


def test_right_predictions_are_coco_true_positives_taken_by_score():
    payload = {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}],
    }
    gt = ground_truth_from_payload(payload)
    records = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.3},
               {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 9], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.5}]
    right, counted = correct_detections(gt, detections_from_records(records, gt))
    assert right.tolist() == [False, True, False] and counted.all()  # the higher score took the GT
