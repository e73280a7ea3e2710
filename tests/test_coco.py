"""COCO's conventions (rexomni_core.coco): boxes, keypoint triplets, result records, regions."""

import numpy as np

from rexomni_core.coco import (
    bbox_to_xyxy,
    bboxes_to_xyxy,
    keypoint_instance,
    keypoint_triplets,
    keypoints_from_triplets,
    result_record,
    text_region,
    xyxy_to_bbox,
    xyxy_to_bboxes,
)
from rexomni_core.regions import Box, Keypoints, Point, Polygon


def test_boxes_convert_both_ways_one_or_many():
    assert bbox_to_xyxy([10, 20, 5, 8]) == [10, 20, 15, 28]
    assert xyxy_to_bbox([10, 20, 15, 28]) == [10, 20, 5, 8]
    many = np.array([[10, 20, 5, 8], [0, 0, 1, 1]])
    assert bboxes_to_xyxy(many).tolist() == [[10, 20, 15, 28], [0, 0, 1, 1]]
    assert xyxy_to_bboxes(bboxes_to_xyxy(many)).tolist() == many.tolist()
    assert many.tolist() == [[10, 20, 5, 8], [0, 0, 1, 1]]  # the input is left as it was


def test_keypoint_triplets_round_trip_with_hidden_keypoints():
    keypoints = {"nose": [1.0, 2.0], "left eye": None}
    assert keypoint_triplets(keypoints) == [1.0, 2.0, 2, 0, 0, 0]
    assert keypoints_from_triplets(keypoint_triplets(keypoints), ["nose", "left eye"]) == keypoints


def test_result_records_by_kind_and_score():
    assert result_record(Box("cat", [0, 0, 4, 2]), 7, 1) == {"image_id": 7, "category_id": 1, "bbox": [0, 0, 4, 2], "score": 1.0}
    assert "score" not in result_record(Box("cat", [0, 0, 4, 2]), 7, 1, unscored=None)
    assert result_record(Box("cat", [0, 0, 4, 2], score=0.5), 7, 1, unscored=None)["score"] == 0.5
    assert result_record(Point("cat", [3, 4]), 7, 1)["point"] == [3, 4]
    polygon = result_record(Polygon("EXIT", [0, 0, 4, 0, 4, 2], text="EXIT"), 7, 1)
    assert polygon["segmentation"] == [[0, 0, 4, 0, 4, 2]] and polygon["text"] == "EXIT" and polygon["bbox"] == [0, 0, 4, 2]
    person = Keypoints("person", {"nose": [1, 2], "left eye": None}, box=[0, 0, 5, 5])
    assert result_record(person, 7, 1)["keypoints"] == [1, 2, 2, 0, 0, 0]


def test_annotations_as_the_regions_answers_should_give():
    word = {"bbox": [1, 2, 3, 4], "text": "EXIT", "segmentation": [[1, 2, 4, 2, 4, 6]]}
    assert text_region(word, as_polygon=False) == Box("EXIT", [1, 2, 4, 6], text="EXIT")
    assert text_region(word, as_polygon=True) == Polygon("EXIT", [1, 2, 4, 2, 4, 6], text="EXIT")
    category = {"name": "person", "keypoints": ["nose", "left eye"]}
    person = keypoint_instance({"bbox": [0, 0, 5, 5], "keypoints": [1, 2, 2, 0, 0, 0]}, category)
    assert person == Keypoints("person", {"nose": [1, 2], "left eye": None}, box=[0, 0, 5, 5])
