"""Phase-rendering randomisation of the microbleed training batches (training.randomise_phase)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from scipy import ndimage

from napari_neuroreview.core.tasks.cmb.patches import PATCH, PATCH_MM
from napari_neuroreview.core.tasks.cmb.training import (
    FitConfig,
    augment_batch,
    randomise_magnitude,
    randomise_phase,
)

ON = FitConfig(phase_randomise=True)


def _dipole(amplitude: float = 0.5, radius_mm: float = 1.5) -> np.ndarray:
    """The field of a magnetised sphere along z, (3 cos^2 - 1) a^3 / r^3 outside, 0 inside, scaled to ``amplitude``."""
    axis = (np.arange(PATCH) - (PATCH - 1) / 2.0) * PATCH_MM
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    cos2 = np.divide(z**2, r**2, out=np.zeros_like(r), where=r > 0)
    field = np.where(r > radius_mm, (3 * cos2 - 1) * radius_mm**3 / np.maximum(r, 1e-6) ** 3, 0.0)
    return (amplitude * field / np.abs(field).max()).astype(np.float32)


def _batch(n: int = 8, with_phase: bool = True) -> torch.Tensor:
    x = torch.zeros(n, 3, PATCH, PATCH, PATCH)
    x[:, 0] = 1.0 + 0.1 * torch.randn(n, PATCH, PATCH, PATCH, generator=torch.Generator().manual_seed(1))
    if with_phase:
        x[:, 1] = torch.from_numpy(_dipole())
        x[:, 2] = 1.0
    return x


def test_shapes_and_the_other_channels_untouched() -> None:
    x = _batch()
    out = randomise_phase(x, torch.Generator().manual_seed(0), ON)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[:, 0], x[:, 0]) and torch.equal(out[:, 2], x[:, 2])
    assert not torch.equal(out[:, 1], x[:, 1])
    assert float(out[:, 1].abs().max()) <= np.pi + 1e-5  # wrapped as scanners store it


def test_patches_without_phase_stay_zero() -> None:
    x = torch.cat([_batch(4), _batch(4, with_phase=False)])
    out = randomise_phase(x, torch.Generator().manual_seed(0), replace(ON, phase_highpass_p=1.0, phase_blur_p=1.0))
    assert torch.equal(out[4:], x[4:])
    assert torch.count_nonzero(out[4:, 1]) == 0
    # and voxels outside the head (zero contrast and phase) stay zero in patches with phase
    x[:4, :2, :3] = 0.0
    out = randomise_phase(x, torch.Generator().manual_seed(0), replace(ON, phase_highpass_p=1.0, phase_blur_p=1.0))
    assert torch.count_nonzero(out[:4, 1, :3]) == 0


def test_the_sign_of_the_dipole_core_is_kept() -> None:
    """Paramagnetic (CMB) and diamagnetic (calcification) dipoles keep their signs under every piece."""
    dipole = torch.from_numpy(_dipole())
    lobe = dipole.abs().argmax()  # on the z axis, just outside the sphere
    equator = dipole.argmin()
    for sign in (1.0, -1.0):
        x = _batch(16)
        x[:, 1] = sign * dipole
        out = randomise_phase(x, torch.Generator().manual_seed(3), replace(ON, phase_highpass_p=1.0, phase_blur_p=1.0))
        flat = out[:, 1].flatten(1)
        assert torch.all(torch.sign(flat[:, lobe]) == sign * torch.sign(dipole.flatten()[lobe]))
        assert torch.all(torch.sign(flat[:, equator]) == sign * torch.sign(dipole.flatten()[equator]))


def test_the_scale_varies_within_its_range() -> None:
    """With the filters off, each patch's phase is the input times its own scale in ``phase_scale``."""
    config = replace(ON, phase_highpass_p=0.0, phase_blur_p=0.0)
    x = _batch(64)
    out = randomise_phase(x, torch.Generator().manual_seed(0), config)
    inside = x[0, 1] != 0
    ratios = (out[:, 1][:, inside] / x[:, 1][:, inside]).median(dim=1).values
    assert float(ratios.min()) >= config.phase_scale[0] - 1e-4 and float(ratios.max()) <= config.phase_scale[1] + 1e-4
    assert float(ratios.max() / ratios.min()) > 3.0  # it actually varies (0.2-1.5 log-uniform)


def test_deterministic_under_the_generator_and_off_by_default() -> None:
    x = _batch()
    a = randomise_phase(x, torch.Generator().manual_seed(5), ON)
    b = randomise_phase(x, torch.Generator().manual_seed(5), ON)
    c = randomise_phase(x, torch.Generator().manual_seed(6), ON)
    assert torch.equal(a, b) and not torch.equal(a, c)
    seg = torch.zeros(x.shape[0], PATCH, PATCH, PATCH)
    plain, _ = augment_batch(x, seg, torch.Generator().manual_seed(5), 0.0, FitConfig())
    same, _ = augment_batch(x, seg, torch.Generator().manual_seed(5), 0.0)
    assert torch.equal(plain, same)  # FitConfig() leaves the phase as it was: phase_randomise is off


def _wrap(phase: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * phase))


def test_a_wrapped_dipole_is_unwrapped_before_it_is_scaled() -> None:
    """A CMB's phase peaking at 8 rad, stored wrapped: each scale gives wrap(s * true phase), not s * wrap(phase).

    The dipole is smoothed (as partial volume does) so that neighbouring voxels differ by under
    pi: only then is the true phase recoverable from the wrapped one.
    """
    true = ndimage.gaussian_filter(_dipole(1.0, radius_mm=2.0).astype(np.float64), 2.5)
    true = 8.0 * true / np.abs(true).max()
    assert max(np.abs(np.diff(true, axis=a)).max() for a in range(3)) < np.pi
    x = _batch(2)
    x[:, 1] = torch.from_numpy(_wrap(true).astype(np.float32))
    for s in (0.2, 0.45, 0.7, 1.5):
        config = replace(ON, phase_scale=(s, s), phase_highpass_p=0.0, phase_blur_p=0.0)
        out = randomise_phase(x, torch.Generator().manual_seed(0), config)[:, 1].double().numpy()
        assert float(np.abs(_wrap(out - _wrap(s * true))).max()) < 1e-4, s


def test_voxels_outside_the_head_do_not_change_the_filtered_phase_inside() -> None:
    """Both filters weigh the signal by the contrast channel, zero outside the head: what lies there is ignored."""
    config = replace(ON, phase_scale=(1.0, 1.0), phase_highpass_p=1.0, phase_blur_p=1.0, phase_highpass_mm=(2.0, 2.0))
    x = _batch(4)
    x[:, 1] = torch.from_numpy(_dipole(2.0)) + 0.3  # a CMB on a background phase
    x[:, 0, :, :, 12:] = 0.0  # no signal above the head's edge in z ...
    x[:, 0, 14:] = 0.0  # ... nor beyond it in x
    other = x.clone()
    other[:, 1] = torch.where(x[:, 0] == 0, torch.rand(x[:, 1].shape, generator=torch.Generator().manual_seed(2)) * 6 - 3,
                              x[:, 1])
    head = x[0, 0] != 0
    a = randomise_phase(x, torch.Generator().manual_seed(4), config)[:, 1][:, head]
    b = randomise_phase(other, torch.Generator().manual_seed(4), config)[:, 1][:, head]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, x[:, 1][:, head], atol=1e-3)  # the filters did act inside


# --------------------------------------------------------------- the local contrast (randomise_magnitude)

MAG = FitConfig(magnitude_randomise=True)


def _dark_spot_batch(n: int = 8) -> torch.Tensor:
    """Tissue at 1 with a 2.4 mm dark sphere (contrast 0.3) at the centre and a head edge at the first 3 slices."""
    x = _batch(n)
    axis = (np.arange(PATCH) - (PATCH - 1) / 2.0) * PATCH_MM
    r = np.sqrt(sum(a**2 for a in np.meshgrid(axis, axis, axis, indexing="ij")))
    x[:, 0] = torch.where(torch.from_numpy(r <= 1.2), torch.tensor(0.3), torch.tensor(1.0))
    x[:, :2, :3] = 0.0
    return x


def test_magnitude_randomisation_changes_only_the_contrast_inside_the_head() -> None:
    x = _dark_spot_batch()
    out = randomise_magnitude(x, torch.Generator().manual_seed(0), replace(MAG, magnitude_blur_p=1.0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[:, 1:], x[:, 1:])
    assert not torch.equal(out[:, 0], x[:, 0])
    assert torch.count_nonzero(out[:, 0, :3]) == 0  # outside the head stays empty
    assert float(out[:, 0].min()) >= 0.0 and float(out[:, 0].max()) <= 2.0  # clipped as channels clips it


def test_magnitude_depth_and_blur_make_a_small_cmb_fainter_and_keep_it_dark() -> None:
    x = _dark_spot_batch(1)
    centre = (0, 0, PATCH // 2, PATCH // 2, PATCH // 2)
    shallow = replace(MAG, magnitude_depth=(0.6, 0.6), magnitude_gamma=(1.0, 1.0), magnitude_noise_p=0.0,
                      magnitude_blur_p=0.0)
    out = randomise_magnitude(x, torch.Generator().manual_seed(0), shallow)
    assert abs(float(out[centre]) - (1 - 0.6 * 0.7)) < 1e-5  # 1 + 0.6 (0.3 - 1)
    blurred = randomise_magnitude(x, torch.Generator().manual_seed(0),
                                  replace(shallow, magnitude_depth=(1.0, 1.0), magnitude_blur_p=1.0,
                                          magnitude_blur_mm=(0.9, 0.9)))
    assert 0.3 < float(blurred[centre]) < 0.9  # partial volume: fainter, still a dark spot
    assert float(blurred[centre]) < float(blurred[0, 0, PATCH // 2, PATCH // 2, 2])


def test_magnitude_randomisation_is_off_by_default_and_seeded() -> None:
    x, seg = _dark_spot_batch(), torch.zeros(8, PATCH, PATCH, PATCH)
    plain, _ = augment_batch(x, seg, torch.Generator().manual_seed(5), 0.0, FitConfig())
    assert torch.equal(plain, augment_batch(x, seg, torch.Generator().manual_seed(5), 0.0)[0])
    a = randomise_magnitude(x, torch.Generator().manual_seed(2), MAG)
    assert torch.equal(a, randomise_magnitude(x, torch.Generator().manual_seed(2), MAG))
    assert not torch.equal(a, randomise_magnitude(x, torch.Generator().manual_seed(3), MAG))
    on, _ = augment_batch(x, seg, torch.Generator().manual_seed(5), 0.0, MAG)
    assert not torch.equal(on, plain)


def test_magnitude_p_rerenders_a_share_of_the_patches_and_at_one_changes_nothing() -> None:
    """``magnitude_p``: each patch re-rendered with that probability, the others untouched; every patch by default."""
    x = _dark_spot_batch(64)
    half = randomise_magnitude(x, torch.Generator().manual_seed(4), replace(MAG, magnitude_p=0.5))
    kept = [bool(torch.equal(half[i, 0], x[i, 0])) for i in range(64)]
    assert 16 <= sum(kept) <= 48  # about half, drawn per patch
    every = randomise_magnitude(x, torch.Generator().manual_seed(4), MAG)
    assert MAG.magnitude_p == 1.0 and not any(torch.equal(every[i, 0], x[i, 0]) for i in range(64))
    none = randomise_magnitude(x, torch.Generator().manual_seed(4), replace(MAG, magnitude_p=0.0))
    assert torch.equal(none, x)


def test_magnitude_blur_slice_only_blurs_along_s_i_alone() -> None:
    """``magnitude_blur_slice_only``: partial volume of axial SWI, along patch axis S only; a round CMB stays round in-plane."""
    x = _dark_spot_batch(4)
    plain = replace(MAG, magnitude_depth=(1.0, 1.0), magnitude_gamma=(1.0, 1.0), magnitude_noise_p=0.0,
                    magnitude_blur_p=1.0, magnitude_blur_mm=(0.9, 0.9), magnitude_blur_slice_only=True)
    c = PATCH // 2
    for seed in range(6):  # whatever axis the draw names, the blur is along S
        out = randomise_magnitude(x, torch.Generator().manual_seed(seed), plain)[0, 0]
        assert float(out[c, c, c]) > 0.35  # the spot blurred...
        # ...along S alone: each column along S (inside the head) keeps its sum; an in-plane blur would not
        assert torch.allclose(out[3:].sum(-1), x[0, 0, 3:].sum(-1), atol=1e-4)
    anywhere = [randomise_magnitude(x, torch.Generator().manual_seed(seed),
                                    replace(plain, magnitude_blur_slice_only=False))[0, 0] for seed in range(6)]
    assert any(not torch.allclose(a[3:].sum(-1), x[0, 0, 3:].sum(-1), atol=1e-4) for a in anywhere)  # in-plane draws
