"""What the Networks view says about itself: each pane's PRE/POST, orientation, colour bar and key,
and the panel's lines on P(post) and on the anatomy under the maps.

Why on the canvas and in each pane: a radiologist reads a screenshot or a glance at the
two panes without the dock beside them, so each pane carries its scan (PRE or POST), the
Case widget's radiological / neurological banner (``case.set_convention``, the one
place that flips the camera and words the banner) with R/L at its sides, the map's colour
bar from the threshold to the peak, and one line naming the network, the threshold and
the anatomy under it. napari draws a layer's overlays (its name, its colour bar) in the
layer's own grid pane and a ``gridded`` canvas overlay in every pane: nothing here is
drawn by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np
from napari.components.overlays import TextOverlay

from ..core.io.layers import image_layer_data
from ..core.io.nifti import volume_from_image
from .case import NEUROLOGICAL, RADIOLOGICAL, camera_of, set_convention, text_overlay

#: Canvas overlays this module owns (``viewer.canvas.overlays`` keys).
SIDE_KEYS = ("neuroreview_side_left", "neuroreview_side_right")
MAP_KEY = "neuroreview_map_key"
#: Anatomy choice that uses the MNI152 T1 template nilearn ships (the space of the phantoms).
MNI_TEMPLATE = "MNI152 template (nilearn)"
#: The caption's size in points: read across the room, above napari's 10-point overlays.
CAPTION_POINTS = 14.0


def convention_of(viewer: Any) -> str:
    """The convention the camera shows now (``set_convention`` flips the horizontal axis)."""
    horizontal = str(camera_of(viewer).orientation2d[1])
    return NEUROLOGICAL if horizontal.endswith("left") else RADIOLOGICAL


def side_marks(convention: str) -> tuple[str, str]:
    """The patient's side at the screen's (left, right) edge of a pane."""
    return ("R", "L") if convention == RADIOLOGICAL else ("L", "R")


def canvas_overlays(viewer: Any) -> Any:
    """The canvas overlays (``viewer.canvas.overlays`` since napari 0.9, ``viewer._overlays`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays if canvas is not None else viewer._overlays


class PaneLabels:
    """Dresses the two panes and keeps their R/L marks true when the convention is switched.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer (or napari's proxy of it).
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._connected = False

    def dress(self, map_layers: Sequence[Any], key: str) -> None:
        """Caption and colour bar on each map layer, banner and R/L in every pane, ``key`` below."""
        for layer in map_layers:
            caption = layer.name_overlay  # the layer's name ("PRE: network") in its own pane
            caption.font_size = CAPTION_POINTS
            caption.position = "bottom_left"  # the top holds the banner (centred), the bottom right the key
            caption.visible = True
            layer.colorbar.position = "bottom_right"  # above the key that says what it shows
            layer.colorbar.visible = True  # ticks at the contrast limits: the threshold and the peak
        set_convention(self.viewer, convention_of(self.viewer))  # the Case widget's banner, as it words it
        text_overlay(self.viewer).gridded = True
        overlays = canvas_overlays(self.viewer)
        for name, position in zip(SIDE_KEYS, ("middle_left", "middle_right")):
            if name not in overlays:
                overlays[name] = TextOverlay(position=position, gridded=True, visible=True, font_size=CAPTION_POINTS,
                                             color="#ffd75a")
        if MAP_KEY not in overlays:
            overlays[MAP_KEY] = TextOverlay(position="bottom_right", gridded=True, visible=True)
        self.set_key(key)
        self.update_sides()
        if not self._connected:  # the Case widget's switch, or any camera flip, moves R and L with it
            camera_of(self.viewer).events.orientation.connect(self.update_sides)
            self._connected = True

    def undress(self) -> None:
        """Take this module's canvas overlays away and stop following the camera (the view closes)."""
        overlays = canvas_overlays(self.viewer)
        for name in (*SIDE_KEYS, MAP_KEY):
            if name in overlays:
                del overlays[name]
        text_overlay(self.viewer).gridded = False
        if self._connected:
            camera_of(self.viewer).events.orientation.disconnect(self.update_sides)
            self._connected = False

    def set_key(self, key: str) -> None:
        """The line under each pane: network, threshold, anatomy."""
        overlays = canvas_overlays(self.viewer)
        if MAP_KEY in overlays:
            overlays[MAP_KEY].text = key

    def update_sides(self, *_: Any) -> None:
        """R/L at each pane's sides for the convention the camera shows."""
        overlays = canvas_overlays(self.viewer)
        for name, mark in zip(SIDE_KEYS, side_marks(convention_of(self.viewer))):
            if name in overlays:
                overlays[name].text = mark

    def texts(self) -> dict[str, str]:
        """What the canvas overlays say now (for tests and screenshots' descriptions)."""
        overlays = canvas_overlays(self.viewer)
        return {name: overlays[name].text for name in (*SIDE_KEYS, MAP_KEY) if name in overlays}


def p_post_text(card: Any) -> str:
    """One line: what P(post) means, and whether the model's card shows it calibrated.

    Why from the card: a probability reads as a frequency only when a held-out calibration
    says so; the shipped cards hold ranking figures (AUC) and no calibration, and then the
    line says "not calibrated" rather than letting 0.8 read as "8 in 10".
    """
    meaning = ("P(post): the model's probability that this network's map and time course look like a "
               "post-operative scan (0 = like its pre-operative training scans, 1 = like the post-operative ones)")
    metrics = dict(getattr(card, "metrics", None) or {})
    calibration = {k: v for k, v in metrics.items() if k.startswith(("brier", "ece", "calibration"))
                   and isinstance(v, (int, float))}
    if calibration:
        figures = ", ".join(f"{k} {float(v):.3f}" for k, v in sorted(calibration.items()))
        return f"{meaning}; calibration on held-out scans (model card): {figures}."
    auc = metrics.get("auc_mean")
    ranking = f" (it ranks: held-out mean AUC {float(auc):.2f})" if isinstance(auc, (int, float)) else ""
    return f"{meaning}; not calibrated: the model card holds no calibration figure{ranking}."


def anatomy_text(source: str, overlaps: bool = True) -> str:
    """The panel's line saying what lies under the maps: the picked anatomy or the template.

    ``overlaps`` False (the anatomy's world box misses the maps') adds why nothing lines up:
    a T1 from another space (the maps are in the BOLD's world mm) is not the patient's anatomy here.
    """
    if source == MNI_TEMPLATE:
        text = ("Under the maps: the MNI152 template (nilearn), not this patient's anatomy; pick the patient's T1 "
                "(a layer, or T1 file...) to see the maps on it.")
    else:
        text = f"Under the maps: {source} (picked: the patient's own anatomy, placed by its file's geometry)."
    if not overlaps:
        text += " \u26a0 It does not overlap the maps in world mm: it is not in the scans' space."
    return text


def boxes_overlap(a: Any, b: Any) -> bool:
    """Whether two napari world extents (``layer.extent.world``: [min, max] rows) intersect."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a[1] >= b[0]) and np.all(b[1] >= a[0]))


def mni_anatomy() -> dict[str, Any]:
    """The MNI152 T1 template nilearn ships, as layer data and placement (the phantoms' space)."""
    from ..core.anatomy import load_mni_anatomy

    mni = load_mni_anatomy()
    display, kwargs, _, _ = image_layer_data(volume_from_image(nib.Nifti1Image(mni.t1, mni.affine)), MNI_TEMPLATE)
    return {"data": display, "scale": kwargs["scale"], "translate": kwargs["translate"],
            "contrast_limits": kwargs["contrast_limits"], "metadata": kwargs["metadata"], "source": MNI_TEMPLATE}
