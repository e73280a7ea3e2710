"""The tutorial notebooks (notebooks/): each runs end to end at smoke scale, and each committed
file carries the outputs of a clean full-scale run (scripts/run_notebooks.sh writes them).

The smoke runs execute a copy of each notebook in a kernel whose working folder is a temporary
one, so nothing is written into the repository; the committed files are only read.
"""

from __future__ import annotations

import ast
import os

import nbclient
import nbformat
import pytest

from tests.conftest import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
MAX_BYTES = 3 * 1024 * 1024
SCALE_VARIABLE = "REXOMNI_NOTEBOOK_SCALE"


def _read(path):
    return nbformat.read(path, as_version=4)


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _text_of(outputs) -> str:
    return "".join(output.get("text", "") for output in outputs if output.output_type == "stream")


def _tree(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_the_suite_is_there():
    names = {path.stem for path in NOTEBOOKS}
    assert {"01_output_language", "02_data_engines", "03_predict", "04_train_from_scratch", "05_grpo", "06_evaluate", "07_finetune_your_data"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_at_smoke_scale(path, tmp_path, monkeypatch):
    monkeypatch.setenv(SCALE_VARIABLE, "smoke")  # the kernel inherits this process's environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo_before = _tree(NOTEBOOKS_DIR)
    notebook = _read(path)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback, on any error
    assert "scale: smoke" in _text_of(_code_cells(notebook)[0].outputs)
    assert not [o for cell in _code_cells(notebook) for o in cell.outputs if o.output_type == "error"]
    assert _tree(NOTEBOOKS_DIR) == repo_before, "a notebook wrote into the repository"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_notebook_holds_a_clean_full_run(path):
    assert path.stat().st_size <= MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes; at most {MAX_BYTES}"
    notebook = _read(path)
    code = _code_cells(notebook)
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not one top-to-bottom run (execution counts {counts})"
    assert "scale: full" in _text_of(code[0].outputs), f"{path.name}: committed outputs are not of a full-scale run"
    outputs = [output for cell in code for output in cell.outputs]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, f"{path.name}: error outputs: {[e.ename + ': ' + e.evalue for e in errors]}"
    assert not [o for o in outputs if o.output_type == "stream" and "Traceback" in o.text]
    assert any("image/png" in output.get("data", {}) for output in outputs), f"{path.name}: no picture in its outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_tells_what_it_teaches_and_what_next(path):
    cells = _read(path).cells
    assert cells[0].cell_type == "markdown" and "2-core CPU" in cells[0].source, f"{path.name}: no time on a 2-core CPU up front"
    closing = [cell for cell in cells if cell.cell_type == "markdown"][-1]
    assert "What to try next" in closing.source, f"{path.name}: does not end with what to try next"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_uses_only_the_public_api(path):
    private = []
    for cell in _code_cells(_read(path)):
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rexomni_core"):
                names = node.module.split(".") + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [part for alias in node.names if alias.name.startswith("rexomni_core") for part in alias.name.split(".")]
            else:
                continue
            private += [name for name in names if name.startswith("_")]
    assert not private, f"{path.name} imports private names: {private}"


def test_the_scale_switch_refuses_an_unknown_scale(tmp_path, monkeypatch):
    """The first code cell reads the switch; it runs here in-process, without a kernel."""
    from rexomni_core.errors import InputError

    monkeypatch.chdir(tmp_path)
    for path in NOTEBOOKS:
        first = _code_cells(_read(path))[0].source
        monkeypatch.setenv(SCALE_VARIABLE, "huge")
        with pytest.raises(InputError, match=SCALE_VARIABLE):
            exec(compile(first, str(path), "exec"), {})
        monkeypatch.delenv(SCALE_VARIABLE)
        namespace: dict = {}
        exec(compile(first, str(path), "exec"), namespace)
        assert namespace["SCALE"] == "full", f"{path.name}: full is the default scale"
    assert os.listdir(tmp_path) == []
