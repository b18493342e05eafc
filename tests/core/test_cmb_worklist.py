"""Which stored scans the microbleed worklist lists (core.tasks.cmb.worklist)."""

from __future__ import annotations

import numpy as np

from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks.cmb.worklist import worklist_states


def test_untouched_scans_of_other_modalities_are_left_out_and_microbleed_work_keeps_a_scan(tmp_path) -> None:
    with CaseStore(tmp_path / "store.sqlite") as store:
        names = {"sub-01_swi.nii.gz": 3, "brain.nii.gz": 3, "sub-01_T1w.nii.gz": 3, "sub-01_phase.nii.gz": 3,
                 "sub-01_FLAIR.nii.gz": 3, "sub-01_bold.nii.gz": 4, "sub-02_T1w.nii.gz": 3}
        sha = {}
        for n, (name, ndim) in enumerate(names.items()):
            sha[name] = f"{n + 1:064x}"
            store.register_image(tmp_path / name, sha[name], (8,) * ndim, np.eye(4))
        # microbleed work on a scan keeps it, whatever its name: a finding on sub-02's "T1w"
        store.add_findings(sha["sub-02_T1w.nii.gz"], [{"task": "cmb", "world_ras_mm": (1.0, 2.0, 3.0),
                                                       "voxel_ijk": None, "score": 0.5}])
        # a finding of another task is no microbleed work
        store.add_findings(sha["sub-01_FLAIR.nii.gz"], [{"task": "metastasis", "world_ras_mm": (1.0, 2.0, 3.0),
                                                         "voxel_ijk": None, "score": 0.5}])
        listed = [s.file_name for s in worklist_states(store.scan_states("cmb"))]
    assert listed == ["sub-01_swi.nii.gz", "brain.nii.gz", "sub-02_T1w.nii.gz"]
