"""Stroke risk from brain MRI and a clinical table (issue 13).

Modules (import them directly; this package imports nothing):

* :mod:`.labels` - a stroke cohort's files: ``clinical.tsv`` (the table's columns, units and
  ranges), ``labels.tsv`` (the written label, apart from the inputs) and their one reader (the
  phantom writes them; ``core.tasks`` never imports the simulators).
* :mod:`.split` - the one persisted train/val/test split of a cohort (by subject, stratified by
  the label), shared by pretraining and every downstream step.
* :mod:`.tabular` - the table's encoding (fitted on training subjects) and SCARF corruption.
* :mod:`.pretrain` - CLIP + image-tabular matching pretraining on the one loop (DDP under torchrun).
* :mod:`.downstream` - the risk heads (image, table, fused; their ensemble) on the pretrained
  encoders, frozen or trainable, on the pretrained split; signed Youden thresholds on val; the
  ``stroke-risk`` registry version and ``load_risk_model``.
* :mod:`.evaluate` - ``score_binary`` (ROC-AUC, PR-AUC, balanced accuracy, sensitivity,
  specificity with subject-bootstrap CIs) and the one scoring of a split's test subjects.
* :mod:`.schema` - the clinical table's documented columns (unit, type, range, blank allowed) and
  ``validate_row``, the one parser of every cell :mod:`.labels` reads.
* :mod:`.explain` - Grad-CAM of the ensemble logit on the subject's grid; the modality shares.
* :mod:`.predict` - one subject's risk from a T1 (+ FLAIR) and their clinical row (``stroke predict``).
"""
