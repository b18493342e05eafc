"""A rendered subtype cohort's patients as model items (core.tasks.csvd.cohort_items): read from
their scans, registered to MNI, microbleeds from the truth or the detector, bags with or without
the detector's patch embedding; a folder that is not a cohort is one sentence."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.core.anatomy.mars import regions_at
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.phantoms.csvd import write_csvd_cohort
from napari_neuroreview.core.tasks.csvd.labels import read_csvd_labels
from napari_neuroreview.core.progress import Progress, run_to_completion
from napari_neuroreview.core.tasks.csvd.bags import LOCATION_FEATURES, MNI_SCALE_MM
from napari_neuroreview.core.tasks.csvd.cohort_items import items_from_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Three phenomenological centre-A patients (12, 0 and 4 microbleeds) on a coarse 2 mm grid: a few
#: seconds to render (a physics patient takes 15-30 s; test_cli_csvd.py renders one).
SEED, CENTRES = 4, ("A",)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("csvd") / "cohort"
    write_csvd_cohort(out, 3, SEED, CENTRES, voxel_size=(2.0, 2.0, 2.0))
    return out


def _truth(cohort: Path, patient: str) -> list[dict]:
    return json.loads((cohort / patient / "truth.json").read_text())["cmbs"]


@pytest.fixture(scope="module")
def oracle(cohort):
    updates: list[Progress] = []
    result = run_to_completion(items_from_cohort(cohort, "truth", None, "cpu"), updates.append)
    return result, updates


def test_truth_items_are_the_cohort_in_labels_order(cohort, oracle) -> None:
    (items, labels, centres), updates = oracle
    rows = read_csvd_labels(cohort)
    assert [i.patient for i in items] == [r["patient"] for r in rows]
    assert labels == [r["subtype"] for r in rows] and centres == [r["centre"] for r in rows] == ["A", "A", "A"]
    assert [i.age for i in items] == [float(r["age"]) for r in rows]
    counts = [len(_truth(cohort, i.patient)) for i in items]
    assert [len(i.bag) for i in items] == [len(i.regions) for i in items] == counts == [r["n_cmb"] for r in rows]
    assert 0 in counts and sum(counts) >= 10  # an empty bag is a patient, not a missing row
    for item in items:
        assert item.bag.n_embedding == 0 and item.bag.features.shape == (len(item.bag), len(LOCATION_FEATURES))
        assert list(item.bag.ids) == [c["id"] for c in _truth(cohort, item.patient)]
    # progress names each patient, in order, and ends at the total
    for item in items:
        assert any(u.message.startswith(item.patient) for u in updates)
    assert updates[-1].step == updates[-1].total and all(a.step <= b.step for a, b in itertools.pairwise(updates))


def test_registration_puts_the_cmbs_at_their_true_mni_positions_and_regions(cohort, oracle) -> None:
    """The phantom's world is MNI space, so each truth position is its true MNI position: the
    registration (run as for a real scan) must find it, and the MARS region with it."""
    (items, _, _), _ = oracle
    distances, agree = [], []
    for item in items:
        truth = np.array([c["world_ras_mm"] for c in _truth(cohort, item.patient)], float).reshape(-1, 3)
        registered = item.bag.features[:, :3].astype(float) * MNI_SCALE_MM
        distances.extend(np.linalg.norm(registered - truth, axis=1))
        agree.extend(a == b for a, b in zip(item.regions, regions_at(truth) if len(truth) else []))
        log_d = item.bag.features[:, 3]
        np.testing.assert_allclose(log_d, np.log([c["diameter_mm"] for c in _truth(cohort, item.patient)]),
                                   atol=1e-5)
    assert np.median(distances) < 1.0  # measured 0.2-0.3 mm on the 2 mm grid
    assert np.mean(agree) >= 0.9


def test_patch_embedding_columns_with_the_detector_encoder(cohort, oracle) -> None:
    (plain, _, _), _ = oracle
    items, labels, _ = run_to_completion(items_from_cohort(cohort, "truth", "detector", "cpu"))
    assert labels == [r["subtype"] for r in read_csvd_labels(cohort)]
    width = items[0].bag.n_embedding
    assert width > 0 and all(i.bag.n_embedding == width for i in items)
    for item, loc in zip(items, plain):
        assert item.bag.features.shape == (len(loc.bag), width + len(LOCATION_FEATURES))
        np.testing.assert_allclose(item.bag.location_only().features, loc.bag.features, atol=1e-5)
        if len(item.bag):
            assert np.isfinite(item.bag.features).all() and np.abs(item.bag.features[:, :width]).sum() > 0


def test_detector_source_on_one_patient_gives_an_item(cohort, tmp_path) -> None:
    """End to end: the shipped detector's microbleeds (no truth.json needed), regions from the registration."""
    one = tmp_path / "one"
    shutil.copytree(cohort / "patient-0000", one / "patient-0000")
    (one / "patient-0000" / "truth.json").unlink()
    lines = (cohort / "labels.tsv").read_text().splitlines()
    (one / "labels.tsv").write_text("\n".join(lines[:2]) + "\n")
    items, labels, centres = run_to_completion(items_from_cohort(one, "detector", None, "cpu"))
    assert [i.patient for i in items] == ["patient-0000"] and centres == ["A"] and len(labels) == 1
    item = items[0]
    assert len(item.bag) == len(item.regions) >= 1
    assert (np.exp(item.bag.features[:, 3]) > 0.5).all()  # an equivalent diameter, not a voxel count


def test_not_a_cohort_is_one_sentence(cohort, tmp_path) -> None:
    with pytest.raises(InputFileError, match="labels.tsv"):
        run_to_completion(items_from_cohort(tmp_path, "truth"))
    broken = tmp_path / "broken"
    shutil.copytree(cohort, broken, ignore=shutil.ignore_patterns("patient-0001"))
    with pytest.raises(InputFileError, match=r"patient-0001.*swi\.nii\.gz.*not a complete subtype cohort") as err:
        run_to_completion(items_from_cohort(broken, "truth"))
    assert "\n" not in str(err.value)
    (broken / "patient-0000" / "truth.json").unlink()
    with pytest.raises(InputFileError, match="truth.json"):
        run_to_completion(items_from_cohort(broken, "truth"))
