"""Tests of the committed sample cases: reproducible bytes, stated geometry, size budget."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.errors import NeuroreviewError
from napari_neuroreview.core.phantoms.samples import SAMPLE_CASES, T1_SAMPLE, write_sample_data

T1_BUDGET_BYTES = int(1.4 * 1024 * 1024)
CMB_BUDGET_BYTES = int(1.6 * 1024 * 1024)
RSFMRI_BUDGET_BYTES = int(3.0 * 1024 * 1024)
METASTASIS_BUDGET_BYTES = int(2.0 * 1024 * 1024)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    first = tmp_path_factory.mktemp("first")
    second = tmp_path_factory.mktemp("second")
    paths = write_sample_data(first)
    write_sample_data(second, names=["rsfmri"])  # the cheapest case to write again (4 CPU s; t1: 7)
    return first, second, paths


def test_sample_cases_registry():
    assert list(SAMPLE_CASES)[0] == "t1"
    assert all(callable(w) for w in SAMPLE_CASES.values())


def test_write_twice_is_byte_identical_and_atomic(written):
    first, second, paths = written
    assert all(p.is_file() for p in paths)
    assert {p.relative_to(first).as_posix() for p in paths} == {
        "t1/sub-demo_T1w.nii.gz",
        "t1/sub-demo_dseg.nii.gz",
        "t1/sub-demo_truth.json",
        "cmb/sub-demo_swi.nii.gz",
        "cmb/sub-demo_phase.nii.gz",
        "cmb/sub-demo_cmb-instances.nii.gz",
        "cmb/sub-demo_truth.json",
        "rsfmri/cohort.json",
        "rsfmri/sub-001/ses-pre/bold.nii.gz",
        "rsfmri/sub-001/ses-pre/truth.json",
        "rsfmri/sub-001/ses-pre/truth_maps.nii.gz",
        "rsfmri/sub-001/ses-post/bold.nii.gz",
        "rsfmri/sub-001/ses-post/truth.json",
        "rsfmri/sub-001/ses-post/truth_maps.nii.gz",
        *(f"metastasis/{stem}.nii.gz" for stem in ("t1", "t2", "flair", "dwi", "adc", "ce_t1", "lesions", "oedema")),
        "metastasis/truth.json",
        *(f"stroke/{name}" for name in ("t1.nii.gz", "flair.nii.gz", "truth_lesions.nii.gz", "clinical.tsv",
                                        "truth.json")),
        "README.md",
    }
    # The second run wrote only the rsfmri case (and the README): the same bytes as the first.
    second_digests = _digests(second)
    assert set(second_digests) == {"README.md", "rsfmri/cohort.json", *(
        f"rsfmri/sub-001/ses-{state}/{name}" for state in ("pre", "post")
        for name in ("bold.nii.gz", "truth.json", "truth_maps.nii.gz"))}
    assert {k: v for k, v in _digests(first).items() if k in second_digests} == second_digests
    assert not list(first.rglob("*.tmp"))  # no temporary files left behind


def test_t1_sample_geometry_and_truth(written):
    first, _, _ = written
    img = nib.load(first / "t1" / "sub-demo_T1w.nii.gz")
    dseg = nib.load(first / "t1" / "sub-demo_dseg.nii.gz")
    assert img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    np.testing.assert_allclose(img.header.get_zooms()[:3], (1.2, 1.2, 2.0), rtol=1e-6)
    assert dseg.shape == img.shape
    np.testing.assert_allclose(dseg.affine, img.affine)
    labels = np.asarray(dseg.dataobj)
    data = np.asarray(img.dataobj).astype(float)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert data[labels == 3].mean() > data[labels == 2].mean() > data[labels == 1].mean()

    truth = json.loads((first / "t1" / "sub-demo_truth.json").read_text())
    assert "MNI152" in truth["description"] and "Simulated" in truth["description"]
    assert truth["axcodes"] == "LAS"
    assert truth["params"]["seed"] == T1_SAMPLE["seed"]
    # Landmarks: stored in world RAS mm, and the voxel indices agree with the affine.
    for name, ras in truth["landmarks_ras_mm"].items():
        ijk = truth["landmarks_voxel_ijk"][name]
        np.testing.assert_allclose(nib.affines.apply_affine(img.affine, ijk), ras, atol=1e-3)
    # The corpus callosum landmarks are white matter in the truth image (the commissures
    # are only ~3 mm thick and partial-volumed at 1.2 x 1.2 x 2.0 mm).
    for name in ("genu_corpus_callosum", "splenium_corpus_callosum"):
        i, j, k = np.rint(truth["landmarks_voxel_ijk"][name]).astype(int)
        assert labels[i, j, k] == 3, name

    readme = (first / "README.md").read_text()
    assert "neuroreview sample-data" in readme and "`t1/`" in readme


def test_t1_sample_size_budget(written):
    first, _, _ = written
    size = sum(p.stat().st_size for p in (first / "t1").iterdir())
    assert size <= T1_BUDGET_BYTES


def test_cmb_sample_size_budget(written):
    first, _, _ = written
    size = sum(p.stat().st_size for p in (first / "cmb").iterdir())
    assert size <= CMB_BUDGET_BYTES


def test_metastasis_sample_size_budget_and_no_origin(written):
    first, _, _ = written
    folder = first / "metastasis"
    assert sum(p.stat().st_size for p in folder.iterdir()) <= METASTASIS_BUDGET_BYTES
    text = (folder / "truth.json").read_text().lower()
    assert not any(word in text for word in ("origin", "sclc", "nsclc", "breast", "\"gi\"", "primary"))


def test_rsfmri_sample_pair_geometry_truth_and_budget(written):
    first, _, _ = written
    folder = first / "rsfmri"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= RSFMRI_BUDGET_BYTES
    meta = json.loads((folder / "cohort.json").read_text())
    assert meta["n_patients"] == 1 and meta["states"] == {"pre": 0, "post": 1}
    imgs = {}
    for state in ("pre", "post"):
        ses = folder / "sub-001" / f"ses-{state}"
        img = nib.load(ses / "bold.nii.gz")
        maps = nib.load(ses / "truth_maps.nii.gz")
        truth = json.loads((ses / "truth.json").read_text())
        assert img.ndim == 4 and img.shape[3] == 120
        np.testing.assert_allclose(img.header.get_zooms(), (5.0, 5.0, 5.0, 2.0))
        assert img.header.get_xyzt_units()[1] == "sec"
        assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
        assert maps.shape == (*img.shape[:3], 5)
        np.testing.assert_allclose(maps.affine, img.affine)
        assert truth["state"] == state and truth["patient_seed"] == meta["subjects"][0]["patient_seed"]
        assert list(truth["networks"]) == ["motor", "vision", "language", "frontal", "temporal"]
        data = img.get_fdata(dtype=np.float32)
        assert 800 < np.median(data[data > 0]) < 1200  # the scale factor is applied: grey matter ~1000
        imgs[state] = (img, truth)
    pre, post = imgs["pre"], imgs["post"]
    np.testing.assert_allclose(pre[0].affine, post[0].affine)
    # the same person, changed by the simulated surgery
    assert pre[1]["networks"]["motor"]["coords_mm"] == post[1]["networks"]["motor"]["coords_mm"]
    assert pre[1]["networks"]["motor"]["weights"] != post[1]["networks"]["motor"]["weights"]


def test_unknown_case_is_a_user_error(tmp_path):
    with pytest.raises(NeuroreviewError, match="nope"):
        write_sample_data(tmp_path, names=["nope"])
    assert not any(tmp_path.iterdir())


def _same_image(a: Path, b: Path) -> bool:
    """Same header and voxels within one stored quantum (the int16 step of the scale factor).

    Why not bytes: the simulators' float arithmetic (FFTs, transcendental functions) may round
    differently on another CPU or library build, which can move a voxel by one stored step
    (seen once: 1 of 1.4 M phase voxels, 0.015 rad). Anything more is a real change.
    """
    ia, ib = nib.load(a), nib.load(b)
    if ia.header != ib.header or not np.array_equal(ia.affine, ib.affine):
        return False
    x, y = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
    step = abs(float(getattr(ia.dataobj, "slope", 1.0)))  # nibabel moves scl_slope to the array proxy
    off = np.abs(x.astype(np.float64) - y.astype(np.float64)) > 1.001 * step
    return x.shape == y.shape and not off.any() and int((x != y).sum()) <= max(1, x.size // 100_000)


def test_committed_sample_data_is_what_the_generator_writes(written):
    """`neuroreview sample-data` must reproduce the committed folder: other files byte for byte,
    images to within one stored step on at most 1 in 10^5 voxels (:func:`_same_image`)."""
    committed = Path(__file__).resolve().parents[2] / "sample_data"
    first, _, _ = written
    want, got = _digests(committed), _digests(first)
    assert set(want) == set(got)
    differ = [k for k in want if want[k] != got[k]]
    assert all(k.endswith(".nii.gz") and _same_image(committed / k, first / k) for k in differ), differ
