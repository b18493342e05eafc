"""Small vessel disease subtype (arteriolosclerosis, CAA, CADASIL) from a patient's microbleeds.

Modules (import them directly; this package imports nothing, so loading one does not pull
in torch or the atlas):

* :mod:`.bags` - a patient's microbleeds as a :class:`~.bags.Bag` of instance features
  (the detector's frozen patch embedding, MNI position, size, MARS region, side, class).
* :mod:`.train` - the MIL networks (``core.models.mil``) trained by ``core.train.loop``
  on bags, and :class:`~.train.MILEstimator`, an estimator of ``core.metrics.cohort``.
* :mod:`.baselines` - MARS counts, the Boston criteria v2.0 rule, logistic regression on
  MARS counts: what the MIL model must beat.
* :mod:`.evaluate` - development CV on two centres, one external test on the third.
* :mod:`.cohort_items` - a rendered subtype cohort's patients as model items (scan read,
  registered to MNI, true or detected microbleeds).
* :mod:`.model` - the saved subtype model (card, safetensors) and its loading.
* :mod:`.classify` - one scan's subtype: its microbleeds (given or detected) -> MNI,
  regions, bag -> probabilities and each microbleed's attention (``csvd classify``).
"""
