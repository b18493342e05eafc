"""The stroke cohort phantom: a clinical table, T1 + FLAIR, and a stroke outcome (issue 13).

Why: the stroke-risk system (after Delgrange et al., arXiv 2411.09822, UK Biobank) aligns
brain MRI with a clinical table; testing it needs subjects whose table and images carry
known, partly shared and partly separate signal about the outcome, at a realistic
prevalence, with a registry's label noise. The generative model (:mod:`.burden`):

    clinical factors -> latent small vessel burden z -> image markers -> T1 + FLAIR
    clinical factors (AF and cardiac disease only here) + z -> stroke -> written label

Atrial fibrillation and cardiovascular disease act on the outcome directly (nothing of
them is in the brain); the burden's residual (what the table cannot see) is what the image
markers add. Sex and age are risk factors and shape the markers (head size, atrophy), but
the images are rendered from the markers only (:mod:`.render` reads nothing else).
Calibrated (:mod:`.calibration`, measured in the tests) to REF's figures: logistic ROC-AUC
on the table ~0.70, on the image markers ~0.65-0.70, on both ~0.75, prevalence 5-10 %,
21 % of written strokes false.

Layout written by :func:`~.cohort.write_stroke_cohort` (``neuroreview stroke phantoms``)::

    sub-NNNNN/t1.nii.gz flair.nii.gz truth_lesions.nii.gz truth.json
    clinical.tsv   every subject's table (subject, set, the columns of tasks.stroke.labels)
    labels.tsv     the labelled subjects' written (noisy) stroke label, apart from the inputs
    truth.tsv      the clean outcome, true risk, burden and markers (never an input)

Where things are
----------------
:mod:`.literature`
    Every number, with its source (``../shared/REFERENCES.md``, "Stroke risk") or "chosen".
:mod:`.clinical`, :mod:`.burden`
    The table; the burden, markers, outcome and label noise (vectorised: 10^5 subjects
    in well under a second, no image).
:mod:`.calibration`
    The calibration figures, measured (scikit-learn, cross-validated).
:mod:`.template`, :mod:`.render`
    The MNI anatomy on the cohort grid (cached); T1 and FLAIR from a subject's markers
    (ventricles, WMH, lacunes, atrophy, head size; no microbleeds: invisible on T1/FLAIR).
:mod:`.cohort`
    Scanner draws, the files, workers and resume.
"""

from .burden import Population, draw_population, marker_matrix
from .calibration import measure_calibration, table_matrix
from .cohort import (
    MARKER_KEYS,
    TRUTH_COLUMNS,
    draw_scanner,
    render_subject,
    subject_markers,
    write_stroke_cohort,
)
from .render import LESION_LABELS, StrokeCase, render_markers

__all__ = [
    "LESION_LABELS", "MARKER_KEYS", "TRUTH_COLUMNS", "Population", "StrokeCase", "draw_population", "draw_scanner",
    "marker_matrix", "measure_calibration", "render_markers", "render_subject", "subject_markers", "table_matrix",
    "write_stroke_cohort",
]
