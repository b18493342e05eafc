"""Explaining models: 3D Grad-CAM, localisation sanity checks, embedding maps (t-SNE).

No Qt, no napari: widgets and the CLI turn these arrays into layers, plots and files.
"""

from .embeddings import tsne_coordinates, tsne_perplexity
from .gradcam import METHODS, CamResult, find_layer, grad_cam, grad_cams, layer_hooks, normalise
from .localisation import (
    RandomisationCheck,
    RandomisationStep,
    energy_in_mask,
    pointing_game,
    randomisable_layers,
    randomisation_check,
    spearman,
)

__all__ = [
    "METHODS", "CamResult", "RandomisationCheck", "RandomisationStep", "energy_in_mask", "find_layer",
    "grad_cam", "grad_cams", "layer_hooks", "normalise", "pointing_game", "randomisable_layers", "randomisation_check",
    "spearman", "tsne_coordinates", "tsne_perplexity",
]
