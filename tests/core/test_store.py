"""Tests of the annotation store: schema, round trips, audit, crash safety, scan guard."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.core.errors import GeometryError, ImageMismatchError, StoreError
from napari_neuroreview.core.store import SCHEMA_VERSION, CaseStore, default_store_path

SHA_A = "a" * 64
SHA_B = "b" * 64
# 1 mm isotropic, LPS-stored file (i runs right-to-left, j anterior-to-posterior).
AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 90.0], [0.0, -1.0, 0.0, 126.0], [0.0, 0.0, 2.0, -72.0], [0, 0, 0, 1]]
)


def world(ijk: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z, _ = AFFINE @ np.array([*ijk, 1.0])
    return (float(x), float(y), float(z))


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite") as s:
        yield s


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


# ---------------------------------------------------------------- 1. schema and opening


def test_wal_mode_schema_version_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with CaseStore(path) as s:
        s.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    con = raw(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    con.close()
    with CaseStore(path) as s:  # reopening neither re-migrates nor loses data
        record = s.image_by_sha(SHA_A)
        assert record is not None and record.shape == (10, 10, 10)
        assert np.array_equal(record.affine_matrix, AFFINE)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    CaseStore(path).close()
    con = raw(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer napari-neuroreview"):
        CaseStore(path)


def test_non_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    payload = np.random.default_rng(0).bytes(4096)
    path.write_bytes(payload)
    with pytest.raises(StoreError, match="scan.nii.gz is not a SQLite database"):
        CaseStore(path)
    assert path.read_bytes() == payload
    assert not Path(str(path) + "-wal").exists()


def test_default_store_path_is_in_user_data_dir(monkeypatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_path", lambda app: tmp_path / app)
    path = default_store_path()
    assert path == tmp_path / "napari-neuroreview" / "neuroreview.sqlite"
    assert path.parent.is_dir()


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    s = CaseStore(tmp_path / "cases.sqlite")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        s.image_by_sha(SHA_A)


# ---------------------------------------------------------------- 2. round trips


def test_image_round_trip_and_reopen_returns_same(store: CaseStore) -> None:
    first = store.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    again = store.register_image("/moved/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    assert again == first  # same voxels: same image, the path is not rewritten
    assert store.images_at_path("/scans/a.nii.gz") == [first]
    assert store.images_at_path("/moved/a.nii.gz") == []
    assert store.image_by_sha(SHA_B) is None


def test_bad_image_metadata_is_refused(store: CaseStore) -> None:
    with pytest.raises(StoreError, match="not a hex sha256"):
        store.register_image("/scans/a.nii.gz", "/scans/a.nii.gz", (10, 10, 10), AFFINE)
    singular = AFFINE.copy()
    singular[2, 2] = 0.0
    with pytest.raises(StoreError, match="affine"):
        store.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), singular)


def test_findings_reviews_and_status(store: CaseStore) -> None:
    store.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    store.register_model_version("cmb-det", "1.0.0", "cmb", {"metrics": {"f1": 0.8}})
    f1 = store.add_finding(
        SHA_A,
        "cmb",
        world((2, 3, 4)),
        (2, 3, 4),
        score=np.float32(0.75),
        model=("cmb-det", "1.0.0"),
        extra={"label": np.int64(7), "volume_mm3": 4.5, "tags": ["lobar"]},
    )
    f2, f3 = store.add_findings(
        SHA_A,
        [
            {"task": "cmb", "world_ras_mm": world((5, 5, 5)), "voxel_ijk": None, "score": 0.4,
             "model": ("cmb-det", "1.0.0")},
            {"task": "csvd", "world_ras_mm": world((1, 1, 1)), "voxel_ijk": (1, 1, 1)},
        ],
    )
    user = store.add_finding(SHA_A, "cmb", world((7, 8, 2)), (7, 8, 2), source="user",
                             actor="dr-x")

    assert f1.model == ("cmb-det", "1.0.0") and f1.score == pytest.approx(0.75)
    assert f1.extra == {"label": 7, "volume_mm3": 4.5, "tags": ["lobar"]}
    assert f2.voxel == pytest.approx((5, 5, 5))  # computed from the affine
    assert f3.model is None and f3.score is None

    store.review(f1.id, "accepted", "dr-x")
    store.review(f2.id, "accepted", "dr-x")
    store.review(f2.id, "rejected", "dr-y", note="vein")
    store.review(user.id, "added", "dr-x")
    moved = store.review(f1.id, "moved", "dr-x", to_world=world((3, 3, 4)))
    assert moved.from_world == pytest.approx(world((2, 3, 4)))
    assert moved.to_world == pytest.approx(world((3, 3, 4)))

    by_id = {f.id: f for f in store.findings_for(SHA_A)}
    assert set(by_id) == {f1.id, f2.id, f3.id, user.id}
    assert by_id[f1.id].world == pytest.approx(world((3, 3, 4)))
    assert by_id[f1.id].voxel == pytest.approx((3, 3, 4))
    assert by_id[f1.id].extra["label"] == 7
    assert {i: f.status for i, f in by_id.items()} == {
        f1.id: "moved", f2.id: "rejected", f3.id: "pending", user.id: "added"
    }
    assert [f.id for f in store.findings_for(SHA_A, task="csvd")] == [f3.id]
    assert [r.action for r in store.reviews_for(f2.id)] == ["accepted", "rejected"]
    assert store.reviews_for(f2.id)[-1].note == "vein"
    assert [m.version for m in store.model_versions("cmb-det")] == ["1.0.0"]


def test_review_and_finding_validation(store: CaseStore) -> None:
    store.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE)
    f = store.add_finding(SHA_A, "cmb", world((2, 3, 4)), (2, 3, 4), score=0.9)
    with pytest.raises(StoreError, match="not one of"):
        store.review(f.id, "approved", "dr-x")
    with pytest.raises(StoreError, match="new world position"):
        store.review(f.id, "moved", "dr-x")
    with pytest.raises(StoreError, match="found by a model"):
        store.review(f.id, "added", "dr-x")
    with pytest.raises(StoreError, match="no finding"):
        store.review(f.id + 100, "accepted", "dr-x")
    with pytest.raises(StoreError, match="has no model"):
        store.add_finding(SHA_A, "cmb", world((1, 1, 1)), None, model=("ghost", "9.9"))
    with pytest.raises(StoreError, match="no scan with sha256"):
        store.add_finding(SHA_B, "cmb", (0.0, 0.0, 0.0), None)
    # A display-order (k, j, i) index next to the right world position is caught.
    with pytest.raises(GeometryError, match="display order"):
        store.add_finding(SHA_A, "cmb", world((2, 3, 8)), (8, 3, 2))
    with pytest.raises(StoreError, match="finite"):
        store.add_finding(SHA_A, "cmb", (np.nan, 0.0, 0.0), None)
    # A failed batch leaves nothing behind, not even its valid first half.
    with pytest.raises(StoreError):
        store.add_findings(SHA_A, [
            {"task": "cmb", "world_ras_mm": world((1, 1, 1)), "voxel_ijk": None},
            {"task": "cmb", "world_ras_mm": world((1, 1, 1)), "voxel_ijk": None, "source": "ai"},
        ])
    assert [x.id for x in store.findings_for(SHA_A)] == [f.id]
    assert store.reviews_for(f.id) == []


def test_model_version_conflict(store: CaseStore) -> None:
    a = store.register_model_version("m", "1.0", "cmb", {"weights_sha256": "x"})
    assert store.register_model_version("m", "1.0", "cmb", {"weights_sha256": "x"}) == a
    with pytest.raises(StoreError, match="different task or model card"):
        store.register_model_version("m", "1.0", "cmb", {"weights_sha256": "y"})


# ---------------------------------------------------------------- 3. audit


def test_audit_is_append_only_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    with CaseStore(path) as s:
        img = s.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE, actor="tech")
        s.register_image("/scans/a.nii.gz", SHA_A, (10, 10, 10), AFFINE, actor="tech")
        mv = s.register_model_version("m", "1.0", "cmb", {})
        f = s.add_finding(SHA_A, "cmb", world((2, 3, 4)), None, model=("m", "1.0"))
        r1 = s.review(f.id, "accepted", "dr-x")
        r2 = s.review(f.id, "moved", "dr-y", to_world=world((2, 4, 4)))
        log = s.audit_log()
        assert s.audit_log(limit=2) == log[-2:]

    assert [(e["action"], e["entity"], e["entity_id"], e["actor"]) for e in log] == [
        ("image.registered", "image", img.id, "tech"),
        ("image.reopened", "image", img.id, "tech"),
        ("model_version.registered", "model_version", mv.id, log[2]["actor"]),
        ("finding.added", "finding", f.id, "model"),
        ("review.accepted", "review", r1.id, "dr-x"),
        ("review.moved", "review", r2.id, "dr-y"),
    ]
    assert log[-1]["payload"]["from_world"] == pytest.approx(list(world((2, 3, 4))))

    con = raw(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit SET actor = 'mallory' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit")
    assert con.execute("SELECT count(*) FROM audit").fetchone()[0] == len(log)
    assert con.execute("SELECT actor FROM audit WHERE id = 1").fetchone()[0] == "tech"
    con.close()


# ---------------------------------------------------------------- 4. crash safety


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_killed_writer_leaves_only_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    batch, wanted = 20, 3
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_store_crash_child.py")),
         str(path), str(batch), "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True).start()
    committed, killed_inside = 0, False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1).split()
            except queue.Empty:
                assert child.poll() is None, child.stderr.read()
                continue
            if line[0] == "committed":
                committed = int(line[1])
            elif line[0] == "inside" and int(line[1]) == wanted + 1:
                assert committed == wanted
                os.kill(child.pid, signal.SIGKILL)
                killed_inside = True
                break
    finally:
        if child.poll() is None and not killed_inside:
            child.kill()
        child.wait(timeout=30)
    assert killed_inside, "the child never reached the batch it should be killed in"
    assert child.returncode == -signal.SIGKILL
    assert Path(str(path) + "-wal").exists()  # it really died with an open WAL

    with CaseStore(path) as s:
        finding = s.findings_for("c" * 64)[0]
        reviews = s.reviews_for(finding.id)
        audited = [e for e in s.audit_log() if e["entity"] == "review"]
    con = raw(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    per_batch = Counter(int(r.note.split()[1]) for r in reviews)
    assert len(reviews) % batch == 0 and len(reviews) >= committed * batch
    assert all(per_batch[n] == batch for n in range(1, committed + 1))
    assert set(per_batch.values()) == {batch}  # no partial batch survived
    assert sorted(e["entity_id"] for e in audited) == [r.id for r in reviews]


# ---------------------------------------------------------------- 5. same name, new scan


def test_same_file_name_different_voxels_is_refused(store: CaseStore) -> None:
    path = "/scans/sub-01_swi.nii.gz"
    a = store.register_image(path, SHA_A, (10, 10, 10), AFFINE)
    store.add_finding(SHA_A, "cmb", world((2, 3, 4)), (2, 3, 4), score=0.9)
    assert store.check_image(a, SHA_A) == a
    with pytest.raises(ImageMismatchError, match=r"belong to scan aaaaaaaaaaaa of .*sub-01_swi"):
        store.check_image(a, SHA_B)
    with pytest.raises(ImageMismatchError, match="not to the loaded scan bbbbbbbbbbbb"):
        store.check_image(a.id, SHA_B)
    assert store.findings_for(SHA_B) == []
    # The re-acquired scan is a new image at the same path, with no annotations of its own.
    b = store.register_image(path, SHA_B, (10, 10, 12), AFFINE)
    assert b.id != a.id
    assert [r.sha256 for r in store.images_at_path(path)] == [SHA_A, SHA_B]
    assert store.findings_for(SHA_B) == [] and len(store.findings_for(SHA_A)) == 1


def test_a_card_recorded_before_card_hashes_is_the_same_model(tmp_path) -> None:
    """A store that recorded the shipped card before cards carried card_sha256 still accepts it."""
    card = {"name": "cmb-detector", "version": "1.0.0", "task": "cmb", "config": {"threshold": 0.1},
            "weights_sha256": "ab" * 32}
    with CaseStore(tmp_path / "s.sqlite") as store:
        first = store.register_model_version("cmb-detector", "1.0.0", "cmb", card)
        again = store.register_model_version("cmb-detector", "1.0.0", "cmb", {**card, "card_sha256": "cd" * 32})
        assert again.id == first.id
        with pytest.raises(StoreError, match="different task or model card"):
            store.register_model_version("cmb-detector", "1.0.0", "cmb", {**card, "config": {"threshold": 1.5}})


def test_the_store_is_a_facade_over_repositories_that_share_one_database(tmp_path: Path) -> None:
    """Issue 9: cohesive classes with explicit collaborators, not a mixin that redeclares its host's attributes."""
    import napari_neuroreview.core.store as store_package

    assert CaseStore.__mro__ == (CaseStore, object)
    with CaseStore(tmp_path / "cases.sqlite") as store:
        parts = (store._images, store._models, store._findings, store._reviews, store._audit)
        assert all(part._db is store._db for part in parts)
        assert store._findings._reviews is store._reviews and store._findings._images is store._images
    folder = Path(store_package.__file__).parent
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in folder.glob("*.py")}
    assert max(sizes.values()) < 600, sizes
    assert not any("TYPE_CHECKING:  # provided by" in p.read_text(encoding="utf-8") for p in folder.glob("*.py"))
