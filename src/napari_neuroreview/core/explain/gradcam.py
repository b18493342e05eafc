"""3D Grad-CAM and Grad-CAM++ for any ``torch.nn.Module`` and a layer named by its dotted path.

Why our own and not ``monai.visualize.GradCAM``: MONAI's default post-processing
normalises with ``1 - (x - min) / (max - min)``, i.e. it *inverts* the map (the most
important voxel gets 0), and it returns only the normalised map. A radiologist overlays
the map on the scan and a reviewer compares maps across cases, so we keep both:

* ``raw``: ReLU of the channel-weighted sum of the layer's activations, upsampled to the
  input grid (absolute scale, comparable across cases and models of one kind);
* ``normalised``: the same map min-max scaled to [0, 1] per map (a constant map gives
  zeros, not NaN), for display.

Both are upsampled with (tri)linear interpolation to the INPUT's spatial shape, so a map
saved with the input volume's affine overlays the input exactly.

Methods
-------
* Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual explanations from deep networks
  via gradient-based localization", ICCV): channel weight = spatial mean of dS/dA.
* Grad-CAM++ (Chattopadhyay et al. 2018, "Grad-CAM++: Generalized gradient-based visual
  explanations for deep convolutional networks", WACV), eq. 19 with the exponential
  output Y = exp(S), whose higher derivatives are powers of the first; we drop the
  positive scalar exp(S) from the weights (as pytorch-grad-cam does) because it only
  rescales the raw map and overflows float32 for logits above ~88.

Hooks: a forward hook on the layer captures its output and puts a *tensor* hook on it
for the gradient (a module ``register_full_backward_hook`` breaks when the next module is
an in-place ReLU); both are removed when :func:`layer_hooks` exits, also on errors.
Gradients are taken with ``torch.autograd.grad`` so the model's ``.grad`` fields are never
touched (it is safe to call between training steps). The model's train/eval mode is left
as the caller set it (call ``model.eval()`` for dropout/batch-norm models).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CamResult", "CapturedLayer", "METHODS", "find_layer", "grad_cam", "grad_cams", "layer_hooks", "normalise"]

METHODS = ("gradcam", "gradcam++")
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass(frozen=True)
class CamResult:
    """One class-activation map per input in the batch, on the input's spatial grid.

    Parameters
    ----------
    raw : numpy.ndarray
        (N, *spatial) float32, >= 0: ReLU of the weighted activation sum, upsampled.
    normalised : numpy.ndarray
        (N, *spatial) float32 in [0, 1]: ``raw`` min-max scaled per map (constant map -> 0).
    feature_map : numpy.ndarray
        (N, *layer_spatial) the raw map on the layer's own grid, before upsampling.
    scores : numpy.ndarray
        (N,) the explained output S (pre-softmax logit) for each input.
    target : int
        The class / output index that was explained.
    layer : str
        Dotted module name of the layer.
    method : str
        ``'gradcam'`` or ``'gradcam++'``.
    """

    raw: np.ndarray
    normalised: np.ndarray
    feature_map: np.ndarray
    scores: np.ndarray
    target: int
    layer: str
    method: str


@dataclass
class CapturedLayer:
    """What the hooks saw: the layer's output (a detached copy) and its gradient."""

    activations: torch.Tensor | None = None
    gradients: torch.Tensor | None = None
    _tensor_hooks: list[Any] = field(default_factory=list)
    #: The live output (in the graph) and its version when the layer returned it.
    output: torch.Tensor | None = None
    output_version: int = -1


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (``model.named_modules()`` spelling, e.g. ``'features.3'``).

    An unknown name is a caller's bug, so it raises ``KeyError`` listing a few valid names.
    """
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        names = [n for n in modules if n][:12]
        raise KeyError(f"{type(model).__name__} has no layer {name!r}; some of its layers: {names}")
    return modules[name]


@contextmanager
def layer_hooks(model: nn.Module, name: str) -> Iterator[CapturedLayer]:
    """Capture the activations and gradient of layer ``name`` while the block runs.

    Why a context manager: hooks left on a model leak memory (each forward keeps a
    tensor) and change later runs; ``finally`` removes every hook even if the forward or
    backward pass raises.
    """
    layer = find_layer(model, name)
    captured = CapturedLayer()

    def _store_grad(grad: torch.Tensor) -> None:
        captured.gradients = grad.detach()

    def _forward(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick a tensor layer")
        # A copy, because an in-place module after this one (ReLU(inplace=True)) would
        # overwrite the activations we weight.
        captured.activations = output.detach().clone()
        if output.requires_grad:
            captured._tensor_hooks.append(output.register_hook(_store_grad))
            captured.output, captured.output_version = output, output._version

    handle = layer.register_forward_hook(_forward)
    try:
        yield captured
    finally:
        handle.remove()
        for h in captured._tensor_hooks:
            h.remove()
        captured._tensor_hooks.clear()


def normalise(cam: np.ndarray) -> np.ndarray:
    """Min-max scale one map to [0, 1]; a constant (e.g. all-zero) map gives zeros, not NaN.

    Why not MONAI's default: it returns ``1 - scaled`` (an inverted map).
    """
    cam = np.asarray(cam, dtype=np.float32)
    lo, hi = float(cam.min()), float(cam.max())
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("the class-activation map has non-finite values")
    if hi - lo <= 0.0:
        return np.zeros_like(cam)
    return ((cam - lo) / (hi - lo)).astype(np.float32)


def _default_score(output: Any, target: int) -> torch.Tensor:
    """S for each input: ``output[:, target]`` of an (N, K) logit tensor, or ``output`` if (N,)."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model returns {type(output).__name__}; pass score=... to pick the logits")
    if output.ndim == 1:
        return output
    return output.reshape(output.shape[0], -1)[:, target]


def _weights(method: str, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Channel weights (N, C, 1, ..., 1) of Grad-CAM or Grad-CAM++ (module docstring)."""
    n, c = grads.shape[:2]
    ones = [1] * (grads.ndim - 2)
    if method == "gradcam":
        return grads.reshape(n, c, -1).mean(-1).reshape(n, c, *ones)
    g2, g3 = grads.pow(2), grads.pow(3)
    denom = 2.0 * g2 + (acts * g3).reshape(n, c, -1).sum(-1).reshape(n, c, *ones)
    denom = torch.where(denom != 0.0, denom, torch.ones_like(denom))
    alpha = g2 / (denom + 1e-7)
    return (alpha * F.relu(grads)).reshape(n, c, -1).sum(-1).reshape(n, c, *ones)


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    target: int = 0,
    method: str = "gradcam",
    score: Callable[[Any, int], torch.Tensor] | None = None,
) -> CamResult:
    """Grad-CAM (or Grad-CAM++) of output ``target`` at ``layer``, on the grid of ``x``.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; its mode (train/eval) and its parameters' ``.grad`` are left untouched.
    x : torch.Tensor
        (N, C, *spatial) input with 1-3 spatial dimensions (3 for volumes).
    layer : str
        Dotted name of the layer to explain (``dict(model.named_modules())`` key).
    target : int
        Class / output index explained (the logit, before any softmax, as in the papers).
    method : str
        ``'gradcam'`` or ``'gradcam++'``.
    score : callable, optional
        ``score(output, target) -> (N,)`` for models whose output is not an (N, K) tensor.

    Returns
    -------
    CamResult
    """
    return grad_cams(model, x, layer, (target,), method, score)[0]


def grad_cams(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    targets: Sequence[int],
    method: str = "gradcam",
    score: Callable[[Any, int], torch.Tensor] | None = None,
) -> list[CamResult]:
    """One map per output of ``targets`` from ONE forward pass and one backward pass per target.

    Why: a model with several outputs explained at once (the metastasis network's three
    hierarchy nodes) would otherwise run its forward pass, the costly part at the input's
    full resolution, once per output; each backward pass here stops at ``layer`` and keeps
    the graph for the next (``retain_graph``). Each map equals :func:`grad_cam`'s for that
    target. Parameters as in :func:`grad_cam`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if x.ndim - 2 not in _MODES:
        raise ValueError(f"input must be (N, C, *spatial) with 1-3 spatial dims, got shape {tuple(x.shape)}")
    targets = [int(t) for t in targets]
    if not targets:
        raise ValueError("grad_cams needs at least one target")
    pick = score or _default_score
    inp = x.detach().requires_grad_(True)  # so a graph exists even for a frozen model
    found: list[tuple[torch.Tensor, torch.Tensor]] = []
    with layer_hooks(model, layer) as captured, torch.enable_grad():
        output = model(inp)
        out = captured.output
        # Differentiate down to the layer only (its hook records the gradient): the layers
        # below it need no backward pass, which takes most of the time for a layer near
        # the head. Not when a later in-place op rewrote the output (its graph node moved),
        # nor for a layer called more than once (each call's gradient hook must fire, as before).
        once = len(captured._tensor_hooks) == 1
        to = out if once and out is not None and out._version == captured.output_version else inp
        for k, target in enumerate(targets):
            s = pick(output, target)
            captured.gradients = None
            torch.autograd.grad(s.sum(), to, allow_unused=True, retain_graph=k < len(targets) - 1)
            if captured.activations is None or captured.gradients is None:
                raise RuntimeError(f"layer {layer!r} was not used in the forward pass, or the score does not "
                                   "depend on it")
            found.append((s.detach(), captured.gradients))
        captured.output = None
    acts = captured.activations
    results = []
    for target, (s, grads) in zip(targets, found):
        cam = F.relu((_weights(method, acts, grads) * acts).sum(1, keepdim=True))
        up = F.interpolate(cam, size=tuple(x.shape[2:]), mode=_MODES[x.ndim - 2], align_corners=False)
        raw = up[:, 0].cpu().numpy().astype(np.float32)
        results.append(CamResult(
            raw=raw,
            normalised=np.stack([normalise(m) for m in raw]),
            feature_map=cam[:, 0].cpu().numpy().astype(np.float32),
            scores=s.cpu().numpy().astype(np.float32).reshape(-1),
            target=target,
            layer=layer,
            method=method,
        ))
    return results
