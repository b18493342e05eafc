"""benchmarks/stroke.py end to end on a tiny cohort: every row and column of both tables, and no test leakage.

The cohort is the phantom's own (``write_stroke_cohort``: table, labels, truth, the volume
switch), but each subject's scans are small noise boxes instead of the MNI render (about a
second a subject, and 40 s for the template): ``render_markers`` is replaced for this run,
as ``tests/stroke_synthetic`` does for the pretraining tests. The run is ``--quick``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import stroke as bench

from napari_neuroreview.core.phantoms.stroke import cohort as cohort_module
from napari_neuroreview.core.phantoms.stroke.render import StrokeCase
from napari_neuroreview.core.phantoms.swi_contract import phantom_image

#: About 25 CPU s (the images are 12 x 14 x 12; one epoch of each training, two seeds): in ``make test``,
#: the benchmark's one end-to-end run there. 150 subjects, 130 labelled: 8 / 2 / 2 strokes in labelled
#: train / val / test. 120 / 110 (4 / 1 / 1) and 20 bootstrap resamples took as long (23.6-27.1 CPU s
#: both, measured in turn): the cohort's size is not what costs here.
pytestmark = [pytest.mark.usefixtures("one_torch_thread")]


def _fake_render(markers: dict, scanner: dict) -> StrokeCase:
    """Noise over a box whose brightness follows the WMH volume (a weak image signal), 12 x 14 x 12 at 6 mm."""
    rng = np.random.default_rng(int(scanner["seed"]))
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    images = {}
    for seq in ("t1", "flair"):
        data = rng.uniform(0, 50, (12, 14, 12))
        data[2:-2, 3:-3, 2:-2] += 400 + 20 * np.log(markers["wmh_ml"])
        images[seq] = phantom_image(data.astype(np.int16), affine, "test")
    lesions = phantom_image(np.zeros((12, 14, 12), np.uint8), affine, "test", intent_label=True)
    return StrokeCase(images=images, lesions=lesions, truth={"markers": dict(markers)})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str]:
    folder = tmp_path_factory.mktemp("bench-stroke")
    out = io.StringIO()
    patch = pytest.MonkeyPatch()
    patch.setattr(cohort_module, "render_markers", _fake_render)
    try:
        with contextlib.redirect_stdout(out):
            assert bench.main(["--workdir", str(folder), "--quick", "--n", "150", "--labelled", "130",
                               "--workers", "1", "--threads", "1", "--json", str(folder / "s.json")]) == 0
    finally:
        patch.undo()
    return json.loads((folder / "s.json").read_text()), out.getvalue()


def test_both_tables_have_every_row_and_column_in_range(run) -> None:
    doc, text = run
    assert set(doc["variants"]) == set(bench.VARIANTS)
    for variant, res in doc["variants"].items():
        assert list(res["summary"]) == list(bench.ROWS)
        for row, s in res["summary"].items():
            for metric in ("roc_auc", "balanced_accuracy", "pr_auc"):
                assert len(s[metric]["seeds"]) == 2, (variant, row)
                assert 0.0 <= s[metric]["first"] <= 1.0, (variant, row, metric)
                low, high = s[metric]["ci95"]
                assert low is None or 0.0 <= low <= high <= 1.0, (variant, row, metric)
        assert res["best_ours"] in ("ours_frozen", "ours_trainable")
        assert not res["best_other"].startswith("ours")
        for d in res["paired_roc_auc"].values():
            assert math.isfinite(d["difference"])
    for label in ("logistic regression", "SCARF", "SimCLR", "oracle", "concatenation", "late fusion", "frozen",
                  "trainable", "verdict", "paired bootstrap"):
        assert label in text


def test_no_test_subject_in_pretraining_or_thresholds(run) -> None:
    doc, _ = run
    test = set(doc["subjects"]["labelled"]["test"])
    pre = doc["subjects"]["pretraining"]
    assert test and not test & (set(pre["train"]) | set(pre["val"]))
    assert set(doc["subjects"]["labelled"]["val"]) <= set(pre["val"])
    for res in doc["variants"].values():
        for mode in ("ours_frozen", "ours_trainable"):
            for info in res["info"][mode]:
                assert not test & set(info["heads_subjects"]) and not test & set(info["threshold_subjects"])
                assert set(info["threshold_subjects"]) == set(doc["subjects"]["labelled"]["val"])
        assert "no test subject" in res["pretrained"]["subjects"]
        # every row's threshold is Youden's on its VAL probabilities (recomputed here), never the test's
        from napari_neuroreview.core.metrics.classification import youden_threshold

        labels = np.array(doc["labels"]["val"])
        for row, runs in res["scored"].items():
            val_p = np.array(res["probabilities"][row][0][0])
            assert len(val_p) == labels.size, row
            assert runs[0]["threshold"] == pytest.approx(youden_threshold(labels, val_p)), row
