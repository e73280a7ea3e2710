"""The nano scorecard (`nano/scorecard.py`): the target table's rows, measured on held-out folders
it makes itself, for the worlds asked."""

from __future__ import annotations

import json

from rexomni_core.nano.architecture import build_nano
from rexomni_core.nano.scorecard import ROWS, markdown, scorecard
from tests.test_model_sft import MICRO


def test_a_scorecard_of_one_world_measures_its_rows_only(tmp_path):
    model = build_nano(seed=0, **MICRO)
    model.model.generation_config.max_new_tokens = 8  # an untrained model writes until the cap
    rows = scorecard(model, tmp_path / "heldout", tmp_path / "out", count=2, fingerprint="micro", worlds=("gui",))
    assert [row["label"] for row in rows] == [row.label for row in ROWS if row.world == "gui"]
    assert (tmp_path / "heldout" / "heldout-gui-2" / "annotations.json").is_file()
    assert not list((tmp_path / "heldout").glob("heldout-shapes-*"))  # no other world was drawn
    assert json.loads((tmp_path / "out" / "scorecard.json").read_text()) == rows
    assert 0 <= rows[0]["measured"] <= 1 and 0 <= rows[0]["well_formed"] <= 1
    assert "GUI grounding accuracy" in markdown(rows)


def test_error_anatomy_says_which_attribute_a_landed_box_got_wrong(tmp_path, capsys):
    from rexomni_core.nano.error_anatomy import anatomy, box_outcome, main

    truth = [("red circle", [0, 0, 10, 10]), ("blue star", [50, 50, 70, 70])]
    assert box_outcome("red circle", [0, 0, 10, 9], truth) == "right"
    assert box_outcome("green circle", [0, 0, 10, 10], truth) == "wrong colour"
    assert box_outcome("red square", [1, 0, 10, 10], truth) == "wrong shape"
    assert box_outcome("green hexagon", [50, 50, 70, 70], truth) == "neither"
    assert box_outcome("red circle", [20, 20, 40, 40], truth) == "hits nothing"  # IoU 0 with both
    assert box_outcome("red circle", [0, 0, 10, 30], truth) == "hits nothing"  # IoU 1/3: not landed
    assert box_outcome("red circle", [0, 0, 10, 10], []) == "hits nothing"
    answer = {"image_id": 3, "prediction": {"regions": [
        {"phrase": "red circle", "kind": "box", "coords": [0, 0, 10, 10]},
        {"phrase": "blue star", "kind": "point", "coords": [60, 60]},  # points are not counted
        {"phrase": "green circle", "kind": "box", "coords": [50, 50, 70, 70]},
    ]}}
    counts = anatomy([answer], {3: truth})
    assert counts["right"] == 1 and counts["neither"] == 1 and sum(counts.values()) == 2

    coco = {"images": [{"id": 3, "width": 100, "height": 100, "file_name": "a.png"}],
            "categories": [{"id": 1, "name": "red circle"}, {"id": 2, "name": "blue star"}],
            "annotations": [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]},
                            {"id": 2, "image_id": 3, "category_id": 2, "bbox": [50, 50, 20, 20]}]}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "run" / "detection").mkdir(parents=True)
    (tmp_path / "run" / "detection" / "answers.jsonl").write_text(json.dumps(answer) + "\n")
    main(["--data", str(tmp_path / "data"), str(tmp_path / "run")])
    assert "| 2 | 1 | 0 | 0 | 1 | 0 |" in capsys.readouterr().out
