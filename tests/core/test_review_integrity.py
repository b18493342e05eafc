"""Two review sessions on one scan never overwrite each other (issue 8, class 13), and the
review's exports hold what they say and nothing private (item 6, class 10)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.errors import OutputPathError, StoreError
from napari_neuroreview.core.store import CaseStore, ReviewConflictError
from napari_neuroreview.core.tasks.cmb import review_export as review_module
from napari_neuroreview.core.tasks.cmb.review import ReviewSession

from test_cmb_review import AFFINE, CARD, SHA_A, SHAPE, fake_result, world


@pytest.fixture
def two(tmp_path: Path):
    """Two sessions (dr.a, dr.b) on one scan, each with its own connection to one store file."""
    path = tmp_path / "cases.sqlite"
    store_a, store_b = CaseStore(path), CaseStore(path)
    a = ReviewSession.open(store_a, "/scans/swi.nii.gz", SHA_A, SHAPE, AFFINE, reviewer="dr.a")
    a.add_detections(fake_result(), card=CARD)
    b = ReviewSession.open(store_b, "/scans/swi.nii.gz", SHA_A, SHAPE, AFFINE, reviewer="dr.b")
    yield a, b
    store_a.close()
    store_b.close()


def snapshot(session: ReviewSession) -> tuple:
    """Everything a write could change, as the store holds it."""
    s = session.store.summary()
    found = session.store.findings_for(SHA_A)
    return s["reviews"], s["audit"], [(f.id, f.status, f.world, f.version) for f in found]


# ---------------------------------------------------------------- class 13: two sessions


def test_stale_undo_is_refused_and_keeps_the_other_decision(two) -> None:
    a, b = two
    x = a.findings[0].id
    a.accept(x)
    b.reload()
    b.reject(x)  # dr.b saw dr.a's accept and decided otherwise
    before = snapshot(a)
    with pytest.raises(ReviewConflictError, match=rf"Finding {x} was changed by dr\.b at .* in another session.*"
                                                  "reload the review"):
        a.undo()
    assert snapshot(a) == before  # nothing written, not even an audit row
    assert a.store.findings_for(SHA_A)[0].status == "rejected"
    assert a.can_undo  # the refused step is still there ...
    a.reload()  # ... until the reviewer reloads the review
    assert a.finding(x).status == "rejected" and not a.can_undo and not a.can_redo


def test_edit_from_a_stale_view_is_refused(two) -> None:
    a, b = two
    x = a.findings[0].id
    b.reject(x)  # dr.a has not seen this
    before = snapshot(a)
    with pytest.raises(ReviewConflictError, match="changed by dr.b"):
        a.accept(x)
    with pytest.raises(ReviewConflictError):
        a.move(x, world((6, 6, 3)))
    assert snapshot(a) == before
    a.reload()
    assert a.accept(x).status == "accepted"  # with the other decision seen, the edit is allowed


def test_undo_over_a_decision_seen_through_a_reload_is_refused(two) -> None:
    """The other session's change arrived in this view by reloading after an own edit."""
    a, b = two
    x, y = a.findings[0].id, a.findings[1].id
    a.accept(x)
    b.reload()
    b.reject(x)
    a.accept(y)  # re-reads the store: a now shows x as rejected by dr.b
    assert a.finding(x).status == "rejected"
    assert a.undo() == y  # y is still a's own
    before = snapshot(a)
    with pytest.raises(ReviewConflictError, match=f"Finding {x} was changed by dr.b"):
        a.undo()
    assert snapshot(a) == before


def test_stale_redo_is_refused(two) -> None:
    a, b = two
    x = a.findings[0].id
    a.accept(x)
    a.undo()
    b.reload()
    b.reject(x)
    before = snapshot(a)
    with pytest.raises(ReviewConflictError, match="changed by dr.b"):
        a.redo()
    assert snapshot(a) == before


def test_own_history_undoes_across_sessions_of_other_findings(two) -> None:
    """Another session working on other findings does not block this session's undo."""
    a, b = two
    x, y = a.findings[0].id, a.findings[1].id
    a.accept(x)
    a.move(x, world((6, 6, 3)))
    b.reload()
    b.reject(y)
    assert a.undo() == x and a.undo() == x
    assert a.finding(x).status == "pending"
    np.testing.assert_allclose(a.finding(x).world, world((5, 6, 3)))
    assert a.store.findings_for(SHA_A)[1].status == "rejected"


def test_store_review_names_the_version_it_saw(tmp_path: Path) -> None:
    with CaseStore(tmp_path / "cases.sqlite") as store:
        store.register_image("/s.nii.gz", SHA_A, SHAPE, AFFINE)
        f = store.add_finding(SHA_A, "cmb", world((5, 6, 3)), None, score=0.9)
        assert f.version == 0
        store.review(f.id, "accepted", "dr.a", expected_version=0)
        assert store.findings_for(SHA_A)[0].version == 1
        counts = store.summary()
        with pytest.raises(ReviewConflictError, match="changed by dr.a"):
            store.review(f.id, "rejected", "dr.b", expected_version=0)
        assert store.summary() == counts and store.verify().ok
        store.review(f.id, "rejected", "dr.b")  # without a version: the old, unchecked write
        assert store.findings_for(SHA_A)[0].version == 2


# ---------------------------------------------------------------- item 6 / class 10: exports


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    """A real scan file in a folder named after a patient."""
    folder = tmp_path / "Doe_Jane_1961"
    folder.mkdir()
    path = folder / "swi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), AFFINE), str(path))
    return path


def reviewed(store: CaseStore, scan: Path, reviewer: str | None) -> ReviewSession:
    s = ReviewSession.open(store, scan, SHA_A, SHAPE, AFFINE, reviewer=reviewer)
    s.add_detections(fake_result(), card=CARD)
    a, b, _c = (f.id for f in s.findings)
    s.accept(a)
    s.reject(b)
    return s


def test_export_holds_no_folder_nor_os_login(tmp_path: Path, scan: Path, monkeypatch) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "jdoe7")
    out = tmp_path / "out"
    out.mkdir()
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = reviewed(store, scan, reviewer=None)  # nobody typed a name: the login
        assert session.reviewer == "jdoe7"
        session.export(out / "l.nii.gz", out / "p.json", out / "p.tsv")
        text = (out / "p.json").read_text() + (out / "p.tsv").read_text()
        assert "Doe_Jane" not in text and str(tmp_path) not in text and "jdoe7" not in text
        doc = json.loads((out / "p.json").read_text())
        assert doc["image"] == "swi.nii.gz" and doc["image_sha256"] == SHA_A
        assert doc["reviewer"] == "unnamed reviewer"
        session.reviewer = "Dr. A. Reader"  # a name typed on purpose is kept
        session.export(json_path=out / "p.json", include_paths=True)
        doc = json.loads((out / "p.json").read_text())
        assert doc["reviewer"] == "Dr. A. Reader" and doc["image_path"] == str(scan)


def test_export_statuses_are_chosen_and_said(tmp_path: Path, scan: Path) -> None:
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = reviewed(store, scan, reviewer="dr.a")
        a, b, c = (f.id for f in session.findings)
        session.export(tmp_path / "l.nii.gz", tmp_path / "p.json", statuses=("pending", "accepted"))
        labels = np.asarray(nib.load(str(tmp_path / "l.nii.gz")).dataobj)
        assert set(np.unique(labels)) == {0, a, c}
        assert json.loads((tmp_path / "p.json").read_text())["label_statuses"] == ["pending", "accepted"]
        with pytest.raises(StoreError, match="cannot export status 'acepted'"):
            session.export(tmp_path / "x.nii.gz", statuses=("acepted",))
        assert not (tmp_path / "x.nii.gz").exists()


def test_export_onto_the_scan_is_refused_before_writing(tmp_path: Path, scan: Path) -> None:
    before = scan.read_bytes()
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = reviewed(store, scan, reviewer="dr.a")
        with pytest.raises(OutputPathError, match="is an input"):
            session.export(scan, tmp_path / "p.json", tmp_path / "p.tsv")
        with pytest.raises(OutputPathError, match="is an input"):
            session.export(json_path=store.path.with_suffix(".json"), tsv_path=tmp_path / "p.tsv",
                           labels_path=store.path)
        with pytest.raises(OutputPathError, match="must end in .json"):
            session.export(tmp_path / "l.nii.gz", tmp_path / "p.txt")
    assert scan.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Doe_Jane_1961", "cases.sqlite"]


def test_export_writes_all_files_or_none(tmp_path: Path, scan: Path, monkeypatch) -> None:
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = reviewed(store, scan, reviewer="dr.a")
        out = tmp_path / "out"
        out.mkdir()
        paths = session.export(out / "l.nii.gz", out / "p.json", out / "p.tsv")
        old = {p: p.read_bytes() for p in paths}
        session.accept(session.findings[2].id)
        real = review_module.save_points

        def full_disk(path, records, image=None):
            if str(path).endswith(".tsv"):
                raise OSError(28, "No space left on device")
            return real(path, records, image)

        monkeypatch.setattr(review_module, "save_points", full_disk)
        with pytest.raises(OutputPathError, match="No space left on device"):  # one sentence, nothing changed
            session.export(*paths)
        assert {p: p.read_bytes() for p in paths} == old  # the earlier export, intact
        assert sorted(p.name for p in out.iterdir()) == ["l.nii.gz", "p.json", "p.tsv"]  # no temporaries
