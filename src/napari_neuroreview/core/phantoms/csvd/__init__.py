"""The small vessel disease subtype cohort phantom: patients whose microbleeds follow their disease.

Why: a classifier of the subtype from a patient's microbleeds (issue 11) needs patients
whose latent disease — arteriolosclerosis (aSVD), cerebral amyloid angiopathy (CAA) or
CADASIL — sets how many microbleeds they have and where, with the overlap the literature
reports, scanned at three "centres" (scanner variants with different class mixes). The
generator's latent subtype is the label; it is written only to the cohort's ``labels.tsv``,
never into a patient's images or truth.

:func:`~.cohort.make_csvd_patient` draws one patient (no image: the site list, cheap enough to
sample thousands for statistics), :func:`~.cohort.render_csvd_patient` scans it on its centre's
simulator (``make_swi_case(cmb_sites=..., siderosis=...)`` of ``core.phantoms.swi`` or
``core.phantoms.swi_physics``), :func:`~.cohort.write_csvd_cohort` writes a cohort in the layout of
``core.phantoms.swi.cohort.write_swi_cohort`` plus ``labels.tsv``.

Numbers (``../shared/REFERENCES.md``, "Small vessel disease subtype from microbleeds",
abbreviated *REF* below; every other number says it was chosen, and why):

- Counts: per subtype a zero share and, for the CMB-positive, ``1 + NegBin(mean, k)``
  (over-dispersed: variance >> mean, SD > mean) — :data:`~.literature.ZERO_SHARE`, :data:`~.literature.COUNT_NB`.
  Background microbleeds on top (:data:`~.literature.BACKGROUND_SHARE`). Rendered counts are capped at
  :data:`~.literature.MAX_RENDERED_CMB`; the latent count is kept.
- Locations (:mod:`.sites`): MARS regions of ``core.anatomy.mars``
  (:func:`~..anatomy.mars.region_points`), per subtype :data:`~.literature.ASVD_REGIONS`,
  :data:`~.literature.CAA_LOBE_FACTORS`, :data:`~.literature.CADASIL_REGIONS`; lobar microbleeds at the
  cortico-subcortical junction (``juxtacortical=True``).
- Cortical superficial siderosis (cSS): :data:`~.literature.CSS_SHARE`, drawn as 1-3 thin layers along
  the cortical surface of a lobe (:class:`~..swi_contract.SiderosisSite`).
- Sizes: true diameter 2-10 mm, skewed small as both simulators draw them
  (``swi.lesions._draw_diameter``).
"""

from .cohort import (
    CENTRES,
    Centre,
    CSVDPatient,
    csvd_patients,
    make_csvd_patient,
    patient_record,
    render_csvd_patient,
    write_csvd_cohort,
    write_csvd_patient,
)
from .literature import MAX_RENDERED_CMB, SUBTYPES, draw_cmb_count

__all__ = [
    "CENTRES", "MAX_RENDERED_CMB", "SUBTYPES", "CSVDPatient", "Centre", "csvd_patients",
    "draw_cmb_count", "make_csvd_patient", "patient_record", "render_csvd_patient",
    "write_csvd_cohort", "write_csvd_patient",
]
