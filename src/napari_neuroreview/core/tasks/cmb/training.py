"""The microbleed patch network on the one training loop: patches, sampler, augmentation, loss.

What is the microbleed system's own (and so lives here, not in ``core.train``): the
:class:`PatchSet` of candidate-centred patches, positives oversampled to half of every
batch (a few dozen microbleeds are not drowned by thousands of negatives), the
augmentations that keep the phase dipole physically right, and the weighted BCE on the
class logit plus BCE + Dice on the masks that are known. :class:`PatchTrainable` hands
these to ``core.train.loop.fit``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from skimage.restoration import unwrap_phase
from torch import nn
from torch.nn import functional as F

from ...train.loop import LoopConfig
from ...train.losses import soft_dice_loss
from .patches import PATCH_MM

__all__ = [
    "SCANNER_RECIPES", "FitConfig", "PatchSet", "PatchTrainable", "augment_batch", "patch_loss", "randomise_magnitude",
    "randomise_phase",
]

#: The FitConfig overrides of the scanner-randomisation recipes, by name (``cmb train
#: --scanner-augment NAME``; the benchmark's ``--loso-variant`` twins): each training patch's phase
#: (:func:`randomise_phase`) and/or local contrast (:func:`randomise_magnitude`) re-rendered as
#: another scanner would. "both" every patch's phase and contrast, "phase" and "magnitude" one of
#: them, "phase_magnitude_half" every patch's phase and half the patches' contrast, "both_axial"
#: as "both" with the contrast's partial-volume blur along S-I only (axial SWI).
SCANNER_RECIPES: dict[str, dict[str, bool | float]] = {
    "both": {"phase_randomise": True, "magnitude_randomise": True},
    "phase": {"phase_randomise": True},
    "magnitude": {"magnitude_randomise": True},
    "phase_magnitude_half": {"phase_randomise": True, "magnitude_randomise": True, "magnitude_p": 0.5},
    "both_axial": {"phase_randomise": True, "magnitude_randomise": True, "magnitude_blur_slice_only": True},
}

#: Patches per batch when measuring the validation loss.
VAL_BATCH = 128


@dataclass
class PatchSet:
    """Training patches with their targets.

    Attributes
    ----------
    patches : numpy.ndarray
        (N, C, D, D, D) float32 inputs.
    labels : numpy.ndarray
        (N,) 1 for the positive class, 0 otherwise.
    seg : numpy.ndarray
        (N, D, D, D) soft segmentation targets (ignored where ``has_seg`` is False).
    has_seg : numpy.ndarray
        (N,) bool: a mask is known for this patch (positives with a drawn/true mask).
    weight : numpy.ndarray
        (N,) per-patch loss weight (hard negatives from reviews weigh more).
    groups : numpy.ndarray
        (N,) case/patient index, so that splits never share a scan.
    """

    patches: np.ndarray
    labels: np.ndarray
    seg: np.ndarray
    has_seg: np.ndarray
    weight: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(sets: list[PatchSet]) -> PatchSet:
        """One set from many (e.g. one per case)."""
        sets = [s for s in sets if len(s)]
        if not sets:
            raise ValueError("no patches to train on")
        return PatchSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in PatchSet.__dataclass_fields__))

    def subset(self, index: np.ndarray) -> PatchSet:
        """The patches at ``index``."""
        return PatchSet(*(getattr(self, f)[index] for f in PatchSet.__dataclass_fields__))


@dataclass
class FitConfig:
    """Settings of a microbleed training run: the one place their defaults are stated.

    The CLI (``cmb train``) and the retraining widget read their defaults from here.
    ``epochs``, ``lr``, ``weight_decay`` and ``seed`` go to the loop
    (:meth:`loop_config`); the rest shape the batches and the loss. ``phase_*``: how
    :func:`randomise_phase` re-renders the phase as another scanner would (off unless
    ``phase_randomise``; the ranges and why: that function). ``magnitude_*``: how
    :func:`randomise_magnitude` re-renders the local contrast (off unless ``magnitude_randomise``;
    each patch with probability ``magnitude_p``).
    """

    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    phase_dropout: float = 0.3
    seg_weight: float = 1.0
    augment: bool = True
    max_steps_per_epoch: int = 150
    phase_randomise: bool = False
    phase_scale: tuple[float, float] = (0.2, 1.5)
    phase_highpass_p: float = 0.5
    phase_highpass_mm: tuple[float, float] = (2.0, 6.0)
    phase_blur_p: float = 0.3
    phase_blur_mm: tuple[float, float] = (0.4, 1.0)
    magnitude_randomise: bool = False
    magnitude_p: float = 1.0
    magnitude_depth: tuple[float, float] = (0.6, 1.5)
    magnitude_gamma: tuple[float, float] = (0.7, 1.4)
    magnitude_blur_p: float = 0.3
    magnitude_blur_mm: tuple[float, float] = (0.3, 0.9)
    magnitude_blur_slice_only: bool = False
    magnitude_noise_p: float = 0.5
    magnitude_noise_sd: float = 0.08

    def loop_config(self) -> LoopConfig:
        """The optimiser and schedule settings for ``core.train.loop.fit`` (AdamW, one-cycle)."""
        return LoopConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, seed=self.seed)


def augment_batch(
    x: torch.Tensor, y_seg: torch.Tensor, generator: torch.Generator, phase_dropout: float,
    phase: FitConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips and in-plane quarter turns (B0 stays along patch axis z), contrast jitter, phase dropout.

    Patch axes are (R, A, S); rotating in the R-A plane and flipping any axis keep the
    phase dipole's symmetry about B0, so the augmented patch is still physically right.
    With ``phase`` (a config whose ``phase_randomise`` or ``magnitude_randomise`` is set), the
    phase and then the local contrast are first re-rendered as another scanner would
    (:func:`randomise_phase`, :func:`randomise_magnitude`); with both off the random stream
    is the one it was before either existed, so older trainings reproduce.
    On the CPU (where ``generator`` lives): the loop moves the batch to the device after.
    """
    if phase is not None and phase.phase_randomise:
        x = randomise_phase(x, generator, phase)
    if phase is not None and phase.magnitude_randomise:
        x = randomise_magnitude(x, generator, phase)
    for dim in (2, 3, 4):
        if torch.rand((), generator=generator) < 0.5:
            x, y_seg = x.flip(dim), y_seg.flip(dim - 1)
    turns = int(torch.randint(0, 4, (), generator=generator))
    if turns:
        x, y_seg = torch.rot90(x, turns, dims=(2, 3)), torch.rot90(y_seg, turns, dims=(1, 2))
    scale = 1.0 + 0.15 * (torch.rand((x.shape[0], 1, 1, 1), generator=generator) - 0.5)
    x = x.clone()
    x[:, 0] = (x[:, 0] - 1.0) * scale + 1.0
    drop = torch.rand(x.shape[0], generator=generator) < phase_dropout
    x[drop, 1:] = 0.0
    return x, y_seg


def _log_uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator))


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    return float(bounds[0] + (bounds[1] - bounds[0]) * torch.rand((), generator=generator))


def _gaussian_along(z: torch.Tensor, sigma_mm: float, dims: tuple[int, ...]) -> torch.Tensor:
    """``z`` (N, 2, D, D, D: real and imaginary parts) smoothed along ``dims``, edges replicated.

    torch's sampled Gaussian window (to 3 sigma, normalised: MONAI's ``gaussian_1d``, without
    importing MONAI), applied as a (D, D) matrix with the edge taps folded onto the edge
    voxels (= replicate padding): on 20-voxel axes two matrix products cost ~10 ms of CPU for
    a batch, about a third of the time MONAI's ``separable_filtering`` (padded convolutions)
    took on the same machine.
    """
    sigma = sigma_mm / PATCH_MM
    radius, size = int(max(3.0 * sigma, 0.5) + 0.5), z.shape[2]
    kernel = torch.signal.windows.gaussian(2 * radius + 1, std=sigma)
    kernel = kernel / kernel.sum()
    rows = torch.arange(size).repeat_interleave(len(kernel))
    cols = (torch.arange(size)[:, None] + torch.arange(-radius, radius + 1)[None, :]).clamp(0, size - 1).reshape(-1)
    matrix = torch.zeros(size, size).index_put_((rows, cols), kernel.repeat(size).float(), accumulate=True)
    for dim in dims:
        z = torch.movedim(torch.tensordot(z, matrix, dims=([dim], [1])), -1, dim)
    return z


def _unwrapped(phase: np.ndarray, head: np.ndarray) -> np.ndarray:
    """One patch's stored (wrapped) phase unwrapped inside the head (float64), as it was before the scanner wrapped it.

    skimage's 3D quality-guided unwrapping, masked to the head (voxels outside neither move nor
    guide their neighbours). Its result is defined up to one multiple of 2 pi; the multiple is
    chosen so that the median head voxel keeps its stored value: most of a patch is tissue at
    under pi of background phase, only the CMB's dipole core wraps. A phase whose neighbouring
    voxels differ by more than pi cannot be unwrapped by anyone; there it stays a guess.
    """
    if int(head.sum()) < 2:
        return phase.astype(np.float64)
    stored = phase.astype(np.float64)
    out = np.ma.getdata(unwrap_phase(np.ma.masked_array(stored, mask=~head), rng=0))
    turns = np.round(np.median((out - stored)[head]) / (2 * np.pi))
    return np.where(head, out - 2 * np.pi * turns, stored)


def randomise_phase(x: torch.Tensor, generator: torch.Generator, config: FitConfig) -> torch.Tensor:
    """The phase channel as another scanner could have rendered it; the other channels untouched.

    What differs between real scanners, and what each step imitates (in acquisition order):

    * **B0 x TE**: the phase of a field perturbation is ``gamma B0 TE dB``, so a CMB's dipole
      scales with field and echo time. Clinical SWI and T2*-GRE run 1.5 T and 3 T at TE
      5-40 ms (multi-echo first echoes to single-echo 1.5 T SWI), B0 x TE ~8-120 T ms, while
      the physics simulator draws 45-90 T ms. Every patch's phase is unwrapped inside the head
      (:func:`_unwrapped`: the stored phase is already wrapped at strong CMB cores, and
      ``s wrap(phi) != wrap(s phi)`` there), multiplied by a log-uniform ``phase_scale``
      (default 0.2-1.5: together ~9-135 T ms) and wrapped again to (-pi, pi] as the scanner
      stores it. The scale is positive: the sign convention, which tells a paramagnetic CMB
      from a diamagnetic calcification, is kept.
    * **Voxel size**: a thicker slice averages the complex signal across it (intravoxel
      dephasing); with probability ``phase_blur_p`` the complex signal is blurred along z (B0,
      the slice direction of axial SWI) by a Gaussian of ``phase_blur_mm`` (default 0.4-1.0 mm
      sigma, i.e. 1-2.4 mm FWHM more slice), and the phase is the blurred signal's angle. Only
      the phase is re-rendered: the magnitude channel keeps its own partial volume (the darker,
      wider core a thicker slice would also give is not imitated).
    * **Homodyne filter**: vendors' SWI phase is the complex division by a low-passed copy
      of the signal, with central k-space windows from 32 to 64 of 256-512 lines (low-pass
      widths of about 2-6 mm sigma). With probability ``phase_highpass_p`` the phase is
      high-passed again, ``angle(z conj(lowpass(z)))`` with an in-plane Gaussian of
      ``phase_highpass_mm`` sigma: a stronger filter than the training scans had (a weaker
      one cannot be undone from the filtered phase). At the largest widths the Gaussian
      (3 sigma = up to 22 voxels) is wider than the 20-voxel patch: its tails fold onto the
      patch's edge voxels (replicate padding), so the low-pass tends to the magnitude-weighted
      in-plane mean of the patch with its edges weighted more, and the filter then removes the
      patch's mean background phase rather than what a 6 mm filter over the whole slice would.

    In both filters the complex signal is ``|z| exp(i phase)`` with ``|z|`` the local-contrast
    channel ``x[:, 0]``, which is zero outside the head: voxels outside the head add nothing,
    and a dark CMB core weighs as little as the scanner's signal there does. Where the blurred
    signal is exactly zero (no signal within the kernel) the phase before the blur is kept.

    Patches without phase (flag 0, or phase dropped) stay all zero, and voxels outside the
    head (contrast and phase both zero) stay zero. One blur and one high-pass width per batch
    (one convolution for the batch); the scale is per patch. Cost: ~0.2 s of CPU for 32
    patches of 20^3 (median of 7; ~0.07 s of it the unwrapping, one patch at a time; 0.05 s
    without it; measured on a loaded 2-core machine), under a tenth of one training step's ~2.7 s.
    """
    has = x[:, 2].flatten(1).amax(1) > 0
    n = x.shape[0]
    scale = _log_uniform(n, config.phase_scale, generator)
    blur = torch.rand(n, generator=generator) < config.phase_blur_p
    highpass = torch.rand(n, generator=generator) < config.phase_highpass_p
    blur_mm = _uniform(config.phase_blur_mm, generator)
    highpass_mm = _uniform(config.phase_highpass_mm, generator)
    if not bool(has.any()):
        return x
    phase = x[:, 1:2]
    magnitude = x[:, 0:1].clamp_min(0.0)
    head = (phase != 0) | (magnitude != 0)
    angle = phase.clone()
    for i in torch.nonzero(has).flatten().tolist():
        unwrapped = _unwrapped(phase[i, 0].numpy(), head[i, 0].numpy())
        angle[i, 0] = torch.from_numpy(unwrapped * float(scale[i])).to(angle.dtype)
    unit = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
    new = torch.atan2(unit[:, 1:2], unit[:, 0:1])
    if bool(blur.any()):
        blurred = _gaussian_along(unit * magnitude, blur_mm, (4,))
        some = (blurred != 0).any(dim=1, keepdim=True)
        blurred_phase = torch.where(some, torch.atan2(blurred[:, 1:2], blurred[:, 0:1]), new)
        new = torch.where(blur.view(-1, 1, 1, 1, 1), blurred_phase, new)
    if bool(highpass.any()):
        z = torch.cat([torch.cos(new), torch.sin(new)], dim=1)
        low = _gaussian_along(z * magnitude, highpass_mm, (2, 3))
        # angle(z * conj(low)) = atan2(im z re low - re z im low, re z re low + im z im low)
        filtered = torch.atan2(z[:, 1:2] * low[:, 0:1] - z[:, 0:1] * low[:, 1:2],
                               z[:, 0:1] * low[:, 0:1] + z[:, 1:2] * low[:, 1:2])
        new = torch.where(highpass.view(-1, 1, 1, 1, 1), filtered, new)
    x = x.clone()
    x[:, 1:2] = torch.where(has.view(-1, 1, 1, 1, 1) & head, new, phase)
    return x


def randomise_magnitude(x: torch.Tensor, generator: torch.Generator, config: FitConfig) -> torch.Tensor:
    """The local-contrast channel as another scanner or sequence could have rendered it; the others untouched.

    Why: a detector trained on one simulator learns that simulator's darkness and sharpness
    of a small microbleed; on another source a 2-3 mm CMB is often fainter and wider. What
    each step imitates (in acquisition order, per patch unless said):

    * **Depth** (T2* weighting): a CMB's and a vein's signal loss grow with echo time and
      field (the blooming of Haacke et al. 2009, Nandigam et al. 2009: TE 20 -> 40 ms
      enlarges and darkens CMBs); the contrast is scaled about the tissue level 1,
      ``1 + depth (c - 1)``, with ``depth`` log-uniform in ``magnitude_depth`` (default
      0.6-1.5).
    * **Gamma** (phase-mask power and windowing): SWI multiplies the magnitude by the phase
      mask to the power 4 (Haacke's choice; vendors use 3-5) and scanners window the result,
      a non-linear map of the dark range: ``c ** gamma`` with ``gamma`` log-uniform in
      ``magnitude_gamma`` (default 0.7-1.4; 1 stays 1).
    * **Partial volume**: with probability ``magnitude_blur_p`` the batch is blurred along
      one patch axis drawn at random (the slice axis of axial, coronal or sagittal
      acquisitions), or with ``magnitude_blur_slice_only`` along S-I only (axial SWI, the one
      acquisition ``scanner_draws`` simulates, whose thick axis stays within 15 degrees of
      S-I; the phase blur of :func:`randomise_phase` is along S-I too: an in-plane blur
      draws a round CMB as a short tube, as a vein's cross-section looks), by a Gaussian of
      ``magnitude_blur_mm`` sigma (default 0.3-0.9 mm, i.e. 0.7-2.1 mm FWHM more slice): a
      2 mm CMB on a 3 mm slice keeps about half its depth.
    * **Noise**: with probability ``magnitude_noise_p`` per patch, Gaussian noise of a
      standard deviation uniform in [0, ``magnitude_noise_sd``] (default 0.08 of the tissue
      level: SNR down to ~12, a fast 1.5 T SWI).

    The segmentation target is left as it is (the microbleed's true extent), the channel is
    clipped to [0, 2] as :mod:`channels` clips it, and voxels outside the head (contrast 0)
    stay 0. With ``magnitude_p`` < 1 only that share of the patches (drawn per patch) is
    re-rendered, the rest keep their own contrast. Why it was tried: on a detector trained on
    one simulator and tested on the other, every patch re-rendered lifted the other simulator's
    faint 2-3 mm CMBs but cost its large CMBs and masks; half the patches did not undo that cost
    (``benchmarks/README.md``, *leave one simulator out*). At 1 the random stream is the one it
    was before ``magnitude_p`` existed.
    """
    n = x.shape[0]
    depth = _log_uniform(n, config.magnitude_depth, generator).view(-1, 1, 1, 1)
    gamma = _log_uniform(n, config.magnitude_gamma, generator).view(-1, 1, 1, 1)
    blur = bool(torch.rand((), generator=generator) < config.magnitude_blur_p)
    blur_mm = _uniform(config.magnitude_blur_mm, generator)
    blur_axis = int(torch.randint(1, 4, (), generator=generator))  # drawn either way: one random stream
    if config.magnitude_blur_slice_only:
        blur_axis = 3  # patch axes (R, A, S)
    noisy = torch.rand(n, generator=generator) < config.magnitude_noise_p
    noise_sd = (torch.rand(n, generator=generator) * config.magnitude_noise_sd * noisy).view(-1, 1, 1, 1)
    noise = torch.randn(x[:, 0].shape, generator=generator)
    contrast = x[:, 0]
    head = contrast > 0
    c = (1.0 + depth * (contrast.clamp(0.0, 2.0).pow(gamma) - 1.0)) * head  # no signal outside the head
    if blur:
        c = _gaussian_along(c.unsqueeze(1), blur_mm, (blur_axis + 1,)).squeeze(1)
    c = (c + noise_sd * noise).clamp(0.0, 2.0) * head
    if config.magnitude_p < 1.0:
        chosen = (torch.rand(n, generator=generator) < config.magnitude_p).view(-1, 1, 1, 1)
        c = torch.where(chosen, c, contrast)
    x = x.clone()
    x[:, 0] = c
    return x


def patch_loss(
    net: nn.Module, x: torch.Tensor, labels: torch.Tensor, seg: torch.Tensor, has_seg: torch.Tensor,
    weight: torch.Tensor, seg_weight: float,
) -> torch.Tensor:
    """Weighted BCE on the class logit + (BCE + Dice) on the masks that are known."""
    logit, seg_logit = net(x)
    loss = (F.binary_cross_entropy_with_logits(logit, labels, reduction="none") * weight).sum() / weight.sum()
    if bool(has_seg.any()):
        s_logit, s_target = seg_logit[has_seg], seg[has_seg]
        loss = loss + seg_weight * (
            F.binary_cross_entropy_with_logits(s_logit, s_target) + soft_dice_loss(s_logit, s_target)
        )
    return loss


def _tensors(data: PatchSet, index: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Inputs and targets of the patches at ``index``, as CPU tensors."""
    return (
        torch.from_numpy(data.patches[index]),
        torch.from_numpy(data.labels[index].astype(np.float32)),
        torch.from_numpy(data.seg[index]),
        torch.from_numpy(data.has_seg[index]),
        torch.from_numpy(data.weight[index].astype(np.float32)),
    )


class PatchTrainable:
    """Microbleed patches as a ``core.train.loop.Trainable``.

    Every batch is half positives and half negatives, drawn with replacement from a numpy
    generator seeded with ``config.seed``; an epoch is enough batches to see the larger
    class about twice, capped at ``config.max_steps_per_epoch``. With ``val``, the loop
    keeps the weights of the epoch with the lowest validation loss.
    """

    def __init__(self, train: PatchSet, config: FitConfig, val: PatchSet | None = None) -> None:
        self.train, self.config, self.val = train, config, val
        self.rng = np.random.default_rng(config.seed)
        self.positives = np.flatnonzero(train.labels > 0.5)
        self.negatives = np.flatnonzero(train.labels <= 0.5)
        per_epoch = max(1, int(np.ceil(2 * max(len(self.negatives), len(self.positives)) / config.batch_size)))
        self.steps_per_epoch = min(per_epoch, config.max_steps_per_epoch)

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """``steps_per_epoch`` oversampled, augmented batches (on the CPU)."""
        half = self.config.batch_size // 2
        for _ in range(self.steps_per_epoch):
            chosen = np.concatenate([
                self.rng.choice(self.positives, half) if len(self.positives) else np.zeros(0, int),
                self.rng.choice(self.negatives, self.config.batch_size - half) if len(self.negatives) else np.zeros(0, int),
            ])
            x, labels, seg, has_seg, weight = _tensors(self.train, chosen)
            if self.config.augment:
                x, seg = augment_batch(x, seg, generator, self.config.phase_dropout, self.config)
            yield x, labels, seg, has_seg, weight

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """:func:`patch_loss` of a batch."""
        return patch_loss(model, *batch, self.config.seg_weight)

    def val_loss(self, model: nn.Module) -> float | None:
        """Mean loss on the validation patches without augmentation (None without any)."""
        if self.val is None or not len(self.val):
            return None
        device = next(model.parameters()).device
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.val), VAL_BATCH):
                index = np.arange(start, min(start + VAL_BATCH, len(self.val)))
                batch = tuple(t.to(device) for t in _tensors(self.val, index))
                total += float(patch_loss(model, *batch, self.config.seg_weight)) * len(index)
                count += len(index)
        return total / max(count, 1)
