"""Tests of the SWI microbleed phantom: truth consistency, physics signs, anatomy, writers.

One whole-brain case at the clinical 0.9 x 0.9 x 1.8 mm grid (no rotation or bias, low
noise, many bleeds in every class) serves most tests; determinism, slabs and the cohort
writer use coarse grids to stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine, obliquity
from scipy import ndimage

from napari_neuroreview.core.anatomy import load_mni_anatomy, world_to_voxel
from napari_neuroreview.core.phantoms.swi import (
    CMB_SAMPLE,
    MIMIC_LABELS,
    PHASE_STEP_RAD,
    in_region_box,
    load_swi_truth,
    make_swi_case,
    write_swi_cohort,
)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"


@pytest.fixture(scope="module")
def case():
    return make_swi_case(
        11,
        rotation_deg=(0.0, 0.0, 0.0),
        n_cmb=12,
        location_weights={"lobar": 1.0, "deep": 1.0, "infratentorial": 1.0},
        mimics={"vein": 8, "calcification": 2, "sulcal": 2, "airbone": 1},
        bias_strength=0.0,
        noise_sd=0.01,
    )


def _arrays(c):
    mag = np.asarray(c.magnitude.dataobj).astype(np.float64)
    phase = np.asarray(c.phase.dataobj) if c.phase is not None else None
    inst = np.asarray(c.truth["instances"].dataobj)
    mimics = np.asarray(c.truth["mimic_labels"].dataobj)
    return mag, phase, inst, mimics


def _ball(shape, affine, centre_mm, radius_mm):
    ijk = np.indices(shape).reshape(3, -1).T
    c = np.rint(world_to_voxel(affine, centre_mm)).astype(int)
    reach = int(np.ceil(radius_mm / min(nib.affines.voxel_sizes(affine)))) + 1
    near = np.all(np.abs(ijk - c) <= reach, axis=1)
    pts = apply_affine(affine, ijk[near])
    mask = np.zeros(shape, bool)
    sel = ijk[near][np.linalg.norm(pts - np.asarray(centre_mm), axis=1) <= radius_mm]
    mask[tuple(sel.T)] = True
    return mask


# --------------------------------------------------------------------------- images


def test_images_share_a_scanner_grid(case):
    img = case.magnitude
    assert img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    np.testing.assert_allclose(img.header.get_zooms()[:3], (0.9, 0.9, 1.8), rtol=1e-6)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    for other in (case.phase, case.truth["instances"], case.truth["mimic_labels"], case.truth["brain_mask"]):
        assert other.shape == img.shape
        np.testing.assert_allclose(other.affine, img.affine)
    assert case.phase.get_data_dtype() == np.float32
    assert case.truth["instances"].get_data_dtype() == np.uint16
    assert case.truth["mimic_labels"].get_data_dtype() == np.uint8


def test_phase_is_wrapped_and_masked(case):
    _, phase, _, _ = _arrays(case)
    brain = np.asarray(case.truth["brain_mask"].dataobj).astype(bool)
    assert phase.min() >= -np.pi - 1e-6 and phase.max() <= np.pi + 1e-6
    assert not phase[~brain].any()
    assert phase[brain].std() > 0


def test_tissue_contrast_is_t2star_weighted(case):
    """CSF brightest, grey matter brighter than white matter (GRE at TE 20 ms)."""
    mag, _, inst, mimics = _arrays(case)
    anat = load_mni_anatomy()
    vox = np.argwhere(np.asarray(case.truth["brain_mask"].dataobj) > 0)[::7]
    tmpl = np.rint(world_to_voxel(anat.affine, apply_affine(case.magnitude.affine, vox))).astype(int)
    tmpl = np.clip(tmpl, 0, np.asarray(anat.shape) - 1)
    free = (inst[tuple(vox.T)] == 0) & (mimics[tuple(vox.T)] == 0)
    means = {}
    for name in ("csf", "gm", "wm"):
        pure = getattr(anat, name)[tuple(tmpl.T)] > 0.95
        means[name] = mag[tuple(vox[pure & free].T)].mean()
    assert means["csf"] > means["gm"] > 1.1 * means["wm"]


# --------------------------------------------------------------------------- microbleed truth


def test_instances_are_contiguous_and_hold_their_centres(case):
    _, _, inst, _ = _arrays(case)
    cmbs = case.truth["cmbs"]
    assert len(cmbs) == 12 == case.params["n_cmb_placed"]
    assert [c["id"] for c in cmbs] == list(range(1, 13))
    assert sorted(set(np.unique(inst)) - {0}) == list(range(1, 13))
    zooms = np.asarray(case.magnitude.header.get_zooms()[:3])
    for c in cmbs:
        ijk = np.rint(c["voxel_ijk"]).astype(int)
        assert inst[tuple(ijk)] == c["id"]
        mask = inst == c["id"]
        assert ndimage.label(mask)[1] == 1  # one connected blob
        volume = mask.sum() * zooms.prod()
        assert volume == pytest.approx(c["volume_mm3"], rel=1e-6)
        r = c["visible_diameter_mm"] / 2
        sphere, area = 4 / 3 * np.pi * r**3, 4 * np.pi * r**2
        # Thresholding partial volume at 0.5 errs by a thin shell of the surface.
        assert abs(volume - sphere) <= 0.3 * area * zooms.mean() + zooms.prod()
        assert c["visible_diameter_mm"] == pytest.approx(c["diameter_mm"] * (1 + 0.015 * 20.0), rel=1e-3)
        assert 2.0 <= c["diameter_mm"] <= 10.0


def test_world_and_voxel_coordinates_agree(case):
    affine = case.magnitude.affine
    for item in case.truth["cmbs"] + case.truth["mimics"]:
        np.testing.assert_allclose(apply_affine(affine, item["voxel_ijk"]), item["world_ras_mm"], atol=2e-3)


def test_microbleeds_are_dark(case):
    mag, _, inst, mimics = _arrays(case)
    brain = np.asarray(case.truth["brain_mask"].dataobj).astype(bool)
    for c in case.truth["cmbs"]:
        ijk = np.argwhere(inst == c["id"])
        box = tuple(slice(max(a - 4, 0), b + 5) for a, b in zip(ijk.min(axis=0), ijk.max(axis=0)))
        mask = inst[box] == c["id"]
        ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask) & brain[box]
        ring &= (inst[box] == 0) & (mimics[box] == 0)
        assert mag[box][mask].mean() < 0.55 * mag[box][ring].mean(), c


def test_microbleeds_and_mimics_do_not_overlap(case):
    _, _, inst, mimics = _arrays(case)
    assert not np.any((inst > 0) & (mimics > 0))
    pts = np.array([c["world_ras_mm"] for c in case.truth["cmbs"]])
    radii = np.array([c["visible_diameter_mm"] / 2 for c in case.truth["cmbs"]])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 1e6
    assert np.all(d > radii[:, None] + radii[None, :])


def test_locations_land_in_their_regions(case):
    anat = load_mni_anatomy()
    seen = set()
    for c in case.truth["cmbs"]:
        p = np.asarray(c["world_ras_mm"])
        seen.add(c["location"])
        if c["location"] == "deep":
            assert in_region_box(p, "deep") and c["region"] in ("basal_ganglia", "thalamus")
        elif c["location"] == "infratentorial":
            assert p[2] < -15.0 and in_region_box(p, "infratentorial")
        else:
            assert c["location"] == "lobar"
            i, j, k = np.rint(world_to_voxel(anat.affine, p)).astype(int)
            assert anat.gm[i, j, k] >= 0.3 and anat.wm[i, j, k] >= 0.3  # grey/white junction
            assert not in_region_box(p, "deep") and not in_region_box(p, "infratentorial")
            assert p[2] > -40.0 and not (p[1] < -40.0 and p[2] < -12.0)  # above the tentorium
    assert seen == {"lobar", "deep", "infratentorial"}


# --------------------------------------------------------------------------- mimics and physics


def test_calcification_phase_sign_is_opposite_to_microbleeds(case):
    """Convention: positive phase = paramagnetic (blood products), negative = calcium."""
    _, phase, _, mimics = _arrays(case)
    calcs = [m for m in case.truth["mimics"] if m["type"] == "calcification"]
    assert len(calcs) == 2
    for c in case.truth["cmbs"]:
        assert phase[tuple(np.rint(c["voxel_ijk"]).astype(int))] > 0, c
        assert c["susceptibility_ppm"] > 0
    for m in calcs:
        assert phase[tuple(np.rint(m["voxel_ijk"]).astype(int))] < 0, m
        assert m["susceptibility_ppm"] < 0
    assert np.count_nonzero(mimics == 4) > 0


def test_dipole_pattern_outside_a_bleed(case):
    """Outside the sphere the shift follows 3 cos^2 - 1: positive along B0, negative beside."""
    _, phase, inst, _ = _arrays(case)
    c = max(case.truth["cmbs"], key=lambda c: c["diameter_mm"])
    r_true = c["diameter_mm"] / 2
    centre = np.asarray(c["world_ras_mm"])
    affine = case.magnitude.affine
    d = 1.25 * r_true
    above = [np.rint(world_to_voxel(affine, centre + s * np.array([0, 0, d]))).astype(int) for s in (1, -1)]
    side = [np.rint(world_to_voxel(affine, centre + s * np.array([d, 0, 0]))).astype(int) for s in (1, -1)]
    assert np.mean([phase[tuple(v)] for v in above]) > 0
    assert np.mean([phase[tuple(v)] for v in side]) < 0


def test_veins_run_across_slices_and_small_bleeds_do_not(case):
    _, phase, inst, mimics = _arrays(case)
    affine = case.magnitude.affine
    veins = [m for m in case.truth["mimics"] if m["type"] == "vein"]
    assert len(veins) == 8
    for v in veins:
        path = np.asarray(v["path"])
        assert path.shape[1] == 3 and len(path) >= 8
        ijk = np.rint(world_to_voxel(affine, path)).astype(int)
        ijk = ijk[np.all((ijk >= 0) & (ijk < mimics.shape), axis=1)]
        on_vein = mimics[tuple(ijk.T)] == 1
        assert on_vein.mean() >= 0.95  # (a stored point rounded across a voxel face may miss)
        ks = np.unique(ijk[on_vein, 2])
        assert len(ks) >= 3 and np.all(np.diff(ks) == 1)  # consecutive slices
        assert 1.0 <= v["visible_diameter_mm"] <= 2.5
        assert np.mean(phase[tuple(ijk.T)]) > 0  # paramagnetic
    slice_mm = 1.8
    for c in case.truth["cmbs"]:
        if c["diameter_mm"] < 2 * slice_mm:
            ks = np.nonzero((inst == c["id"]).any(axis=(0, 1)))[0]
            assert len(ks) <= 3, c


def test_iron_is_bilateral_and_symmetric():
    """Left and right globus pallidus within 10 % of each other, both darker than WM."""
    c = make_swi_case(4, rotation_deg=(0.0, 0.0, 0.0), n_cmb=0, bias_strength=0.0, slab=(-16.0, 36.0),
                      mimics={"vein": 0, "sulcal": 0, "airbone": 0, "calcification": 0})
    mag, _, _, mimics = _arrays(c)
    gp = {m["side"]: m for m in c.truth["mimics"] if m["type"] == "iron" and m["structure"] == "globus_pallidus"}
    assert set(gp) == {"left", "right"}
    assert gp["left"]["world_ras_mm"][0] == -gp["right"]["world_ras_mm"][0] < 0
    means = {s: mag[_ball(mag.shape, c.magnitude.affine, m["world_ras_mm"], 2.5)].mean() for s, m in gp.items()}
    wm = np.mean([mag[_ball(mag.shape, c.magnitude.affine, (x, -12.0, 28.0), 3.0)].mean() for x in (-26.0, 26.0)])
    assert abs(means["left"] - means["right"]) <= 0.1 * max(means.values())
    assert max(means.values()) < wm
    for m in gp.values():
        assert mimics[tuple(np.rint(m["voxel_ijk"]).astype(int))] == 2
    assert set(np.unique(mimics)) == {0, 2}


# --------------------------------------------------------------------------- options


def test_same_seed_same_case_and_rotation_drawn():
    kw = dict(voxel_size=(3.0, 3.0, 3.0), n_cmb=4)
    a, b = make_swi_case(5, **kw), make_swi_case(5, **kw)
    for x, y in ((a.magnitude, b.magnitude), (a.phase, b.phase), (a.truth["instances"], b.truth["instances"]),
                 (a.truth["mimic_labels"], b.truth["mimic_labels"])):
        np.testing.assert_array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
    assert json.dumps(a.truth["cmbs"]) == json.dumps(b.truth["cmbs"])
    assert json.dumps(a.truth["mimics"]) == json.dumps(b.truth["mimics"])
    assert a.params == b.params
    rot = np.asarray(a.params["rotation_deg"])
    assert a.params["rotation_drawn"] and np.all(np.abs(rot) <= 3.0) and np.any(rot != 0)
    assert obliquity(a.magnitude.affine).max() > 0
    c = make_swi_case(6, **kw)
    assert not np.array_equal(np.asarray(a.magnitude.dataobj), np.asarray(c.magnitude.dataobj))


def test_magnitude_does_not_depend_on_with_phase():
    kw = dict(voxel_size=(3.0, 3.0, 3.0), n_cmb=3)
    with_phase, without = make_swi_case(8, **kw), make_swi_case(8, with_phase=False, **kw)
    assert without.phase is None
    np.testing.assert_array_equal(np.asarray(with_phase.magnitude.dataobj), np.asarray(without.magnitude.dataobj))


def test_slab_limits_the_z_extent():
    c = make_swi_case(2, voxel_size=(2.0, 2.0, 3.0), rotation_deg=(0.0, 0.0, 0.0), slab=(0.0, 42.0), n_cmb=5)
    assert c.magnitude.shape[2] == 14
    corners = apply_affine(c.magnitude.affine, [[0, 0, -0.5], [0, 0, c.magnitude.shape[2] - 0.5]])
    np.testing.assert_allclose(sorted(corners[:, 2]), (0.0, 42.0), atol=1e-6)
    for cm in c.truth["cmbs"]:
        assert 0.0 < cm["world_ras_mm"][2] < 42.0
        assert cm["location"] != "infratentorial"  # renormalised away: none in the slab
    assert c.params["slab"] == [0.0, 42.0]


def test_counts_and_validation():
    c = make_swi_case(9, voxel_size=(3.0, 3.0, 3.0), n_cmb=0, mimics={"iron": 0, "vein": 0, "sulcal": 0,
                                                                      "airbone": 0, "calcification": 0})
    assert c.truth["cmbs"] == [] and c.truth["mimics"] == []
    assert not np.asarray(c.truth["instances"].dataobj).any()
    assert not np.asarray(c.truth["mimic_labels"].dataobj).any()
    with pytest.raises(ValueError, match="unknown mimic"):
        make_swi_case(1, voxel_size=(3.0, 3.0, 3.0), mimics={"flow_void": 1})
    with pytest.raises(ValueError):
        make_swi_case(1, voxel_size=(3.0, 3.0, 3.0), location_weights={"lobar": -1.0})
    with pytest.raises(ValueError):
        make_swi_case(1, voxel_size=(3.0, 3.0, 3.0), slab=(10.0, 0.0))


# --------------------------------------------------------------------------- writers


def test_cohort_writer_and_truth_reader(tmp_path):
    kw = dict(voxel_size=(3.0, 3.0, 3.0), n_cmb=3, mimics={"vein": 3})
    files = write_swi_cohort(tmp_path / "cohort", 2, seed=3, **kw)
    assert all(p.is_file() for p in files) and len(files) == 10
    dirs = sorted({p.parent for p in files})
    assert [d.name for d in dirs] == ["case-000", "case-001"]
    for d in dirs:
        names = {p.name for p in d.iterdir()}
        assert names == {"swi.nii.gz", "phase.nii.gz", "truth_instances.nii.gz", "truth_mimics.nii.gz", "truth.json"}
        truth = load_swi_truth(d)
        assert "simulated" in truth["description"].lower()
        assert truth["params"]["n_cmb_placed"] == len(truth["cmbs"]) == 3
        inst = np.asarray(truth["instances"].dataobj)
        assert sorted(set(np.unique(inst)) - {0}) == [c["id"] for c in truth["cmbs"]]
        assert truth["mimic_labels"].shape == inst.shape
        mag = nib.load(d / "swi.nii.gz")
        np.testing.assert_allclose(mag.affine, truth["instances"].affine)
    # The phase was quantised to int16; it reads back as radians. Case i is make_swi_case
    # with the seed recorded in its truth.
    truth = load_swi_truth(dirs[1])
    case = make_swi_case(truth["cohort"]["case_seed"], **kw)
    phase = nib.load(dirs[1] / "phase.nii.gz")
    assert phase.get_data_dtype() == np.int16
    np.testing.assert_allclose(phase.get_fdata(), np.asarray(case.phase.dataobj), atol=PHASE_STEP_RAD / 2 + 1e-6)
    mag = np.asarray(nib.load(dirs[1] / "swi.nii.gz").dataobj)
    np.testing.assert_array_equal(mag, np.asarray(case.magnitude.dataobj))
    # Deterministic per (seed, index): a one-case cohort repeats case-000 byte for byte.
    again = write_swi_cohort(tmp_path / "again", 1, seed=3, **kw)[0].parent
    for name in ("swi.nii.gz", "phase.nii.gz", "truth_instances.nii.gz", "truth.json"):
        assert (again / name).read_bytes() == (dirs[0] / name).read_bytes()


@pytest.mark.skipif(not SAMPLE_DIR.is_dir(), reason="sample_data/cmb not generated")
def test_committed_cmb_sample_shows_what_it_promises():
    truth = load_swi_truth(SAMPLE_DIR)
    img = nib.load(SAMPLE_DIR / "sub-demo_swi.nii.gz")
    phase = nib.load(SAMPLE_DIR / "sub-demo_phase.nii.gz").get_fdata()
    inst = np.asarray(nib.load(SAMPLE_DIR / "sub-demo_cmb-instances.nii.gz").dataobj)
    assert img.get_data_dtype() == np.int16 and 40 <= img.shape[2] <= 48
    assert truth["params"]["seed"] == CMB_SAMPLE["seed"]
    cmbs = truth["cmbs"]
    assert len(cmbs) >= 5 and {c["location"] for c in cmbs} == {"lobar", "deep"}
    assert sorted(set(np.unique(inst)) - {0}) == [c["id"] for c in cmbs]
    types = [m["type"] for m in truth["mimics"]]
    assert types.count("vein") >= 4 and types.count("calcification") == 1
    assert {m["structure"] for m in truth["mimics"] if m["type"] == "iron"} >= {"globus_pallidus"}
    calc = next(m for m in truth["mimics"] if m["type"] == "calcification")
    assert phase[tuple(np.rint(calc["voxel_ijk"]).astype(int))] < 0
    assert all(phase[tuple(np.rint(c["voxel_ijk"]).astype(int))] > 0 for c in cmbs)
    assert set(truth["mimic_labels"]) == {str(k) for k in MIMIC_LABELS}
