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


def _named_layers(files: list[tuple[Path, str]], shown: tuple[str, ...]) -> list[Any]:
    """Each file's layers named as given, only ``shown`` visible.

    Read one file at a time: a file that fails is reported by :func:`read_volumes` and left
    out, and the names of the others stay theirs (zipping names with what was read would shift them).
    """
    layers: list[Any] = []
    for path, name in files:
        for layer in read_volumes(str(path)):
            if len(layer) < 3:  # npe2's "nothing read" value; the reader has said why
                continue
            layer[1]["name"], layer[1]["visible"] = name, name in shown
            layers.append(layer)
    return layers or [(None,)]


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
    wanted = [(p, name) for suffix, name in (("_swi.nii.gz", "SWI"), ("_phase.nii.gz", "phase"),
                                             ("_cmb-instances.nii.gz", "microbleeds (truth)"))
              for p in paths if p.name.endswith(suffix)]
    return _named_layers(wanted, shown=("SWI",))


#: The metastasis case's layers, bottom to top, named as the origin panel picks them; only the
#: contrast T1 and the lesions shown. The oedema and truth.json are not opened: nothing names the origin.
METASTASIS_LAYERS = (("t1", "T1"), ("t2", "T2"), ("flair", "FLAIR"), ("dwi", "DWI"), ("adc", "ADC"),
                     ("ce_t1", "CE-T1"), ("lesions", "lesions"))


def sample_metastasis() -> list[Any]:
    """The simulated metastases: five sequences and ADC (DWI/ADC on their own grid) and the lesion labels."""
    folder = sample_case_paths("metastasis")[0].parent
    return _named_layers([(folder / f"{stem}.nii.gz", name) for stem, name in METASTASIS_LAYERS],
                         shown=("CE-T1", "lesions"))


#: The stroke case's layers, bottom to top, named as the Stroke risk panel picks them; the lesions hidden.
STROKE_LAYERS = (("t1", "T1"), ("flair", "FLAIR"), ("truth_lesions", "lesions (truth)"))


def sample_stroke() -> list[Any]:
    """The simulated stroke-risk subject: T1, FLAIR and the rendered lesions (hidden); its clinical.tsv lies beside
    them, where the Stroke risk panel finds it."""
    folder = sample_case_paths("stroke")[0].parent
    return _named_layers([(folder / f"{stem}.nii.gz", name) for stem, name in STROKE_LAYERS], shown=("T1", "FLAIR"))
