"""The house's floors: the data engines and the trainers never import the evaluation protocols
(`eval/`), and the ground floor (geometry, text similarity, COCO conventions) imports nothing of
the package above the region types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rexomni_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (inside functions too), as an absolute name;
    `from X import name` counts both X and X.name (name may be a submodule)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def package_imports(path: Path) -> set[str]:
    """The package's own modules `path` imports."""
    return {name for name in imported_modules(path) if name == "rexomni_core" or name.startswith("rexomni_core.")}


def test_relative_imports_resolve_to_absolute_names():
    assert "rexomni_core.eval.matching" in imported_modules(PACKAGE / "eval" / "f1.py")
    assert "rexomni_core.errors.InputError" in imported_modules(PACKAGE / "data" / "formats" / "__init__.py")
    assert "rexomni_core.geometry" in imported_modules(PACKAGE / "data" / "worlds" / "shapes.py")


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "data").rglob("*.py")) + sorted((PACKAGE / "train").rglob("*.py")),
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_data_and_train_never_import_the_evaluators(path):
    imported = package_imports(path)
    evaluators = sorted(name for name in imported if name == "rexomni_core.eval" or name.startswith("rexomni_core.eval."))
    assert not evaluators, f"{path.relative_to(PACKAGE)} imports {evaluators}; use the ground floor (geometry, coco, ...)"


GROUND_FLOOR = {
    # module: the package modules it may import
    "geometry.py": {"rexomni_core.coords", "rexomni_core.regions", "rexomni_core.errors"},
    "text_similarity.py": {"rexomni_core.coords", "rexomni_core.regions", "rexomni_core.errors"},
    "coco.py": {"rexomni_core.coords", "rexomni_core.regions", "rexomni_core.errors", "rexomni_core.geometry"},
    "annotations.py": set(),
    "errors.py": set(),
    "images.py": {"rexomni_core.errors"},
}


@pytest.mark.parametrize("file", sorted(GROUND_FLOOR))
def test_the_ground_floor_imports_nothing_above_it(file):
    allowed = GROUND_FLOOR[file]
    imported = package_imports(PACKAGE / file)
    above = sorted(name for name in imported if name not in allowed and name.rpartition(".")[0] not in allowed)
    assert not above, f"{file} imports {above}; it may import only {sorted(allowed)}"


def test_everything_below_the_model_loads_without_torch():
    """Parsing, scoring, data engines and formats stay light: importing them loads no torch."""
    import subprocess
    import sys

    modules = ["rexomni_core", "rexomni_core.grammar", "rexomni_core.geometry", "rexomni_core.coco",
               "rexomni_core.images", "rexomni_core.chat", "rexomni_core.eval.run", "rexomni_core.eval.cli",
               "rexomni_core.data.samplers", "rexomni_core.data.formats", "rexomni_core.data.synth",
               "rexomni_core.nano.vocabulary", "rexomni_core.cli"]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"importing the light floors loaded {loaded}"
