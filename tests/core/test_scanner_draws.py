"""Domain randomisation (core.phantoms.scanner_draws): draws inside their documented ranges
and reaching both ends, reproducible, accepted by both SWI simulators with the truth on
the dark spot, and recorded by ``cmb phantoms --randomise``."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.anatomy import make_affine
from napari_neuroreview.core.phantoms import scanner_draws as sd
from napari_neuroreview.core.phantoms.scanner_draws import (
    ORIENTATIONS,
    case_scanner,
    draw_scanner,
)

N_DRAWS = 400


def _obliquity_deg(d: dict) -> float:
    """Rotation angle of the drawn grid against the same grid without rotation."""
    a, _ = make_affine(d["voxel_size"], d["orientation"], d["rotation_deg"])
    a0, _ = make_affine(d["voxel_size"], d["orientation"], (0.0, 0.0, 0.0))
    r = a[:3, :3] @ np.linalg.inv(a0[:3, :3])
    return math.degrees(math.acos(np.clip((np.trace(r) - 1) / 2, -1, 1)))


@pytest.fixture(scope="module")
def draws() -> dict[str, list[dict]]:
    return {s: [case_scanner(seed, s) for seed in range(N_DRAWS)] for s in sd.SIMULATORS}


def test_48_distinct_orientations_all_accepted_by_make_affine() -> None:
    assert len(set(ORIENTATIONS)) == 48 and {"RAS", "LPS", "LAS", "PIL"} <= set(ORIENTATIONS)
    for code in ORIENTATIONS:
        make_affine((1.0, 1.0, 2.0), code)


@pytest.mark.parametrize("simulator", sd.SIMULATORS)
def test_draws_stay_in_range_and_reach_both_ends(draws, simulator: str) -> None:
    ds = draws[simulator]
    slices, in_plane, obliq, te, noise, bias, gain = [], [], [], [], [], [], []
    for d in ds:
        si = next(i for i, c in enumerate(d["orientation"]) if c in "SI")
        slices.append(d["voxel_size"][si])
        in_plane += [v for i, v in enumerate(d["voxel_size"]) if i != si]
        obliq.append(_obliquity_deg(d))
        te.append(d["te_ms"])
        noise.append(d["noise_sd"] / sd._DEFAULTS[simulator]["noise_sd"])
        bias.append(d["bias_strength"])
        gain.append(d["intensity_scale"] / sd._DEFAULTS[simulator]["intensity_scale"])
        if d["slab"] is not None:
            z0, z1 = d["slab"]
            assert sd.BRAIN_Z_MM[0] - 0.01 <= z0 < z1 <= sd.BRAIN_Z_MM[1] + 0.01
            assert sd.SLAB_MM[0] - 0.02 <= z1 - z0 <= sd.SLAB_MM[1] + 0.02
    assert 0.5 <= min(in_plane) < 0.55 and 0.95 < max(in_plane) <= 1.0
    assert 1.0 <= min(slices) < 1.1 and 2.9 < max(slices) <= 3.0
    assert max(obliq) <= 15.0 + 1e-3 and max(obliq) > 14.0 and min(obliq) < 1.0
    assert 0.5 - 1e-3 <= min(noise) < 0.6 and 1.8 < max(noise) <= 2.0 + 1e-3
    assert 0.0 <= min(bias) < 0.02 and 0.38 < max(bias) <= 0.4
    assert 0.5 - 1e-3 <= min(gain) < 0.6 and 1.8 < max(gain) <= 2.0 + 1e-3
    assert len({d["orientation"] for d in ds}) == 48
    n_slab = sum(d["slab"] is not None for d in ds)
    assert 0.35 * N_DRAWS < n_slab < 0.65 * N_DRAWS
    if simulator == "phenomenological":
        assert 15.0 <= min(te) < 16.0 and 29.0 < max(te) <= 30.0
        assert not {"b0_t", "tr_ms", "flip_deg", "b0_dir"} & set(ds[0])
        scales = [d["t2star_scale"] for d in ds]
        assert 0.85 <= min(scales) < 0.88 and 1.27 < max(scales) <= 1.3
        return
    assert "t2star_scale" not in ds[0]
    by_field = {b: [d for d in ds if d["b0_t"] == b] for b in (1.5, 3.0)}
    assert all(len(v) > 0.35 * N_DRAWS for v in by_field.values())
    for b, (lo, hi) in sd.TE_MS.items():
        tes = [d["te_ms"] for d in by_field[b]]
        assert lo <= min(tes) < lo + 1 and hi - 1 < max(tes) <= hi
    assert all(8.0 - 1e-3 <= d["tr_ms"] - d["te_ms"] <= 20.0 + 1e-3 for d in ds)
    flips = [d["flip_deg"] for d in ds]
    assert 10.0 <= min(flips) < 11.0 and 24.0 < max(flips) <= 25.0
    tilts = [math.degrees(math.acos(d["b0_dir"][2])) for d in ds]
    assert max(tilts) <= 10.0 + 1e-3 and max(tilts) > 9.0
    assert all(abs(np.linalg.norm(d["b0_dir"]) - 1) < 1e-5 for d in ds)


def test_same_seed_same_draw_other_seed_other_draw() -> None:
    assert case_scanner(7, "physics") == case_scanner(7, "physics")
    assert draw_scanner(np.random.default_rng(3), "phenomenological") == draw_scanner(
        np.random.default_rng(3), "phenomenological")
    assert case_scanner(7, "physics") != case_scanner(8, "physics")
    with pytest.raises(ValueError, match="simulator"):
        draw_scanner(np.random.default_rng(0), "mri")


#: A drawn scanner (1.5 T for physics, PRI storage, 14 degrees oblique, 2.8 mm slices)
#: on a thin slab with bleeds and no small mimics, to keep each case a few seconds.
_SEED = 2
_SMALL = {"slab": (0.0, 24.0), "n_cmb": 3, "location_weights": {"lobar": 1.0, "deep": 1.0}}


@pytest.mark.parametrize("simulator", sd.SIMULATORS)
def test_each_simulator_accepts_a_draw_truth_on_the_dark_spot(simulator: str) -> None:
    if simulator == "physics":
        from napari_neuroreview.core.phantoms.swi_physics import make_swi_case

        extra = {"mimics": {"vein": 0, "calcification": 0, "airbone": 0}, "macro_mm": 3.0}
    else:
        from napari_neuroreview.core.phantoms.swi import make_swi_case

        extra = {"mimics": {"vein": 0, "sulcal": 0, "airbone": 0, "calcification": 0}}
    draw = case_scanner(_SEED, simulator)
    assert _obliquity_deg(draw) > 10 and draw["orientation"] not in ("RAS", "LAS", "LPS")
    case = make_swi_case(_SEED, **{**draw, **_SMALL, **extra})
    assert "".join(nib.aff2axcodes(case.magnitude.affine)) == draw["orientation"]
    np.testing.assert_allclose(case.magnitude.header.get_zooms()[:3], draw["voxel_size"], atol=1e-4)
    if simulator == "physics":
        assert case.params["b0_t"] == draw["b0_t"] == 1.5 and case.params["flip_deg"] == draw["flip_deg"]
    else:
        assert case.params["t2star_scale"] == draw["t2star_scale"]
    mag = np.asarray(case.magnitude.dataobj, float)
    inst = np.asarray(case.truth["instances"].dataobj)
    brain = np.asarray(case.truth["brain_mask"].dataobj) > 0
    assert len(case.truth["cmbs"]) >= 2
    for cmb in case.truth["cmbs"]:
        ijk = tuple(np.rint(cmb["voxel_ijk"]).astype(int))
        assert inst[ijk] == cmb["id"] and mag[ijk] < 0.5 * np.median(mag[brain])
        xyz = case.magnitude.affine @ np.array([*cmb["voxel_ijk"], 1.0])
        np.testing.assert_allclose(xyz[:3], cmb["world_ras_mm"], atol=1e-3)


def test_cli_phantoms_randomise_records_the_draw(tmp_path) -> None:
    from napari_neuroreview.cli import main

    # seed 40: case 0 draws a 72 mm slab at 0.85 x 0.85 x 2.7 mm, quick to write
    assert main(["cmb", "phantoms", "--out", str(tmp_path), "--n", "1", "--seed", "40", "--randomise"]) == 0
    truth = json.loads((tmp_path / "case-000" / "truth.json").read_text())
    draw = truth["params"]["per_case"]
    assert draw == json.loads(json.dumps(case_scanner(truth["cohort"]["case_seed"], "phenomenological")))
    assert truth["axcodes"] == draw["orientation"] and truth["params"]["slab"] == draw["slab"]
    np.testing.assert_allclose(truth["voxel_size_mm"], draw["voxel_size"], atol=1e-4)
    assert truth["params"]["te_ms"] == draw["te_ms"] and truth["params"]["noise_sd"] == draw["noise_sd"]


def test_physics_cohort_takes_a_scanner_per_case(tmp_path) -> None:
    from napari_neuroreview.core.phantoms.swi_physics import write_physics_cohort

    def small_scanner(case_seed: int) -> dict:
        return {**case_scanner(case_seed, "physics"), "slab": (0.0, 12.0), "n_cmb": 1,
                "mimics": {"vein": 0, "calcification": 0, "airbone": 0}, "macro_mm": 3.0}

    write_physics_cohort(tmp_path, 1, 3, per_case=small_scanner)
    truth = json.loads((tmp_path / "case-000" / "truth.json").read_text())
    draw = truth["params"]["per_case"]
    assert draw == json.loads(json.dumps(small_scanner(truth["cohort"]["case_seed"])))
    assert truth["params"]["b0_t"] == draw["b0_t"] and truth["params"]["tr_ms"] == draw["tr_ms"]
    assert truth["axcodes"] == draw["orientation"]


def test_phenomenological_t2star_scale_changes_the_contrast() -> None:
    from napari_neuroreview.core.phantoms.swi import make_swi_case

    kw = {"voxel_size": (2.0, 2.0, 4.0), "slab": (0.0, 20.0), "n_cmb": 0, "noise_sd": 0.0, "bias_strength": 0.0,
          "mimics": {"vein": 0, "sulcal": 0, "airbone": 0, "calcification": 0}, "rotation_deg": (0, 0, 0)}
    base, longer = make_swi_case(4, **kw), make_swi_case(4, t2star_scale=1.25, **kw)
    for name in ("gm", "wm", "csf"):
        assert longer.params["tissue"][name]["t2star_ms"] == pytest.approx(1.25 * base.params["tissue"][name]["t2star_ms"])
        assert longer.params["tissue"][name]["signal"] > base.params["tissue"][name]["signal"]
    assert "t2star_scale" not in base.params and longer.params["t2star_scale"] == 1.25
