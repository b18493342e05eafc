"""The subtype cohort phantom: explicit microbleed sites in both SWI simulators, and the
cohort generator (``core.phantoms.csvd``) whose counts and locations follow the
literature (``../shared/REFERENCES.md``, "Small vessel disease subtype from microbleeds")."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_neuroreview.core.anatomy import load_mni_anatomy, mars, world_to_voxel
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.phantoms import csvd as cc
from napari_neuroreview.core.phantoms.csvd import literature as lit
from napari_neuroreview.core.phantoms.csvd import sites as csvd_sites
from napari_neuroreview.core.phantoms.swi import make_swi_case as make_phen
from napari_neuroreview.core.phantoms.swi_contract import CMBSite, SiderosisSite
from napari_neuroreview.core.phantoms.swi_physics import make_swi_case as make_phys
from napari_neuroreview.core.tasks.csvd.labels import LABEL_COLUMNS, read_csvd_labels

#: Default cases made by the code before ``cmb_sites`` existed (commit 79ab6aa, run with
#: /tmp/lead/fp.py on 2026-12-02; the same figures come from the current code): the detector's
#: training scans must not move. The discrete truth (labels, CMB and mimic lists, parameters)
#: is hashed exactly; the float images by sum, sum of squares and a ramp-weighted sum, to
#: rtol 1e-4: another CPU's rounding moves a stored voxel by one step at most (seen: one
#: phase voxel of 1.4 M by 0.015 rad), which a byte hash cannot tell from a real change.
_DEFAULT_CASES = {
    "phenomenological": {"magnitude": (137736035.0, 65173337975.0, -375719.5423690602),
                         "phase": (822.8210189342499, 1931.6683124985534, 65.04901066637778),
                         "discrete": "c09b179d6a0dadcf3a0e87e7e26e8fb83ad75156be8cebe0c80d94a8fb2ffa8a"},
    "physics": {"magnitude": (62045493.0, 29839460885.0, 562367.5934433397),
                "phase": (-79.08893598755566, 2383.647987737104, -8.399489700967685),
                "discrete": "759a623118484e830f6a60fdea3bc174204a4b6aae333373baf6b3bc4e26e211"},
}


def _case_fingerprint(case) -> dict:
    out: dict = {}
    for key, img in (("magnitude", case.magnitude), ("phase", case.phase)):
        a = np.asarray(img.dataobj, dtype=np.float64)
        ramp = np.linspace(-1, 1, a.size).reshape(a.shape)
        out[key] = (float(a.sum()), float((a * a).sum()), float((a * ramp).sum()))
    m = hashlib.sha256()
    for img in (case.truth["instances"], case.truth["mimic_labels"]):
        m.update(np.ascontiguousarray(np.asarray(img.dataobj)).tobytes())
    m.update(json.dumps([case.truth["cmbs"], case.truth["mimics"], case.params], sort_keys=True, default=str).encode())
    out["discrete"] = m.hexdigest()
    return out


@pytest.mark.parametrize("simulator", ["phenomenological", "physics"])
def test_default_cases_are_bit_identical_to_before_sites(simulator: str) -> None:
    if simulator == "phenomenological":
        case = make_phen(seed=3, voxel_size=(2.0, 2.0, 2.0), n_cmb=5)
    else:
        case = make_phys(seed=3, voxel_size=(2.0, 2.0, 2.0), n_cmb=5, slab=(-20.0, 30.0))
    assert "skipped_sites" not in case.truth and "cmb_sites" not in case.params
    got, want = _case_fingerprint(case), _DEFAULT_CASES[simulator]
    assert got["discrete"] == want["discrete"]
    for key in ("magnitude", "phase"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=0.1, err_msg=key)


_SITES = [
    CMBSite((40.0, -20.0, 20.0), 4.0, "parietal", "lobar"),
    CMBSite((41.0, -20.0, 21.0), 3.0, "parietal", "lobar"),  # overlaps the first
    CMBSite((0.0, 0.0, 200.0), 3.0, "frontal", "lobar"),  # above the head
    CMBSite((6.0, -28.0, -30.0), 5.0, "brainstem", "infratentorial"),
    CMBSite((-12.0, -20.0, 8.0), 2.5, "thalamus", "deep"),
]
_SIDEROSIS = [SiderosisSite(((50.0, -40.0, 30.0), (52.0, -45.0, 32.0), (53.0, -50.0, 35.0), (53.0, -55.0, 38.0)),
                            1.5, "parietal")]


@pytest.mark.parametrize("simulator", ["phenomenological", "physics"])
def test_sites_are_drawn_exactly_there_and_the_rest_skipped(simulator: str) -> None:
    make = make_phen if simulator == "phenomenological" else make_phys
    extra = {} if simulator == "phenomenological" else {"slab": (-40.0, 45.0)}
    case = make(7, voxel_size=(2.0, 2.0, 2.0), cmb_sites=_SITES, siderosis=_SIDEROSIS,
                mimics={"vein": 0, "calcification": 0}, **extra)
    inst = np.asarray(case.truth["instances"].dataobj)
    placed = {tuple(c["world_ras_mm"]): c for c in case.truth["cmbs"]}
    for site in (_SITES[0], _SITES[3], _SITES[4]):
        c = placed[tuple(site.world_ras_mm)]
        assert (c["region"], c["location"], c["diameter_mm"]) == (site.region, site.location, site.diameter_mm)
        ijk = np.rint(world_to_voxel(case.magnitude.affine, np.asarray(site.world_ras_mm))).astype(int)
        assert inst[tuple(ijk)] == c["id"]
    assert [c["id"] for c in case.truth["cmbs"]] == [1, 2, 3]
    reasons = {tuple(s["world_ras_mm"]): s["reason"] for s in case.truth["skipped_sites"]}
    assert reasons == {(41.0, -20.0, 21.0): "overlaps an earlier site", (0.0, 0.0, 200.0): "outside the field of view"}
    assert case.params["n_cmb_requested"] == 5 and case.params["n_cmb_placed"] == 3
    sid = [m for m in case.truth["mimics"] if m["type"] == "siderosis"]
    assert len(sid) == 1 and sid[0]["region"] == "parietal" and 10.0 < sid[0]["length_mm"] < 20.0
    # the layer is dark and labelled (superficial-spot label 3) along its path
    lab = np.asarray(case.truth["mimic_labels"].dataobj)
    mid = np.rint(world_to_voxel(case.magnitude.affine, np.array([52.0, -45.0, 32.0]))).astype(int)
    assert (lab[tuple(slice(i - 1, i + 2) for i in mid)] == 3).any()


def test_sites_and_n_cmb_are_refused_together() -> None:
    with pytest.raises(ValueError, match="not both"):
        make_phen(1, n_cmb=2, cmb_sites=_SITES)
    with pytest.raises(ValueError, match="diameter"):
        make_phys(1, cmb_sites=[CMBSite((0.0, 0.0, 0.0), 0.0)])


# --- the cohort generator -------------------------------------------------------------

_N = 2000  # sampled patients (no images): ~20 s


@pytest.fixture(scope="module")
def patients() -> list[cc.CSVDPatient]:
    return cc.csvd_patients(_N, seed=11)


def _of(patients, subtype):
    return [p for p in patients if p.subtype == subtype]


def _shares(patients, subtype) -> dict[str, float]:
    regs = Counter(s.region for p in _of(patients, subtype) for s in p.sites)
    total = sum(regs.values())
    return {k: v / total for k, v in regs.items()}


def test_counts_are_overdispersed_with_each_subtypes_zero_share(patients) -> None:
    # Targets: ZERO_SHARE (REF); CMB-positive medians aSVD 6 (ICH), CAA 2-10, CADASIL 4.
    # Tolerances: ~3 binomial / bootstrap SEs at the subtype's sample size (300-1000).
    medians = {"aSVD": (5, 7), "CAA": (4, 7), "CADASIL": (3, 5)}
    for st in cc.SUBTYPES:
        n = np.array([p.n_cmb_latent for p in _of(patients, st)])
        pos = n[n > 0]
        assert abs((n == 0).mean() - lit.ZERO_SHARE[st]) < 0.06, st
        mean, _k = lit.COUNT_NB[st]
        assert abs(pos.mean() - (1 + mean)) < 0.25 * (1 + mean), st
        assert pos.std() > pos.mean() and pos.var() > 5 * pos.mean(), st  # over-dispersed, SD > mean
        assert medians[st][0] <= np.median(pos) <= medians[st][1], st
    assert (np.array([p.n_cmb_latent for p in _of(patients, "CAA")]) > 0).all()


def test_cadasil_has_a_long_tail_to_hundreds_capped_when_rendered(patients) -> None:
    rng = np.random.default_rng(0)
    draws = np.array([sum(cc.draw_cmb_count(rng, "CADASIL")) for _ in range(20000)])
    pos = draws[draws > 0]
    assert (pos > 100).mean() > 0.003 and pos.max() > 200 and np.percentile(pos, 99) > 10 * np.median(pos)
    asvd = np.array([sum(cc.draw_cmb_count(rng, "aSVD")) for _ in range(20000)])
    assert np.percentile(pos, 99.5) > np.percentile(asvd[asvd > 0], 99.5)
    big = [p for p in patients if p.n_cmb_latent > cc.MAX_RENDERED_CMB]
    assert big and all(len(p.sites) <= cc.MAX_RENDERED_CMB for p in big)
    assert all(len(p.sites) <= p.n_cmb_latent for p in patients)


def test_caa_is_strictly_lobar_juxtacortical_with_temporal_and_occipital_predominance(patients) -> None:
    sites = [s for p in _of(patients, "CAA") for s in p.sites]
    assert len(sites) > 3000 and {s.location for s in sites} == {"lobar"}
    found = mars.regions_at(np.array([s.world_ras_mm for s in sites]))
    assert all(f.region == s.region and f.mars_class == "lobar" for f, s in zip(found, sites))
    junction = {tuple(np.round(q, 3)) for lobe in csvd_sites.lobes() for side in mars.SIDES
                for q in mars.region_points(lobe, side, True)}
    assert all(tuple(np.round(s.world_ras_mm, 3)) in junction for s in sites)
    observed, expected = _shares(patients, "CAA"), csvd_sites.lobe_volumes()
    ratio = {lobe: observed.get(lobe, 0.0) / expected[lobe] for lobe in expected}
    assert 1.2 < ratio["temporal"] < 1.55 and 1.25 < ratio["occipital"] < 1.65  # REF: x1.37, x1.45
    assert ratio["frontal"] < 1.0 and ratio["parietal"] < 1.0


def test_asvd_is_deep_with_a_mixed_share_and_some_strictly_lobar(patients) -> None:
    obs = _shares(patients, "aSVD")
    lobar = sum(v for k, v in obs.items() if mars.REGION_CLASS[k] == "lobar")
    total = sum(lit.ASVD_REGIONS.values())
    target = {k: v / total for k, v in lit.ASVD_REGIONS.items()}
    assert abs(lobar - target["lobar"]) < 0.05
    for region in ("basal_ganglia", "thalamus", "brainstem", "cerebellum"):
        assert abs(obs.get(region, 0.0) - target[region]) < 0.04, region
    positive = [p for p in _of(patients, "aSVD") if p.sites]
    classes = [{s.location for s in p.sites} for p in positive]
    mixed = np.mean([("lobar" in c) and len(c) > 1 for c in classes])
    strictly_lobar = np.mean([c == {"lobar"} for c in classes])
    assert abs(mixed - 0.43) < 0.06 and 0.05 < strictly_lobar < 0.25  # REF: ~43 % mixed, "some" lobar


def test_cadasil_sites_follow_its_regions_with_thalamus_and_temporal_frequent(patients) -> None:
    obs = _shares(patients, "CADASIL")
    total = sum(lit.CADASIL_REGIONS.values())
    lobar = sum(v for k, v in obs.items() if mars.REGION_CLASS[k] == "lobar")
    assert abs(lobar - lit.CADASIL_REGIONS["lobar"] / total) < 0.06
    for region in ("deep_white_matter", "thalamus", "brainstem"):
        assert abs(obs.get(region, 0.0) - lit.CADASIL_REGIONS[region] / total) < 0.05, region
    lobes = {k: v for k, v in obs.items() if mars.REGION_CLASS[k] == "lobar"}
    assert max(lobes, key=lobes.get) == "temporal" and obs["thalamus"] > 0.1


def test_every_site_lies_in_its_mars_region_with_room_for_its_size(patients) -> None:
    sites = [s for p in patients[:400] for s in p.sites]
    found = mars.regions_at(np.array([s.world_ras_mm for s in sites]))
    assert all(f.region == s.region and f.mars_class == s.location for f, s in zip(found, sites))
    d = np.array([s.diameter_mm for s in sites])
    assert d.min() >= 2.0 and d.max() <= 10.0 and np.median(d) < 5.0


def test_background_microbleeds_and_siderosis_shares(patients) -> None:
    for st, lo, hi in (("CAA", 0.37, 0.51), ("aSVD", 0.07, 0.13), ("CADASIL", 0.0, 0.06)):
        css = np.mean([p.css for p in _of(patients, st)])
        assert lo < css < hi, st  # REF: 44 %, 10.5 %, rare
    layers = [s for p in patients for s in p.siderosis]
    assert np.mean([bool(p.siderosis) for p in patients if p.css]) > 0.95
    edge = ndimage.distance_transform_edt(load_mni_anatomy().brain)
    for s in layers:
        path = np.asarray(s.path_ras_mm)
        assert 9.9 <= np.linalg.norm(np.diff(path, axis=0), axis=1).sum() <= 42.0
        assert 1.0 <= s.thickness_mm <= 2.0 and mars.REGION_CLASS[s.region] == "lobar"
        ijk = np.rint(world_to_voxel(load_mni_anatomy().affine, path)).astype(int)
        assert (edge[tuple(ijk.T)] <= 16.5).all()  # along the cortical surface, not a ventricle (15 mm + a voxel)
    # background: CADASIL patients' microbleeds are not all disease ones (some have any)
    assert np.mean([p.n_cmb_latent > 0 for p in _of(patients, "CADASIL")]) > 0.4


def test_centres_have_their_class_mix_and_scanner(patients) -> None:
    for name, centre in cc.CENTRES.items():
        ps = [p for p in patients if p.centre == name]
        assert abs(len(ps) - _N / 3) <= 1
        for st, share in zip(cc.SUBTYPES, centre.class_mix):
            assert abs(np.mean([p.subtype == st for p in ps]) - share) < 0.05, (name, st)
        assert {p.simulator for p in ps} == {centre.simulator}
        te = np.array([p.scanner["te_ms"] for p in ps])
        assert abs(te.mean() - centre.te_ms[0]) < 1.0
        if centre.simulator == "physics":
            assert {p.scanner["b0_t"] for p in ps} == {centre.b0_t}
            assert all(p.scanner["tr_ms"] > p.scanner["te_ms"] for p in ps)
        assert all(p.scanner["slab"] is None for p in ps)


def test_same_seed_same_patients() -> None:
    a, b = cc.csvd_patients(30, seed=4), cc.csvd_patients(30, seed=4)
    assert [cc.patient_record(p) for p in a] == [cc.patient_record(p) for p in b]
    assert cc.make_csvd_patient(5, "A") == cc.make_csvd_patient(5, "A") != cc.make_csvd_patient(6, "A")
    # a patient does not depend on how many are drawn
    assert cc.patient_record(cc.csvd_patients(3, seed=4)[0]) == cc.patient_record(a[0])
    with pytest.raises(ValueError, match="centre"):
        cc.make_csvd_patient(1, "Z")


def _cohort_seed() -> int:
    """A seed whose two patients (centres A and B) both have >= 3 microbleed sites."""
    for seed in range(200):
        ps = cc.csvd_patients(2, seed, {"A": 1, "B": 1})
        if all(len(p.sites) >= 3 for p in ps):
            return seed
    raise AssertionError("no such seed")


def test_written_cohort_places_the_sites_and_keeps_the_label_apart(tmp_path: Path) -> None:
    seed = _cohort_seed()
    patients = cc.csvd_patients(2, seed, {"A": 1, "B": 1})
    written = cc.write_csvd_cohort(tmp_path, 2, seed, {"A": 1, "B": 1}, voxel_size=(2.0, 2.0, 2.0))
    assert written[-1] == tmp_path / "labels.tsv"
    rows = [line.split("\t") for line in (tmp_path / "labels.tsv").read_text().splitlines()]
    assert tuple(rows[0]) == LABEL_COLUMNS and len(rows) == 3
    labels = read_csvd_labels(tmp_path)
    assert [(r["patient"], r["subtype"], r["age"]) for r in labels] == [
        (f"patient-{i:04d}", p.subtype, p.age) for i, p in enumerate(patients)]
    for row, p in zip(rows[1:], patients):
        rec = dict(zip(rows[0], row))
        folder = tmp_path / rec["patient"]
        assert (rec["centre"], rec["subtype"], rec["simulator"]) == (p.centre, p.subtype, p.simulator)
        assert sorted(f.name for f in folder.iterdir()) == [
            "phase.nii.gz", "swi.nii.gz", "truth.json", "truth_instances.nii.gz", "truth_mimics.nii.gz"]
        truth = json.loads((folder / "truth.json").read_text())
        assert truth["params"]["generator"].endswith(
            "swi_physics.make_swi_case" if p.simulator == "physics" else "swi.make_swi_case")
        # every site drawn exactly where it was put, or listed as skipped; its region kept
        drawn = {tuple(c["world_ras_mm"]): c for c in truth["cmbs"]}
        skipped = {tuple(s["world_ras_mm"]) for s in truth["skipped_sites"]}
        assert int(rec["n_cmb"]) == len(drawn) and len(drawn) + len(skipped) == len(p.sites) and len(drawn) >= 3
        for s in p.sites:
            assert s.world_ras_mm in drawn or s.world_ras_mm in skipped
            if s.world_ras_mm in drawn:
                assert (drawn[s.world_ras_mm]["region"], drawn[s.world_ras_mm]["location"]) == (s.region, s.location)
        found = mars.regions_at(np.array([c["world_ras_mm"] for c in truth["cmbs"]]))
        assert [f.region for f in found] == [c["region"] for c in truth["cmbs"]]
        inst = np.asarray(nib.load(folder / "truth_instances.nii.gz").dataobj)
        for c in truth["cmbs"]:
            ijk = np.rint(world_to_voxel(nib.load(folder / "swi.nii.gz").affine, np.asarray(c["world_ras_mm"])))
            assert inst[tuple(ijk.astype(int))] == c["id"]
        # the label stays in labels.tsv: not in the inputs' headers, nor in the truth
        text = (folder / "truth.json").read_text()
        for name in ("swi.nii.gz", "phase.nii.gz"):
            img = nib.load(folder / name)
            header = img.header.binaryblock + b"".join(e.get_content() for e in img.header.extensions)
            assert not any(st.encode() in header for st in cc.SUBTYPES)
        assert not any(f'"{st}"' in text for st in cc.SUBTYPES)


def test_workers_and_resume_write_the_same_files(tmp_path: Path) -> None:
    """Two processes write what one does; resume re-renders only the missing or foreign folders."""
    kw = {"voxel_size": (3.0, 3.0, 3.0)}
    one, two = tmp_path / "one", tmp_path / "two"
    cc.write_csvd_cohort(one, 3, 5, ("A",), **kw)
    cc.write_csvd_cohort(two, 3, 5, ("A",), workers=2, **kw)

    def contents(root: Path) -> dict[str, bytes]:
        return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}

    assert contents(one) == contents(two)
    # a folder lost, and one left by another cohort (other seed): both rendered again, the rest kept
    shutil.rmtree(two / "patient-0001")
    foreign = tmp_path / "foreign"
    cc.write_csvd_cohort(foreign, 3, 6, ("A",), **kw)
    shutil.rmtree(two / "patient-0002")
    shutil.copytree(foreign / "patient-0002", two / "patient-0002")
    kept = (two / "patient-0000" / "swi.nii.gz").stat().st_mtime_ns
    cc.write_csvd_cohort(two, 3, 5, ("A",), workers=2, resume=True, **kw)
    assert (two / "patient-0000" / "swi.nii.gz").stat().st_mtime_ns == kept
    assert contents(one) == contents(two)


def test_labels_reader_names_a_folder_that_is_not_a_cohort(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="labels.tsv: cannot read"):
        read_csvd_labels(tmp_path)
    row = "patient-0000\tA\tflu\t70\t1\t0\tM\t1\tphysics"
    (tmp_path / "labels.tsv").write_text("\t".join(LABEL_COLUMNS) + "\n" + row + "\n")
    with pytest.raises(InputFileError, match="line 2"):
        read_csvd_labels(tmp_path)
