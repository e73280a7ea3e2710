import pytest

from rexomni_core import Box, Keypoints, Point, Polygon, parse, serialize
from rexomni_core.grammar import BOX_END, BOX_START, REF_END, REF_START
from rexomni_core.tasks import KEYPOINT_SCHEMAS, TASKS
from rexomni_core.train.rewards import (
    box_reward,
    format_reward,
    keypoint_reward,
    ocr_reward,
    point_reward,
    reward_of,
    task_reward,
)

W, H = 999, 999  # one bin = one pixel, so centre-decoded answers land on x + 0.5


def answer(regions, task="detection", phrases=None):
    return parse(serialize(regions, W, H, task=task, phrases=phrases), W, H, task=task)


CAT = Box("cat", [100, 100, 300, 300])
DOG = Box("dog", [500, 500, 700, 600])


def test_exact_boxes_score_almost_one_and_a_shift_scores_its_iou():
    # centre decoding lands every edge half a pixel off: IoU ~0.99, not 1
    assert box_reward(answer([CAT, DOG]), [CAT, DOG]) == pytest.approx(1.0, abs=0.02)
    shifted = Box("cat", [150, 100, 350, 300])  # IoU with CAT = 150*200 / (250*200) = 0.6
    assert box_reward(answer([shifted]), [CAT]) == pytest.approx(0.6, abs=0.01)


def test_duplicates_lower_precision():
    """The released reward takes each box's best IoU and would give this answer ~1.0."""
    reward = box_reward(answer([CAT, Box("cat", [100, 100, 301, 301])]), [CAT])
    # P = 1/2, R = 1 -> F1 = 2/3
    assert reward == pytest.approx(2 / 3, abs=0.01)


def test_the_phrase_must_match():
    assert box_reward(answer([Box("dog", CAT.coords)]), [CAT]) == 0.0


def test_misses_and_hallucinations_cost_recall_and_precision():
    assert box_reward(answer([CAT]), [CAT, DOG]) == pytest.approx(2 * 0.5 / 1.5, abs=0.01)
    assert box_reward(answer([CAT, DOG]), [CAT]) == pytest.approx(2 * 0.5 / 1.5, abs=0.01)


def test_correct_rejection_scores_one_and_false_alarms_zero():
    nothing = answer([], phrases=["cat", "dog"])
    assert nothing.absent == ["cat", "dog"]
    assert box_reward(nothing, []) == 1.0
    assert box_reward(answer([CAT]), []) == 0.0
    assert box_reward(nothing, [CAT]) == 0.0


def test_malformed_completions_score_zero_format_and_only_what_parses():
    broken = parse(f"{REF_START}cat{REF_END}{BOX_START}<100><100><300>{BOX_END}", W, H)
    assert format_reward(broken) == 0.0 and box_reward(broken, [CAT]) == 0.0
    assert format_reward(answer([CAT])) == 1.0
    garbage = parse("<|im_start|>??<<<>>>", W, H)
    assert format_reward(garbage) == 0.0 and box_reward(garbage, [CAT]) == 0.0


def test_points_hit_boxes_and_masks_one_to_one():
    triangle = Polygon("cat", [100, 100, 300, 100, 100, 300])
    inside_both, outside_mask = Point("cat", [120, 120]), Point("cat", [280, 280])
    assert point_reward(answer([inside_both], "pointing"), [CAT]) == 1.0
    assert point_reward(answer([outside_mask], "pointing"), [CAT]) == 1.0
    assert point_reward(answer([outside_mask], "pointing"), [triangle]) == 0.0
    # two points in one box: one pairs, the other is a duplicate
    assert point_reward(answer([inside_both, Point("cat", [130, 130])], "pointing"), [CAT]) == pytest.approx(2 / 3)


def test_ocr_needs_both_place_and_text():
    exit_sign = Box("EXIT", [100, 100, 300, 200], text="EXIT")
    assert ocr_reward(answer([exit_sign], "ocr_box"), [exit_sign]) == pytest.approx(1.0, abs=0.02)
    wrong_text = Box("EXTT", exit_sign.coords, text="EXTT")
    assert ocr_reward(answer([wrong_text], "ocr_box"), [exit_sign]) == 0.0


def test_keypoint_reward_is_oks():
    names = KEYPOINT_SCHEMAS["person"]
    truth = Keypoints("person", {n: [200 + 5 * i, 100 + 20 * i] for i, n in enumerate(names)}, box=[150, 80, 400, 500])
    from rexomni_core.grammar import serialize_keypoints

    exact = parse(serialize_keypoints([truth], W, H), W, H, task="keypoint")
    assert keypoint_reward(exact, [truth]) > 0.99
    far = Keypoints("person", {n: [800, 800] for n in names}, box=[150, 80, 400, 500])
    assert keypoint_reward(parse(serialize_keypoints([far], W, H), W, H, task="keypoint"), [truth]) < 0.01


def test_task_reward_dispatches_and_refuses_unknown_tasks():
    assert task_reward("detection", answer([CAT]), [CAT]) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="no reward for task"):
        task_reward("segmentation", answer([CAT]), [CAT])


def test_every_task_of_the_registry_has_the_reward_of_its_answers():
    rewards = {name: reward_of(task) for name, task in TASKS.items()}
    assert rewards == {
        "detection": box_reward, "referring": box_reward, "visual_prompting": box_reward, "gui_grounding": box_reward,
        "pointing": point_reward, "gui_pointing": point_reward,
        "ocr_box": ocr_reward, "ocr_polygon": ocr_reward, "keypoint": keypoint_reward,
    }
