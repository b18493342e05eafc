"""Small vessel disease subtype (arteriolosclerosis, CAA, CADASIL) from a patient's microbleeds.

Modules (import them directly; this package imports nothing, so loading one does not pull
in torch or the atlas):

* :mod:`.bags` - a patient's microbleeds as a :class:`~.bags.Bag` of instance features
  (the detector's frozen patch embedding, MNI position, size, MARS region, side, class).
* :mod:`.train` - the MIL networks (``core.models.mil``) trained by ``core.train.loop``
  on bags, and :class:`~.train.MILEstimator`, an estimator of ``core.metrics.cohort``.
"""
