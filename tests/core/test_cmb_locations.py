"""Each microbleed's side and MARS region (issue 14 item 4): the patient's side from MNI x, whatever the storage."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synthetic import reorient_to

from napari_neuroreview.core.anatomy import mars
from napari_neuroreview.core.anatomy.registration import MniTransform
from napari_neuroreview.core.io.nifti import volume_from_image
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.cmb import locations
from napari_neuroreview.core.tasks.cmb.locations import (
    Location,
    locate,
    locate_findings,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"


def test_side_is_the_patients_from_mni_x_negative_is_left() -> None:
    """Through the identity transform the side is read off MNI x alone: x < 0 is the patient's left."""
    identity = MniTransform(np.eye(4), -1.0, 1.0)
    found = locate(identity, np.array([[-40.0, -20.0, 10.0], [40.0, -20.0, 10.0], [-40.0, 0.0, 200.0]]))
    assert [f.side for f in found] == ["L", "R", "L"]
    assert found[0].region == found[1].region != "outside" and found[2].region == "outside"
    assert found[0] == Location.from_mars(mars.regions_at(np.array([[-40.0, -20.0, 10.0]]))[0])
    assert locate(identity, np.zeros((0, 3))) == []


@pytest.fixture(scope="module")
def sample() -> tuple[nib.Nifti1Image, list[dict]]:
    image = nib.load(str(SAMPLE / "sub-demo_swi.nii.gz"))
    truth = json.loads((SAMPLE / "sub-demo_truth.json").read_text())["cmbs"]
    return image, truth


def test_lps_and_ras_stored_copies_give_the_same_sides_and_regions(sample, monkeypatch) -> None:
    """The same scan stored LPS and RAS (other voxels, other sha256) locates its microbleeds alike.

    The sample lies in MNI space, so its truth positions give the expected side (x < 0: left)
    and region; each copy is registered once (a second call reads the cache).
    """
    image, truth = sample
    data = np.asarray(image.dataobj)
    ids = [c["id"] for c in truth]
    world = np.array([c["world_ras_mm"] for c in truth])
    expected = [Location.from_mars(r) for r in mars.regions_at(world)]
    calls: list[str] = []
    real = locations.register_to_mni

    def counting(volume, name=None):
        calls.append(volume.sha256)
        return real(volume, name)

    monkeypatch.setattr(locations, "register_to_mni", counting)
    monkeypatch.setattr(locations, "_cache", type(locations._cache)())
    found = {}
    for axcodes in ("LPS", "RAS"):
        stored, affine = reorient_to(data, image.affine, axcodes)
        assert "".join(nib.aff2axcodes(affine)) == axcodes
        volume = volume_from_image(nib.Nifti1Image(stored, affine))
        found[axcodes] = run_to_completion(locate_findings(volume, ids, world))
        assert run_to_completion(locate_findings(volume, ids, world)) == found[axcodes]  # cached
    assert len(calls) == 2 and calls[0] != calls[1]  # one registration per scan, and two different scans
    assert found["LPS"] == found["RAS"]
    assert [found["RAS"][i].side for i in ids] == ["L" if x < 0 else "R" for x in world[:, 0]]
    assert np.mean([found["RAS"][i] == e for i, e in zip(ids, expected)]) >= 0.9


def test_same_voxels_under_another_header_are_registered_again(sample, monkeypatch) -> None:
    """The cache key is the voxel sha256 AND the affine: a mirrored header lies elsewhere in the world."""
    image, _truth = sample
    calls: list[np.ndarray] = []

    def stub(volume, name=None):
        calls.append(volume.affine)
        yield from ()
        return MniTransform(np.asarray(volume.affine, dtype=float), -1.0, 1.0)

    monkeypatch.setattr(locations, "register_to_mni", stub)
    monkeypatch.setattr(locations, "_cache", type(locations._cache)())
    volume = volume_from_image(image)
    mirrored = volume_from_image(nib.Nifti1Image(np.asarray(image.dataobj), np.diag([-1.0, 1, 1, 1]) @ image.affine))
    assert mirrored.sha256 == volume.sha256
    first = run_to_completion(locations.mni_transform(volume))
    other = run_to_completion(locations.mni_transform(mirrored))
    assert run_to_completion(locations.mni_transform(volume)) is first  # same header: the cache
    assert other is not first and len(calls) == 2
    assert np.allclose(calls[1], np.diag([-1.0, 1, 1, 1]) @ image.affine)
