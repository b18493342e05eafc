"""Brain metastasis origin (SCLC, NSCLC, breast, gastrointestinal) from five MRI sequences (issue 12).

Modules (import them directly; this package imports nothing, so loading one does not pull
in torch):

* :mod:`.classes` - the four origins, the three binary nodes of the hierarchy (lung vs
  non-lung, then SCLC vs NSCLC and breast vs GI) and the four-class probabilities they imply.
* :mod:`.loss` - the hierarchical loss: binary cross-entropy of each node on its own lesions
  (the network is ``core.models.metastasis_net``).
* :mod:`.lesion_input` - which lesions to classify: a labels volume (one id per lesion) or a
  click on the contrast T1 that grows one, as an editable labels array on its grid.
* :mod:`.crops` - the samples: a world-axis cube around each lesion, every sequence resampled
  onto it through its own affine (DWI/ADC from their coarser grid), normalised by its scan,
  the lesion's mask (and oedema) kept apart for the Grad-CAM checks.
* :mod:`.train` - ``MetastasisConfig`` and ``MetastasisEstimator``: the network trained on
  crops through the one loop (hierarchical loss, flips and shifts), node or four-class
  probabilities, an estimator of ``core.metrics.cohort``.
* :mod:`.model` - ``metastasis-origin`` versions: save, load, the card's config checked first.
* :mod:`.labels` - a cohort's ``labels.tsv``: its columns and its one reader (the phantom
  writes it; ``core.tasks`` never imports the simulators).
* :mod:`.cohort_items` - a cohort's lesions as crops, read from its files one patient at a
  time, every file checked first; each node's AUC on its own lesions
  (``neuroreview metastasis train --data DIR``).
* :mod:`.classify` - the origin of each lesion of one session (node and four-class
  probabilities) and each node's Grad-CAM placed back onto the contrast T1's grid
  (``neuroreview metastasis classify``).
* :mod:`.baselines` - what a network must beat: a radiomics-style logistic regression
  (intensity statistics in the lesion and a shell around it, shape) and the ADC-ratio rule
  for SCLC vs NSCLC, both fitted inside the fold.
* :mod:`.evaluate` - ``evaluate_sites``: patient-grouped development CV with the model and
  sequences chosen in nested CV, one external-site test, per-node and four-class metrics at
  lesion and patient level with patient-bootstrap CIs, the sequence ablation table.
"""
