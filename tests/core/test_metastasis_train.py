"""Lesion crops, training and the saved origin model (core.tasks.metastasis.{crops,train,model}):
crops land on the lesion with its enhancing rim, a coarse oblique DWI grid reaches the same world
points as the structural grid, a missing sequence or a non-overlapping grid is one sentence, the
estimator learns through the one loop, save -> load gives the same probabilities, and a card
outside the schema is refused; the shipped demo model passes its own check and is the default."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_neuroreview.core.anatomy import make_affine, voxel_to_world
from napari_neuroreview.core.errors import GeometryError, InputFileError, RegistryError
from napari_neuroreview.core.io.nifti import Volume, volume_from_image
from napari_neuroreview.core.models.metastasis_net import MetastasisNet
from napari_neuroreview.core.phantoms import metastasis as mp
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import (
    DEMO_NOTE,
    SHIPPED_WEIGHTS_ROOT,
    read_card,
    save_model,
)
from napari_neuroreview.core.tasks.metastasis.classes import NODES, ORIGINS, SEQUENCES
from napari_neuroreview.core.tasks.metastasis.crops import CropSpec, lesion_crops
from napari_neuroreview.core.tasks.metastasis.lesion_input import lesions_from_labels
from napari_neuroreview.core.tasks.metastasis.model import (
    MODEL_NAME,
    check_origin_config,
    load_origin_model,
    save_origin_model,
)
from napari_neuroreview.core.tasks.metastasis.train import (
    PAPER_SEQUENCES,
    MetastasisConfig,
    MetastasisEstimator,
    augment,
)

_COARSE = {"voxel_size": (3.0, 3.0, 3.0)}
#: Tiny crops: 48 mm at 24 voxels (2 mm), fast enough for tests; training on 16 voxels (3 mm, the render's).
SPEC, TRAIN_SPEC = CropSpec(48.0, 24), CropSpec(48.0, 16)
_BASE = {"necrosis_fraction": 0.0, "oedema_ratio": 0.0, "adc_ratio": 1.0, "t2_dark": False, "haemorrhage": False,
         "location": "grey_white_junction", "region": "frontal"}


def _lesion(id_: int, centre, d: float, **kw) -> mp.Lesion:
    return mp.Lesion(id=id_, centre_mni_mm=tuple(map(float, centre)), diameter_mm=d, shape_seed=100 + id_,
                     **{"enhancement": "solid", **_BASE, **kw})


#: A 24 mm ring-enhancing lesion with a necrotic core (right frontal white matter) and a 16 mm
#: solid one with restricted diffusion (left centrum semiovale).
_RING = _lesion(1, (28.0, 22.0, 26.0), 24.0, enhancement="ring", necrosis_fraction=0.6)
_SOLID = _lesion(2, (-28.0, -20.0, 36.0), 16.0, adc_ratio=0.6)


def _volumes(case: mp.MetastasisCase) -> tuple[dict[str, Volume], Volume, Volume]:
    return ({k: volume_from_image(v) for k, v in case.images.items()}, volume_from_image(case.lesions),
            volume_from_image(case.oedema))


@pytest.fixture(scope="module")
def two_lesions() -> mp.MetastasisCase:
    scanner = mp.draw_scanner(np.random.default_rng(5), mp.SITES["A"])
    patient = mp.MetastasisPatient(5, "A", "NSCLC", "F", 60, (_RING, _SOLID), scanner, 2)
    return mp.render_metastasis_patient(patient, **_COARSE)


def test_a_crop_lands_on_its_lesion_with_the_rim_bright_on_contrast_t1(two_lesions) -> None:
    seqs, lesions, oedema = _volumes(two_lesions)
    crops = lesion_crops(seqs, lesions, spec=SPEC, oedema=oedema)
    truth = {t["id"]: t for t in two_lesions.truth["lesions"]}
    assert [c.lesion_id for c in crops] == [1, 2]
    centre_voxel = (SPEC.shape - 1) / 2
    for crop in crops:
        assert crop.image.shape == (len(SEQUENCES), 24, 24, 24) and crop.image.dtype == np.float32
        assert crop.sequences == SEQUENCES and crop.spec == SPEC
        np.testing.assert_allclose(voxel_to_world(crop.affine, [centre_voxel] * 3), crop.centre_ras_mm, atol=1e-6)
        assert np.allclose(crop.affine[:3, :3], np.eye(3) * 2.0)  # world axes, 2 mm, whatever the scan's grid
        # the mask channel is this lesion, centred on the cube
        np.testing.assert_allclose(np.argwhere(crop.mask).mean(axis=0), centre_voxel, atol=1.0)
        assert np.linalg.norm(np.subtract(crop.centre_ras_mm, truth[crop.lesion_id]["world_ras_mm"])) < 3.0
        assert crop.volume_mm3 == pytest.approx(truth[crop.lesion_id]["volume_mm3"])
        assert crop.mask.sum() * 8.0 == pytest.approx(crop.volume_mm3, rel=0.25)
        assert crop.oedema is not None and not np.any(crop.oedema & crop.mask)
    ring = crops[0]
    ce = ring.image[SEQUENCES.index("ce_t1")]
    rim = ring.mask & ~ndimage.binary_erosion(ring.mask, iterations=2)
    core = ndimage.binary_erosion(ring.mask, iterations=4)
    away = ~ndimage.binary_dilation(ring.mask | ring.oedema, iterations=3)
    assert core.sum() > 10 and rim.sum() > 50
    assert ce[rim].mean() > 1.15 * ce[core].mean() and ce[rim].mean() > 1.05 * np.median(ce[away])
    # normalised by the scan: normal tissue near 1 in every channel, the solid lesion's ADC restricted
    for k, s in enumerate(SEQUENCES):
        assert 0.5 < np.median(ring.image[k][away]) < 1.5, s
    solid = crops[1]
    adc = solid.image[SEQUENCES.index("adc")]
    inner = ndimage.binary_erosion(solid.mask, iterations=1)
    assert adc[inner].mean() < 0.8 * np.median(adc[~ndimage.binary_dilation(solid.mask, iterations=3)])


def _blob_volume(affine: np.ndarray, shape, centre, sigma_mm: float = 6.0) -> Volume:
    """A smooth world function (a Gaussian blob on a low ramp) sampled on a grid."""
    world = voxel_to_world(affine, np.indices(shape).reshape(3, -1).T)
    r2 = ((world - np.asarray(centre)) ** 2).sum(axis=1)
    data = (1000.0 * np.exp(-r2 / (2 * sigma_mm**2)) + 100.0 + 0.5 * world[:, 0]).reshape(shape)
    return Volume(data.astype(np.float32), affine, tuple(np.sqrt((affine[:3, :3] ** 2).sum(0))))


def test_dwi_on_its_coarse_oblique_grid_reaches_the_same_world_points_as_the_structural_grid() -> None:
    blob, fov = (12.0, -9.0, 20.0), (120.0, 120.0, 120.0)
    structural = make_affine((1.0, 1.0, 1.2), "RAS", fov_mm=fov, center_ras=(0, 0, 10))
    dwi = make_affine((2.5, 2.5, 4.0), "LPS", rotation_deg=(4.0, -3.0, 5.0), fov_mm=fov, center_ras=(0, 0, 10))
    seqs = {"ce_t1": _blob_volume(*structural, blob), "dwi": _blob_volume(*dwi, blob)}
    mask_data = np.zeros(structural[1], np.uint8)
    mask_data[tuple(np.rint(np.linalg.solve(structural[0], [*blob, 1.0])[:3]).astype(int))] = 1
    lesion = Volume(mask_data, structural[0], (1.0, 1.0, 1.2))
    (crop,) = lesion_crops(seqs, lesion, channels=("ce_t1", "dwi"), spec=CropSpec(40.0, 40))
    ce, dw = (c / c.max() for c in crop.image)
    centroid = [voxel_to_world(crop.affine, ndimage.center_of_mass(np.clip(c - 0.5, 0, None))) for c in (ce, dw)]
    assert np.linalg.norm(centroid[0] - centroid[1]) < 0.5  # mm, against 2.5 x 2.5 x 4 mm DWI voxels
    assert np.linalg.norm(centroid[0] - blob) < 0.5
    assert np.corrcoef(ce.ravel(), dw.ravel())[0, 1] > 0.99


def test_a_missing_sequence_or_a_grid_elsewhere_is_one_sentence(two_lesions) -> None:
    seqs, lesions, _ = _volumes(two_lesions)
    del seqs["dwi"]
    with pytest.raises(InputFileError) as info:
        lesion_crops(seqs, lesions, channels=("ce_t1", "dwi"), spec=SPEC)
    message = str(info.value)
    assert "dwi" in message and "\n" not in message and message.count(". ") == 0, message
    moved = dataclasses.replace(seqs["ce_t1"], affine=seqs["ce_t1"].affine.copy())
    moved.affine[:3, 3] += (400.0, 0.0, 0.0)
    with pytest.raises(GeometryError) as info:
        lesion_crops({**seqs, "ce_t1": moved}, lesions, channels=("t1", "ce_t1"), spec=SPEC)
    message = str(info.value)
    assert "ce_t1" in message and "lesion 1" in message and "\n" not in message, message
    with pytest.raises(InputFileError, match="no lesion"):
        lesion_crops(seqs, dataclasses.replace(lesions, data=np.zeros_like(lesions.data)), spec=SPEC)
    (first, _) = lesions_from_labels(dataclasses.replace(lesions, data=lesions.data.copy()), seqs["ce_t1"])
    first.labels[first.mask] = 0  # the user erased it in the labels layer (shared array: a copy here)
    with pytest.raises(InputFileError, match="Lesion 1 has no voxel"):
        lesion_crops(seqs, [first], spec=SPEC)


def test_lesions_chosen_in_the_viewer_give_the_crops_of_the_labels_volume(two_lesions) -> None:
    seqs, lesions, _ = _volumes(two_lesions)
    from_volume = lesion_crops(seqs, lesions, spec=SPEC)
    from_masks = lesion_crops(seqs, lesions_from_labels(lesions, seqs["ce_t1"])[::-1], spec=SPEC)
    assert [c.lesion_id for c in from_masks] == [2, 1]
    for a, b in zip(from_volume, from_masks[::-1]):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.centre_ras_mm == b.centre_ras_mm and a.volume_mm3 == b.volume_mm3


def test_augmentation_flips_and_shifts_each_crop_by_the_loops_generator() -> None:
    x = torch.zeros(6, 1, 16, 16, 16)
    x[:, 0, 2:5, 3:6, 4:7] = 1.0
    a, b = (augment(x, torch.Generator().manual_seed(3)) for _ in range(2))
    torch.testing.assert_close(a, b)  # reproducible from the seed
    assert a.shape == x.shape and torch.all(a.sum(dim=(1, 2, 3, 4)) == 27)  # moved, not cut (shift <= 1 voxel)
    assert len({tuple(torch.nonzero(c[0]).float().mean(0).tolist()) for c in a}) > 1


def _training_set() -> tuple[list, list[str]]:
    """Every lesion of six coarse site-A patients (9 lesions, all four origins), as 16^3 crops of the
    paper's five sequences."""
    crops, origins = [], []
    for patient in mp.metastasis_patients(6, 45, ("A",)):
        seqs, lesions, _ = _volumes(mp.render_metastasis_patient(patient, **_COARSE))
        these = lesion_crops(seqs, lesions, channels=MetastasisConfig().sequences, spec=TRAIN_SPEC)
        crops += these
        origins += [patient.origin] * len(these)
    return crops, origins


@pytest.fixture(scope="module")
def fitted() -> tuple[MetastasisEstimator, list, list[str]]:
    crops, origins = _training_set()
    assert set(origins) == set(ORIGINS)
    # the sequences-only recipe (the default before the lesion channel, and cards saved then); the default
    # recipe's learning and its cards: test_metastasis_recipe.py
    est = MetastasisEstimator(MetastasisConfig(width=8, epochs=10, batch=4, lr=1e-2, dropout=0.0, lesion_channel=False),
                              "cpu")
    run_to_completion(est.fit(crops, np.array([ORIGINS.index(o) for o in origins])))
    return est, crops, origins


def test_the_estimator_learns_the_lesions_through_the_loop(fitted) -> None:
    est, crops, _ = fitted
    loss = est.history.train_loss
    assert len(loss) == 10 and np.mean(loss[-3:]) < 0.85 * np.mean(loss[:3]), loss
    nodes = est.predict_proba(crops)
    assert nodes.shape == (len(crops), len(NODES)) and np.all((nodes > 0) & (nodes < 1))
    four = MetastasisEstimator.from_state(est.state_dict(), est.config, est.crop_spec, "cpu", output="four_class")
    p = four.predict_proba(crops)
    assert p.shape == (len(crops), len(ORIGINS))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(p[:, 0], nodes[:, 0] * nodes[:, 1], rtol=1e-9)
    with pytest.raises(ValueError):  # crops of other sequences are the caller's wiring
        est.predict_proba([dataclasses.replace(crops[0], sequences=("ce_t1",), image=crops[0].image[:1])])


def test_two_fits_with_one_seed_give_the_same_weights(fitted) -> None:
    """Names or ORIGINS indices alike; the seed fixes the weights, the batch order and the augmentation."""
    _, crops, origins = fitted
    config = MetastasisConfig(width=4, epochs=2, batch=2, dropout=0.1)
    a, b = MetastasisEstimator(config, "cpu"), MetastasisEstimator(config, "cpu")
    run_to_completion(a.fit(crops[:4], origins[:4]))
    run_to_completion(b.fit(crops[:4], np.array([ORIGINS.index(o) for o in origins[:4]])))
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=0, atol=0)


def test_save_then_load_gives_the_same_probabilities(fitted, tmp_path) -> None:
    est, crops, _ = fitted
    card = save_origin_model(est, tmp_path, "0.1.0", "6 coarse phantom patients")
    assert card.config["sequences"] == list(est.config.sequences) and card.config["in_channels"] == 5
    assert card.config["crop"] == {"size_mm": 48.0, "shape": 16, "normalisation": "scan_foreground_median"}
    assert card.config["classes"] == list(ORIGINS) and card.config["nodes"] == list(NODES)
    loaded = load_origin_model("0.1.0", device="cpu", roots=[tmp_path])
    assert loaded.model == {"name": MODEL_NAME, "version": "0.1.0"} and loaded.crop == TRAIN_SPEC
    assert loaded.sequences == est.config.sequences
    np.testing.assert_array_equal(loaded.estimator.predict_proba(crops), est.predict_proba(crops))


@pytest.mark.parametrize("change, word", [
    ({"width": 100_000}, "width=100000"),
    ({"attention": "transformer"}, "attention 'transformer'"),
    ({"arch": "resnet50"}, "arch 'resnet50'"),
    ({"sequences": ["t1", "pd"]}, "sequences"),
    ({"in_channels": 3}, "in_channels=3"),
    ({"crop": {"size_mm": 48.0, "shape": 16, "normalisation": "zscore"}}, "crop"),
    ({"crop": {"size_mm": 48.0, "shape": 100_000, "normalisation": "scan_foreground_median"}}, "crop"),
    ({"classes": ["NSCLC", "SCLC", "breast", "GI"]}, "classes"),
    ({"nodes": list(reversed(NODES))}, "nodes"),
    ({"colour": "red"}, "unknown key(s) colour"),
])
def test_a_card_with_a_bad_config_is_refused_in_one_sentence(fitted, tmp_path, change, word) -> None:
    est, _, _ = fitted
    good = save_origin_model(est, tmp_path, "1.0.0", "drawn")
    bad = dataclasses.replace(good, version="1.1.0", config={**good.config, **change}, weights_sha256="",
                              card_sha256="")
    save_model(est.state_dict(), bad, tmp_path)
    with pytest.raises(RegistryError) as info:
        load_origin_model("1.1.0", device="cpu", roots=[tmp_path])
    message = str(info.value)
    assert word in message and "\n" not in message and message.count(". ") == 0, message


def test_a_card_edited_by_hand_is_refused(fitted, tmp_path) -> None:
    est, _, _ = fitted
    save_origin_model(est, tmp_path, "1.0.0", "drawn")
    path = tmp_path / MODEL_NAME / "1.0.0" / "card.json"
    card = json.loads(path.read_text())
    card["config"]["sequences"] = ["t1", "t2", "flair", "adc", "ce_t1"]  # same shape, other inputs
    path.write_text(json.dumps(card))
    with pytest.raises(RegistryError):
        load_origin_model("1.0.0", device="cpu", roots=[tmp_path])


def test_a_six_sequence_model_with_the_lesion_channel_saves_and_loads(tmp_path) -> None:
    """All six sequences plus the lesion mask are seven channels, a card the schema must accept."""
    config = MetastasisConfig(sequences=SEQUENCES, width=4, lesion_channel=True)
    est = MetastasisEstimator(config, "cpu", output="four_class")
    est.crop_spec = TRAIN_SPEC
    est.net = MetastasisNet(config.in_channels, config.arch, config.attention, config.width, config.dropout)
    card = save_origin_model(est, tmp_path, "0.1.0", "untrained, six sequences")
    assert card.config["in_channels"] == len(SEQUENCES) + 1
    assert load_origin_model("0.1.0", device="cpu", roots=[tmp_path]).sequences == tuple(SEQUENCES)


def test_the_shipped_demo_model_is_the_default_and_reads_the_papers_five_sequences(tmp_path, monkeypatch) -> None:
    """The package's demo origin model (weights/metastasis-origin/1.0.0): its card passes its own check and names
    the paper's five sequences and the lesion channel, on the benchmark's cube; with an empty user registry it is
    the default that classify loads."""
    card = read_card(SHIPPED_WEIGHTS_ROOT / MODEL_NAME / "1.0.0")
    check_origin_config(card)
    assert card.config["sequences"] == list(PAPER_SEQUENCES) and card.config["lesion_channel"] is True
    assert card.config["in_channels"] == len(PAPER_SEQUENCES) + 1 and DEMO_NOTE in card.notes
    assert (card.config["arch"], card.config["attention"]) == ("resnet6", "cbam")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    model = load_origin_model(device="cpu")
    assert model.model == {"name": MODEL_NAME, "version": "1.0.0"}
    assert model.sequences == PAPER_SEQUENCES and model.crop == CropSpec()
