"""The microbleed review session: every edit in the store at once, undo/redo, restore, guard."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.errors import GeometryError, ImageMismatchError, StoreError
from napari_neuroreview.core.store import MIGRATIONS, SCHEMA_VERSION, CaseStore
from napari_neuroreview.core.tasks.cmb.detect import CMBDetection, CMBResult
from napari_neuroreview.core.tasks.cmb.io import write_detections
from napari_neuroreview.core.tasks.cmb.review import ReviewSession

SHA_A = "a" * 64
SHA_B = "b" * 64
SHAPE = (20, 24, 12)
# LPS-stored, anisotropic: i runs right -> left, j anterior -> posterior.
AFFINE = np.array([[-1.0, 0, 0, 10.0], [0, -1.0, 0, 12.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])
CARD = {"name": "cmb-detector", "version": "0.1.0", "task": "cmb-detection", "config": {"threshold": 0.3}}


def world(ijk) -> tuple[float, float, float]:
    return tuple(float(v) for v in nib.affines.apply_affine(AFFINE, np.asarray(ijk, float)))


def fake_result(sha: str = SHA_A) -> CMBResult:
    """Three detections with small cubic masks, as detect.run would return them."""
    instances = np.zeros(SHAPE, np.uint16)
    detections = []
    for n, (centre, score) in enumerate([((5, 6, 3), 0.9), ((14, 18, 8), 0.7), ((10, 4, 6), 0.4)], start=1):
        i, j, k = centre
        instances[i - 1 : i + 2, j - 1 : j + 2, k : k + 1] = n
        detections.append(CMBDetection(n, world(centre), tuple(map(float, centre)), score, 9 * 2.0))
    return CMBResult(detections, instances, "/scans/swi.nii.gz", sha, AFFINE, {"name": "cmb-detector", "version": "0.1.0"},
                     0.3, "cpu", 10)


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite") as s:
        yield s


@pytest.fixture
def session(store: CaseStore) -> ReviewSession:
    s = ReviewSession.open(store, "/scans/swi.nii.gz", SHA_A, SHAPE, AFFINE, reviewer="dr.a")
    s.add_detections(fake_result(), card=CARD, phase_path="/scans/phase.nii.gz")
    return s


def committed(path: Path) -> tuple[list[tuple], list[str]]:
    """Reviews and audit actions as another process sees them (proves they are committed)."""
    con = sqlite3.connect(str(path))
    try:
        reviews = con.execute("SELECT finding_id, action, reviewer, note FROM reviews ORDER BY id").fetchall()
        audit = [row[0] for row in con.execute("SELECT action FROM audit ORDER BY id")]
    finally:
        con.close()
    return reviews, audit


def statuses(session: ReviewSession) -> dict[int, str]:
    return {f.id: f.status for f in session.findings}


def test_detections_become_model_findings_with_masks(session: ReviewSession, store: CaseStore) -> None:
    found = session.findings
    assert [f.score for f in found] == [0.9, 0.7, 0.4]
    assert all(f.source == "model" and f.model == ("cmb-detector", "0.1.0") and f.status == "pending" for f in found)
    top = found[0]
    np.testing.assert_allclose(top.world, world((5, 6, 3)))
    np.testing.assert_allclose(top.voxel, (5, 6, 3), atol=1e-9)  # file order, from the affine
    assert sorted(map(tuple, top.extra["mask_ijk"])) == sorted(
        (i, j, 3) for i in (4, 5, 6) for j in (5, 6, 7)
    )
    assert top.extra["phase_path"] == "/scans/phase.nii.gz" and top.extra["volume_mm3"] == 18.0
    assert store.model_versions("cmb-detector")[0].card == CARD
    # The same model version on the same scan again: nothing is duplicated.
    assert session.add_detections(fake_result(), card=CARD) == []
    assert len(store.findings_for(SHA_A, task="cmb")) == 3


def test_every_edit_is_committed_at_once_with_its_audit(session: ReviewSession, store: CaseStore) -> None:
    path = store.path
    a, b, c = (f.id for f in session.findings)
    expected = [
        (lambda: session.accept(a), (a, "accepted", "dr.a", None), "review.accepted"),
        (lambda: session.reject(b), (b, "rejected", "dr.a", None), "review.rejected"),
        (lambda: session.move(c, world((11, 4, 6))), (c, "moved", "dr.a", None), "review.moved"),
        (lambda: session.delete(a), (a, "rejected", "dr.a", "deleted"), "review.rejected"),
    ]
    for edit, review, audit_action in expected:
        before_reviews, before_audit = committed(path)
        edit()
        reviews, audit = committed(path)
        assert reviews == before_reviews + [review]
        assert audit == before_audit + [audit_action]
    before_reviews, before_audit = committed(path)
    new = session.add(world((8, 8, 8)))
    reviews, audit = committed(path)
    assert reviews == before_reviews + [(new, "added", "dr.a", None)]
    assert audit == before_audit + ["finding.added", "review.added"]
    assert statuses(session) == {a: "rejected", b: "rejected", c: "moved", new: "added"}
    assert session.findings[-1].id == new and session.findings[-1].source == "user"  # user-added last
    np.testing.assert_allclose(store.reviews_for(c)[-1].from_world, world((10, 4, 6)))


def test_undo_and_redo_write_compensating_reviews(session: ReviewSession, store: CaseStore) -> None:
    a, b, c = (f.id for f in session.findings)
    session.accept(a)
    session.move(b, world((13, 18, 8)))
    new = session.add(world((8, 8, 8)))
    session.delete(new)
    assert new not in statuses(session)  # a deleted user point is hidden
    n_reviews = store.summary()["reviews"]

    assert session.undo() == new and statuses(session)[new] == "added"
    assert session.undo() == new and new not in statuses(session)  # the add is undone
    assert session.undo() == b
    assert statuses(session)[b] == "pending"
    np.testing.assert_allclose(session.finding(b).world, world((14, 18, 8)))
    assert session.undo() == a and statuses(session)[a] == "pending"
    assert session.undo() is None and not session.can_undo
    assert store.summary()["reviews"] > n_reviews  # append-only: undo wrote, never deleted
    assert [r.action for r in store.reviews_for(a)] == ["accepted", "reset"]

    assert session.redo() == a and statuses(session)[a] == "accepted"
    assert session.redo() == b and statuses(session)[b] == "moved"
    np.testing.assert_allclose(session.finding(b).world, world((13, 18, 8)))
    assert session.redo() == new and statuses(session)[new] == "added"
    assert session.redo() == new and new not in statuses(session)
    assert session.redo() is None

    session.undo()  # the delete is undone ...
    session.reject(c)  # ... and a new edit drops the redo history
    assert not session.can_redo and statuses(session)[new] == "added"


def test_undo_of_an_accepted_move_restores_position_and_status(session: ReviewSession) -> None:
    a = session.findings[0].id
    session.accept(a)
    session.move(a, world((6, 6, 3)))
    session.undo()
    assert session.finding(a).status == "accepted"
    np.testing.assert_allclose(session.finding(a).world, world((5, 6, 3)))


def test_reopen_restores_statuses_and_positions(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with CaseStore(path) as store:
        s = ReviewSession.open(store, "/scans/swi.nii.gz", SHA_A, SHAPE, AFFINE, reviewer="dr.a")
        s.add_detections(fake_result(), card=CARD)
        a, b, c = (f.id for f in s.findings)
        s.accept(a)
        s.reject(b)
        s.move(c, world((11, 5, 6)))
        kept = s.add(world((3, 3, 3)))
        gone = s.add(world((4, 4, 4)))
        s.delete(gone)
        before = {f.id: (f.status, f.world) for f in s.findings}
    with CaseStore(path) as store:
        assert ReviewSession.has_review(store, SHA_A)
        again = ReviewSession.open(store, "/elsewhere/renamed.nii.gz", SHA_A, SHAPE, AFFINE, reviewer="dr.b")
        assert {f.id: (f.status, f.world) for f in again.findings} == before
        assert kept in before and gone not in before
        assert not again.can_undo  # undo history belongs to the session that made it
        again.accept(c)
        assert store.reviews_for(c)[-1].reviewer == "dr.b"


def test_another_scan_at_the_same_path_is_refused(session: ReviewSession, store: CaseStore, tmp_path: Path) -> None:
    det = tmp_path / "det.json"
    write_detections(fake_result(), det)
    counts = store.summary()
    other = ReviewSession.open(store, "/scans/swi.nii.gz", SHA_B, SHAPE, AFFINE, reviewer="dr.a")
    assert other.findings == []  # the re-acquired scan does not inherit the old review
    assert [r.sha256 for r in ReviewSession.other_scans_at_path(store, "/scans/swi.nii.gz", SHA_B)] == [SHA_A]
    with pytest.raises(ImageMismatchError, match="not to the loaded scan"):
        ReviewSession.reopen(store, session.image, SHA_B)
    counts_b = store.summary()
    with pytest.raises(ImageMismatchError, match="det.json: these detections were made on another scan"):
        other.import_detections(det)
    with pytest.raises(ImageMismatchError, match="another scan"):
        other.add_detections(fake_result(SHA_A))
    assert store.summary() == counts_b and counts_b["findings"] == counts["findings"]


def test_det_json_of_the_same_scan_imports_with_masks(store: CaseStore, tmp_path: Path) -> None:
    det, labels = tmp_path / "det.json", tmp_path / "det_labels.nii.gz"
    write_detections(fake_result(), det, labels)
    s = ReviewSession.open(store, "/scans/swi.nii.gz", SHA_A, SHAPE, AFFINE)
    added = s.import_detections(det, labels)
    assert len(added) == 3 and len(added[0].extra["mask_ijk"]) == 9


def test_bad_positions_and_unknown_findings_write_nothing(session: ReviewSession, store: CaseStore) -> None:
    counts = store.summary()
    with pytest.raises(GeometryError, match="outside the scan"):
        session.add(world((40, 5, 5)))
    with pytest.raises(GeometryError, match="outside the scan"):
        session.move(session.findings[0].id, world((5, -3, 5)))
    with pytest.raises(StoreError, match="not a microbleed"):
        session.accept(10_000)
    assert store.summary() == counts


def test_export_labels_on_the_source_grid_and_points_in_world_ras(session: ReviewSession, tmp_path: Path) -> None:
    a, b, c = (f.id for f in session.findings)
    session.accept(a)
    session.reject(b)
    new = session.add(world((17, 3, 10)))
    paths = session.export(tmp_path / "cmb_dseg.nii.gz", tmp_path / "cmb.json", tmp_path / "cmb.tsv")
    assert [p.name for p in paths] == ["cmb_dseg.nii.gz", "cmb.json", "cmb.tsv"]
    img = nib.load(str(paths[0]))
    np.testing.assert_allclose(img.affine, AFFINE)
    labels = np.asarray(img.dataobj)
    # Decided microbleeds only: pending (c) and rejected (b) are left out by default.
    assert labels.shape == SHAPE and set(np.unique(labels)) == {0, a, new}
    assert labels[5, 6, 3] == a and (labels == a).sum() == 9 and labels[17, 3, 10] == new
    doc = json.loads(paths[1].read_text())
    assert doc["image_sha256"] == SHA_A and doc["space"] == "world RAS+ mm"
    assert doc["label_statuses"] == ["accepted", "added", "moved"]
    by_id = {p["id"]: p for p in doc["points"]}
    np.testing.assert_allclose(by_id[a]["world_ras_mm"], world((5, 6, 3)))
    assert by_id[a]["status"] == "accepted" and by_id[b]["status"] == "rejected"
    assert by_id[new]["source"] == "user" and by_id[a]["model_version"] == "0.1.0"
    header = paths[2].read_text().splitlines()[0].split("\t")
    assert header[:3] == ["x_ras_mm", "y_ras_mm", "z_ras_mm"] and "status" in header


def test_moved_detection_exports_its_mask_at_the_new_place(session: ReviewSession, tmp_path: Path) -> None:
    a = session.findings[0].id
    session.move(a, world((7, 6, 3)))
    labels = session.instances()
    assert labels[7, 6, 3] == a and labels[4, 6, 3] == 0 and (labels == a).sum() == 9


def test_v1_store_migrates_keeps_rows_and_accepts_reset(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(str(path), isolation_level=None)
    con.executescript(MIGRATIONS[0])
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO images VALUES (7, '/s.nii', ?, '[20, 24, 12]', ?, 't0')", (SHA_A, json.dumps(AFFINE.tolist())))
    con.execute("INSERT INTO findings (id, image_id, task, world_x, world_y, world_z, vox_i, vox_j, vox_k, source, "
                "created_at) VALUES (3, 7, 'cmb', 5, 6, -6, 5, 6, 3, 'user', 't1')")
    con.execute("INSERT INTO reviews VALUES (11, 3, 'added', 'dr.a', 't2', NULL, NULL, 'old')")
    con.execute("INSERT INTO reviews VALUES (12, 3, 'accepted', 'dr.a', 't3', NULL, NULL, NULL)")
    con.execute("INSERT INTO audit (id, at, actor, action, entity) VALUES (5, 't2', 'dr.a', 'review.added', 'review')")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO reviews VALUES (13, 3, 'reset', 'dr.a', 't4', NULL, NULL, NULL)")
    con.close()

    assert SCHEMA_VERSION == 4
    with CaseStore(path) as store:
        assert [(r.id, r.action, r.note) for r in store.reviews_for(3)] == [(11, "added", "old"), (12, "accepted", None)]
        assert store.findings_for(SHA_A)[0].status == "accepted"
        store.review(3, "reset", "dr.b")
        assert store.findings_for(SHA_A)[0].status == "pending"
        assert store.audit_log()[0]["id"] == 5
    con = sqlite3.connect(str(path))
    assert con.execute("PRAGMA user_version").fetchone()[0] == 4
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'reviews_by_finding'").fetchone()
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(sqlite3.IntegrityError):  # the constraint is still there, widened by one word
        con.execute("INSERT INTO reviews VALUES (20, 3, 'bogus', 'x', 't', NULL, NULL, NULL)")
    con.close()
