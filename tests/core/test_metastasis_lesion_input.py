"""Lesion input for the metastasis classifier (``core.tasks.metastasis.lesion_input``): a click on
the contrast T1 grows the drawn lesion (solid and ring), plain brain grows nothing and says why,
a labels volume gives one lesion per id (volume, centre, ids kept), another grid is resampled
and hostile labels are one sentence."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.anatomy import make_affine, voxel_to_world
from napari_neuroreview.core.errors import GeometryError, InputFileError
from napari_neuroreview.core.io.nifti import Volume
from napari_neuroreview.core.phantoms import metastasis as mp
from napari_neuroreview.core.tasks.metastasis.lesion_input import (
    MAX_LESIONS,
    grow_lesion,
    lesions_from_labels,
)


def _volume(data: np.ndarray, affine: np.ndarray, name: str) -> Volume:
    zooms = tuple(float(z) for z in nib.affines.voxel_sizes(affine))
    return Volume(np.asarray(data), np.asarray(affine, float), zooms, path=Path(f"{name}.nii.gz"))


def _image(img: nib.Nifti1Image, name: str) -> Volume:
    return _volume(np.asarray(img.dataobj), img.affine, name)


def _lesion(id_: int, centre, d: float, **kw) -> mp.Lesion:
    base = {"enhancement": "solid", "necrosis_fraction": 0.0, "oedema_ratio": 0.0, "adc_ratio": 1.0,
            "t2_dark": False, "haemorrhage": False, "location": "grey_white_junction", "region": "frontal",
            "shape_seed": 100 + id_}
    return mp.Lesion(id=id_, centre_mni_mm=tuple(map(float, centre)), diameter_mm=d, **{**base, **kw})


# A solid lesion with much oedema (its edge borders oedema and white matter) and a ring lesion
# (the click lands on its necrotic centre), at the noisiest site with the weakest enhancement.
_SOLID = _lesion(1, (-30.0, -20.0, 38.0), 20.0, oedema_ratio=3.0)
_RING = _lesion(2, (25.0, -50.0, 30.0), 30.0, enhancement="ring", necrosis_fraction=0.5, oedema_ratio=2.0,
                haemorrhage=True)


@pytest.fixture(scope="module")
def case() -> mp.MetastasisCase:
    scanner = mp.draw_scanner(np.random.default_rng(12), mp.SITES["C"])
    patient = mp.MetastasisPatient(1, "C", "NSCLC", "F", 60, (_SOLID, _RING), scanner, 2)
    return mp.render_metastasis_patient(patient, voxel_size=(2.0, 2.0, 2.0))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / max(int(np.count_nonzero(a) + np.count_nonzero(b)), 1)


@pytest.mark.parametrize("offset_mm", [0.0, 3.0], ids=["centre", "3 mm off"])
@pytest.mark.parametrize("lesion", [_SOLID, _RING], ids=["solid", "ring"])
def test_a_click_at_the_centre_grows_the_drawn_lesion(case, lesion, offset_mm) -> None:
    ce = _image(case.images["ce_t1"], "ce_t1")
    grown = grow_lesion(ce, np.add(lesion.centre_mni_mm, (offset_mm, -offset_mm, 0.0)), lesion_id=7)
    truth = np.asarray(case.lesions.dataobj) == lesion.id
    assert grown.labels.shape == ce.spatial_shape and grown.id == 7 and set(np.unique(grown.labels)) == {0, 7}
    assert _dice(grown.mask, truth) >= 0.7, grown.messages
    assert grown.messages == []
    assert np.linalg.norm(np.subtract(grown.centre_world_mm, lesion.centre_mni_mm)) < 4.0


@pytest.mark.parametrize("click, why", [((-20.0, 0.0, 30.0), "enhances"), ((0.0, -20.0, 10.0), "enhances"),
                                        ((0.0, 0.0, 80.0), "outside the head"), ((0.0, 0.0, 400.0), "grid")])
def test_plain_brain_or_outside_grows_nothing_and_says_why(case, click, why) -> None:
    grown = grow_lesion(_image(case.images["ce_t1"], "ce_t1"), click)
    assert grown.voxel_count < 5 and grown.labels.shape == case.images["ce_t1"].shape
    assert len(grown.messages) == 1 and why in grown.messages[0], grown.messages


def test_the_grown_mask_is_editable_and_its_figures_follow() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:4, 2:4, 2:4] = 3
    lesion = lesions_from_labels(_volume(labels, np.eye(4), "l"), _volume(labels, np.eye(4), "ce"))[0]
    assert lesion.voxel_count == 8
    lesion.labels[5, 5, 5] = lesion.id  # the user paints a voxel
    assert lesion.voxel_count == 9 and lesion.volume_mm3 == 9.0


def test_two_ids_give_two_lesions_with_their_volumes_and_centres() -> None:
    affine = make_affine((2.0, 2.0, 3.0), "LAS", (0.0, 0.0, 0.0))[0]
    shape = (30, 30, 20)
    labels = np.zeros(shape, np.int16)
    labels[3:7, 4:9, 2:4] = 4  # 40 voxels
    labels[15:18, 15:18, 10:13] = 9  # 27 voxels
    ce = _volume(np.ones(shape, np.int16), affine, "ce_t1")
    lesions = lesions_from_labels(_volume(labels, affine, "lesions"), ce)
    assert [les.id for les in lesions] == [4, 9] and all(les.messages == [] for les in lesions)
    assert [les.voxel_count for les in lesions] == [40, 27]
    assert [les.volume_mm3 for les in lesions] == pytest.approx([40 * 12.0, 27 * 12.0])
    for les, centre in zip(lesions, ((4.5, 6.0, 2.5), (16.0, 16.0, 11.0))):
        np.testing.assert_allclose(les.centre_world_mm, voxel_to_world(affine, centre), atol=1e-9)


def test_the_phantoms_labels_give_its_lesions(case) -> None:
    lesions = lesions_from_labels(_image(case.lesions, "lesions"), _image(case.images["ce_t1"], "ce_t1"))
    truth = {t["id"]: t for t in case.truth["lesions"]}
    assert [les.id for les in lesions] == [1, 2]
    for les in lesions:
        assert les.volume_mm3 == pytest.approx(truth[les.id]["volume_mm3"])
        assert np.linalg.norm(np.subtract(les.centre_world_mm, truth[les.id]["world_ras_mm"])) < 3.0


def test_labels_on_another_grid_are_resampled_with_a_message() -> None:
    ce_affine, ce_shape = np.diag([1.0, 1.0, 1.0, 1.0]), (60, 60, 60)
    # 2 mm voxels stored right-to-left and front-to-back, half a 1 mm voxel off the contrast T1's centres
    lab_affine = np.array([[-2.0, 0, 0, 59.5], [0, -2.0, 0, 59.5], [0, 0, 2.0, 0.5], [0, 0, 0, 1]])
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[5:10, 5:10, 5:10] = 1
    labels[20:23, 10:13, 15:18] = 5
    lesions = lesions_from_labels(_volume(labels, lab_affine, "lesions"), _volume(np.ones(ce_shape), ce_affine, "ce"))
    assert [les.id for les in lesions] == [1, 5]
    assert all(les.labels.shape == ce_shape and np.allclose(les.affine, ce_affine) for les in lesions)
    assert "resampled" in lesions[0].messages[0] and "ce" in lesions[0].messages[0]
    for les, box in zip(lesions, ((5, 10, 5, 10, 5, 10), (20, 23, 10, 13, 15, 18))):
        assert les.volume_mm3 == pytest.approx(np.prod(np.subtract(box[1::2], box[::2])) * 8.0, rel=0.2)
        centre = voxel_to_world(lab_affine, [(box[0] + box[1] - 1) / 2, (box[2] + box[3] - 1) / 2,
                                              (box[4] + box[5] - 1) / 2])
        assert np.linalg.norm(np.subtract(les.centre_world_mm, centre)) < 1.0


def test_labels_that_do_not_overlap_are_a_geometry_error() -> None:
    far = np.eye(4)
    far[:3, 3] = 500.0
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:4, 2:4, 2:4] = 1
    with pytest.raises(GeometryError, match="does not overlap"):
        lesions_from_labels(_volume(labels, far, "lesions"), _volume(np.ones((10, 10, 10)), np.eye(4), "ce_t1"))


def _hostile(kind: str) -> np.ndarray:
    if kind == "fraction":
        data = np.zeros((20, 20, 20), np.float32)
        data[5:8, 5:8, 5:8] = 0.7
    elif kind == "negative":
        data = np.zeros((20, 20, 20), np.int16)
        data[5:8, 5:8, 5:8] = -3
    elif kind == "million ids":
        data = np.arange(1, 101**3 + 1, dtype=np.int32).reshape(101, 101, 101)
    elif kind == "nan":
        data = np.zeros((20, 20, 20), np.float32)
        data[5, 5, 5] = np.nan
    elif kind == "empty":
        data = np.zeros((20, 20, 20), np.uint8)
    else:
        data = np.zeros((20, 20, 20, 3), np.uint8)
    return data


@pytest.mark.parametrize("kind", ["fraction", "negative", "million ids", "nan", "empty", "4d"])
def test_hostile_labels_are_one_sentence(kind) -> None:
    data = _hostile(kind)
    with pytest.raises(InputFileError) as err:
        lesions_from_labels(_volume(data, np.eye(4), "bad_labels"), _volume(np.ones(data.shape[:3]), np.eye(4), "ce"))
    message = str(err.value)
    assert message.startswith("bad_labels: ") and "\n" not in message and message.count(". ") == 0
    if kind == "million ids":
        assert str(MAX_LESIONS) in message


def test_float_labels_of_whole_numbers_are_labels() -> None:
    data = np.zeros((10, 10, 10), np.float32)
    data[1:3, 1:3, 1:3], data[6:8, 6:8, 6:8] = 2.0, 3.0
    lesions = lesions_from_labels(_volume(data, np.eye(4), "float_labels"), _volume(np.ones(data.shape), np.eye(4), "ce"))
    assert [les.id for les in lesions] == [2, 3] and lesions[0].labels.dtype.kind in "iu"
    assert lesions[0].labels is lesions[1].labels  # one editable array for the layer
