"""File voxels <-> display array: the one place where anything is reoriented.

The display convention
----------------------
napari slices along array axis 0 and draws axis 1 down the screen and axis 2 across it.
A neuroradiologist expects axial slices with anterior up, so the display array is
ordered (S, P, L):

* axis 0 runs inferior -> superior (the slider moves through axial slices),
* axis 1 runs anterior -> posterior (row 0 is the most anterior: anterior is up),
* axis 2 runs patient right -> patient left (column 0 is the patient's right).

Drawn with napari's default camera (columns increase to the right) the patient's right
is on the screen's left: the radiological convention. The neurological convention is a
pure view change (``camera.orientation2d`` horizontal "left"), so the data, and every
coordinate computed from them, never change when the user switches.

napari's world frame is then (S, P, L) in millimetres, i.e. ``FRAME @ ras``. Every
layer made from a file gets ``scale`` and ``translate`` in that frame, so images on
different grids (a 0.5 mm SWI and a 1 mm T1) overlay correctly without resampling.

Oblique scans
-------------
A scan whose voxel axes are tilted away from the world axes cannot be shown on
axis-aligned slices by flips and transposes alone. When the tilt moves any voxel by
less than half a voxel across the field of view, the display is the nearest-axis
reordering (exact voxels, negligible error) and the exact affine is still used for every
coordinate. Otherwise the volume is resampled onto an axis-aligned grid for display, a
warning says so, and :func:`from_display` resamples annotations back onto the file's
own grid so that what is saved is aligned with the true affine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import GeometryError
from .resample import resample_to_grid

#: The display array's axis codes (nibabel convention: the direction each axis increases).
DISPLAY_AXCODES: tuple[str, str, str] = ("S", "P", "L")
#: napari world coordinates (S, P, L mm) = FRAME @ RAS mm.
FRAME = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
#: Largest displacement (in voxels) that the nearest-axis display may cause before resampling.
MAX_OBLIQUE_ERROR_VOXELS = 0.5


@dataclass(frozen=True)
class DisplayGeometry:
    """How a file's voxel grid maps onto the display array, and both onto the world.

    Attributes
    ----------
    source_shape : tuple of int
        Spatial shape of the file's array (i, j, k).
    source_affine : numpy.ndarray
        The file's voxel -> RAS mm affine (the truth, never altered).
    display_shape : tuple of int
        Spatial shape of the display array (S, P, L order).
    display_affine : numpy.ndarray
        Display index (a0, a1, a2) -> RAS mm. Exact, also for slightly oblique scans.
    ornt : numpy.ndarray or None
        nibabel orientation transform from file to display axes; None when resampled.
    obliquity_deg : float
        Largest angle between a voxel axis and its nearest world axis.
    """

    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    display_shape: tuple[int, int, int]
    display_affine: np.ndarray
    ornt: np.ndarray | None
    obliquity_deg: float

    @property
    def resampled(self) -> bool:
        """True when the display is a resampling of an oblique scan."""
        return self.ornt is None

    @property
    def scale(self) -> tuple[float, float, float]:
        """napari layer ``scale``: mm per display voxel along (S, P, L)."""
        frame_axes = FRAME @ self.display_affine[:3, :3]
        return tuple(float(abs(frame_axes[a, a])) for a in range(3))  # type: ignore[return-value]

    @property
    def translate(self) -> tuple[float, float, float]:
        """napari layer ``translate``: where display voxel (0, 0, 0) sits, in (S, P, L) mm."""
        return tuple(float(v) for v in FRAME @ self.display_affine[:3, 3])  # type: ignore[return-value]

    @property
    def warning(self) -> str | None:
        """The sentence to keep visible while an oblique scan is shown, else None."""
        if not self.resampled:
            return None
        return (
            f"Oblique scan (tilted {self.obliquity_deg:.1f} deg): shown resampled onto "
            "axis-aligned slices; annotations are saved on the file's own grid"
        )

    def display_to_world(self, index: np.ndarray) -> np.ndarray:
        """Display indices (N, 3) or (3,) -> world RAS mm, exactly."""
        return nib.affines.apply_affine(self.display_affine, np.asarray(index, dtype=float))

    def world_to_display(self, ras: np.ndarray) -> np.ndarray:
        """World RAS mm (N, 3) or (3,) -> fractional display indices."""
        return nib.affines.apply_affine(np.linalg.inv(self.display_affine), np.asarray(ras, float))

    def source_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """File voxel indices -> world RAS mm."""
        return nib.affines.apply_affine(self.source_affine, np.asarray(ijk, dtype=float))

    def world_to_source(self, ras: np.ndarray) -> np.ndarray:
        """World RAS mm -> fractional file voxel indices."""
        return nib.affines.apply_affine(np.linalg.inv(self.source_affine), np.asarray(ras, float))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for layer metadata that survives a session file."""
        return {
            "source_shape": list(self.source_shape),
            "source_affine": self.source_affine.tolist(),
            "display_shape": list(self.display_shape),
            "display_affine": self.display_affine.tolist(),
            "ornt": None if self.ornt is None else self.ornt.tolist(),
            "obliquity_deg": self.obliquity_deg,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DisplayGeometry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            source_shape=tuple(d["source_shape"]),
            source_affine=np.asarray(d["source_affine"], dtype=float),
            display_shape=tuple(d["display_shape"]),
            display_affine=np.asarray(d["display_affine"], dtype=float),
            ornt=None if d["ornt"] is None else np.asarray(d["ornt"], dtype=float),
            obliquity_deg=float(d["obliquity_deg"]),
        )


def _obliquity_deg(affine: np.ndarray) -> float:
    return float(np.degrees(np.max(np.abs(nib.affines.obliquity(affine)))))


def _max_oblique_error_voxels(shape: tuple[int, ...], affine: np.ndarray) -> float:
    """How far (in voxels) the nearest-axis display puts a voxel from its true place."""
    zooms = nib.affines.voxel_sizes(affine)
    directions = affine[:3, :3] / zooms
    ornt = nib.orientations.io_orientation(affine)
    ideal = np.zeros((3, 3))
    for src_axis, (world_axis, flip) in enumerate(ornt):
        ideal[int(world_axis), src_axis] = flip
    extent_mm = np.asarray(shape[:3], dtype=float) * zooms
    # Worst case: a full field-of-view's length along each axis, projected off-axis.
    error_mm = np.abs(directions - ideal) @ extent_mm
    return float(np.max(error_mm) / np.min(zooms))


def plan_display(shape: tuple[int, ...], affine: np.ndarray) -> DisplayGeometry:
    """Decide how a file with this spatial shape and affine is displayed.

    Parameters
    ----------
    shape : tuple of int
        The file's shape (only the first three entries are used).
    affine : numpy.ndarray
        The file's voxel -> RAS affine.

    Returns
    -------
    DisplayGeometry
    """
    shape3 = tuple(int(s) for s in shape[:3])
    affine = np.asarray(affine, dtype=float)
    obliquity = _obliquity_deg(affine)
    if _max_oblique_error_voxels(shape3, affine) <= MAX_OBLIQUE_ERROR_VOXELS:
        ornt = nib.orientations.ornt_transform(
            nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(DISPLAY_AXCODES)
        )
        display_shape = tuple(int(shape3[int(src)]) for src in _source_axis_of_display(ornt))
        inv = nib.orientations.inv_ornt_aff(ornt, shape3)
        display_affine = affine @ inv
        return DisplayGeometry(shape3, affine, display_shape, display_affine, ornt, obliquity)
    return _resampled_geometry(shape3, affine, obliquity)


def _source_axis_of_display(ornt: np.ndarray) -> list[int]:
    """For each display axis, the file axis that feeds it."""
    order = [0, 0, 0]
    for src_axis, (dst_axis, _flip) in enumerate(ornt):
        order[int(dst_axis)] = src_axis
    return order


def _resampled_geometry(
    shape3: tuple[int, int, int], affine: np.ndarray, obliquity: float
) -> DisplayGeometry:
    """An axis-aligned (S, P, L) grid covering the oblique volume at its own voxel sizes."""
    zooms = nib.affines.voxel_sizes(affine)
    nearest = nib.orientations.io_orientation(affine)
    ras_zoom = np.empty(3)
    for src_axis, (world_axis, _flip) in enumerate(nearest):
        ras_zoom[int(world_axis)] = zooms[src_axis]
    corners = np.array(
        [[i, j, k] for i in (-0.5, shape3[0] - 0.5) for j in (-0.5, shape3[1] - 0.5) for k in (-0.5, shape3[2] - 0.5)]
    )
    frame_corners = nib.affines.apply_affine(affine, corners) @ FRAME.T
    low, high = frame_corners.min(axis=0), frame_corners.max(axis=0)
    frame_zoom = np.abs(FRAME) @ ras_zoom
    display_shape = tuple(int(math.ceil((high[a] - low[a]) / frame_zoom[a])) for a in range(3))
    # Display index -> frame mm: diag(zoom) plus the first voxel centre; frame -> RAS: FRAME^-1.
    to_frame = np.eye(4)
    to_frame[:3, :3] = np.diag(frame_zoom)
    to_frame[:3, 3] = low + frame_zoom / 2
    frame_to_ras = np.eye(4)
    frame_to_ras[:3, :3] = FRAME.T  # FRAME is orthogonal
    display_affine = frame_to_ras @ to_frame
    return DisplayGeometry(shape3, affine, display_shape, display_affine, None, obliquity)


def to_display(data: np.ndarray, geometry: DisplayGeometry, order: int = 1) -> np.ndarray:
    """File-order array -> display array (time first for 4D: (t, S, P, L)).

    Parameters
    ----------
    data : numpy.ndarray
        Shape ``geometry.source_shape`` or that plus a trailing time axis.
    geometry : DisplayGeometry
        From :func:`plan_display`.
    order : int
        Spline order when an oblique scan is resampled: 1 for intensities, 0 for labels.

    Returns
    -------
    numpy.ndarray
        A view (no copy) when no resampling is needed.
    """
    _check_shape(data, geometry.source_shape, "file")
    if geometry.ornt is not None:
        out = nib.orientations.apply_orientation(data, geometry.ornt)
    else:
        out = resample_to_grid(data, geometry.source_affine, geometry.display_affine, geometry.display_shape, order)
    return np.moveaxis(out, 3, 0) if out.ndim == 4 else out


def from_display(data: np.ndarray, geometry: DisplayGeometry, order: int = 0) -> np.ndarray:
    """Display array -> file-order array on the file's own grid (inverse of :func:`to_display`).

    Labels drawn on a resampled oblique display are resampled back with nearest
    neighbour (``order=0``), so every saved label is an original label value.
    """
    if data.ndim == 4:
        data = np.moveaxis(data, 0, 3)
    _check_shape(data, geometry.display_shape, "display")
    if geometry.ornt is not None:
        inverse = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt(DISPLAY_AXCODES), nib.orientations.io_orientation(geometry.source_affine)
        )
        return np.ascontiguousarray(nib.orientations.apply_orientation(data, inverse))
    out = resample_to_grid(data, geometry.display_affine, geometry.source_affine, geometry.source_shape, order)
    if order == 0 and data.ndim == 3:
        _reseat_lost_labels(data, out, geometry)
    return out


def _reseat_lost_labels(display: np.ndarray, source: np.ndarray, geometry: DisplayGeometry) -> None:
    """Put back, at the nearest file voxel, any label smaller than a file voxel.

    Why: nearest-neighbour resampling onto a rotated grid can miss a label that covers
    no file-voxel centre (a one-voxel microbleed drawn on the resampled display). A
    radiologist's annotation must never vanish on save, so each lost label is written
    at the file voxel nearest to its centre.
    """
    lost = np.setdiff1d(np.unique(display), np.unique(source))
    lost = lost[lost != 0]
    if lost.size == 0:
        return
    centres = ndimage.center_of_mass(np.ones(display.shape), display, lost)
    for value, centre in zip(lost, centres):
        ijk = np.rint(geometry.world_to_source(geometry.display_to_world(np.asarray(centre)))).astype(int)
        ijk = np.clip(ijk, 0, np.asarray(geometry.source_shape) - 1)
        source[tuple(ijk)] = value


def _check_shape(data: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    if tuple(data.shape[:3]) != tuple(expected) or data.ndim not in (3, 4):
        raise GeometryError(
            f"an array of shape {tuple(data.shape)} does not fit the {what} grid {tuple(expected)}"
        )
