"""Does a saliency map point at the lesion, and does it depend on what the model learned?

Three checks, each a number a reviewer can read beside the overlay:

* :func:`energy_in_mask`: share of the map's total mass inside a mask (the "energy-based
  pointing game" of Wang et al. 2020, "Score-CAM", CVPR workshops). 1.0 = all inside;
  a uniform map scores the mask's volume share, which is the chance level to beat.
* :func:`pointing_game`: is the map's maximum inside the mask, optionally within a
  tolerance in voxels (Zhang et al. 2018, "Top-down neural attention by excitation
  backprop", IJCV; they allow 15 pixels).
* :func:`randomisation_check`: re-initialise the model's weights (cascading from the
  output layer down, or all at once) and measure how much the map changes (Spearman
  rank correlation with the original map) and whether its energy leaves the mask
  (Adebayo et al. 2018, "Sanity checks for saliency maps", NeurIPS). A map that survives
  weight randomisation shows the input (edges, bright spots), not the model's reasoning.

A mask on another grid than the map is a user mistake (a lesion mask from another scan)
and raises :class:`~napari_neuroreview.core.errors.GeometryError`; a negative map is a bug.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy import ndimage, stats
from torch import nn

from ..errors import GeometryError
from .gradcam import grad_cam

__all__ = [
    "RandomisationCheck", "RandomisationStep", "energy_in_mask", "pointing_game",
    "randomisable_layers", "randomisation_check", "spearman",
]


def _check(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if cam.shape != mask.shape:
        raise GeometryError(f"The mask's shape {mask.shape} differs from the saliency map's {cam.shape}; "
                            "they must be on the same voxel grid.")
    if np.any(cam < 0):
        raise ValueError("the saliency map has negative values; pass a ReLU'd (Grad-CAM) or absolute map")
    return cam, mask


def energy_in_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """Sum of the map inside ``mask`` over its total sum (NaN when the map is all zero).

    Why NaN for an empty map: it has no energy anywhere, so "how much is inside" has no
    answer; 0 would read as "all of it is outside" and make a dead map look like a miss.
    """
    cam, mask = _check(cam, mask)
    total = float(cam.sum())
    if total <= 0.0:
        return float("nan")
    return float(cam[mask].sum() / total)


def pointing_game(cam: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True if the map's maximum voxel lies in ``mask`` or within ``tolerance`` voxels of it.

    Distance is Euclidean in voxel units (``scipy.ndimage.distance_transform_edt``). A
    constant map (no maximum to point with) is a miss, so a uniform map never scores.
    Ties go to the first maximum in C order (``numpy.argmax``).
    """
    cam, mask = _check(cam, mask)
    if not mask.any() or float(cam.max()) <= float(cam.min()):
        return False
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    if mask[peak]:
        return True
    if tolerance <= 0:
        return False
    distance = ndimage.distance_transform_edt(~mask)
    return bool(distance[peak] <= tolerance)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' voxels; NaN when either map is constant.

    Why ranks: Adebayo et al. compare maps by rank correlation because saliency methods
    differ in scale; a randomised model's map may be all zero, which has no ranks (NaN).
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise GeometryError(f"The two maps have {a.size} and {b.size} voxels; they must share a grid.")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b).statistic)


@dataclass(frozen=True)
class RandomisationStep:
    """The map after randomising ``layers`` (cumulative in the cascade)."""

    layers: tuple[str, ...]
    spearman: float
    energy_in_mask: float
    pointing_game: bool


@dataclass(frozen=True)
class RandomisationCheck:
    """Before/after figures of the weight-randomisation sanity check.

    Parameters
    ----------
    mode : str
        ``'cascade'`` (one step per layer, from the output down) or ``'full'`` (one step).
    energy_before : float
        Energy in the mask of the trained model's map.
    pointing_before : bool
        Pointing game of the trained model's map.
    steps : tuple of RandomisationStep
        After each randomisation; the last one has every layer randomised.
    """

    mode: str
    energy_before: float
    pointing_before: bool
    steps: tuple[RandomisationStep, ...]

    @property
    def spearman(self) -> float:
        """Rank correlation between the trained and the fully randomised model's maps."""
        return self.steps[-1].spearman

    @property
    def energy_after(self) -> float:
        """Energy in the mask once every layer is randomised."""
        return self.steps[-1].energy_in_mask


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, in registration (usually forward) order."""
    return [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def _reinitialise(module: nn.Module) -> None:
    """PyTorch's own initialiser when the module has one, else N(0, std of the weights).

    Adebayo et al. re-draw weights from the initialisation distribution; for a module
    without ``reset_parameters`` we keep each tensor's scale so activations stay finite.
    """
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            std = float(p.detach().float().std()) if p.numel() > 1 else 1.0
            p.normal_(0.0, std if std > 0 else 1.0)


def randomisation_check(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    mask: np.ndarray,
    target: int = 0,
    mode: str = "cascade",
    method: str = "gradcam",
    seed: int = 0,
    tolerance: float = 0.0,
    score: Callable[[Any, int], torch.Tensor] | None = None,
) -> RandomisationCheck:
    """Model-parameter randomisation test (Adebayo et al. 2018) for one input and one mask.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model; it is deep-copied, never modified.
    x : torch.Tensor
        (1, C, *spatial) one input.
    layer, target, method, score
        As in :func:`~napari_neuroreview.core.explain.gradcam.grad_cam`.
    mask : numpy.ndarray
        Boolean mask on the input's spatial grid (e.g. the lesion).
    mode : str
        ``'cascade'``: randomise layers one after another from the output towards the
        input, a map after each; ``'full'``: randomise all at once.
    seed : int
        Seeds the re-initialisation (``torch.random.fork_rng``: the global RNG is untouched).
    tolerance : float
        Pointing-game tolerance in voxels.

    Returns
    -------
    RandomisationCheck
    """
    if mode not in ("cascade", "full"):
        raise ValueError(f"mode must be 'cascade' or 'full', not {mode!r}")
    if x.shape[0] != 1:
        raise ValueError(f"randomisation_check explains one input, got a batch of {x.shape[0]}")

    def _map(m: nn.Module) -> np.ndarray:
        return grad_cam(m, x, layer, target=target, method=method, score=score).raw[0]

    before = _map(model)
    energy_before = energy_in_mask(before, mask)
    pointing_before = pointing_game(before, mask, tolerance)
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    order = list(reversed(randomisable_layers(clone)))
    groups = [order[: k + 1] for k in range(len(order))] if mode == "cascade" else [order]
    steps: list[RandomisationStep] = []
    done: set[str] = set()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for names in groups:
            for name in names:
                if name not in done:
                    _reinitialise(modules[name])
                    done.add(name)
            after = _map(clone)
            steps.append(RandomisationStep(tuple(names), spearman(before, after), energy_in_mask(after, mask),
                                           pointing_game(after, mask, tolerance)))
    return RandomisationCheck(mode, energy_before, pointing_before, tuple(steps))
