"""A scan's sign-off in the store: states, refusals, audit entries, the worklist's next scan, migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CaseStore,
    SignedOffError,
    audit,
    next_to_review,
)
from napari_neuroreview.core.store.schema import _run_migration

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
AFFINE = np.array([[-1.0, 0.0, 0.0, 90.0], [0.0, -1.0, 0.0, 126.0], [0.0, 0.0, 2.0, -72.0], [0, 0, 0, 1]])


def world(ijk: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z, _ = AFFINE @ np.array([*ijk, 1.0])
    return (float(x), float(y), float(z))


def two_findings(store: CaseStore, sha: str, path: str) -> list[int]:
    store.register_image(path, sha, (10, 10, 10), AFFINE)
    items = [{"task": "cmb", "world_ras_mm": world(ijk), "voxel_ijk": None, "score": 0.9} for ijk in ((2, 3, 4), (5, 5, 5))]
    return [f.id for f in store.add_findings(sha, items)]


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite") as s:
        yield s


def states(store: CaseStore) -> dict[str, tuple[str, int, int]]:
    return {s.file_name: (s.state, s.reviewed, s.findings) for s in store.scan_states("cmb")}


def test_pending_in_review_signed_off_and_reopened_with_audit_entries(store: CaseStore) -> None:
    a1, a2 = two_findings(store, SHA_A, "/scans/sub-01_swi.nii.gz")
    two_findings(store, SHA_B, "/scans/sub-02_swi.nii.gz")
    assert states(store) == {"sub-01_swi.nii.gz": ("pending", 0, 2), "sub-02_swi.nii.gz": ("pending", 0, 2)}

    store.review(a1, "accepted", "dr.a")
    assert states(store)["sub-01_swi.nii.gz"] == ("in review", 1, 2)
    with pytest.raises(StoreError, match=r"sub-01_swi.nii.gz has 1 of 2 findings still undecided"):
        store.sign_off(SHA_A, "dr.a")
    store.review(a2, "rejected", "dr.a")
    signed = store.sign_off(SHA_A, "dr.a", note="read with phase")
    assert (signed.state, signed.signed_by, signed.reviewed, signed.findings) == ("signed off", "dr.a", 2, 2)
    assert signed.label == f"scan-{SHA_A[:8]}" and "sub-01" not in signed.label  # pseudonymous
    assert signed.signed.startswith("dr.a, ") and signed.signed.endswith(" UTC")
    assert states(store) == {"sub-01_swi.nii.gz": ("signed off", 2, 2), "sub-02_swi.nii.gz": ("pending", 0, 2)}

    reopened = store.reopen(SHA_A, "dr.b", note="second opinion")
    assert (reopened.state, reopened.signed_by, reopened.signed) == ("in review", None, "")
    entries = [e for e in store.audit_log() if e["action"].startswith("scan.")]
    assert [(e["action"], e["actor"], e["entity"]) for e in entries] == [
        ("scan.signed_off", "dr.a", "signoff"), ("scan.reopened", "dr.b", "signoff")]
    assert entries[0]["payload"] == {"image_id": signed.image.id, "sha256": SHA_A, "findings": 2, "reviewed": 2,
                                     "note": "read with phase"}
    assert entries[0]["at"] <= entries[1]["at"]
    assert store.verify().ok


def test_a_scan_without_findings_signs_off_and_a_reopened_one_stays_in_review(store: CaseStore) -> None:
    store.register_image("/scans/clean.nii.gz", SHA_C, (10, 10, 10), AFFINE)
    assert store.scan_state(SHA_C).state == "pending"
    assert store.sign_off(SHA_C, "dr.a").state == "signed off"  # looked at, nothing found
    assert store.reopen(SHA_C, "dr.a").state == "in review"  # it was reviewed once: not pending again


def test_editing_a_signed_off_scan_is_refused_in_one_sentence_and_writes_nothing(store: CaseStore, tmp_path) -> None:
    a1, a2 = two_findings(store, SHA_A, "/scans/sub-01_swi.nii.gz")
    (b1, _b2) = two_findings(store, SHA_B, "/scans/sub-02_swi.nii.gz")
    store.review_many([{"finding_id": a1, "action": "accepted", "reviewer": "dr.a"},
                       {"finding_id": a2, "action": "accepted", "reviewer": "dr.a"}])
    store.sign_off(SHA_A, "dr.a")
    before = store.summary()
    refusals = [
        lambda: store.review(a1, "rejected", "dr.b"),
        lambda: store.review(a2, "moved", "dr.b", to_world=world((6, 5, 5))),
        lambda: store.review_many([{"finding_id": b1, "action": "accepted", "reviewer": "dr.b"},
                                   {"finding_id": a1, "action": "reset", "reviewer": "dr.b"}]),
        lambda: store.add_user_finding(SHA_A, "cmb", world((7, 7, 7)), "dr.b"),
        lambda: store.add_finding(SHA_A, "cmb", world((8, 8, 8)), None, score=0.5),
    ]
    for refuse in refusals:
        with pytest.raises(SignedOffError) as caught:
            refuse()
        message = str(caught.value)
        assert message.startswith("Scan sub-01_swi.nii.gz was signed off by dr.a at ") and message.count(". ") == 0
        assert "re-open it" in message
    assert store.summary() == before  # nothing written, not even the other scan's review in the same batch
    assert [f.status for f in store.findings_for(SHA_A)] == ["accepted", "accepted"]

    store.review(b1, "accepted", "dr.b")  # another scan stays editable
    store.reopen(SHA_A, "dr.b")
    assert store.review(a1, "rejected", "dr.b").action == "rejected"  # re-opened: editable again
    assert store.verify().ok


def test_sign_off_refusals(store: CaseStore) -> None:
    store.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    with pytest.raises(StoreError, match="is not signed off, so there is nothing to re-open"):
        store.reopen(SHA_A, "dr.a")
    with pytest.raises(StoreError, match="needs the reviewer's name"):
        store.sign_off(SHA_A, "  ")
    with pytest.raises(StoreError, match="has no scan with sha256 bbbbbbbbbbbb"):
        store.sign_off(SHA_B, "dr.a")
    store.sign_off(SHA_A, "dr.a")
    with pytest.raises(StoreError, match=r"a.nii.gz is already signed off \(by dr.a at .* UTC\)"):
        store.sign_off(SHA_A, "dr.b")
    assert [e["action"] for e in store.audit_log()].count("scan.signed_off") == 1


def test_sign_offs_are_append_only_and_survive_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with CaseStore(path) as store:
        store.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
        store.sign_off(SHA_A, "dr.a")
    con = sqlite3.connect(str(path), isolation_level=None)
    for sql in ("UPDATE signoffs SET reviewer = 'x'", "DELETE FROM signoffs"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    con.close()
    with CaseStore.open_existing(path) as store:
        state = store.scan_state(SHA_A)
        assert (state.state, state.signed_by) == ("signed off", "dr.a")


def test_a_deleted_user_point_is_not_counted_as_the_review_session_hides_it(store: CaseStore) -> None:
    from napari_neuroreview.core.tasks.cmb.review import DELETED_NOTE, ReviewSession

    two_findings(store, SHA_A, "/scans/a.nii.gz")
    session = ReviewSession.open(store, "/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE, reviewer="dr.a")
    added = session.add(world((7, 7, 7)))
    assert (store.scan_state(SHA_A).findings, store.scan_state(SHA_A).reviewed) == (3, 1)
    session.delete(added)
    session.undo()
    session.redo()  # the redo writes "deleted (redo)": still deleted
    state = store.scan_state(SHA_A, task="cmb")
    assert (state.findings, state.reviewed, state.state) == (len(session.findings), 0, "in review") == (2, 0, "in review")
    assert store.reviews_for(added)[-1].note.startswith(DELETED_NOTE)

    for f in session.findings:
        session.accept(f.id)
    store.sign_off(SHA_A, "dr.a")
    with pytest.raises(SignedOffError):
        session.reject(session.findings[0].id)  # the session's view is unchanged, its undo history too
    assert [f.status for f in session.findings] == ["accepted", "accepted"] and session.can_undo


def test_next_to_review_skips_signed_off_scans_and_wraps(store: CaseStore) -> None:
    for sha, name in ((SHA_A, "a"), (SHA_B, "b"), (SHA_C, "c")):
        store.register_image(f"/scans/{name}.nii.gz", sha, (10, 10, 10), AFFINE)
    store.sign_off(SHA_B, "dr.a")
    listed = store.scan_states()
    assert next_to_review(listed, None).sha256 == SHA_A
    assert next_to_review(listed, SHA_A).sha256 == SHA_C  # b is signed off
    assert next_to_review(listed, SHA_C).sha256 == SHA_A  # wraps
    assert next_to_review(listed, SHA_B).sha256 == SHA_C
    store.sign_off(SHA_C, "dr.a")
    assert next_to_review(store.scan_states(), SHA_A) is None  # the current one is never "next"
    assert next_to_review(store.scan_states(), "f" * 64).sha256 == SHA_A  # not in the list: from the top


def test_a_store_of_the_previous_schema_migrates_and_its_scans_start_unsigned(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 4
    path = tmp_path / "v3.sqlite"
    con = sqlite3.connect(str(path), isolation_level=None)
    cur = con.cursor()
    cur.execute("BEGIN")
    for migration in MIGRATIONS[:3]:  # the store as schema 3 wrote it
        _run_migration(cur, migration)
    cur.execute("PRAGMA user_version = 3")
    cur.execute("INSERT INTO images VALUES (1, '/s/a.nii.gz', ?, '[10, 10, 10]', ?, 't0')",
                (SHA_A, json.dumps(AFFINE.tolist())))
    cur.execute("INSERT INTO images VALUES (2, '/s/b.nii.gz', ?, '[10, 10, 10]', ?, 't0')",
                (SHA_B, json.dumps(AFFINE.tolist())))
    audit.append(cur, "tech", "image.registered", "image", 1, {})
    audit.append(cur, "tech", "image.registered", "image", 2, {})
    for fid, image in ((1, 1), (2, 2)):
        cur.execute("INSERT INTO findings (id, image_id, task, world_x, world_y, world_z, vox_i, vox_j, vox_k, "
                    "source, created_at, version) VALUES (?, ?, 'cmb', 88, 123, -64, 2, 3, 4, 'model', 't1', ?)",
                    (fid, image, 1 if fid == 1 else 0))
    cur.execute("INSERT INTO reviews VALUES (1, 1, 'accepted', 'dr.a', 't2', NULL, NULL, NULL)")
    audit.append(cur, "dr.a", "review.accepted", "review", 1,
                 {"finding_id": 1, "from_world": None, "to_world": None, "note": None})
    cur.execute("COMMIT")
    con.close()

    with CaseStore.open_existing(path) as store:
        assert [(s.state, s.reviewed, s.findings) for s in store.scan_states()] == [
            ("in review", 1, 1), ("pending", 0, 1)]
        store.sign_off(SHA_A, "dr.a")
        assert store.verify().ok and store.verify().rows == 4
    con = sqlite3.connect(str(path))
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("SELECT action, reviewer FROM signoffs").fetchall() == [("signed_off", "dr.a")]
    con.close()


def test_a_sign_off_written_around_the_store_is_found_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with CaseStore(path) as store:
        for sha in (SHA_A, SHA_B):
            store.register_image(f"/scans/{sha[0]}.nii.gz", sha, (10, 10, 10), AFFINE)
        store.sign_off(SHA_A, "dr.a")
        assert store.verify().ok
    con = sqlite3.connect(str(path), isolation_level=None)  # a forged sign-off: the triggers allow inserts
    con.execute("INSERT INTO signoffs (image_id, action, reviewer, at) VALUES (2, 'signed_off', 'dr.a', 't')")
    con.close()
    with CaseStore(path) as store:
        report = store.verify()
        assert (report.ok, report.table, report.first_bad_id) == (False, "signoffs", 2)
        assert report.problem == "sign-off 2 has no audit row (it was written outside napari-neuroreview)"


def test_a_scan_is_read_again_from_where_it_was_last_opened(store: CaseStore) -> None:
    store.register_image("/scans/old/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    store.register_image("/scans/b.nii.gz", SHA_B, (10, 10, 10), AFFINE)
    assert [s.path for s in store.scan_states()] == ["/scans/old/a.nii.gz", "/scans/b.nii.gz"]
    store.register_image("/moved/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)  # the same voxels, opened elsewhere
    state = store.scan_state(SHA_A)
    assert (state.path, state.image.path, state.file_name) == ("/moved/a.nii.gz", "/scans/old/a.nii.gz", "a.nii.gz")
    assert store.scan_states()[1].path == "/scans/b.nii.gz"
