"""Microbleed bags (core.tasks.csvd.bags): the feature layout, the detector's patch embedding sampled by
world position whatever the voxel order, empty patients, lazy scans, the location-only ablation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_neuroreview.core.anatomy.mars import MARS_CLASSES, REGIONS, MarsRegion, regions_at
from napari_neuroreview.core.io.nifti import Volume, load_volume, voxel_sha256
from napari_neuroreview.core.models.cmb_net import CMBPatchNet
from napari_neuroreview.core.tasks.cmb.model import card_threshold, load_detector
from napari_neuroreview.core.tasks.cmb.patches import sample_patches
from napari_neuroreview.core.tasks.csvd.bags import (
    LOCATION_FEATURES,
    Bag,
    BagInstance,
    ScanChannels,
    build_bag,
    equivalent_diameter_mm,
    location_features,
    make_sites,
    patch_embeddings,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"
WIDTH = 4  # deepest map: 4 x 4 = 16 channels
SPOTS_VOX = [(12, 14, 20), (27, 25, 18)]


@pytest.fixture(scope="module")
def net() -> CMBPatchNet:
    torch.manual_seed(0)
    return CMBPatchNet(width=WIDTH).eval()


@pytest.fixture(scope="module")
def scan() -> Volume:
    """A 40^3 1 mm 'head' of tissue with two dark 3 mm spots."""
    rng = np.random.default_rng(0)
    data = (100 + rng.normal(0, 2, (40, 40, 40))).astype(np.float32)
    ijk = np.indices(data.shape).transpose(1, 2, 3, 0)
    for spot in SPOTS_VOX:
        data[np.linalg.norm(ijk - spot, axis=-1) <= 1.5] = 20.0
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20.0, -40.0, -10.0]
    return Volume(data, affine, (1.0, 1.0, 1.0), None, voxel_sha256(data))


def _world(volume: Volume, ijk) -> tuple[float, float, float]:
    return tuple(float(v) for v in volume.affine[:3, :3] @ np.asarray(ijk, float) + volume.affine[:3, 3])


def _site(i: int, world, region: str = "thalamus", mars_class: str = "deep", side: str = "left",
          mni=(-12.0, -18.0, 8.0), diameter: float = 3.0) -> BagInstance:
    return BagInstance(i, tuple(world), tuple(mni), diameter, MarsRegion(region, mars_class, side))


def test_location_features_layout():
    sites = [_site(1, (0, 0, 0), "temporal", "lobar", "left", (-50.0, -20.0, -10.0), 4.0),
             _site(2, (0, 0, 0), "brainstem", "infratentorial", "right", (5.0, -28.0, -30.0), 2.0),
             _site(3, (0, 0, 0), "outside", "outside", "right", (80.0, 0.0, 90.0), 0.0)]
    f = location_features(sites)
    assert f.shape == (3, len(LOCATION_FEATURES)) == (3, 3 + 1 + len(REGIONS) + 1 + len(MARS_CLASSES))
    assert f.dtype == np.float32
    col = {name: k for k, name in enumerate(LOCATION_FEATURES)}
    np.testing.assert_allclose(f[0, :3], [-0.5, -0.2, -0.1], atol=1e-6)
    assert f[0, col["log_diameter_mm"]] == pytest.approx(np.log(4.0))
    assert f[2, col["log_diameter_mm"]] == pytest.approx(np.log(0.1))  # a zero size is floored, not -inf
    regions = f[:, [col[f"region[{r}]"] for r in REGIONS]]
    classes = f[:, [col[f"class[{c}]"] for c in MARS_CLASSES]]
    assert regions[0, REGIONS.index("temporal")] == 1 and regions[0].sum() == 1
    assert regions[1, REGIONS.index("brainstem")] == 1 and regions[1].sum() == 1
    assert regions[2].sum() == 0 and classes[2].sum() == 0  # outside the brain: no region, no class
    assert classes[0, MARS_CLASSES.index("lobar")] == 1 and classes[1, MARS_CLASSES.index("infratentorial")] == 1
    assert list(f[:, col["side_right"]]) == [0.0, 1.0, 1.0]


def test_patch_embedding_is_the_detectors_encoder_on_its_own_patch(scan, net):
    """The embedding equals net.encode's deepest map, averaged, on the patch detection would sample."""
    channels = ScanChannels.from_scan(scan)
    sites = [_site(7, _world(scan, SPOTS_VOX[0])), _site(9, _world(scan, SPOTS_VOX[1]))]
    bag = build_bag("p1", sites, net, channels)
    assert bag.features.shape == (2, 4 * WIDTH + len(LOCATION_FEATURES)) and bag.n_embedding == 4 * WIDTH
    assert bag.ids == (7, 9) and len(bag) == 2
    patches = sample_patches(channels.channels, scan.affine, np.array(SPOTS_VOX, float))
    with torch.no_grad():
        expected = net.encode(torch.from_numpy(patches))[2].mean(dim=(2, 3, 4)).numpy()
    np.testing.assert_allclose(bag.features[:, :4 * WIDTH], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bag.features[:, 4 * WIDTH:], location_features(sites))
    # a microbleed and plain tissue embed differently
    tissue = build_bag("p1", [_site(1, _world(scan, (30, 10, 30)))], net, channels)
    assert not np.allclose(tissue.features[0, :4 * WIDTH], bag.features[0, :4 * WIDTH], atol=1e-3)


def test_patch_embedding_follows_world_position_in_any_voxel_order(scan, net):
    """The same image stored LPS (i and j flipped) gives the same embedding at the same world point."""
    ras = ScanChannels.from_scan(scan)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [39.0, 39.0]  # new voxel (i', j') = (39 - i, 39 - j)
    lps = ScanChannels([c if c.size == 1 else np.ascontiguousarray(c[::-1, ::-1]) for c in ras.channels],
                       scan.affine @ np.linalg.inv(flip))
    site = [_site(1, _world(scan, SPOTS_VOX[1]))]
    a = build_bag("p", site, net, ras).features
    b = build_bag("p", site, net, lps).features
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_empty_patient_and_location_only(scan, net):
    empty = build_bag("p0", [], net, None)  # no CMB: no scan needed
    assert empty.features.shape == (0, 4 * WIDTH + len(LOCATION_FEATURES)) and empty.ids == ()
    sites = [_site(3, _world(scan, SPOTS_VOX[0]))]
    full = build_bag("p1", sites, net, ScanChannels.from_scan(scan))
    located = build_bag("p1", sites)
    assert located.n_embedding == 0 and located.names == LOCATION_FEATURES
    np.testing.assert_array_equal(full.location_only().features, located.features)
    assert len(full.names) == full.features.shape[1]
    with pytest.raises(ValueError):
        Bag("bad", np.zeros((2, 5)), (1, 2))


def test_make_sites_looks_up_mars_regions():
    mni = np.array([[-12.0, -18.0, 8.0], [50.0, -20.0, -10.0]])
    sites = make_sites([4, 5], mni + 1.0, mni, equivalent_diameter_mm([np.pi / 6 * 27, np.pi / 6 * 8]))
    assert [s.id for s in sites] == [4, 5]
    assert [s.region for s in sites] == regions_at(mni)
    assert [s.diameter_mm for s in sites] == pytest.approx([3.0, 2.0])
    assert sites[0].world_ras_mm == (-11.0, -17.0, 9.0) and sites[1].mni_mm == (50.0, -20.0, -10.0)
    assert make_sites([], np.zeros((0, 3)), np.zeros((0, 3)), []) == []
    with pytest.raises(ValueError):
        make_sites([1], mni, mni, [1.0])


def test_sample_case_embeddings_are_what_the_shipped_detector_sees_at_its_microbleeds():
    """On the committed sample case, the patch each truth CMB is embedded from is one the detector calls a microbleed.

    The check of the whole chain (the scan's channels, world -> voxel, the patch grid): the
    detector's classifier on the very features the embedding pools scores every truth CMB
    above its threshold, and the same point moved 8 mm away below it.
    """
    magnitude = load_volume(SAMPLE / "sub-demo_swi.nii.gz")
    phase = load_volume(SAMPLE / "sub-demo_phase.nii.gz")
    world = np.array([c["world_ras_mm"] for c in json.loads((SAMPLE / "sub-demo_truth.json").read_text())["cmbs"]])
    detector = load_detector(device="cpu")
    scan = ScanChannels.from_scan(magnitude, phase)

    def scores(points: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(magnitude.affine)
        patches = sample_patches(scan.channels, magnitude.affine, points @ inverse[:3, :3].T + inverse[:3, 3])
        with torch.no_grad():
            deepest = detector.net.encode(torch.from_numpy(patches))[2]
        np.testing.assert_allclose(deepest.mean(dim=(2, 3, 4)).numpy(), patch_embeddings(detector.net, scan, points),
                                   rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            return torch.sigmoid(detector.net.classify(deepest)).numpy()

    threshold = card_threshold(detector.card)
    assert len(world) >= 3
    assert (scores(world) >= threshold).all()
    assert (scores(world + [0.0, 0.0, 8.0]) < threshold).mean() >= 0.8
