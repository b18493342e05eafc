"""The run-time code never imports the simulators: core/phantoms builds on core/anatomy, not the reverse.

Checked by parsing the sources (no import side effects): every module of the package outside
``core/phantoms`` is read, its imports resolved (relative ones too), and any import of
``core.phantoms`` is refused, except inside a function of the commands that make phantoms
or sample data (the CLI and the npe2 sample-data hook), which import them lazily.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import napari_neuroreview

PACKAGE = Path(napari_neuroreview.__file__).resolve().parent
SIMULATORS = "napari_neuroreview.core.phantoms"
#: Modules whose commands make phantoms or sample data: they may import the simulators in a function.
LAZY_ALLOWED = {"cli.py", "cli_cmb.py", "cli_csvd.py", "cli_metastasis.py", "cli_networks.py", "cli_stroke.py",
                "_sample_data.py"}


def _module_name(path: Path) -> str:
    parts = ["napari_neuroreview", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(absolute module, line, inside a function) of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".") if path.name == "__init__.py" else _module_name(path).split(".")[:-1]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                module = ".".join([*base, *([child.module] if child.module else [])])
                found.append((module, child.lineno, in_function))
                found.extend((f"{module}.{alias.name}", child.lineno, in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def _violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("core/phantoms/"):
            continue
        for module, line, lazy in _imports(path):
            if module == SIMULATORS or module.startswith(SIMULATORS + "."):
                if lazy and rel in LAZY_ALLOWED:
                    continue
                problems.append(f"{rel}:{line} imports {module}")
    return sorted(set(problems))


def test_no_run_time_module_imports_the_simulators() -> None:
    assert _violations() == []


def test_the_parser_sees_relative_and_absolute_imports(tmp_path: Path, monkeypatch) -> None:
    """The rule would pass vacuously if the resolution were wrong: plant both kinds and see them."""
    fake = tmp_path / "napari_neuroreview"
    (fake / "core" / "tasks").mkdir(parents=True)
    (fake / "core" / "tasks" / "x.py").write_text(
        "from ..phantoms.swi import make_swi_case\nimport napari_neuroreview.core.phantoms.samples\n"
        "def f():\n    from ...core.phantoms import anatomy\n", encoding="utf-8")
    (fake / "cli.py").write_text("def g():\n    from .core.phantoms.samples import write_sample_data\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations() == [
        "core/tasks/x.py:1 imports napari_neuroreview.core.phantoms.swi",
        "core/tasks/x.py:1 imports napari_neuroreview.core.phantoms.swi.make_swi_case",
        "core/tasks/x.py:2 imports napari_neuroreview.core.phantoms.samples",
        "core/tasks/x.py:4 imports napari_neuroreview.core.phantoms",
        "core/tasks/x.py:4 imports napari_neuroreview.core.phantoms.anatomy",
    ]


def test_the_anatomy_lives_outside_the_simulators() -> None:
    from napari_neuroreview.core.anatomy import atlas, load_mni_anatomy

    assert atlas.NETWORKS and callable(load_mni_anatomy)
    assert not (PACKAGE / "core" / "atlas.py").exists()
    assert not (PACKAGE / "core" / "phantoms" / "anatomy" / "mni.py").exists()
