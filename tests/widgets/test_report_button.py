"""The Case widget's Report button, as a radiologist uses it: open the scan, the store, click, save."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from napari_user import dock
from qtpy.QtCore import QPoint, Qt
from report_case import reviewed_case

from napari_neuroreview.core.report import browser
from napari_neuroreview.widgets import case as case_module


@pytest.fixture
def opened(make_napari_viewer, tmp_path: Path):
    reviewed = reviewed_case(tmp_path / "case")
    viewer = make_napari_viewer()
    viewer.open(str(reviewed.scan), plugin="napari-neuroreview")
    widget = dock(viewer, "Case")
    widget.store_path.setText(str(reviewed.store))
    return viewer, widget, reviewed


def _save_as(monkeypatch: pytest.MonkeyPatch, answer: str, asked: list[str]) -> None:
    """The save dialog answers ``answer`` (what the user typed); records the name it suggested."""
    def dialog(parent, title, suggested, filters):
        asked.append(suggested)
        return answer, filters
    monkeypatch.setattr(case_module.QFileDialog, "getSaveFileName", dialog)


def _click_report(qtbot, widget) -> None:
    qtbot.mouseClick(widget.report_runner.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.report_runner.running, timeout=120_000)


def test_report_button_writes_the_report_in_the_worker_and_says_where(opened, qtbot, monkeypatch, tmp_path,
                                                                      notifications) -> None:
    _viewer, widget, reviewed = opened
    asked: list[str] = []
    _save_as(monkeypatch, str(tmp_path / "out" / "my report"), asked)  # typed without a suffix
    (tmp_path / "out").mkdir()
    started: list[bool] = []
    widget.report_runner.run_button.clicked.connect(lambda: started.append(widget.report_runner.running))
    _click_report(qtbot, widget)
    assert started == [True]  # the click returned with the report still being made (a worker, not the GUI thread)
    html = tmp_path / "out" / "my report.html"
    page = html.read_text(encoding="utf-8")
    ids = set(re.findall(r'id="(cmb-\d+)"', page))
    assert ids == {f"cmb-{i}" for i in reviewed.accepted + reviewed.added}
    assert Path(asked[0]).name == f"scan-{reviewed.sha256[:8]}_report.html"  # a pseudonym, not the file's name
    assert str(html) in widget.report_label.text()
    assert any(str(html) in message for message in notifications)
    assert widget.report_runner.last_error is None


def test_report_of_a_changed_scan_is_one_sentence_and_writes_nothing(opened, qtbot, monkeypatch, tmp_path,
                                                                     notifications) -> None:
    import nibabel as nib
    import numpy as np

    _viewer, widget, reviewed = opened
    img = nib.load(reviewed.scan)
    data = np.asarray(img.dataobj, np.float32)
    data[0, 0, 0] += 1
    nib.save(nib.Nifti1Image(data, img.affine, img.header), reviewed.scan)  # replaced on disk after opening
    _save_as(monkeypatch, str(tmp_path / "r.html"), [])
    _click_report(qtbot, widget)
    assert not (tmp_path / "r.html").exists()
    assert "not the ones reviewed under this path" in widget.report_runner.status.text()
    assert any("not the ones reviewed" in message for message in notifications)


def test_cancelled_dialog_does_nothing(opened, qtbot, monkeypatch, tmp_path) -> None:
    _viewer, widget, _reviewed = opened
    _save_as(monkeypatch, "", [])
    _click_report(qtbot, widget)
    assert widget.report_runner.last_error is None and widget.report_runner.status.text() == ""
    assert not list(tmp_path.glob("*.html"))


@pytest.mark.skipif(not browser.available() and not os.environ.get("CI"), reason="headless Chromium is not installed here")
def test_pdf_box_prints_the_pdf_beside(opened, qtbot, monkeypatch, tmp_path) -> None:
    _viewer, widget, _reviewed = opened
    _save_as(monkeypatch, str(tmp_path / "r.html"), [])
    qtbot.mouseClick(widget.report_pdf, Qt.MouseButton.LeftButton, pos=QPoint(8, widget.report_pdf.height() // 2))
    assert widget.report_pdf.isChecked()
    _click_report(qtbot, widget)
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF") and (tmp_path / "r.html").is_file()
