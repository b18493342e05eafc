"""rs-fMRI networks: spatial ICA, matching to the five networks, the pre/post model.

Modules (import them directly; this package imports nothing so that loading one does
not pull in torch or scikit-learn):

* :mod:`.ica` - ``run_ica(bold, n_components, seed)``: spatial ICA of one BOLD scan.
* :mod:`.matching` - ``match_networks(comps)`` -> :class:`~.matching.Assignment` (one
  component per network, with scores and a confidence flag; overridable), and
  ``network_inputs(comps, assignment)``: the per-network map + time course a model reads.
* ``features``, ``model``, ``train``, ``evaluate``, ``cohort``: the two-stage pre/post model.

The ICA folder on disk (components.nii.gz, timecourses.tsv, networks.json) is read and
written by :mod:`napari_neuroreview.core.io.ica_folder`; networks.json itself (the
assignment) by :mod:`.assignment_io`.
"""

#: ICA defaults shared by ``run_ica``, ``neuroreview networks extract`` and every caller
#: that runs ICA in memory (import these names rather than repeating the numbers). Kept
#: here, in a module that imports nothing, so that the CLI's parser stays fast to build.
DEFAULT_N_COMPONENTS = 20
DEFAULT_SMOOTHING_FWHM_MM = 6.0
