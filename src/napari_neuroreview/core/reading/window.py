"""Window/level presets per modality, computed from the volume: what a reading console offers.

A radiologist reads SWI with the veins and microbleeds black and the parenchyma grey, the
phase image with zero phase mid-grey, a T1 with the white matter near white and a FLAIR
with its hyperintensities not clipped. One window per image does not serve all four, and
the reader's default (:func:`~..io.layers.robust_contrast`, the "auto" preset) knows no
modality. Each preset here is a rule on the image's own intensities (scanners scale
magnitude images arbitrarily, so no fixed numbers), except the phase, whose units are fixed.

Only a strided sample of at most :data:`SAMPLE_VOXELS` voxels is read (:func:`sample_voxels`):
a window needs percentiles, not every voxel, and a strided view of a memory-mapped or lazy
array reads no more than that sample.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from skimage.filters import threshold_otsu

from ..errors import InputFileError
from ..io.layers import robust_contrast

#: Preset keys and the names a user sees, in the order they are offered.
PRESETS: dict[str, str] = {"auto": "Auto (as opened)", "swi": "SWI magnitude", "phase": "SWI phase",
                           "t1": "T1", "flair": "FLAIR"}
#: Foreground percentiles (low, high) of each magnitude preset; see :func:`contrast_limits`.
PERCENTILES: dict[str, tuple[float, float]] = {"swi": (1.0, 99.5), "t1": (0.5, 99.5), "flair": (0.5, 99.9)}
#: At most this many voxels are read to choose a window.
SAMPLE_VOXELS = 1_000_000
#: Otsu's lower class is background noise when its mean is below this share of the threshold.
NOISE_SHARE = 0.4
#: Phase values within this factor of pi are radians (float32 rounding of pi, interpolation).
RADIAN_TOLERANCE = 1.01
#: Words that name a phase image by themselves (scanner and BIDS abbreviations).
PHASE_WORDS = frozenset({"ph", "pha", "phs", "phase"})


def modality_from_name(name: str) -> str:
    """The preset a layer's name suggests ("sub-01_phase" -> "phase"), "auto" when it says none.

    Why words and not substrings: "alpha" holds "pha" and is no phase image; and a phase word
    is one of :data:`PHASE_WORDS` or starts with "phase" ("phasemap"), so "phantom" and
    "pharma" are not phases. Phase is tested first, since a phase file is often named after
    its SWI ("swi_phase").
    """
    words = re.findall(r"[a-z0-9]+", name.lower())
    if any(w in PHASE_WORDS or w.startswith("phase") for w in words):
        return "phase"
    if any(w.startswith(("swi", "mag", "swan", "minip")) for w in words):
        return "swi"
    if any("flair" in w for w in words):
        return "flair"
    if any(w in ("t1", "t1w", "mprage") or w.startswith(("t1c", "t1w")) for w in words):
        return "t1"
    return "auto"


def sample_voxels(data: Any, limit: int = SAMPLE_VOXELS) -> np.ndarray:
    """A regular strided sample of at most about ``limit`` voxels, the finite ones, flat.

    Why a stride on every axis: it reads a uniform sample of the whole volume (a stride
    on the flattened array would do too, but it needs the whole array in memory first).
    """
    shape = tuple(int(n) for n in np.shape(data))
    size = math.prod(shape)
    step = max(1, math.ceil((size / limit) ** (1.0 / max(1, len(shape))))) if size > limit else 1
    sample = np.asarray(data[tuple(slice(None, None, step) for _ in shape)]).ravel()
    return sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample


def foreground(sample: np.ndarray) -> np.ndarray:
    """The sampled voxels of the head (or brain): above Otsu's threshold of the positive ones.

    The same rule as the mask task (``core.tasks.mask``: Otsu of the positive voxels), on
    the sample and without its smoothing and morphology, which a window does not need. An
    image with no background left (skull-stripped, zero outside) keeps all its positive
    voxels: there Otsu splits two tissues (parenchyma from CSF). Told apart by Otsu's lower
    class: background noise lies near zero (its mean under :data:`NOISE_SHARE` of the
    threshold), a tissue does not. Not by counting zeros: an oblique scan shown resampled
    has zero wedges at its faces whether it is stripped or not.
    """
    positive = sample[sample > 0]
    if positive.size == 0:
        return positive
    threshold = threshold_otsu(positive)
    below, above = positive[positive <= threshold], positive[positive > threshold]
    if above.size == 0 or (below.size and below.mean() >= NOISE_SHARE * threshold):
        return positive
    return above


def phase_window(sample: np.ndarray, name: str = "image") -> tuple[float, float]:
    """The full phase range in the image's own units, symmetric about zero phase.

    Imitates the scanner's phase display: zero phase mid-grey, -pi black and +pi white, so
    that a paramagnetic spot (haemosiderin) and a diamagnetic one (calcification) stand out
    with opposite shades against flat tissue. Fixed, not fitted to the data: a window fitted
    to a phase image's percentiles would stretch noise in flat tissue to full contrast.
    The units come from the values: within +-pi they are radians -> (-pi, pi); integers
    are a scanner's coding of -pi..pi on ``b`` bits, unsigned 0 .. 2^b - 1 (centre
    2^(b-1); 12-bit: 0 .. 4095) or signed -2^b .. 2^b (Siemens after rescaling: -4096 .. 4094),
    with ``b`` the fewest bits that hold the values.

    Raises
    ------
    InputFileError
        Non-integer values beyond +-pi: neither radians nor a scanner's integer coding.
    """
    if sample.size == 0:
        return (-math.pi, math.pi)
    low, high = float(sample.min()), float(sample.max())
    if max(abs(low), abs(high)) <= RADIAN_TOLERANCE * math.pi:
        return (-math.pi, math.pi)
    if not np.all(sample == np.round(sample)):
        raise InputFileError(f"{name}: its values reach {max(abs(low), abs(high)):g}, neither radians (within "
                             "+-pi) nor a scanner's integer phase, so the phase preset does not apply")
    if low >= 0:
        bits = max(1, math.ceil(math.log2(high + 1.0)))
        return (0.0, float(2 ** bits - 1))
    bits = max(1, math.ceil(math.log2(max(-low, high))))
    return (-float(2 ** bits), float(2 ** bits))


def contrast_limits(data: Any, preset: str, name: str = "image") -> tuple[float, float]:
    """Contrast limits (low, high) of a preset for an image (a layer's array, any order).

    Presets
    -------
    auto
        The reader's window (:func:`~..io.layers.robust_contrast`: 0.5-99.5 % of the
        non-zero voxels): the image as it was opened.
    swi
        SWI magnitude (or its minIP), as on the scanner's SWI display: 1-99.5 % of the
        foreground, so every vein, microbleed and iron-laden nucleus darker than nearly all
        tissue is black and the parenchyma spans the grey scale.
    phase
        :func:`phase_window`: the fixed full range in the image's units.
    t1
        0.5-99.5 % of the foreground: CSF dark, white matter near white, fat and vessels
        clipped (a T1's few bright voxels would otherwise grey the brain).
    flair
        0.5-99.9 % of the foreground: a higher top, so that white matter hyperintensities,
        a small share of the brain, keep their shades above normal white matter.

    Raises
    ------
    ValueError
        An unknown preset (a bug: the widget offers :data:`PRESETS` only).
    InputFileError
        The phase preset on values that are not phase (:func:`phase_window`).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown window preset {preset!r}; one of {', '.join(PRESETS)}")
    sample = sample_voxels(data)
    if preset == "auto":
        return robust_contrast(sample)
    if preset == "phase":
        return phase_window(sample, name)
    tissue = foreground(sample)
    if tissue.size == 0:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(tissue, PERCENTILES[preset]))
    return (low, high if high > low else low + 1.0)
