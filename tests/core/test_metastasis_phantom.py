"""The metastasis cohort phantom (``core.phantoms.metastasis``): lesions that land where the
truth says and look as drawn in each sequence, DWI/ADC on their own coarser grid in the same
world, origin effects in the documented direction yet overlapping, reproducible files, and no
leak of the origin, sex or age into what a model reads."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from napari_neuroreview.core.anatomy import (
    load_mni_anatomy,
    mars,
    sample_template_maps,
    voxel_to_world,
    world_to_voxel,
)
from napari_neuroreview.core.phantoms import metastasis as mp
from napari_neuroreview.core.phantoms.metastasis import lesions as mles
from napari_neuroreview.core.phantoms.metastasis import literature as lit
from napari_neuroreview.core.tasks.metastasis.classes import ORIGINS
from napari_neuroreview.core.tasks.metastasis.labels import LABEL_COLUMNS

_COARSE = {"voxel_size": (3.0, 3.0, 3.0)}


def _lesion(id_: int, centre, d: float, **kw) -> mp.Lesion:
    base = {"enhancement": "solid", "necrosis_fraction": 0.0, "oedema_ratio": 0.0, "adc_ratio": 1.0,
            "t2_dark": False, "haemorrhage": False, "location": "grey_white_junction", "region": "frontal",
            "shape_seed": 100 + id_}
    return mp.Lesion(id=id_, centre_mni_mm=tuple(map(float, centre)), diameter_mm=d, **{**base, **kw})


def _patient(*lesions: mp.Lesion, seed: int = 5) -> mp.MetastasisPatient:
    """A site-A patient with these lesions (drawn directly: no candidate pools needed)."""
    scanner = mp.draw_scanner(np.random.default_rng(seed), mp.SITES["A"])
    return mp.MetastasisPatient(seed, "A", "NSCLC", "F", 60, tuple(lesions), scanner, len(lesions))


def _data(img: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(img.dataobj).astype(np.float64)


def _near(img: nib.Nifti1Image, centre, radius: float) -> np.ndarray:
    """Voxels of ``img``'s grid whose centres lie within ``radius`` mm of ``centre``."""
    ijk = np.indices(img.shape).reshape(3, -1).T
    return (np.linalg.norm(voxel_to_world(img.affine, ijk) - np.asarray(centre), axis=1) <= radius).reshape(img.shape)


def _normal_wm(img: nib.Nifti1Image, lesions, away_mm: float = 40.0) -> np.ndarray:
    """Voxels of ``img``'s grid that are >= 90 % white matter and far from every lesion."""
    wm = sample_template_maps({"wm": load_mni_anatomy().wm}, img.affine, img.shape)["wm"] >= 0.9
    for les in lesions:
        wm &= ~_near(img, les.centre_mni_mm, away_mm)
    return wm


# A solid, restricted (ADC 0.7) lesion with oedema in the left centrum semiovale and a ring
# lesion with free diffusion (1.5) in the right frontal white matter; 30 mm each.
_SOLID = _lesion(1, (-30.0, -20.0, 38.0), 30.0, adc_ratio=0.7, oedema_ratio=3.0)
_RING = _lesion(2, (30.0, 25.0, 25.0), 30.0, enhancement="ring", necrosis_fraction=0.6, adc_ratio=1.5)


@pytest.fixture(scope="module")
def two_lesions() -> mp.MetastasisCase:
    return mp.render_metastasis_patient(_patient(_SOLID, _RING), **_COARSE)


def test_lesion_truth_lands_on_the_lesion_as_drawn(two_lesions) -> None:
    case = two_lesions
    ce, flair = _data(case.images["ce_t1"]), _data(case.images["flair"])
    labels, oedema = np.asarray(case.lesions.dataobj), np.asarray(case.oedema.dataobj)
    wm = _normal_wm(case.images["ce_t1"], (_SOLID, _RING))
    assert wm.sum() > 50
    truth = {t["id"]: t for t in case.truth["lesions"]}
    for les in (_SOLID, _RING):
        t = truth[les.id]
        assert t["world_ras_mm"] == list(les.centre_mni_mm) and t["enhancement"] == les.enhancement
        ijk = np.rint(world_to_voxel(case.lesions.affine, np.asarray(t["world_ras_mm"]))).astype(int)
        assert labels[tuple(ijk)] == les.id
        sphere = 4 / 3 * np.pi * (les.diameter_mm / 2) ** 3  # irregular outline: within 35 %
        assert abs(t["volume_mm3"] - sphere) < 0.35 * sphere
        assert t["volume_mm3"] == pytest.approx((labels == les.id).sum() * 27.0)
    # contrast T1: the solid lesion enhances throughout; the ring lesion's rim, not its core
    solid_core = _near(case.images["ce_t1"], _SOLID.centre_mni_mm, 8.0)
    assert np.median(ce[solid_core]) > 1.15 * np.median(ce[wm])
    core = _near(case.images["ce_t1"], _RING.centre_mni_mm, 4.0)
    rim = _near(case.images["ce_t1"], _RING.centre_mni_mm, 13.0) & ~_near(case.images["ce_t1"], _RING.centre_mni_mm, 10.0)
    assert np.median(ce[rim]) > 1.1 * np.median(ce[wm]) > 1.1 * np.median(ce[core])
    # FLAIR: bright oedema around the solid lesion (labelled with its id), none around the ring
    assert (oedema == 1).sum() > 20 and (oedema == 2).sum() == 0 and not np.any((oedema > 0) & (labels > 0))
    assert np.median(flair[oedema == 1]) > 1.4 * np.median(flair[wm])
    r_out = _SOLID.diameter_mm / 2 * (1 + _SOLID.oedema_ratio) ** (1 / 3)
    assert not np.any((oedema == 1) & ~_near(case.oedema, _SOLID.centre_mni_mm, 1.35 * r_out + 3.0))
    assert truth[1]["oedema_volume_mm3"] > 0 == truth[2]["oedema_volume_mm3"]


def test_adc_of_the_solid_part_is_the_drawn_ratio_on_a_coarser_aligned_grid(two_lesions) -> None:
    case = two_lesions
    adc, dwi, t1 = case.images["adc"], case.images["dwi"], case.images["t1"]
    # DWI and ADC share their own grid, coarser than the structural one
    assert np.allclose(adc.affine, dwi.affine) and adc.shape == dwi.shape
    zooms = {k: np.prod(case.images[k].header.get_zooms()[:3]) for k in mp.SEQUENCES}
    assert all(zooms[k] > 2 * zooms["ce_t1"] for k in ("dwi", "adc"))
    assert all(np.allclose(case.images[k].affine, t1.affine) for k in ("t2", "flair", "ce_t1"))
    assert np.allclose(case.lesions.affine, case.images["ce_t1"].affine)
    # ... in the same world: the grids' centres agree, and the lesions' ADC and DWI below sit at their truth
    centre = [voxel_to_world(img.affine, (np.asarray(img.shape) - 1) / 2) for img in (adc, t1)]
    assert np.linalg.norm(centre[0] - centre[1]) < 4.0
    values, wm = _data(adc), _normal_wm(adc, (_SOLID, _RING))
    wm_adc = np.median(values[wm])
    assert 650 < wm_adc < 850  # 0.75e-3 mm2/s, 1e-6 units
    # the solid lesion's core (the ring's 3 mm rim is thinner than a DWI voxel: not measured)
    inner = _near(adc, _SOLID.centre_mni_mm, 7.0)
    assert inner.sum() >= 4
    assert np.median(values[inner]) / wm_adc == pytest.approx(_SOLID.adc_ratio, rel=0.15)
    # restricted diffusion is bright on DWI; the ring lesion's necrotic core is dark on DWI, bright on ADC
    d = _data(dwi)
    assert np.median(d[_near(dwi, _SOLID.centre_mni_mm, 7.0)]) > 1.2 * np.median(d[wm])
    ring_core = _near(adc, _RING.centre_mni_mm, 5.0)
    assert np.median(values[ring_core]) > 2 * wm_adc and np.median(d[ring_core]) < np.median(d[wm])


def test_t2_dark_and_haemorrhage_look_as_drawn() -> None:
    dark = _lesion(1, (-30.0, -20.0, 38.0), 24.0, t2_dark=True)
    bright = _lesion(2, (30.0, 25.0, 25.0), 24.0)
    case = mp.render_metastasis_patient(_patient(dark, bright), **_COARSE)
    t2 = _data(case.images["t2"])
    wm = _normal_wm(case.images["t2"], (dark, bright))
    assert np.median(t2[_near(case.images["t2"], dark.centre_mni_mm, 6.0)]) < np.median(t2[wm])
    assert np.median(t2[_near(case.images["t2"], bright.centre_mni_mm, 6.0)]) > 1.2 * np.median(t2[wm])
    bleed = dataclasses.replace(bright, haemorrhage=True)
    other = mp.render_metastasis_patient(_patient(dark, bleed), **_COARSE)
    t1a, t1b = _data(case.images["t1"]), _data(other.images["t1"])
    inside = np.asarray(case.lesions.dataobj) == 2
    assert (t1b[inside] - t1a[inside]).max() > 0.2 * np.median(t1a[wm])  # subacute blood: T1-bright


def test_sex_and_age_do_not_change_a_voxel() -> None:
    p = next(q for q in mp.metastasis_patients(8, 21) if q.lesions)
    a = mp.render_metastasis_patient(p, **_COARSE)
    b = mp.render_metastasis_patient(dataclasses.replace(p, sex="M" if p.sex == "F" else "F", age=p.age + 17),
                                     **_COARSE)
    for stem, img in a.files().items():
        other = b.files()[stem]
        assert np.array_equal(np.asarray(img.dataobj), np.asarray(other.dataobj)), stem
        assert img.header.binaryblock == other.header.binaryblock and np.array_equal(img.affine, other.affine)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)


# --- the cohort's numbers -------------------------------------------------------------

_N = 2000  # drawn patients, no images: ~1 s once the MNI candidate pools are cached


@pytest.fixture(scope="module")
def patients() -> list[mp.MetastasisPatient]:
    return mp.metastasis_patients(_N, seed=1)


def _lesions_of(patients, origin):
    return [les for p in patients if p.origin == origin for les in p.lesions]


def _auc(a, b) -> float:
    """AUC of a single value separating ``a`` (positive) from ``b``: P(a > b) + P(a == b) / 2."""
    return float(roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[np.asarray(a, float), np.asarray(b, float)]))


def test_counts_are_overdispersed_half_single_sclc_most(patients) -> None:
    n = np.array([p.n_lesions_drawn for p in patients])
    assert abs((n == 1).mean() - 0.49) < 0.04 and n.var() > 1.5 * n.mean() - 1  # REF ~49 % single
    mean = {o: np.mean([p.n_lesions_drawn for p in patients if p.origin == o]) for o in ORIGINS}
    assert mean["SCLC"] > max(mean["NSCLC"], mean["breast"], mean["GI"]) + 0.6
    assert 1.8 < n.mean() < 2.8  # REF: 2.1 in the study
    assert all(len(p.lesions) == min(p.n_lesions_drawn, lit.MAX_RENDERED_LESIONS) for p in patients)
    nsclc = np.array([p.n_lesions_drawn for p in patients if p.origin == "NSCLC"])
    assert (nsclc <= 2).mean() > 0.56


def test_location_size_and_appearance_follow_the_literature(patients) -> None:
    every = [les for p in patients for les in p.lesions]
    cb = {o: np.mean([les.location == "cerebellum" for les in _lesions_of(patients, o)]) for o in ORIGINS}
    assert abs(np.mean([les.location == "cerebellum" for les in every]) - 0.15) < 0.025  # REF ~15 %
    assert min(cb["breast"], cb["GI"]) > max(cb["SCLC"], cb["NSCLC"]) + 0.03
    supra = [les for les in every if les.location in ("watershed", "grey_white_junction")]
    assert abs(np.mean([les.location == "watershed" for les in supra]) - 0.37) < 0.03  # REF 37 % ...
    junction = np.concatenate([mars.region_points(r, None, True) for r in ("frontal", "parietal", "temporal",
                                                                          "occipital", "insula")])
    assert abs(mles.in_watershed(junction).mean() - lit.WATERSHED_SURFACE_SHARE) < 0.02  # ... on 29 %
    for les in every:  # each centre lies in its MARS region and location
        assert mars.regions_at(np.asarray(les.centre_mni_mm))[0].region == les.region
        assert (les.location == "watershed") == bool(mles.in_watershed(np.asarray(les.centre_mni_mm))[0]) or \
            les.location in ("cerebellum", "deep_grey_matter")
    nsclc = _lesions_of(patients, "NSCLC")
    assert abs(np.mean([les.diameter_mm <= 20 for les in nsclc]) - 0.73) < 0.07  # REF <= 2 cm in 73 %
    assert abs(np.mean([les.enhancement == "ring" for les in nsclc]) - 0.73) < 0.08  # REF ring 73 %
    assert abs(np.mean([les.oedema_ratio > 0 for les in nsclc]) - 0.61) < 0.06  # REF oedema 61 %
    small = [les for les in every if les.diameter_mm < lit.OEDEMA_MIN_DIAMETER_MM]
    assert np.mean([les.oedema_ratio > 0 for les in small]) < 0.2  # rarely below ~9 mm
    assert all(les.necrosis_fraction == 0 for les in every if les.enhancement == "solid")
    assert 0.03 <= np.mean([les.haemorrhage for les in every]) <= 0.14  # REF 3-14 %


def test_origin_effects_go_the_documented_way_and_overlap(patients) -> None:
    def values(origin, attr):
        return np.array([float(getattr(les, attr) if attr != "enhancement" else les.enhancement == "ring")
                         for les in _lesions_of(patients, origin)])

    adc = {o: values(o, "adc_ratio") for o in ORIGINS}
    assert adc["SCLC"].mean() + 0.2 < adc["NSCLC"].mean()
    oed = {o: [r for r in values(o, "oedema_ratio") if r > 0] for o in ORIGINS}
    assert min(np.median(oed["SCLC"]), np.median(oed["NSCLC"])) > np.median(oed["breast"]) + 0.4
    assert 1.8 < np.median(oed["breast"]) < 2.6  # REF breast 1.95-2.48
    dark = {o: values(o, "t2_dark").mean() for o in ORIGINS}
    assert min(dark["NSCLC"], dark["GI"]) > max(dark["SCLC"], dark["breast"]) + 0.04
    # no attribute separates any two origins: every lesion attribute's AUC within (0.15, 0.85)
    # and every category occurs in both; the patient's lesion count too
    attrs = ("diameter_mm", "necrosis_fraction", "oedema_ratio", "adc_ratio", "t2_dark", "haemorrhage", "enhancement")
    for i, a in enumerate(ORIGINS):
        for b in ORIGINS[i + 1:]:
            for attr in attrs:
                va, vb = values(a, attr), values(b, attr)
                assert 0.15 < _auc(va, vb) < 0.85, (a, b, attr)
                if attr in ("t2_dark", "haemorrhage", "enhancement"):
                    assert 0 < va.mean() < 1 and 0 < vb.mean() < 1, (a, b, attr)
            locs = [{les.location for les in _lesions_of(patients, o)} for o in (a, b)]
            assert locs[0] == locs[1] == set(mp.LOCATIONS)
            counts = [[p.n_lesions_drawn for p in patients if p.origin == o] for o in (a, b)]
            assert 0.15 < _auc(*counts) < 0.85


def test_drawn_attributes_predict_the_origin_about_as_well_as_the_study(patients) -> None:
    """The oracle (logistic regression on the true attributes, lesion level, patient-grouped CV)
    stays within the published range: the study's AUCs 0.675-0.876, SCLC vs NSCLC ~0.76-0.80 by
    radiomics (REF); the images, noisy views of these attributes, can only do worse."""
    rows = [(i, p.origin, [np.log(les.diameter_mm), les.enhancement == "ring", les.necrosis_fraction,
                            np.log1p(les.oedema_ratio), les.adc_ratio, les.t2_dark, les.haemorrhage,
                            *(les.location == loc for loc in mp.LOCATIONS[1:]), np.log(p.n_lesions_drawn)])
            for i, p in enumerate(patients) for les in p.lesions]
    group = np.array([r[0] for r in rows])
    origin = np.array([r[1] for r in rows])
    x = np.array([r[2] for r in rows], float)

    def node(mask, positive) -> float:
        y = np.isin(origin[mask], positive)
        proba = cross_val_predict(LogisticRegression(max_iter=2000), x[mask], y, groups=group[mask], cv=GroupKFold(5),
                                  method="predict_proba")[:, 1]
        return float(roc_auc_score(y, proba))

    aucs = {"lung": node(np.ones(len(origin), bool), ["SCLC", "NSCLC"]),
            "sclc": node(np.isin(origin, ["SCLC", "NSCLC"]), ["SCLC"]),
            "breast": node(np.isin(origin, ["breast", "GI"]), ["breast"])}
    assert all(0.62 < a < 0.9 for a in aucs.values()), aucs


def test_sites_sex_and_age(patients) -> None:
    for name, site in mp.SITES.items():
        mine = [p for p in patients if p.site == name]
        share = np.array([np.mean([p.origin == o for p in mine]) for o in ORIGINS])
        assert np.abs(share - np.asarray(site.class_mix) / sum(site.class_mix)).max() < 0.06, name
        assert all(p.scanner["orientation"] == site.orientation and p.scanner["field_t"] == site.field_t
                   for p in mine)
    assert mp.SITES["C"].external and not mp.SITES["A"].external and mp.SITES["C"].field_t != mp.SITES["A"].field_t
    assert np.mean([p.sex == "F" for p in patients if p.origin == "breast"]) > 0.95
    ages = {o: np.array([p.age for p in patients if p.origin == o]) for o in ORIGINS}
    for o in ORIGINS:  # one age distribution for every origin
        assert abs(ages[o].mean() - lit.AGE[0]) < 2.0 and abs(ages[o].std() - lit.AGE[1]) < 1.5, o


def test_same_seed_same_patients_independent_of_n() -> None:
    a, b = mp.metastasis_patients(9, seed=4), mp.metastasis_patients(9, seed=4)
    assert [mp.patient_record(p) for p in a] == [mp.patient_record(p) for p in b]
    assert [p.site for p in a] == ["A"] * 3 + ["B"] * 3 + ["C"] * 3
    assert mp.patient_record(mp.metastasis_patients(3, 4, ("A",))[0]) == mp.patient_record(a[0])
    with pytest.raises(ValueError, match="site"):
        mp.make_metastasis_patient(1, "Z")
    with pytest.raises(ValueError, match="scanner setting"):
        mp.render_metastasis_patient(a[0], voxel=(2.0, 2.0, 2.0))


# --- the files ------------------------------------------------------------------------

_FILES = sorted([f"{s}.nii.gz" for s in (*mp.SEQUENCES, "lesions", "oedema")] + ["truth.json"])


def _contents(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_written_cohort_keeps_the_origin_sex_and_age_apart(tmp_path: Path) -> None:
    patients = mp.metastasis_patients(4, 7, ("A", "C"))
    written = mp.write_metastasis_cohort(tmp_path, 4, 7, ("A", "C"), voxel_size=(4.0, 4.0, 4.0))
    assert written[-1] == tmp_path / "labels.tsv" and len(written) == 4 * len(_FILES) + 1
    rows = [line.split("\t") for line in (tmp_path / "labels.tsv").read_text().splitlines()]
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert rows[1:] == [[f"patient-{i:04d}", p.site, p.origin, p.sex, str(p.age), str(len(p.lesions))]
                        for i, p in enumerate(patients)]
    words = re.compile(r"\b(" + "|".join(ORIGINS) + r"|female|male)\b", re.IGNORECASE)
    for i, p in enumerate(patients):
        folder = tmp_path / f"patient-{i:04d}"
        assert sorted(f.name for f in folder.iterdir()) == _FILES
        text = (folder / "truth.json").read_text()
        truth = json.loads(text)
        assert not words.search(text) and not re.search(r'"(origin|sex|age)"', text)
        assert [t["id"] for t in truth["lesions"]] == [les.id for les in p.lesions]
        assert truth["cohort"]["site"] == p.site and truth["sequences"] == list(mp.SEQUENCES)
        for name in _FILES[:-1]:
            img = nib.load(folder / name)
            header = img.header.binaryblock + b"".join(e.get_content() for e in img.header.extensions)
            assert not words.search(header.decode("latin-1")), name
        lab = nib.load(folder / "lesions.nii.gz")
        for t in truth["lesions"]:  # each lesion's centre carries its id, unless partial volume ate a small one
            ijk = np.rint(world_to_voxel(lab.affine, np.asarray(t["world_ras_mm"]))).astype(int)
            assert np.asarray(lab.dataobj)[tuple(ijk)] == t["id"] or t["diameter_mm"] < 10


def test_same_seed_same_files_with_workers_and_resume(tmp_path: Path) -> None:
    """Same seed, same bytes: in one process or two; resume re-renders only what is missing or foreign."""
    kw = {"voxel_size": (4.0, 4.0, 4.0)}
    one, two = tmp_path / "one", tmp_path / "two"
    mp.write_metastasis_cohort(one, 3, 5, ("B",), **kw)
    mp.write_metastasis_cohort(two, 3, 5, ("B",), workers=2, **kw)
    assert _contents(one) == _contents(two)
    # a lost folder and one from another cohort (other seed) are rendered again; the rest is kept
    shutil.rmtree(two / "patient-0001")
    foreign = tmp_path / "foreign"
    mp.write_metastasis_cohort(foreign, 1, 6, ("B",), **kw)
    shutil.rmtree(two / "patient-0000")
    shutil.copytree(foreign / "patient-0000", two / "patient-0000")
    assert _contents(one) != _contents(two)
    kept = (two / "patient-0002" / "t1.nii.gz").stat().st_mtime_ns
    mp.write_metastasis_cohort(two, 3, 5, ("B",), resume=True, **kw)
    assert (two / "patient-0002" / "t1.nii.gz").stat().st_mtime_ns == kept
    assert _contents(one) == _contents(two)
