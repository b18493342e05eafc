"""``neuroreview models`` knows every model family a command trains or the package ships."""

from __future__ import annotations

from napari_neuroreview.cli import main
from napari_neuroreview.cli_models import TASKS, TRAIN_COMMANDS
from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT


def test_every_trained_or_shipped_family_is_a_models_task() -> None:
    """`metastasis train` tells the user to run `models set-default metastasis-origin V`: that must work."""
    from napari_neuroreview.core.tasks.cmb.model import MODEL_NAME as CMB
    from napari_neuroreview.core.tasks.csvd.model import MODEL_NAME as CSVD
    from napari_neuroreview.core.tasks.metastasis.model import MODEL_NAME as METASTASIS
    from napari_neuroreview.core.tasks.networks.model import MODEL_NAME as NETWORKS
    from napari_neuroreview.core.tasks.stroke.downstream import MODEL_NAME as STROKE

    shipped = {p.name for p in SHIPPED_WEIGHTS_ROOT.iterdir() if p.is_dir()}
    assert {CMB, CSVD, METASTASIS, NETWORKS, STROKE} | shipped <= set(TASKS) == set(TRAIN_COMMANDS)


def test_set_default_and_list_the_shipped_origin_model(tmp_path, capsys) -> None:
    root = str(tmp_path / "user")
    assert main(["models", "set-default", "metastasis-origin", "1.0.0", "--root", root]) == 0
    assert "metastasis-origin: the default is now 1.0.0" in capsys.readouterr().out
    assert main(["models", "list", "--task", "metastasis-origin", "--root", root]) == 0
    listed = capsys.readouterr().out
    assert "metastasis-origin (metastasis origin model): 1 installed, default 1.0.0" in listed and "shipped" in listed
    assert main(["models", "set-default", "metastasis-origin", "9.9.9", "--root", root]) == 2
    assert "version 9.9.9 is not installed (installed: 1.0.0)" in capsys.readouterr().err


def test_with_none_installed_set_default_names_the_familys_own_train_command(no_shipped_weights, tmp_path,
                                                                              capsys) -> None:
    for name in ("metastasis-origin", "stroke-risk", "csvd-subtype"):
        assert main(["models", "set-default", name, "1.0.0", "--root", str(tmp_path / "user")]) == 2
        assert TRAIN_COMMANDS[name] in capsys.readouterr().err, name
