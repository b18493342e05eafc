"""The physics SWI simulator (core.phantoms.swi_physics): dipole field, phase sign, blooming,
SWI weighting, truth on the dark spot in any storage order, determinism, independence."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_neuroreview.core.phantoms.swi_physics import (
    PHASE_CONVENTION,
    field_ppm,
    highpass_phase,
    make_swi_case,
    rad_per_ppm,
    swi_images,
)
from napari_neuroreview.core.phantoms.swi_physics.objects import (
    DARK_RATIO,
    Scene,
    _draw_tube,
    draw_sphere,
)
from napari_neuroreview.core.phantoms.swi_physics.render import AcqGrid

#: A small slab case: fast, with bleeds and no small mimics.
SMALL = {"voxel_size": (1.0, 1.0, 2.0), "rotation_deg": (0.0, 0.0, 0.0), "slab": (0.0, 24.0), "n_cmb": 3,
         "location_weights": {"lobar": 1.0, "deep": 1.0}, "mimics": {"vein": 0, "calcification": 0, "airbone": 0},
         "macro_mm": 3.0, "noise_sd": 0.001, "bias_strength": 0.0}


def _sphere_chi(n: int, h: float, a: float, chi: float) -> tuple[np.ndarray, np.ndarray]:
    x = (np.arange(n) - n / 2 + 0.5) * h
    g = np.stack(np.meshgrid(x, x, x, indexing="ij"), -1)
    r = np.linalg.norm(g, axis=-1)
    return (chi * np.clip(0.5 - (r - a) / h, 0, 1)).astype(np.float32), g


def test_dipole_field_of_a_sphere_matches_the_analytic_solution() -> None:
    h, a = 0.25, 3.0
    chi, g = _sphere_chi(96, h, a, 1.0)
    f = field_ppm(chi, (h, h, h), np.array([0.0, 0.0, 1.0]))
    r = np.maximum(np.linalg.norm(g, axis=-1), 1e-6)
    analytic = 1.0 / 3.0 * (a / r) ** 3 * (3 * (g[..., 2] / r) ** 2 - 1)
    out = (r > 1.5 * a) & (r < 3 * a)
    peak = 2.0 / 3.0 * (1 / 1.5) ** 3
    assert np.abs(f - analytic)[out].max() / peak < 0.03
    assert abs(float(f[r < a - 0.5].mean())) < 0.01  # Lorentz-corrected: no shift inside


def test_dipole_field_follows_b0_in_grid_axes() -> None:
    """B0 along grid axis 0: the positive lobes move to that axis."""
    h, a = 0.5, 3.0
    chi, _ = _sphere_chi(48, h, a, 1.0)
    f = field_ppm(chi, (h, h, h), np.array([1.0, 0.0, 0.0]))
    c = 24
    assert f[c + 12, c, c] > 0 > f[c, c, c + 12]


def _scene(vs: float = 0.5, n: int = 48, te: float = 20.0, b0: float = 3.0) -> Scene:
    aff = np.diag([vs, vs, vs, 1.0])
    aff[:3, 3] = -vs * (n - 1) / 2
    grid = AcqGrid(aff, (n, n, n), np.array([0.0, 0.0, 1.0]))
    signal = np.ones((n, n, n), np.complex64)
    return Scene(grid, signal, np.random.default_rng(0), rad_per_ppm(b0, te), te, 0.25,
                 np.zeros((n, n, n), np.uint16), np.zeros((n, n, n), np.uint8))


@pytest.mark.parametrize("chi", [0.8, -0.8])
def test_phase_sign_follows_the_susceptibility(chi: float) -> None:
    scene = _scene()
    draw_sphere(scene, np.zeros(3), 1.5, chi, 1.0)
    above = np.angle(scene.signal[24, 24, 24 + 6])  # 3 mm along B0
    beside = np.angle(scene.signal[24 + 6, 24, 24])  # equator
    assert np.sign(above) == np.sign(chi) and np.sign(beside) == -np.sign(chi)
    assert PHASE_CONVENTION.startswith("positive phase = paramagnetic")


def test_phase_convention_is_the_other_simulators() -> None:
    from napari_neuroreview.core.phantoms.swi import PHASE_CONVENTION as OTHER

    assert PHASE_CONVENTION == OTHER


def _dark_diameter(te: float, b0: float) -> float:
    scene = _scene(te=te, b0=b0)
    _, ratio = draw_sphere(scene, np.zeros(3), 1.0, 0.8, 0.0)
    vol = float((ratio < DARK_RATIO).sum()) * 0.5**3
    return (6 * vol / np.pi) ** (1 / 3)


def test_blooming_grows_with_te_and_field_strength() -> None:
    d10, d30 = _dark_diameter(10.0, 3.0), _dark_diameter(30.0, 3.0)
    d15, d3 = _dark_diameter(20.0, 1.5), _dark_diameter(20.0, 3.0)
    assert 1.8 <= d10 < d30  # about the deposit's 2 mm at short TE, larger at long TE
    assert 1.8 <= d15 < d3


def test_swi_darkens_a_vein_beyond_the_magnitude() -> None:
    scene = _scene(n=40)
    scene.signal *= np.float32(0.1)
    # Along B0 the field inside a paramagnetic vein is +chi/3 (across B0 it is -chi/6: the
    # orientation dependence of vein phase), so the phase mask darkens it.
    path = np.array([[0.0, 0.0, -6.0], [0.0, 0.0, 6.0]])
    _draw_tube(scene, path, 0.5, 0.4, 0.1 * 0.4)
    mag = np.abs(scene.signal)
    phase = highpass_phase(scene.signal, scene.grid.vs, 4.0)
    swi, minip = swi_images(mag, phase, scene.grid.vs, 3.0)
    vein = np.zeros(mag.shape, bool)
    vein[19:21, 19:21, 12:28] = True
    assert swi[vein].mean() < 0.9 * mag[vein].mean()
    assert minip is not None and np.all(minip <= swi + 1e-6)


@pytest.fixture(scope="module")
def ras_and_lps():
    return make_swi_case(11, orientation="RAS", **SMALL), make_swi_case(11, orientation="LPS", **SMALL)


def test_cmb_truth_on_a_15_degree_oblique_grid() -> None:
    kw = {**SMALL, "rotation_deg": (12.0, -8.0, 15.0), "voxel_size": (0.9, 0.9, 1.8)}
    case = make_swi_case(12, orientation="LAS", **kw)
    mag = np.asarray(case.magnitude.dataobj, float)
    inst = np.asarray(case.truth["instances"].dataobj)
    brain = np.asarray(case.truth["brain_mask"].dataobj) > 0
    assert case.truth["cmbs"]
    for cmb in case.truth["cmbs"]:
        ijk = tuple(np.rint(cmb["voxel_ijk"]).astype(int))
        assert inst[ijk] == cmb["id"] and mag[ijk] < 0.5 * np.median(mag[brain])


def test_cmb_truth_lands_on_the_dark_spot_in_ras_and_lps(ras_and_lps) -> None:
    ras, lps = ras_and_lps
    assert len(ras.truth["cmbs"]) >= 2
    for case in (ras, lps):
        mag = np.asarray(case.magnitude.dataobj, float)
        inst = np.asarray(case.truth["instances"].dataobj)
        brain = np.asarray(case.truth["brain_mask"].dataobj) > 0
        for cmb in case.truth["cmbs"]:
            ijk = tuple(np.rint(cmb["voxel_ijk"]).astype(int))
            assert inst[ijk] == cmb["id"]
            assert mag[ijk] < 0.5 * np.median(mag[brain])
            xyz = case.magnitude.affine @ np.array([*cmb["voxel_ijk"], 1.0])
            np.testing.assert_allclose(xyz[:3], cmb["world_ras_mm"], atol=1e-3)
    w_ras = np.array([c["world_ras_mm"] for c in ras.truth["cmbs"]])
    w_lps = np.array([c["world_ras_mm"] for c in lps.truth["cmbs"]])
    np.testing.assert_allclose(w_ras, w_lps, atol=1e-3)


def test_same_seed_same_case(ras_and_lps) -> None:
    again = make_swi_case(11, orientation="RAS", **SMALL)
    ras = ras_and_lps[0]
    np.testing.assert_array_equal(np.asarray(again.magnitude.dataobj), np.asarray(ras.magnitude.dataobj))
    np.testing.assert_array_equal(np.asarray(again.phase.dataobj), np.asarray(ras.phase.dataobj))
    assert again.truth["cmbs"] == ras.truth["cmbs"]


def test_package_does_not_import_the_other_simulator() -> None:
    code = ("import sys, napari_neuroreview.core.phantoms.swi_physics\n"
            "bad = [m for m in sys.modules if m == 'napari_neuroreview.core.phantoms.swi'"
            " or m.startswith('napari_neuroreview.core.phantoms.swi.')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_phantoms_simulator_physics(tmp_path) -> None:
    import json

    from napari_neuroreview.cli import main

    assert main(["cmb", "phantoms", "--out", str(tmp_path), "--n", "1", "--seed", "5", "--simulator", "physics"]) == 0
    case = tmp_path / "case-000"
    truth = json.loads((case / "truth.json").read_text())
    assert truth["params"]["generator"].endswith("swi_physics.make_swi_case")
    assert {"swi.nii.gz", "phase.nii.gz", "truth_instances.nii.gz", "truth_mimics.nii.gz"} <= {
        p.name for p in case.iterdir()}


def test_polyline_distance_within_keeps_the_exact_near_distances() -> None:
    """The KD-tree shortcut changes no distance a tube uses: exact below ``within``, inf beyond."""
    from napari_neuroreview.core.phantoms.swi_physics.sources import polyline_distance

    rng = np.random.default_rng(3)
    path = np.cumsum(rng.normal(0, 4.0, (12, 3)), axis=0)
    pts = path.min(0) - 5 + rng.random((20000, 3)) * (np.ptp(path, axis=0) + 10)
    full = polyline_distance(pts, path)
    near = polyline_distance(pts, path, within=2.5)
    inside = full < 2.5
    assert inside.sum() > 100 and (~inside).sum() > 100
    np.testing.assert_array_equal(near[inside], full[inside])
    assert np.all(np.isinf(near[~inside]))
