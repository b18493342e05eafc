"""The brain metastasis cohort phantom: patients whose metastases follow their primary's origin.

Why: classifying a metastasis's origin (SCLC, NSCLC, breast, GI; issue 12, after Jiao et al.,
JMRI 2023) from T1, T2, FLAIR, DWI/ADC and contrast T1 needs patients whose latent origin
sets how many lesions they have, how large, where and how they look, with the overlap the
literature reports (no single attribute separates two origins), scanned at three sites (A
and B: development, 3 T variants; C: an independent external site with another scanner and
class mix). The origin is the label: written only to the cohort's ``labels.tsv``, never
into a patient's images, headers, file names or ``truth.json``.

Sex and age cannot leak the class: breast primaries are female (and are so here), but no
image depends on sex or age (ages come from one distribution for every origin; they are
drawn last and only written to ``labels.tsv``); the tests render a patient with sex and age
changed and compare the voxels.

Where things are
----------------
:mod:`.literature`
    Every number, with its source (``../shared/REFERENCES.md``, "Metastasis origin") or
    "chosen"/"approximate".
:mod:`.lesions`
    :class:`~.lesions.Lesion` and :func:`~.lesions.draw_lesions`: a patient's lesions
    (count, size, location at the grey-white junction, watershed zones, cerebellum or deep
    grey matter, enhancement and necrosis, oedema, ADC ratio, T2-dark, haemorrhage).
:mod:`.shapes`
    A lesion's parts as partial-volume fractions on any grid.
:mod:`.render`
    The six sequences (:data:`~.render.SEQUENCES`; DWI and ADC on their own coarser grid),
    lesion and oedema labels, truth: the MRI contrast recipe.
:mod:`.cohort`
    :data:`~.cohort.SITES`, :func:`~.cohort.make_metastasis_patient` (no image: cheap enough to
    draw thousands for statistics), :func:`~.cohort.render_metastasis_patient`,
    :func:`~.cohort.write_metastasis_cohort` (``patient-NNNN/{t1,t2,flair,dwi,adc,ce_t1,
    lesions,oedema}.nii.gz`` + ``truth.json``; ``labels.tsv`` written last; workers, resume).
"""

from .cohort import (
    SITES,
    MetastasisPatient,
    Site,
    draw_scanner,
    make_metastasis_patient,
    metastasis_patients,
    patient_record,
    render_metastasis_patient,
    write_metastasis_cohort,
    write_metastasis_patient,
)
from .lesions import LOCATIONS, Lesion, draw_lesions
from .render import SEQUENCES, MetastasisCase

__all__ = [
    "LOCATIONS", "SEQUENCES", "SITES", "Lesion", "MetastasisCase", "MetastasisPatient", "Site",
    "draw_lesions", "draw_scanner", "make_metastasis_patient", "metastasis_patients", "patient_record",
    "render_metastasis_patient", "write_metastasis_cohort", "write_metastasis_patient",
]
