import numpy as np
import pytest
import supervision as sv

from rexomni_core import Box, Keypoints, Point, Polygon, Prediction, parse, serialize


def _prediction(regions, phrases=None):
    return Prediction(regions=regions, raw_text="", problems=[], width=100, height=80,
                      phrases=phrases or list(dict.fromkeys(r.phrase for r in regions)))


def test_to_supervision_detections_with_class_names_and_confidence():
    pred = _prediction([Box("cat", [1, 2, 30, 40], score=0.9), Box("dog", [5, 6, 7, 8], score=0.4)], ["cat", "dog", "cow"])
    detections = pred.to_supervision()
    assert isinstance(detections, sv.Detections)
    np.testing.assert_allclose(detections.xyxy, [[1, 2, 30, 40], [5, 6, 7, 8]])
    assert list(detections.data["class_name"]) == ["cat", "dog"]
    assert list(detections.class_id) == [0, 1]
    np.testing.assert_allclose(detections.confidence, [0.9, 0.4])


def test_to_supervision_without_scores_has_no_confidence_and_polygons_keep_vertices():
    pred = _prediction([Polygon("EXIT", [0, 0, 10, 0, 10, 5, 0, 5], text="EXIT"), Box("SALE", [1, 1, 2, 2], text="SALE")])
    detections = pred.to_supervision()
    assert detections.confidence is None
    np.testing.assert_allclose(detections.xyxy[0], [0, 0, 10, 5])
    assert detections.data["polygon"][0].shape == (4, 2)
    assert list(detections.data["text"]) == ["EXIT", "SALE"]


def test_empty_prediction_gives_empty_detections():
    assert len(_prediction([]).to_supervision()) == 0


def test_points_and_keypoints_become_supervision_keypoints():
    points = _prediction([Point("cat", [3, 4]), Point("cat", [5, 6])]).to_supervision()
    assert isinstance(points, sv.KeyPoints) and points.xy.shape == (2, 1, 2)
    person = Keypoints("person", {"nose": [1, 2], "left eye": None}, box=[0, 0, 10, 10], instance_id="person1")
    keypoints = _prediction([person]).to_supervision()
    np.testing.assert_allclose(keypoints.xy, [[[1, 2], [0, 0]]])
    assert keypoints.visible.tolist() == [[True, False]]


def test_mixed_families_are_refused_clearly():
    with pytest.raises(ValueError, match="one family of regions"):
        _prediction([Point("a", [1, 1]), Box("b", [1, 1, 2, 2])]).to_supervision()


def test_to_coco_records():
    pred = _prediction([
        Box("cat", [10, 20, 30, 60], score=0.5),
        Polygon("EXIT", [0, 0, 10, 0, 10, 5], text="EXIT"),
        Point("dog", [3, 4]),
        Keypoints("person", {"nose": [1, 2], "left eye": None}, box=[0, 0, 10, 10]),
    ])
    records = pred.to_coco(image_id=7, category_ids={"cat": 1, "EXIT": 2, "dog": 3, "person": 4})
    assert records[0] == {"image_id": 7, "category_id": 1, "bbox": [10, 20, 20, 40], "score": 0.5}
    assert records[1]["segmentation"] == [[0, 0, 10, 0, 10, 5]] and records[1]["text"] == "EXIT"
    assert records[1]["score"] == 1.0
    assert records[2]["point"] == [3, 4]
    assert records[3]["keypoints"] == [1, 2, 2, 0.0, 0.0, 0]


def test_to_coco_unknown_phrases_raise_or_are_skipped_on_request():
    pred = _prediction([Box("cat", [1, 1, 2, 2]), Box("yeti", [1, 1, 2, 2])])
    with pytest.raises(ValueError, match=r"phrases without a category id: \['yeti'\]"):
        pred.to_coco(1, {"cat": 1})
    assert [r["category_id"] for r in pred.to_coco(1, {"cat": 1}, unknown="skip")] == [1]


def test_parse_then_coco_then_official_agree_on_a_detection():
    text = serialize([Box("cat", [10, 20, 30, 40])], 100, 80, phrases=["cat", "dog"])
    pred = parse(text, 100, 80, decode="official")
    official = pred.to_official()
    assert official["dog"] == [] and official["cat"][0]["type"] == "box"
    x0, y0, x1, y1 = official["cat"][0]["coords"]
    assert pred.to_coco(1, {"cat": 1, "dog": 2})[0]["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])


def test_region_dicts_round_trip():
    from rexomni_core.regions import region_from_dict, region_to_dict

    regions = [
        Box("cat", [1.0, 2.0, 3.0, 4.0], score=0.5),
        Point("dog", [5.0, 6.0]),
        Polygon("EXIT", [0.0, 0.0, 4.0, 0.0, 4.0, 2.0], text="EXIT"),
        Keypoints("person", {"nose": [1.0, 2.0], "left eye": None}, box=[0, 0, 9, 9], instance_id="person1"),
    ]
    assert [region_from_dict(region_to_dict(r)) for r in regions] == regions
    with pytest.raises(ValueError, match="unknown region kind 'mask'"):
        region_from_dict({"phrase": "x", "kind": "mask", "coords": []})
