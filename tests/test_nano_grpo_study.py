"""rexomni_core.nano.grpo_study: the SFT vs SFT+GRPO table and the reward plot, run end to end on
a micro nano and a two-image test set."""

import json
import sys

import pytest

pytest.importorskip("transformers")

from rexomni_core.nano import grpo_study as study  # noqa: E402
from rexomni_core.nano.architecture import build_nano  # noqa: E402
from tests.test_model_sft import MICRO  # noqa: E402


def test_study_tabulates_every_model_and_split_and_plots_the_reward(tmp_path, monkeypatch):
    model_dir = tmp_path / "micro"
    build_nano(seed=0, **MICRO).save_pretrained(model_dir)
    run = tmp_path / "grpo"
    (run / "final").mkdir(parents=True)
    log = [{"step": s, "rewards/geometry/mean": 0.1 + 0.01 * s, "kl": 0.001 * s} for s in range(5, 80, 5)]
    (run / "final" / "log_history.json").write_text(json.dumps(log + [{"step": 75, "train_runtime": 1.0}]))
    out = tmp_path / "study"
    monkeypatch.setattr(sys, "argv", [
        "nano_grpo_study.py", "--model", f"a={model_dir}", "--model", f"b={model_dir}", "--splits", "few", "dense",
        "--count", "2", "--test-root", str(tmp_path / "sets"), "--grpo-run", f"run={run}", "--out", str(out),
    ])
    study.main()
    rows = json.loads((out / "study.json").read_text())["rows"]
    assert [(r["model"], r["split"]) for r in rows] == [("a", "few"), ("b", "few"), ("a", "dense"), ("b", "dense")]
    for row in rows:
        assert set(study.COLUMNS) <= set(row["metrics"]) and row["metrics"]["answers"] == 2
    table = (out / "study.md").read_text().splitlines()
    assert len(table) == 2 + len(rows) and "duplicates (IoU≥0.95)" in table[0]
    assert (out / "reward.png").stat().st_size > 1000
    # The report reads and writes the same held-out sets (one folder per split and size).
    assert sorted(p.name for p in (tmp_path / "sets").iterdir()) == ["heldout-dense-2", "heldout-few-2"]


def test_a_run_without_a_log_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no final/log_history.json"):
        study.grpo_log(tmp_path)
