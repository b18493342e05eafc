"""The origin network's input recipe (core.tasks.metastasis.train): the lesion mask as a last input
channel, why it is needed (a crop may hold a second lesion: only the mask says which one is asked
about), and cards saved before the channel existed still loading as what they were."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import save_model
from napari_neuroreview.core.tasks.metastasis.crops import CropSpec, LesionCrop, crop_grid
from napari_neuroreview.core.tasks.metastasis.model import load_origin_model, save_origin_model
from napari_neuroreview.core.tasks.metastasis.train import MetastasisConfig, MetastasisEstimator, network_input

SIDE = 16
SPEC = CropSpec(32.0, SIDE)
SEQS = ("dwi", "ce_t1")


def _ball(centre: np.ndarray, radius: float = 2.5) -> np.ndarray:
    grid = np.indices((SIDE,) * 3).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - centre, axis=-1) <= radius


def _crop(rng: np.random.Generator, origin: str, k: int) -> LesionCrop:
    """Two balls mirrored about the cube's centre, both enhancing on contrast T1; the lesion (the mask)
    is bright on DWI for SCLC and dim for GI, the other ball's DWI is drawn independently: without the
    mask, a crop with one bright and one dim ball says nothing of the origin."""
    image = rng.normal(1.0, 0.15, (2, SIDE, SIDE, SIDE)).astype(np.float32)
    offset = rng.normal(size=3)
    offset *= 4.0 / np.linalg.norm(offset)
    middle = np.full(3, (SIDE - 1) / 2)
    lesion, other = _ball(middle + offset), _ball(middle - offset)
    image[0][lesion] += 1.0 if origin == "SCLC" else -0.5
    image[0][other] += 1.0 if rng.random() < 0.5 else -0.5
    image[1][lesion | other] += 1.0
    return LesionCrop(image, lesion, None, k, (0.0, 0.0, 0.0), float(lesion.sum()), SEQS, crop_grid((0, 0, 0), SPEC),
                      SPEC)


def _set(seed: int, n: int) -> tuple[list[LesionCrop], list[str]]:
    rng = np.random.default_rng(seed)
    origins = ["SCLC", "GI"] * (n // 2)
    return [_crop(rng, o, k + 1) for k, o in enumerate(origins)], origins


def _lung_auc(lesion_channel: bool) -> float:
    """Held-out lung-node AUC after a short fit (64 crops, 6 epochs: with the mask it is already 1.0
    here; 96 crops and 12 epochs took four times the CPU for the same verdicts)."""
    crops, origins = _set(0, 64)
    test, test_origins = _set(1, 64)
    config = MetastasisConfig(width=8, epochs=6, batch=8, lr=3e-3, dropout=0.0, sequences=SEQS,
                              lesion_channel=lesion_channel)
    est = MetastasisEstimator(config, "cpu")
    run_to_completion(est.fit(crops, origins))
    return float(roc_auc_score([o == "SCLC" for o in test_origins], est.predict_proba(test)[:, 0]))


def test_with_the_lesion_channel_it_tells_the_lesion_from_its_neighbour() -> None:
    """The default recipe reads the mask and ranks new lesions almost perfectly; the sequences alone
    cannot do better than 0.875 in expectation (half the crops are ambiguous), and do not."""
    assert MetastasisConfig().lesion_channel
    with_mask, without = _lung_auc(True), _lung_auc(False)
    assert with_mask > 0.95, (with_mask, without)
    assert without < 0.9, (with_mask, without)


def test_network_input_is_the_named_sequences_then_the_mask() -> None:
    crops, _ = _set(2, 2)
    x = network_input(crops, ("ce_t1",), lesion_channel=True)
    assert x.shape == (2, 2, SIDE, SIDE, SIDE) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], np.stack([c.image[1] for c in crops]))
    np.testing.assert_array_equal(x[:, 1], np.stack([c.mask for c in crops]).astype(np.float32))
    assert network_input(crops, SEQS, lesion_channel=False).shape == (2, 2, SIDE, SIDE, SIDE)
    assert MetastasisConfig(sequences=SEQS).in_channels == 3
    assert MetastasisConfig(sequences=SEQS, lesion_channel=False).in_channels == 2


@pytest.mark.parametrize("lesion_channel", [True, False])
def test_a_card_saved_before_the_lesion_channel_loads_as_the_sequences_only(tmp_path, lesion_channel) -> None:
    crops, origins = _set(3, 8)
    est = MetastasisEstimator(MetastasisConfig(width=4, epochs=1, batch=4, sequences=SEQS,
                                               lesion_channel=lesion_channel), "cpu")
    run_to_completion(est.fit(crops, origins))
    card = save_origin_model(est, tmp_path, "1.0.0", "drawn")
    assert card.config["lesion_channel"] is lesion_channel and card.config["in_channels"] == 2 + lesion_channel
    loaded = load_origin_model("1.0.0", device="cpu", roots=[tmp_path])
    np.testing.assert_array_equal(loaded.estimator.predict_proba(crops), est.predict_proba(crops))
    # the same card as written before the key existed (a 1.0.0 model of the first runs)
    old = {k: v for k, v in card.config.items() if k != "lesion_channel"}
    save_model(est.state_dict(), dataclasses.replace(card, version="1.1.0", config=old, weights_sha256="",
                                                     card_sha256=""), tmp_path)
    if lesion_channel:  # read as a sequences-only card, its weights do not fit: refused in one sentence
        from napari_neuroreview.core.errors import RegistryError

        with pytest.raises(RegistryError, match="in_channels=3 for 2 sequence"):
            load_origin_model("1.1.0", device="cpu", roots=[tmp_path])
    else:
        loaded = load_origin_model("1.1.0", device="cpu", roots=[tmp_path])
        assert not loaded.estimator.config.lesion_channel
        np.testing.assert_array_equal(loaded.estimator.predict_proba(crops), est.predict_proba(crops))
