"""The subtype cohort phantom: explicit microbleed sites in both SWI simulators, and the
cohort generator (``core.phantoms.csvd_cohort``) whose counts and locations follow the
literature (``../shared/REFERENCES.md``, "Small vessel disease subtype from microbleeds")."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_neuroreview.core.anatomy import world_to_voxel
from napari_neuroreview.core.phantoms.swi import make_swi_case as make_phen
from napari_neuroreview.core.phantoms.swi_contract import CMBSite, SiderosisSite
from napari_neuroreview.core.phantoms.swi_physics import make_swi_case as make_phys

#: Hashes of default cases made by the code before ``cmb_sites`` existed (commit 79ab6aa,
#: /tmp/cohort_work/hash_cases.py): the detector's training scans must not move.
_DEFAULT_HASHES = {
    "phenomenological": "731989945e2ea57021b328f3ffa873a569123a17df646aae7bd50d5f814d147b",
    "physics": "8b361d4ae5bfa8fd38c13a1d2078d602651671516547d5ff559c5239f9c692e6",
}


def _case_hash(case) -> str:
    m = hashlib.sha256()
    for img in (case.magnitude, case.phase, case.truth["instances"], case.truth["mimic_labels"]):
        m.update(np.ascontiguousarray(np.asarray(img.dataobj)).tobytes())
    m.update(json.dumps([case.truth["cmbs"], case.truth["mimics"], case.params], sort_keys=True, default=str).encode())
    return m.hexdigest()


@pytest.mark.parametrize("simulator", ["phenomenological", "physics"])
def test_default_cases_are_bit_identical_to_before_sites(simulator: str) -> None:
    if simulator == "phenomenological":
        case = make_phen(seed=3, voxel_size=(2.0, 2.0, 2.0), n_cmb=5)
    else:
        case = make_phys(seed=3, voxel_size=(2.0, 2.0, 2.0), n_cmb=5, slab=(-20.0, 30.0))
    assert "skipped_sites" not in case.truth and "cmb_sites" not in case.params
    assert _case_hash(case) == _DEFAULT_HASHES[simulator]


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
