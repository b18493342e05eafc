"""Key images of one microbleed: an axial and a coronal crop around it, radiological, as PNG.

Why resampled onto a world-aligned crop (``resample_to_grid``) instead of cut out of the
file's voxels: the crop is then the same whatever the file's voxel order or tilt (an
oblique scan included), centred on the finding's world position at one pixel size, and
its orientation is the report's, stated once: the **radiological convention**, the
patient's right on the image's left, anterior up on axial and superior up on coronal
crops, each crop lettered R/L and A/P or S/I. A ring marks the microbleed without
covering the dark spot being judged. Rendered with matplotlib's Agg canvas (no pyplot,
no GUI): the Report button runs this in a worker thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..io.resample import resample_to_grid

__all__ = ["CONVENTION", "FOV_MM", "MAP_THRESHOLD_SD", "PIXEL_MM", "axial_mip", "crop_plane", "key_image_png",
           "map_thumbnail_png", "plane_affine"]

#: The report's sentence about orientation (the page shows it above the key images).
CONVENTION = ("Key images are shown in the radiological convention: the patient's right (R) on the image's "
              "left, anterior up on axial and superior up on coronal crops.")
#: Side of a crop (mm): a microbleed (2-10 mm) with enough surroundings to tell it from a vessel.
FOV_MM = 40.0
#: Pixel of a crop (mm): finer than a clinical SWI voxel (0.5-1 mm in plane), so nothing is lost.
PIXEL_MM = 0.4
#: Per plane: the world direction of the crop's rows (top -> bottom), of its columns (left ->
#: right), and of the plane's normal, in RAS+ (radiological: columns run patient right -> left).
_PLANES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "axial": ((0.0, -1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((0.0, 0.0, -1.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
}
#: The letters at the top, bottom, left and right edges of each plane's crop.
_EDGE_LETTERS: dict[str, tuple[str, str, str, str]] = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L")}
_RING_COLOUR = "#ffd400"
#: Network maps are drawn from this many SD over the brain up (the Networks view's default
#: threshold, ``widgets.networks.DEFAULT_THRESHOLD``); below it a map is left black.
MAP_THRESHOLD_SD = 2.0
#: Pixel of a network thumbnail (mm): networks are centimetres wide, thumbnails small.
MAP_PIXEL_MM = 2.0


def plane_affine(centre_ras: Sequence[float], plane: str, n: int, pixel_mm: float = PIXEL_MM) -> np.ndarray:
    """The 4 x 4 voxel -> world RAS+ affine of an ``n x n x 1`` crop centred on ``centre_ras``."""
    rows, cols, normal = (np.asarray(v) * pixel_mm for v in _PLANES[plane])
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = rows, cols, normal
    affine[:3, 3] = np.asarray(centre_ras, float) - (rows + cols) * (n - 1) / 2.0
    return affine


def crop_plane(data: np.ndarray, affine: np.ndarray, centre_ras: Sequence[float], plane: str,
               fov_mm: float = FOV_MM, pixel_mm: float = PIXEL_MM) -> np.ndarray:
    """A ``(rows, cols)`` crop of the 3D ``data`` (on ``affine``) through ``centre_ras`` (0 outside the scan)."""
    n = round(fov_mm / pixel_mm)
    grid = plane_affine(centre_ras, plane, n, pixel_mm)
    return resample_to_grid(np.asarray(data), affine, grid, (n, n, 1), order=1)[:, :, 0]


def key_image_png(data: np.ndarray, affine: np.ndarray, centre_ras: Sequence[float], window: tuple[float, float],
                  diameter_mm: float | None = None, planes: Sequence[str] = ("axial", "coronal")) -> bytes:
    """The PNG of one microbleed's crops side by side, each ringed and lettered.

    Parameters
    ----------
    data, affine : numpy.ndarray
        The scan's voxels (file order) and their voxel -> world RAS+ affine.
    centre_ras : sequence of float
        The microbleed's world position (RAS+ mm).
    window : (float, float)
        Grey-level window, the same for every key image of a report.
    diameter_mm : float, optional
        Sets the ring's radius (a ring just outside the spot); 3 mm when unknown.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    figure = Figure(figsize=(2.3 * len(planes), 2.45), dpi=110, facecolor="black")
    FigureCanvasAgg(figure)
    half = FOV_MM / 2
    ring = max(3.0, (diameter_mm or 0.0) / 2 + 2.0)
    for n, plane in enumerate(planes):
        ax = figure.add_axes((n / len(planes), 0.0, 1 / len(planes), 0.9))
        ax.imshow(crop_plane(data, affine, centre_ras, plane), cmap="gray", vmin=window[0], vmax=window[1],
                  interpolation="nearest", extent=(-half, half, half, -half))
        ax.add_patch(Circle((0, 0), ring, fill=False, edgecolor=_RING_COLOUR, linewidth=1.2))
        top, bottom, left, right = _EDGE_LETTERS[plane]
        style = {"color": _RING_COLOUR, "fontsize": 9, "fontweight": "bold", "ha": "center", "va": "center"}
        ax.text(0, -half * 0.88, top, **style)
        ax.text(0, half * 0.88, bottom, **style)
        ax.text(-half * 0.9, 0, left, **style)
        ax.text(half * 0.9, 0, right, **style)
        ax.plot([-half * 0.9, -half * 0.9 + 10], [half * 0.93] * 2, color="white", linewidth=1.5)  # 10 mm bar
        ax.set_xlim(-half, half)
        ax.set_ylim(half, -half)
        ax.set_axis_off()
        figure.text((n + 0.5) / len(planes), 0.95, plane, color="white", fontsize=8, ha="center", va="center")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="black")
    return buffer.getvalue()


def axial_mip(data: np.ndarray, affine: np.ndarray, pixel_mm: float = MAP_PIXEL_MM) -> np.ndarray:
    """A ``(rows, cols)`` maximum-intensity projection along S-I of the whole grid, radiological, anterior up.

    The grid's bounding box in world RAS is resampled onto axial world axes first, so any
    voxel order (or tilt) projects the same way.
    """
    shape = np.asarray(data.shape[:3])
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    ras = (np.asarray(affine, float) @ corners.T)[:3].T
    low, high = ras.min(axis=0), ras.max(axis=0)
    n = np.maximum(1, np.ceil((high - low) / pixel_mm).astype(int) + 1)
    rows, cols, normal = (np.asarray(v) * pixel_mm for v in _PLANES["axial"])
    grid = np.eye(4)
    grid[:3, 0], grid[:3, 1], grid[:3, 2] = rows, cols, normal
    grid[:3, 3] = [high[0], high[1], low[2]]  # the top-left voxel: patient right, anterior; the lowest slice
    box = resample_to_grid(np.asarray(data, np.float32), affine, grid, (int(n[1]), int(n[0]), int(n[2])), order=1)
    return box.max(axis=2)


def map_thumbnail_png(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], threshold: float = MAP_THRESHOLD_SD) -> bytes:
    """A PNG of network maps side by side: each ``(caption, map in SD units, affine)`` as an axial MIP.

    Radiological like the key images (R on the image's left, anterior up), lettered; the
    colour runs from ``threshold`` (dark red) to the panels' common peak (white).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mips = [axial_mip(data, affine) for _caption, data, affine in panels]
    peak = max([threshold * 1.5, *(float(m.max()) for m in mips)])
    figure = Figure(figsize=(1.25 * len(panels), 1.5), dpi=100, facecolor="black")
    FigureCanvasAgg(figure)
    for n, ((caption, _data, _affine), mip) in enumerate(zip(panels, mips)):
        ax = figure.add_axes((n / len(panels), 0.0, 1 / len(panels), 0.84))
        ax.imshow(np.ma.masked_less(mip, threshold), cmap="hot", vmin=threshold, vmax=peak, interpolation="nearest")
        ax.set_facecolor("black")
        style = {"color": "#9fd3ff", "fontsize": 7, "fontweight": "bold", "va": "center", "transform": ax.transAxes}
        ax.text(0.03, 0.5, "R", ha="left", **style)
        ax.text(0.97, 0.5, "L", ha="right", **style)
        ax.text(0.5, 0.96, "A", ha="center", **style)
        ax.set_axis_off()
        figure.text((n + 0.5) / len(panels), 0.93, caption, color="white", fontsize=8, fontweight="bold",
                    ha="center", va="center")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="black")
    return buffer.getvalue()
