"""The store against damage and tampering: damaged pages, the audit hash chain, missing
stores (nothing created), and the write-ahead log emptied on close (issue 8: bad input
classes 6, 12, 18 and item 6)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store import MIGRATIONS, CaseStore

SHA = "a" * 64
AFFINE = np.eye(4)


def filled_store(path: Path, n: int = 300) -> list[int]:
    """A real store with enough rows to span many pages; returns the finding ids."""
    with CaseStore(path) as store:
        store.register_image("/scans/a.nii.gz", SHA, (100, 100, 100), AFFINE, actor="tech")
        found = store.add_findings(
            SHA, [{"task": "cmb", "world_ras_mm": (i % 90, i % 80, i % 70), "voxel_ijk": None, "score": 0.5}
                  for i in range(n)]
        )
        store.review_many([{"finding_id": f.id, "action": "accepted", "reviewer": "dr.a"} for f in found])
    return [f.id for f in found]


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# ---------------------------------------------------------------- class 6: damaged page


def test_damaged_page_is_refused_in_one_sentence_and_left_untouched(tmp_path: Path, capsys) -> None:
    path = tmp_path / "cases.sqlite"
    filled_store(path)
    data = bytearray(path.read_bytes())
    middle = (len(data) // 4096 // 2) * 4096
    data[middle + 100 : middle + 1100] = b"\xff" * 1000  # garbage over the middle of a b-tree page
    path.write_bytes(bytes(data))
    before = path.read_bytes()

    assert main(["store", "--store", str(path)]) == 2
    line = one_error_line(capsys)
    assert f"{path} is damaged (sqlite: " in line and "restore it from a backup" in line
    with pytest.raises(StoreError, match="is damaged"):
        CaseStore(path)
    assert path.read_bytes() == before
    assert siblings(path) == ["cases.sqlite"]  # no -wal/-shm left behind either


def test_sqlite_errors_become_one_sentence_and_bugs_keep_their_traceback(tmp_path: Path) -> None:
    """What SQLite reports about the file (damage, locks, I/O) is a StoreError; misuse is a bug."""
    with CaseStore(tmp_path / "cases.sqlite") as store:
        with pytest.raises(StoreError, match=r"is damaged \(sqlite: database disk image is malformed\)"):
            with store._db.sqlite_errors("read"):
                raise sqlite3.DatabaseError("database disk image is malformed")
        with pytest.raises(StoreError, match="cannot be written: database is locked"):
            with store._db.sqlite_errors("written"):
                raise sqlite3.OperationalError("database is locked")
        for bug in (sqlite3.IntegrityError("x"), sqlite3.ProgrammingError("x"), sqlite3.InterfaceError("x")):
            with pytest.raises(type(bug)):
                with store._db.sqlite_errors("read"):
                    raise bug


def test_a_locked_store_is_a_store_error_on_write(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with CaseStore(path) as store:
        holder = raw(path)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            store._db.connection().execute("PRAGMA busy_timeout = 50")
            with pytest.raises(StoreError, match="cannot be written: database is locked"):
                store.register_image("/scans/a.nii.gz", SHA, (4, 4, 4), AFFINE)
        finally:
            holder.execute("ROLLBACK")
            holder.close()


# ---------------------------------------------------------------- class 12: audit hash chain


def test_untouched_store_verifies(tmp_path: Path, capsys) -> None:
    path = tmp_path / "cases.sqlite"
    filled_store(path, n=5)
    with CaseStore(path) as store:
        report = store.verify()
        assert report.ok and report.first_bad_id is None and report.rows == len(store.audit_log())
    assert main(["store", "--store", str(path), "--verify"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["first_bad_row"] is None and out["audit_rows"] == report.rows


def _tamper_update(con: sqlite3.Connection) -> None:
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET actor = 'mallory' WHERE id = 3")


def _tamper_replace(con: sqlite3.Connection) -> None:
    # INSERT OR REPLACE deletes the old row without firing the delete trigger; the old
    # hashes are copied over so that only the content differs.
    con.execute(
        "INSERT OR REPLACE INTO audit (id, at, actor, action, entity, entity_id, payload, prev_hash, hash) "
        "SELECT id, at, actor, 'review.rejected', entity, entity_id, payload, prev_hash, hash FROM audit WHERE id = 3"
    )


def _tamper_delete(con: sqlite3.Connection) -> None:
    con.execute("DROP TRIGGER audit_no_delete")
    con.execute("DELETE FROM audit WHERE id = 3")


@pytest.mark.parametrize(
    ("tamper", "bad_row", "words"),
    [(_tamper_update, 3, "altered"), (_tamper_replace, 3, "altered"), (_tamper_delete, 4, "does not follow row 2")],
    ids=["update-without-triggers", "insert-or-replace", "delete-without-triggers"],
)
def test_edited_audit_row_breaks_the_chain_at_that_row(tmp_path: Path, capsys, tamper, bad_row: int,
                                                       words: str) -> None:
    path = tmp_path / "cases.sqlite"
    filled_store(path, n=5)
    con = raw(path)
    tamper(con)
    con.close()
    with CaseStore(path) as store:
        report = store.verify()
    assert not report.ok and report.first_bad_id == bad_row and words in report.problem
    before = path.read_bytes()
    assert main(["store", "--store", str(path), "--verify"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["first_bad_row"] == bad_row
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and f"audit row {bad_row}" in lines[0] and "Traceback" not in captured.err
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("sql", "words"),
    [("UPDATE reviews SET action = 'rejected' WHERE id = 2", "review 2 disagrees with its audit row"),
     ("UPDATE reviews SET reviewer = 'dr.z' WHERE id = 2", "review 2 disagrees with its audit row"),
     ("DELETE FROM reviews WHERE id = 2", "review 2 is recorded in audit row"),
     ("INSERT INTO reviews (finding_id, action, reviewer, at) VALUES (1, 'accepted', 'x', 't')", "has no audit row")],
    ids=["action-edited", "reviewer-edited", "review-removed", "review-added"],
)
def test_reviews_edited_outside_the_store_are_found(tmp_path: Path, capsys, sql: str, words: str) -> None:
    """The reviews table has no triggers: its rows are checked against the chained audit."""
    path = tmp_path / "cases.sqlite"
    filled_store(path, n=5)
    con = raw(path)
    con.execute(sql)
    con.close()
    with CaseStore(path) as store:
        report = store.verify()
    assert not report.ok and report.table == "reviews" and words in report.problem
    assert main(["store", "--store", str(path), "--verify"]) == 2
    assert words in one_error_line(capsys)


def test_audit_rows_without_a_hash_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    filled_store(path, n=2)
    con = raw(path)
    with pytest.raises(sqlite3.IntegrityError, match="hash-chained"):
        con.execute("INSERT INTO audit (at, actor, action, entity) VALUES ('t', 'mallory', 'x', 'y')")
    con.close()


def test_migration_chains_the_existing_audit_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    con = raw(path)
    con.executescript(MIGRATIONS[0])
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO images VALUES (1, '/s.nii', ?, '[4, 4, 4]', ?, 't0')", (SHA, json.dumps(AFFINE.tolist())))
    con.execute("INSERT INTO findings (id, image_id, task, world_x, world_y, world_z, vox_i, vox_j, vox_k, source, "
                "created_at) VALUES (1, 1, 'cmb', 1, 1, 1, 1, 1, 1, 'model', 't1')")
    con.execute("INSERT INTO reviews VALUES (1, 1, 'accepted', 'dr.a', 't2', NULL, NULL, NULL)")
    con.execute("INSERT INTO reviews VALUES (2, 1, 'rejected', 'dr.a', 't3', NULL, NULL, NULL)")
    con.execute("INSERT INTO audit (id, at, actor, action, entity, entity_id) VALUES (1, 't', 'tech', "
                "'image.registered', 'image', 1)")
    for n, action in ((1, "accepted"), (2, "rejected")):
        payload = json.dumps({"finding_id": 1, "from_world": None, "note": None, "to_world": None})
        con.execute("INSERT INTO audit (id, at, actor, action, entity, entity_id, payload) "
                    "VALUES (?, 't', 'dr.a', ?, 'review', ?, ?)", (n + 1, f"review.{action}", n, payload))
    con.close()
    with CaseStore(path) as store:
        assert store.verify().ok and store.verify().rows == 3
        assert store.findings_for(SHA)[0].version == 2  # the reviews already written count
        store.review(1, "accepted", "dr.b")
        assert store.verify().ok and store.verify().rows == 4
    con = raw(path)
    assert con.execute("SELECT COUNT(*) FROM audit WHERE hash IS NULL").fetchone()[0] == 0
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # the trigger is back
        con.execute("UPDATE audit SET actor = 'x' WHERE id = 1")
    con.close()


# ---------------------------------------------------------------- class 18: a missing store


def test_missing_store_is_refused_and_nothing_is_created(tmp_path: Path, capsys) -> None:
    path = tmp_path / "typo" / "cases.sqlite"
    assert main(["store", "--store", str(path)]) == 2
    assert "no annotation store at" in one_error_line(capsys)
    assert main(["store", "--store", str(path), "--verify"]) == 2
    capsys.readouterr()
    with pytest.raises(StoreError, match=r"no annotation store at .*typo"):
        CaseStore.open_existing(path)
    with pytest.raises(StoreError, match="no annotation store"):
        CaseStore(path, create=False)
    assert list(tmp_path.iterdir()) == []  # no folder, no file, no -wal, no -shm

    flat = tmp_path / "cases.sqlite"
    assert main(["store", "--store", str(flat)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_missing_default_store_creates_no_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_path", lambda app: tmp_path / "data" / app)
    assert main(["store"]) == 2
    assert "no annotation store at" in one_error_line(capsys)
    assert not (tmp_path / "data").exists()


def test_empty_file_is_not_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="empty file"):
        CaseStore.open_existing(path)
    assert path.read_bytes() == b"" and siblings(path) == ["cases.sqlite"]


def test_existing_store_opens_and_creating_still_works(tmp_path: Path, capsys) -> None:
    path = tmp_path / "new" / "cases.sqlite"
    CaseStore(path).close()  # the widget's path: creates it with its folder
    with CaseStore.open_existing(path) as store:
        assert store.summary()["images"] == 0
    assert main(["store", "--store", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 0


# ---------------------------------------------------------------- item 6: checkpoint on close


def test_close_moves_every_review_into_the_main_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    other = CaseStore(path)  # another connection (a CLI, a second widget) keeps the log alive
    try:
        ids = filled_store(path, n=20)
        wal = Path(str(path) + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
        copy = tmp_path / "copy" / "cases.sqlite"
        copy.parent.mkdir()
        shutil.copyfile(path, copy)  # the main file alone, as a backup tool would copy it
        con = raw(copy)
        assert con.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == len(ids)
        con.close()
    finally:
        other.close()
