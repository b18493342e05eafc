"""The five resting-state networks the plugin reports on, built from ROI tables nilearn ships.

The rs-fMRI workflow (issue 4) follows one published study: for the motor, vision,
language, frontal and temporal networks, an ICA component is matched to a template and
fed to a model. No atlas can be downloaded here, so the templates are made from the ROI
coordinate tables that nilearn installs offline under ``nilearn/datasets/data/``:

* Seitzman et al. 2018 (NeuroImage 206:116290), 300 ROIs with network labels
  (``seitzman_2018_ROIs_300inVol_MNI_allInfo.txt``, column ``netName``) and an
  anatomical class per ROI (``seitzman_2018_ROIs_anatomicalLabels.txt``: 0 cortex
  midline, 1 left cortex, 2 right cortex, 3 hippocampus, 4 amygdala, 5 basal ganglia,
  6 thalamus, 7 cerebellum). The cortical ROIs are the Power 2011 set.
* Dosenbach 2010 and Power 2011 are shipped too; the Seitzman table is used because it
  has the finest network labels (separate dorsal/lateral somatomotor, auditory, ventral
  attention, medial temporal lobe), which is what the five networks are cut from.

The documented choice of the five networks (:data:`NETWORKS` order), from Seitzman labels:

``motor``
    SomatomotorDorsal + SomatomotorLateral, cortical ROIs, weight 1.
``vision``
    Visual, cortical ROIs (the lateral geniculate and cerebellar ROIs are left out: an ICA
    visual component is a cortical occipital map), weight 1.
``language``
    Left-lateralised fronto-temporal, ROIs hand-picked from the table by anatomy (listed
    in :data:`_LANGUAGE_ROIS`): on the left, at weight 1, the inferior frontal gyrus
    (pars opercularis / Broca, FrontoParietal ROI at -46, 11, 23; pars triangularis /
    orbitalis, VentralAttention ROI at -49, 25, -1), the posterior superior temporal
    gyrus and sulcus (Wernicke; VentralAttention ROIs at -55, -40, 14 and -56, -50, 10)
    and the middle temporal gyrus (DefaultMode ROI at -58, -30, -4); on the right, the
    table's homologues at weight 0.3 (VentralAttention ROIs at 51, -29, -4; 52, -33, 8;
    56, -46, 11; 53, 33, 1 and FrontoParietal 48, 22, 10). Seitzman's (Power's) "ventral
    attention" system is this left-dominant perisylvian set, which is why it is the core
    of the language template.
``frontal``
    FrontoParietal, cortical ROIs, those used by ``language`` removed; frontal ROIs
    (y > 0 mm) at weight 1, parietal/temporal ones at 0.4 (the frontal part weighted,
    as the study's "frontal network" is the executive-control network's frontal lobe).
``temporal``
    Auditory + MedialTemporalLobe, bilateral, weight 1 (superior temporal / Heschl's
    gyri and the hippocampal-parahippocampal ROIs).

Each ROI is a ball (the table's radius, 5 mm for cortical ROIs) blurred with a Gaussian of
``smoothing_mm`` FWHM (the spatial smoothness of a group ICA map) evaluated analytically
at every voxel's world position, so a template exists on any grid (oblique, anisotropic,
any axis order) without resampling artefacts; it is then weighted by a soft grey-matter
mask and scaled to max 1. :func:`template_maps` gives all five; their pairwise spatial
correlations on :func:`model_grid` are below 0.5 (tests/core/test_atlas.py prints the
matrix), so optimal assignment of ICA components to networks is well posed.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import erf

from .grids import make_affine, voxel_to_world, world_to_voxel
from .mni import load_mni_anatomy
from .sampling import sample_template_maps

__all__ = [
    "NETWORKS",
    "NetworkROIs",
    "grey_matter_probability",
    "model_grid",
    "network_rois",
    "roi_map",
    "seitzman_rois",
    "template_maps",
]

#: The five target networks, in the order every array and table of the plugin uses.
NETWORKS: tuple[str, ...] = ("motor", "vision", "language", "frontal", "temporal")

#: Voxel size (mm) of :func:`model_grid`: coarse enough that a small 3D encoder is cheap,
#: fine enough to keep the networks' nodes apart (the ROI balls are 10 mm across).
MODEL_GRID_MM: float = 6.0

#: Language ROIs: (Seitzman row index, weight). Left perisylvian at 1, right homologues at 0.3.
_LANGUAGE_ROIS: tuple[tuple[int, float], ...] = (
    (175, 1.0),  # L IFG pars opercularis (Broca), FrontoParietal  -46  11  23
    (215, 1.0),  # L IFG pars triangularis/orbitalis, VentralAttention -49 25 -1
    (212, 1.0),  # L posterior STG (Wernicke), VentralAttention      -55 -40  14
    (211, 1.0),  # L posterior STS, VentralAttention                 -56 -50  10
    (82, 1.0),  # L middle temporal gyrus, DefaultMode               -58 -30  -4
    (199, 0.3),  # R IFG pars opercularis homologue, FrontoParietal  48  22  10
    (217, 0.3),  # R IFG pars triangularis homologue, VentralAttention 53 33 1
    (213, 0.3),  # R posterior STG, VentralAttention                 52 -33   8
    (214, 0.3),  # R posterior STS, VentralAttention                 56 -46  11
    (210, 0.3),  # R middle temporal gyrus, VentralAttention         51 -29  -4
)

#: Grey-matter probability at which the soft mask reaches 1 (below it the map fades).
_GM_FULL: float = 0.5

#: Anatomical classes of the Seitzman table that are cerebral cortex.
_CORTEX = (0, 1, 2)


@dataclass(frozen=True)
class NetworkROIs:
    """The ROIs a network template is built from.

    Attributes
    ----------
    name : str
        Network name (one of :data:`NETWORKS`, or a Seitzman label for other networks).
    coords_mm : np.ndarray
        (n, 3) ROI centres, MNI152 world RAS+ mm.
    weights : np.ndarray
        (n,) relative loading of each ROI (language: left 1, right 0.3).
    radius_mm : float
        Ball radius of every ROI (the table's cortical radius).
    source : str
        Which table and labels the ROIs come from, in words.
    """

    name: str
    coords_mm: np.ndarray
    weights: np.ndarray
    radius_mm: float
    source: str


def _data_dir() -> Path:
    from nilearn import datasets  # local: nilearn is slow to import

    return Path(datasets.__file__).resolve().parent / "data"


@functools.lru_cache(maxsize=1)
def _seitzman_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Seitzman 2018 table: coords (300, 3), radius (300,), netName (300,), anat class (300,)."""
    folder = _data_dir()
    info = folder / "seitzman_2018_ROIs_300inVol_MNI_allInfo.txt"
    anat_file = folder / "seitzman_2018_ROIs_anatomicalLabels.txt"
    rows = [line.split() for line in info.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    coords = np.array([[float(v) for v in r[:3]] for r in rows], dtype=np.float64)
    radius = np.array([float(r[3]) for r in rows], dtype=np.float64)
    names = np.array([r[5] for r in rows])
    # First line is the legend ("0=cortexMid,1=cortexL,..."), then one class per ROI.
    anat = np.array([int(v) for v in anat_file.read_text(encoding="utf-8").split()[1:]], dtype=int)
    if not (len(coords) == len(anat) == 300):
        raise RuntimeError(f"{info}: expected 300 ROIs with anatomical labels, got {len(coords)} and {len(anat)}")
    for a in (coords, radius, names, anat):
        a.setflags(write=False)
    return coords, radius, names, anat


def seitzman_rois(label: str, cortical_only: bool = True) -> NetworkROIs:
    """The ROIs of one Seitzman 2018 network label (e.g. ``"DefaultMode"``), weight 1.

    Used for the target networks and for the phantoms' non-target ("nuisance") networks.

    Raises
    ------
    ValueError
        If no ROI carries ``label``.
    """
    coords, radius, names, anat = _seitzman_table()
    keep = names == label
    if cortical_only:
        keep &= np.isin(anat, _CORTEX)
    if not keep.any():
        raise ValueError(f"no Seitzman 2018 ROI is labelled {label!r}; labels: {sorted(set(names.tolist()))}")
    return NetworkROIs(
        name=label,
        coords_mm=coords[keep].copy(),
        weights=np.ones(int(keep.sum())),
        radius_mm=float(np.median(radius[keep])),
        source=f"Seitzman 2018 netName {label}" + (" (cortical ROIs)" if cortical_only else ""),
    )


def _concat(name: str, parts: list[NetworkROIs], source: str) -> NetworkROIs:
    return NetworkROIs(
        name=name,
        coords_mm=np.concatenate([p.coords_mm for p in parts]),
        weights=np.concatenate([p.weights for p in parts]),
        radius_mm=float(max(p.radius_mm for p in parts)),
        source=source,
    )


@functools.lru_cache(maxsize=None)
def _network_rois_cached(name: str) -> NetworkROIs:
    coords, radius, names, anat = _seitzman_table()
    if name == "motor":
        parts = [seitzman_rois("SomatomotorDorsal"), seitzman_rois("SomatomotorLateral")]
        return _concat(name, parts, "Seitzman 2018 SomatomotorDorsal + SomatomotorLateral (cortical), weight 1")
    if name == "vision":
        return _concat(name, [seitzman_rois("Visual")], "Seitzman 2018 Visual (cortical), weight 1")
    if name == "language":
        idx = np.array([i for i, _ in _LANGUAGE_ROIS])
        return NetworkROIs(
            name=name,
            coords_mm=coords[idx].copy(),
            weights=np.array([w for _, w in _LANGUAGE_ROIS]),
            radius_mm=float(radius[idx].max()),
            source=(
                "Seitzman 2018 ROIs hand-picked by anatomy: left IFG (FrontoParietal, VentralAttention), left "
                "posterior STG/STS (VentralAttention) and MTG (DefaultMode) at weight 1; right homologues "
                "(VentralAttention, FrontoParietal) at 0.3"
            ),
        )
    if name == "frontal":
        used = {i for i, _ in _LANGUAGE_ROIS}
        keep = np.array(
            [names[i] == "FrontoParietal" and anat[i] in _CORTEX and i not in used for i in range(len(names))]
        )
        c = coords[keep].copy()
        return NetworkROIs(
            name=name,
            coords_mm=c,
            weights=np.where(c[:, 1] > 0.0, 1.0, 0.4),
            radius_mm=float(radius[keep].max()),
            source=(
                "Seitzman 2018 FrontoParietal (cortical, language ROIs removed): frontal ROIs (y > 0) weight 1, "
                "parietal/temporal 0.4"
            ),
        )
    if name == "temporal":
        parts = [seitzman_rois("Auditory"), seitzman_rois("MedialTemporalLobe", cortical_only=False)]
        return _concat(name, parts, "Seitzman 2018 Auditory + MedialTemporalLobe, bilateral, weight 1")
    raise ValueError(f"unknown network {name!r}; the networks are {', '.join(NETWORKS)}")


def network_rois(name: str) -> NetworkROIs:
    """The ROIs of one of the five target networks (see the module docstring for the choice).

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`NETWORKS`.
    """
    rois = _network_rois_cached(str(name))
    return NetworkROIs(rois.name, rois.coords_mm.copy(), rois.weights.copy(), rois.radius_mm, rois.source)


def _ball_blur_profile(d: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """A uniform ball of ``radius`` convolved with an isotropic Gaussian, at distance ``d``.

    The value is the probability that a Gaussian point centred at distance ``d`` from the
    ball's centre falls inside it (closed form); 1 deep inside, 0.5 near the edge, 0 far
    away. ``sigma == 0`` gives the hard ball.
    """
    if sigma <= 0:
        return (d <= radius).astype(np.float64)
    s2 = math.sqrt(2.0) * sigma
    dd = np.maximum(d, 1e-6)
    core = 0.5 * (erf((radius - dd) / s2) + erf((radius + dd) / s2))
    tail = sigma / (dd * math.sqrt(2.0 * math.pi)) * (
        np.exp(-((dd - radius) ** 2) / (2 * sigma**2)) - np.exp(-((dd + radius) ** 2) / (2 * sigma**2))
    )
    return np.clip(core - tail, 0.0, 1.0)


def roi_map(
    coords_mm: np.ndarray,
    weights: np.ndarray,
    radius_mm: float | np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    smoothing_mm: float = 6.0,
) -> np.ndarray:
    """Sum of weighted, blurred ROI balls at every voxel of a grid (no grey-matter mask).

    Parameters
    ----------
    coords_mm : (n, 3) array
        ROI centres, world RAS mm.
    weights : (n,) array
        Weight of each ROI (may be negative).
    radius_mm : float or (n,) array
        Ball radius of each ROI.
    affine, shape
        The grid (any voxel -> world affine, oblique included).
    smoothing_mm : float
        FWHM (mm) of the Gaussian blur.

    Returns
    -------
    np.ndarray
        float32 map of ``shape``. Each ROI is evaluated only in the box of voxels within
        its reach (radius + 4 sigma), so the cost does not grow with the field of view.
    """
    coords = np.asarray(coords_mm, dtype=np.float64).reshape(-1, 3)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (len(coords),))
    radii = np.broadcast_to(np.asarray(radius_mm, dtype=np.float64), (len(coords),))
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(n) for n in shape)
    sigma = float(smoothing_mm) / math.sqrt(8.0 * math.log(2.0))
    out = np.zeros(shape, dtype=np.float64)
    for c, wi, r in zip(coords, w, radii):
        if wi == 0:
            continue
        reach = float(r) + 4.0 * sigma + 1e-6
        corners = np.array(list(itertools.product(*[(-reach, reach)] * 3))) + c
        vox = world_to_voxel(affine, corners)
        lo = np.maximum(np.floor(vox.min(axis=0)).astype(int), 0)
        hi = np.minimum(np.ceil(vox.max(axis=0)).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        world = voxel_to_world(affine, np.stack(grids, axis=-1))
        d = np.sqrt(((world - c) ** 2).sum(axis=-1))
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += wi * _ball_blur_profile(d, float(r), sigma)
    return out.astype(np.float32)


def _grid_key(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[bytes, tuple[int, int, int]]:
    return np.round(np.asarray(affine, dtype=np.float64), 6).tobytes(), tuple(int(n) for n in shape)


@functools.lru_cache(maxsize=8)
def _gm_cached(key: tuple[bytes, tuple[int, int, int]]) -> np.ndarray:
    affine = np.frombuffer(key[0], dtype=np.float64).reshape(4, 4)
    gm = sample_template_maps({"gm": load_mni_anatomy().gm}, affine, key[1])["gm"]
    gm.setflags(write=False)
    return gm


def grey_matter_probability(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The MNI152 2009 grey-matter probability, partial-volume sampled onto a grid.

    Made by :func:`napari_neuroreview.core.anatomy.sample_template_maps` (each
    voxel is the average over its extent). Cached per grid; returns a writable copy.
    """
    return _gm_cached(_grid_key(affine, shape)).copy()


def _soft_gm(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    return np.clip(_gm_cached(_grid_key(affine, shape)) / _GM_FULL, 0.0, 1.0)


def template_maps(affine: np.ndarray, shape: tuple[int, int, int], smoothing_mm: float = 6.0) -> np.ndarray:
    """Templates of the five networks on any grid, in :data:`NETWORKS` order.

    Each template is the network's weighted ROI balls blurred by ``smoothing_mm`` FWHM
    (:func:`roi_map`), times a soft grey-matter mask (``min(1, p_gm / 0.5)``: full weight
    where a voxel is at least half grey matter, fading with partial volume, 0 outside the
    brain), scaled to max 1.

    Returns
    -------
    np.ndarray
        float32 array of shape ``(5, *shape)``.
    """
    shape = tuple(int(n) for n in shape)
    gm = _soft_gm(affine, shape)
    out = np.zeros((len(NETWORKS), *shape), dtype=np.float32)
    for k, name in enumerate(NETWORKS):
        rois = _network_rois_cached(name)
        m = roi_map(rois.coords_mm, rois.weights, rois.radius_mm, affine, shape, smoothing_mm) * gm
        peak = float(m.max())
        out[k] = m / peak if peak > 0 else m
    return out


@functools.lru_cache(maxsize=1)
def _model_grid_cached() -> tuple[np.ndarray, tuple[int, int, int]]:
    affine, shape = make_affine((MODEL_GRID_MM,) * 3, "RAS", margin_mm=MODEL_GRID_MM / 2.0)
    affine.setflags(write=False)
    return affine, shape


def model_grid() -> tuple[np.ndarray, tuple[int, int, int]]:
    """The fixed MNI grid on which network maps are fed to the model: ``(affine, shape)``.

    6 mm isotropic, RAS voxel order, covering the MNI152 brain mask's bounding box plus
    3 mm (half a voxel) on each side. Maps from any scan are resampled onto it so that the
    3D encoder always sees the same grid.
    """
    affine, shape = _model_grid_cached()
    return affine.copy(), shape
