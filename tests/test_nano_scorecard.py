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
