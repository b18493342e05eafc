"""npe2 sample data: the simulated cases, made on first use from what nilearn ships.

Why generate instead of shipping: the cases are deterministic phantoms built on the
MNI152 template, so the first use writes them into the user cache folder (a few
seconds) and later uses read them from there. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs

from ._reader import read_volumes


def sample_cache_dir() -> Path:
    """Where generated sample cases are kept between sessions."""
    return Path(platformdirs.user_cache_dir("napari-neuroreview")) / "sample_data"


def sample_case_paths(name: str) -> list[Path]:
    """Paths of one sample case's files, writing them first if they are missing."""
    from .core.phantoms.samples import SAMPLE_CASES, write_sample_data

    folder = sample_cache_dir()
    case_dir = folder / name
    if not case_dir.is_dir() or not any(case_dir.iterdir()):
        write_sample_data(folder, [name])
    if name not in SAMPLE_CASES:
        raise KeyError(f"no sample case called {name!r}")
    return sorted(case_dir.iterdir())


def sample_t1() -> list[Any]:
    """The simulated T1 case: the scan and its tissue segmentation."""
    paths = sample_case_paths("t1")
    image = [p for p in paths if p.name.endswith("_T1w.nii.gz")]
    dseg = [p for p in paths if p.name.endswith("_dseg.nii.gz")]
    layers = read_volumes([str(p) for p in image + dseg])
    for data, kwargs, layer_type in layers:
        if layer_type == "labels":
            kwargs["name"] = "tissue (truth)"
            kwargs["visible"] = False
    return layers


def sample_cmb() -> list[Any]:
    """The simulated SWI slab: magnitude, phase, and the true microbleed masks (hidden)."""
    paths = sample_case_paths("cmb")
    wanted = [p for suffix in ("_swi.nii.gz", "_phase.nii.gz", "_cmb-instances.nii.gz")
              for p in paths if p.name.endswith(suffix)]
    layers = read_volumes([str(p) for p in wanted])
    names = ["SWI", "phase", "microbleeds (truth)"]
    for (data, kwargs, layer_type), name in zip(layers, names):
        kwargs["name"] = name
        if name != "SWI":
            kwargs["visible"] = False
    return layers


#: The metastasis case's layers, bottom to top, named as the origin panel picks them; only the
#: contrast T1 and the lesions shown. The oedema and truth.json are not opened: nothing names the origin.
METASTASIS_LAYERS = (("t1", "T1"), ("t2", "T2"), ("flair", "FLAIR"), ("dwi", "DWI"), ("adc", "ADC"),
                     ("ce_t1", "CE-T1"), ("lesions", "lesions"))


def sample_metastasis() -> list[Any]:
    """The simulated metastases: five sequences and ADC (DWI/ADC on their own grid) and the lesion labels."""
    folder = sample_case_paths("metastasis")[0].parent
    layers = read_volumes([str(folder / f"{stem}.nii.gz") for stem, _ in METASTASIS_LAYERS])
    for (_data, kwargs, _layer_type), (_stem, name) in zip(layers, METASTASIS_LAYERS):
        kwargs["name"] = name
        kwargs["visible"] = name in ("CE-T1", "lesions")
    return layers
