"""`neuroreview networks compare` and core.tasks.networks.compare: one patient's pre vs post."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import default_registry_root
from napari_neuroreview.core.tasks.networks.compare import compare

from networks_synthetic import make_synthetic_bold, save_bold
from prepost_tiny import install_tiny_model, tiny_prepost_model


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    install_tiny_model(default_registry_root())
    return default_registry_root()


@pytest.fixture
def pair(tmp_path) -> dict[str, Path]:
    paths = {}
    for state, seed in (("pre", 1), ("post", 2)):
        paths[state] = tmp_path / f"{state}.nii.gz"
        save_bold(make_synthetic_bold(seed=seed), paths[state])
    return paths


def test_compare_writes_p_post_of_every_network_for_both_scans(pair, tmp_path, capsys) -> None:
    out = tmp_path / "res.json"
    assert main(["networks", "compare", "--pre", str(pair["pre"]), "--post", str(pair["post"]), "--out", str(out),
                 "--version", "0.1.0", "--device", "cpu", "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == {"name": "network-prepost", "version": "0.1.0"}
    assert set(doc["networks"]) == set(atlas.NETWORKS) and doc["n_volumes"] == 100 and doc["tr_s"] == 2.0
    # the same numbers as the model itself gives on the same inputs (no re-scaling on the way)
    result = run_to_completion(compare(pair["pre"], pair["post"], model=tiny_prepost_model(), with_tsne=False))
    for name in atlas.NETWORKS:
        for state in ("pre", "post"):
            entry = doc["networks"][name][state]
            assert 0.0 <= entry["p_post"] <= 1.0
            assert entry["p_post"] == pytest.approx(result.probabilities[state][name], abs=1e-9)
            assert entry["component"].startswith("IC")


def test_post_on_another_grid_is_resampled_for_display_with_a_message(pair, tmp_path) -> None:
    coarse = tmp_path / "post8.nii.gz"
    save_bold(make_synthetic_bold(seed=2, voxel_mm=8.0), coarse)
    result = run_to_completion(compare(pair["pre"], coarse, model=tiny_prepost_model(), with_tsne=False))
    assert result.post_maps_on_pre_grid and any("another grid" in m for m in result.messages)
    data, affine = result.display_map("post", "motor")
    assert data.shape == result.pre.comps.spatial_shape
    np.testing.assert_allclose(affine, result.pre.comps.affine)


@pytest.mark.parametrize("what", ["volumes", "tr"])
def test_different_protocols_are_refused_and_nothing_is_written(pair, tmp_path, capsys, what) -> None:
    other = tmp_path / "other.nii.gz"
    save_bold(make_synthetic_bold(seed=2, n_volumes=90) if what == "volumes"
              else make_synthetic_bold(seed=2, tr_s=2.5), other)
    out = tmp_path / "res.json"
    code = main(["networks", "compare", "--pre", str(pair["pre"]), "--post", str(other), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert ("volumes" if what == "volumes" else "TR") in err and len(err.strip().splitlines()) == 1


def test_melodic_folder_without_its_mix_is_refused(pair, tmp_path, capsys) -> None:
    import shutil

    folder = tmp_path / "melodic.ica"
    folder.mkdir()
    shutil.copy(pair["pre"], folder / "melodic_IC.nii.gz")
    code = main(["networks", "compare", "--pre", str(folder), "--post", str(pair["post"]),
                 "--out", str(tmp_path / "res.json"), "--quiet"])
    assert code == 2 and "melodic_mix" in capsys.readouterr().err
    assert not (tmp_path / "res.json").exists()


def test_res_json_goes_through_the_sanitiser_and_refuses_nan(tmp_path) -> None:
    """numpy values are written as JSON numbers; a NaN (a bug here) is refused and nothing is written."""
    from napari_neuroreview.core.tasks.networks.compare import write_comparison

    class Result:
        def __init__(self, p: float) -> None:
            self.p = p

        def to_json(self) -> dict:
            return {"networks": {"motor": {"pre": {"p_post": self.p}}}, "n_volumes": np.int64(60)}

    out = write_comparison(Result(np.float32(0.25)), tmp_path / "res.json")
    assert json.loads(out.read_text()) == {"networks": {"motor": {"pre": {"p_post": 0.25}}}, "n_volumes": 60}
    with pytest.raises(ValueError):
        write_comparison(Result(np.float32("nan")), tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
