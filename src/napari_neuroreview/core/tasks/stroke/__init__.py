"""Stroke risk from brain MRI and a clinical table (issue 13).

Modules (import them directly; this package imports nothing):

* :mod:`.labels` - a stroke cohort's files: ``clinical.tsv`` (the table's columns, units and
  ranges), ``labels.tsv`` (the written label, apart from the inputs) and their one reader (the
  phantom writes them; ``core.tasks`` never imports the simulators).
"""
