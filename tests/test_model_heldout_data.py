"""The nano held-out set is made by `rexomni data synth` and scored by `rexomni eval run`:
the two must agree on where images live (data synth writes file_name "images/…")."""

from rexomni_core.cli import main
from rexomni_core.eval.inputs import read_json
from rexomni_core.eval.run import build_queries, find_dataset


def test_eval_run_reads_a_data_synth_folder(tmp_path):
    assert main(["data", "synth", "--world", "shapes", "--n", "2", "--seed", "3", "--out", str(tmp_path)]) == 0
    gt_file, image_root = find_dataset(tmp_path)
    queries = build_queries(read_json(gt_file), image_root, "detection")
    assert len(queries) == 2 and all(q.image_path.is_file() for q in queries)
