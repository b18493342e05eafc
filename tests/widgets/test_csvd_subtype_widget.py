"""The small vessel disease subtype panel on the committed CMB sample, after a review, as a user drives it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

import napari_user as user
from napari_neuroreview.core.anatomy.mars import MARS_CLASSES, regions_at
from napari_neuroreview.core.tasks.cmb.locations import SIDE_LETTERS
from napari_neuroreview.core.tasks.csvd.baselines import SUBTYPES
from napari_neuroreview.widgets._cmb_layers import ATTENTION_SIZE, POINT_SIZE
from napari_neuroreview.widgets._cmb_locations import LOCATING
from napari_neuroreview.widgets._cmb_table import COLUMNS
from napari_neuroreview.widgets.csvd_subtype import CAVEAT, SubtypeWidget

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"
REGION, SIDE, ATTENTION = COLUMNS.index("region"), COLUMNS.index("side"), COLUMNS.index("attention")


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch) -> Path:
    """Default store and model registry inside the test's folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture
def reviewed(make_napari_viewer, qtbot, tmp_path):
    """The sample SWI and phase opened, the shipped detector run in the review widget, the subtype panel docked."""
    viewer = make_napari_viewer()
    viewer.open(str(SAMPLE / "sub-demo_swi.nii.gz"), plugin="napari-neuroreview")
    viewer.open(str(SAMPLE / "sub-demo_phase.nii.gz"), plugin="napari-neuroreview")
    review = user.dock(viewer, "Microbleed review")
    review.new_store(tmp_path / "reviews.sqlite")
    review.swi_combo.setCurrentText("sub-demo_swi")
    review.phase_combo.setCurrentText("sub-demo_phase")
    review.device.combo.setCurrentText("cpu")
    review.runner.run_button.click()
    qtbot.waitUntil(lambda: not review.runner.running, timeout=60_000)
    assert len(review.session.findings) >= 6
    panel = user.dock(viewer, "Small vessel disease subtype")
    assert isinstance(panel, SubtypeWidget)
    panel.device.combo.setCurrentText("cpu")
    assert panel.swi.currentText() == "sub-demo_swi" and panel.phase.currentText() == "sub-demo_phase"
    return viewer, review, panel


def classify(panel, qtbot) -> None:
    panel.runner.run_button.click()
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=60_000)
    assert panel.runner.last_error is None


def shown_percentages(panel) -> dict[str, float]:
    return {s: float(panel.bars[s].format().rstrip(" %")) for s in SUBTYPES}


def expected_counts(panel, findings) -> dict[str, int]:
    """MARS classes of the findings, looked up from their positions through the result's registration."""
    world = np.array([f.world for f in findings]).reshape(-1, 3)
    classes = Counter(r.mars_class for r in regions_at(panel.result.transform.to_mni(world))) if len(world) else {}
    return {c: classes.get(c, 0) for c in MARS_CLASSES}


def test_classify_after_review_then_reject_reruns_without_that_microbleed(reviewed, qtbot) -> None:
    viewer, review, panel = reviewed
    review.table.selectRow(0)
    review.accept_button.click()  # accepts the first, moves on to the second
    review.reject_button.click()  # rejects the second
    review._edit(lambda: review.session.add((-40.0, -20.0, 8.0)))  # what "n" at the cursor does
    findings = review.session.findings
    rejected = [f.id for f in findings if f.status == "rejected"]
    counted = [f for f in findings if f.status != "rejected"]
    assert len(rejected) == 1 and {f.status for f in counted} == {"accepted", "pending", "added"}
    assert "pending count as the detector's call" in panel.source.text() and "1 rejected left out" in panel.source.text()

    classify(panel, qtbot)
    result = panel.result
    assert sorted(s.id for s in result.sites) == sorted(f.id for f in counted)
    assert sum(shown_percentages(panel).values()) == pytest.approx(100.0, abs=0.2)
    assert sum(panel.bars[s].value() for s in SUBTYPES) == pytest.approx(1000, abs=2)
    assert panel.bar_labels[result.prediction].font().bold()
    assert sum(panel.bar_labels[s].font().bold() for s in SUBTYPES) == 1
    assert panel.mars_counts() == expected_counts(panel, counted)
    assert panel.caveat.text() == CAVEAT and panel.stale.text() == ""

    # The review's table and points show each counted microbleed's region and attention.
    rows = {int(review.table.item(r, 0).text()): r for r in range(review.table.rowCount())}
    attention = dict(zip((s.id for s in result.sites), result.attention))
    qtbot.waitUntil(lambda: all(review.table.item(r, REGION).text() != LOCATING  # the review's own
                                for r in range(review.table.rowCount())), timeout=300_000)
    for site in result.sites:  # registration (the same, cached per scan) places every finding, rejected ones too
        assert review.table.item(rows[site.id], REGION).text() == site.region.region
        assert review.table.item(rows[site.id], SIDE).text() == SIDE_LETTERS[site.region.side]
        assert float(review.table.item(rows[site.id], ATTENTION).text()) == pytest.approx(attention[site.id], abs=0.005)
    assert review.table.item(rows[rejected[0]], ATTENTION).text() == ""
    sizes = dict(zip(review.layers.order, np.asarray(review.layers.points.size)))
    top = max(attention, key=attention.get)
    assert sizes[top] == pytest.approx(POINT_SIZE + ATTENTION_SIZE) and sizes[rejected[0]] == POINT_SIZE

    # Reject a counted microbleed with the 'r' key: stale at once, classified again without it.
    gone = next(f for f in counted if f.status == "pending")
    review.jump_to(gone.id)
    user.key(viewer, Qt.Key.Key_R)
    assert review.session.finding(gone.id).status == "rejected"
    assert panel.stale.text().startswith("Stale")
    before = panel.mars_counts()
    qtbot.waitUntil(lambda: panel.result is not result and not panel.runner.running, timeout=60_000)
    assert gone.id not in {s.id for s in panel.result.sites} and len(panel.result.sites) == len(counted) - 1
    after = panel.mars_counts()
    assert sum(before.values()) - sum(after.values()) == 1
    assert after == expected_counts(panel, [f for f in review.session.findings if f.status != "rejected"])
    assert panel.stale.text() == "" and review.table.item(rows[gone.id], ATTENTION).text() == ""


def test_cancel_stops_the_classification(reviewed, qtbot) -> None:
    _viewer, _review, panel = reviewed
    panel.runner.run_button.click()
    assert panel.runner.running
    panel.runner.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=30_000)
    assert panel.runner.status.text() == "Cancelled" and panel.result is None
    assert all(panel.bars[s].value() == 0 for s in SUBTYPES) and panel.verdict.text() == "Not classified yet"


def test_a_patient_without_microbleeds_is_classified(reviewed, qtbot) -> None:
    _viewer, review, panel = reviewed
    for finding in review.session.findings:
        review.session.reject(finding.id)
    review._sync()
    assert "From the review: 0 microbleeds" in panel.source.text()
    classify(panel, qtbot)
    assert panel.result.sites == [] and "no microbleeds" in panel.verdict.text()
    assert sum(shown_percentages(panel).values()) == pytest.approx(100.0, abs=0.2)
    assert panel.mars_counts() == {c: 0 for c in MARS_CLASSES}
