"""Packaging contracts: one manifest, importable commands, a Qt-free core."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

import napari_neuroreview

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = Path(napari_neuroreview.__file__).parent / "napari.yaml"


def test_root_and_packaged_manifest_are_identical() -> None:
    assert (ROOT / "napari.yaml").read_bytes() == PACKAGED.read_bytes()


def test_every_python_name_in_the_manifest_imports() -> None:
    manifest = yaml.safe_load(PACKAGED.read_text())
    names = [command["python_name"] for command in manifest["contributions"]["commands"]]
    assert names
    for name in names:
        module, attr = name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_npe2_validate_passes() -> None:
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent)) or shutil.which("npe2")
    assert npe2, "npe2 is a test dependency"
    result = subprocess.run([npe2, "validate", "napari-neuroreview"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_imports_no_qt_and_no_napari() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import napari_neuroreview.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'napari_neuroreview.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'vispy'))\n"
        "print(len(list(pkgutil.walk_packages(core.__path__))), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "neuroreview"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "info" in result.stdout and "sample-data" in result.stdout
