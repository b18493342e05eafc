"""A microbleed review exported as BIDS derivatives: layout, names, sidecars, and nothing that identifies anyone.

No BIDS validator installs offline that checks derivatives (the ``bids-validator`` wheel on PyPI
checks raw-dataset names only: it refuses every ``_dseg`` file), so the spec's rules used here
are checked by this test itself: BIDS 1.10 "Derivatives" (dataset_description.json with
DatasetType "derivative" and GeneratedBy; ``sub-<label>[/ses-<label>]/<datatype>/`` folders whose
labels are the file's own entities; ``key-label`` entities, ``desc`` last, then the suffix; a JSON
sidecar beside each data file; ``Sources`` as BIDS URIs; ``n/a`` for missing TSV values).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_cmb_review import AFFINE, CARD, SHA_A, SHAPE, fake_result, world

from napari_neuroreview import __version__
from napari_neuroreview.core.errors import OutputPathError
from napari_neuroreview.core.io.bids import bids_scan, derivative_root
from napari_neuroreview.core.io.export import load_points
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks.cmb.review import ReviewSession
from napari_neuroreview.core.tasks.cmb.review_export import export_bids

PATIENT = "Doe^Jane_1957"  # in the scan's folder and (non-BIDS case) its file name: must never be written
#: ``sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>](_key-label)*_desc-<label>_<suffix>.<ext>``
NAME = re.compile(r"^sub-(?P<sub>[a-zA-Z0-9]+)/(?:ses-(?P<ses>[a-zA-Z0-9]+)/)?anat/"
                  r"sub-(?P=sub)(?:_ses-(?P=ses))?(?:_[a-z]+-[a-zA-Z0-9]+)*_desc-[a-zA-Z0-9]+_[a-zA-Z0-9]+"
                  r"\.(?:nii\.gz|tsv|json|dcm)$")


def _review(store: CaseStore, scan_path: str) -> ReviewSession:
    session = ReviewSession.open(store, scan_path, SHA_A, SHAPE, AFFINE, reviewer="Dr Who")
    session.add_detections(fake_result(), card=CARD)
    a, b, _c = (f.id for f in session.findings)
    session.accept(a)
    session.reject(b)
    session.add(world((17, 3, 10)))
    return session


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _check_bids_rules(root: Path) -> None:
    """The BIDS derivative rules every export must keep (see the module docstring)."""
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"].startswith("1.")
    assert description["Name"] and description["GeneratedBy"][0] == {
        "Name": "napari-neuroreview", "Version": __version__, "Description": description["GeneratedBy"][0]["Description"]}
    files = [f for f in _files(root) if f != "dataset_description.json"]
    assert files
    for name in files:
        assert NAME.match(name), name
        if not name.endswith(".json"):
            assert name[: -len(".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix)] + ".json" in files, name
    for name in (f for f in files if f.endswith(".json")):
        doc = json.loads((root / name).read_text())
        assert all(s.startswith("bids:") for s in doc["Sources"]), doc["Sources"]
        assert doc["SourceVoxelSHA256"] == SHA_A and doc["Models"] == [
            {"Name": "cmb-detector", "Version": "0.1.0", "CardThreshold": 0.3}]
    for name in (f for f in files if f.endswith(".tsv")):
        rows = list(csv.reader((root / name).read_text().splitlines(), delimiter="\t"))
        assert all(len(r) == len(rows[0]) and all(cell != "" for cell in r) for r in rows)  # n/a, never empty


def _no_identity_nor_path(tmp_path: Path, root: Path) -> None:
    """No patient name, no absolute path, no login in any file the export wrote (the DICOM SEG aside)."""
    import getpass

    for name in _files(root):
        text = (root / name).read_bytes().decode("utf-8", errors="replace") if not name.endswith(".nii.gz") else \
            nib.load(root / name).header["descrip"].tobytes().decode("latin-1")
        assert PATIENT not in text and "Doe" not in name, name
        assert str(tmp_path) not in text and "/scans" not in text, name
        assert getpass.getuser() not in re.sub(r"[^a-zA-Z0-9]", " ", text).split() or getpass.getuser() in (
            "cmb", "sub"), name


def test_a_bids_named_source_keeps_its_entities(tmp_path: Path) -> None:
    scan = tmp_path / PATIENT / "sub-01_ses-02_acq-fast_swi.nii.gz"
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = _review(store, str(scan))
        (tmp_path / "out").mkdir()
        written = export_bids(session, tmp_path / "out")
    root = derivative_root(tmp_path / "out")
    assert root == tmp_path / "out" / "derivatives" / "neuroreview"
    stem = "sub-01/ses-02/anat/sub-01_ses-02_acq-fast_desc-cmb"
    assert _files(root) == sorted(["dataset_description.json", f"{stem}_dseg.nii.gz", f"{stem}_dseg.json",
                                   f"{stem}_points.tsv", f"{stem}_points.json"])
    assert sorted(str(p.relative_to(root)) for p in written) == _files(root)
    _check_bids_rules(root)
    _no_identity_nor_path(tmp_path, root)
    sidecar = json.loads((root / f"{stem}_dseg.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-01/ses-02/anat/sub-01_ses-02_acq-fast_swi.nii.gz"]
    assert sidecar["Reviewer"] == "Dr Who" and sidecar["LabelStatuses"] == ["accepted", "added", "moved"]
    assert json.loads((root / "dataset_description.json").read_text())["DatasetLinks"] == {"raw": "../.."}
    # the same labels and points as the flat export: the one NIfTI writer, the one points reader
    labels = nib.load(root / f"{stem}_dseg.nii.gz")
    np.testing.assert_allclose(labels.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(labels.dataobj), session.instances(statuses=("accepted", "added", "moved")))
    points, records = load_points(root / f"{stem}_points.json")
    assert len(records) == 4 and {r["status"] for r in records} == {"accepted", "rejected", "pending", "added"}
    tsv_points, _ = load_points(root / f"{stem}_points.tsv")
    np.testing.assert_allclose(tsv_points, points)
    doc = json.loads((root / f"{stem}_points.json").read_text())
    assert set(doc["x_ras_mm"]) == {"Description", "Units"} and doc["image"] == "sub-01_ses-02_acq-fast_swi.nii.gz"


def test_a_non_bids_source_is_named_by_a_pseudonym_and_its_name_is_never_written(tmp_path: Path) -> None:
    scan = tmp_path / PATIENT / f"{PATIENT}_swi.nii.gz"
    with CaseStore(tmp_path / "cases.sqlite") as store:
        export_bids(_review(store, str(scan)), tmp_path)
        root = derivative_root(tmp_path)
        stem = f"sub-{SHA_A[:12]}/anat/sub-{SHA_A[:12]}_desc-cmb"
        assert f"{stem}_dseg.nii.gz" in _files(root) and f"{stem}_points.tsv" in _files(root)
        _check_bids_rules(root)
        _no_identity_nor_path(tmp_path, root)
        sidecar = json.loads((root / f"{stem}_dseg.json").read_text())
        assert sidecar["Sources"] == [] and json.loads((root / f"{stem}_points.json").read_text())["image"] is None
        # a second export of the same scan rewrites its files in place (the description is ours)
        export_bids(ReviewSession.open(store, str(scan), SHA_A, SHAPE, AFFINE), tmp_path)
        assert len(_files(root)) == 5


def test_another_pipelines_derivatives_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = derivative_root(tmp_path)
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.10.0",
                                                                "DatasetType": "derivative",
                                                                "GeneratedBy": [{"Name": "fmriprep"}]}))
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = _review(store, "/scans/sub-01_swi.nii.gz")
        with pytest.raises(OutputPathError, match="another tool"):
            export_bids(session, tmp_path)
        assert _files(root) == ["dataset_description.json"], "no folder, no file left behind"
        with pytest.raises(OutputPathError, match="does not exist"):
            export_bids(session, tmp_path / "missing")


@pytest.mark.parametrize(("name", "entities"), [
    ("sub-01_swi.nii.gz", (("sub", "01"),)),
    ("sub-01_ses-02_run-3_T2starw.nii.gz", (("sub", "01"), ("ses", "02"), ("run", "3"))),
    ("sub-01_ses-02_desc-old_swi.nii", (("sub", "01"), ("ses", "02"))),  # the source's desc is replaced
    ("sub-01_acq-x_ses-02_swi.nii.gz", (("sub", SHA_A[:12]),)),  # ses out of place: not BIDS
    ("sub-0_1_swi.nii.gz", (("sub", SHA_A[:12]),)),
    ("swi.nii.gz", (("sub", SHA_A[:12]),)),
    ("/data/sub-01/::3", (("sub", SHA_A[:12]),)),  # a DICOM series: its folder never names anything
])
def test_entities_come_from_a_bids_source_name_only(name: str, entities: tuple) -> None:
    assert bids_scan(name, SHA_A).entities == entities


def test_neuroreview_cmb_export_writes_the_stored_review_as_bids(tmp_path: Path, capsys) -> None:
    """The widget's Export twin: ``neuroreview cmb export --store DB --scan SHA --out DIR``."""
    from napari_neuroreview.cli import main
    from napari_neuroreview.core.io.nifti import load_volume

    scan = tmp_path / PATIENT / "sub-07_swi.nii.gz"
    scan.parent.mkdir()
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(SHAPE).astype(np.float32), AFFINE), scan)
    sha = load_volume(scan).sha256
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(scan), sha, SHAPE, AFFINE, reviewer="Dr Who")
        session.add_detections(fake_result(sha), card=CARD)
        session.accept(session.findings[0].id)
    (tmp_path / "out").mkdir()
    assert main(["cmb", "export", "--store", str(tmp_path / "cases.sqlite"), "--scan", sha[:12],
                 "--out", str(tmp_path / "out")]) == 0
    written = json.loads(capsys.readouterr().out)["out"]
    root = derivative_root(tmp_path / "out")
    assert sorted(str(Path(p).relative_to(root)) for p in written) == _files(root)
    assert "sub-07/anat/sub-07_desc-cmb_dseg.nii.gz" in _files(root)
    labels = np.asarray(nib.load(root / "sub-07/anat/sub-07_desc-cmb_dseg.nii.gz").dataobj)
    assert set(np.unique(labels)) == {0, 1}  # the one accepted microbleed
    # no --reviewer: the store's reviewer, then the sign-off's, then the one given
    sidecar = root / "sub-07/anat/sub-07_desc-cmb_dseg.json"
    assert json.loads(sidecar.read_text())["Reviewer"] == "Dr Who"
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(scan), sha, SHAPE, AFFINE, reviewer="Dr Who")
        for finding in session.findings[1:]:
            session.reject(finding.id)
        store.sign_off(sha, "Dr Chief")
    export = ["cmb", "export", "--store", str(tmp_path / "cases.sqlite"), "--scan", sha[:12], "--out", str(tmp_path / "out")]
    assert main(export) == 0 and json.loads(sidecar.read_text())["Reviewer"] == "Dr Chief"
    assert main([*export, "--reviewer", "R2"]) == 0 and json.loads(sidecar.read_text())["Reviewer"] == "R2"
    capsys.readouterr()
    # a missing --out is one sentence, exit 2, nothing written
    assert main(["cmb", "export", "--store", str(tmp_path / "cases.sqlite"), "--scan", str(scan),
                 "--out", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


def test_a_dicom_review_exports_its_seg_with_a_sidecar_and_the_identity_only_there(tmp_path: Path) -> None:
    """The DICOM SEG joins the layout (``_seg.dcm`` + ``_seg.json``); the series' folder names nothing."""
    import pydicom
    from dicom_synthetic import IDENTITY
    from test_dicom_seg import _small

    folder, volume = _small(tmp_path / "study" / PATIENT)
    (tmp_path / "out").mkdir()
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(folder), volume.sha256, volume.spatial_shape, volume.affine,
                                     reviewer="Dr Who")
        session.add((volume.affine @ [6, 5, 3, 1.0])[:3])
        export_bids(session, tmp_path / "out", seg=True)
    root = derivative_root(tmp_path / "out")
    stem = f"sub-{volume.sha256[:12]}/anat/sub-{volume.sha256[:12]}_desc-cmb"
    assert {f"{stem}_seg.dcm", f"{stem}_seg.json", f"{stem}_dseg.nii.gz"} <= set(_files(root))
    assert json.loads((root / f"{stem}_seg.json").read_text())["SourceVoxelSHA256"] == volume.sha256
    assert str(pydicom.dcmread(root / f"{stem}_seg.dcm").PatientName) == IDENTITY["PatientName"]  # for PACS
    for name in (f for f in _files(root) if f.endswith((".json", ".tsv"))):
        text = (root / name).read_text()
        assert PATIENT not in text and not any(str(v) in text for v in IDENTITY.values()), name


def test_a_refused_seg_on_a_nifti_source_leaves_no_empty_folder(tmp_path: Path) -> None:
    """The SEG's refusal (the scan was not opened from DICOM) comes before any folder is left behind."""
    from napari_neuroreview.core.errors import InputFileError

    scan = tmp_path / PATIENT / "sub-07_swi.nii.gz"
    scan.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), AFFINE), scan)
    (tmp_path / "out").mkdir()
    with CaseStore(tmp_path / "cases.sqlite") as store, pytest.raises(InputFileError, match="not opened from DICOM"):
        export_bids(_review(store, str(scan)), tmp_path / "out", seg=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_another_scan_of_the_same_subject_never_replaces_an_export(tmp_path: Path) -> None:
    """sub-01_swi and sub-01_T2starw share the layout's names: the second is refused, the first kept."""
    from test_cmb_review import SHA_B

    with CaseStore(tmp_path / "cases.sqlite") as store:
        export_bids(_review(store, "/raw/sub-01/anat/sub-01_swi.nii.gz"), tmp_path)
        root = derivative_root(tmp_path)
        before = {name: (root / name).read_bytes() for name in _files(root)}
        other = ReviewSession.open(store, "/raw/sub-01/anat/sub-01_T2starw.nii.gz", SHA_B, SHAPE, AFFINE,
                                   reviewer="Dr B")
        other.add(world((5, 5, 5)))
        with pytest.raises(OutputPathError, match="holds the export of another scan") as info:
            export_bids(other, tmp_path)
        assert "\n" not in str(info.value)
        assert {name: (root / name).read_bytes() for name in _files(root)} == before
        export_bids(ReviewSession.open(store, "/raw/sub-01/anat/sub-01_swi.nii.gz", SHA_A, SHAPE, AFFINE),
                    tmp_path)  # the same scan again: rewritten in place


def test_a_re_export_without_a_seg_removes_the_previous_seg(tmp_path: Path) -> None:
    """The one microbleed rejected: the next export has no SEG, and the previous _seg.dcm/_seg.json
    (which still segments it and carries the identity) is gone with the same write."""
    from test_dicom_seg import _small

    folder, volume = _small(tmp_path / "study" / PATIENT)
    (tmp_path / "out").mkdir()
    root = derivative_root(tmp_path / "out")
    stem = f"sub-{volume.sha256[:12]}/anat/sub-{volume.sha256[:12]}_desc-cmb"
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(folder), volume.sha256, volume.spatial_shape, volume.affine,
                                     reviewer="Dr Who")
        session.add((volume.affine @ [6, 5, 3, 1.0])[:3])
        export_bids(session, tmp_path / "out", seg=True)
        assert {f"{stem}_seg.dcm", f"{stem}_seg.json"} <= set(_files(root))
        session.reject(session.findings[0].id)
        written = export_bids(session, tmp_path / "out", seg=True)
    assert not any(f.endswith(("_seg.dcm", "_seg.json")) for f in _files(root))
    assert sorted(str(p.relative_to(root)) for p in written) == _files(root)


def test_a_card_without_a_threshold_exports_the_one_the_detector_used(tmp_path: Path) -> None:
    """The sidecar's CardThreshold follows card_threshold (the fallback for a card that states none)."""
    from napari_neuroreview.core.tasks.cmb.model import FALLBACK_THRESHOLD

    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, "/raw/sub-01/anat/sub-01_swi.nii.gz", SHA_A, SHAPE, AFFINE)
        session.add_detections(fake_result(), card={**CARD, "config": {}})
        export_bids(session, tmp_path)
    models = json.loads((derivative_root(tmp_path) / "sub-01/anat/sub-01_desc-cmb_dseg.json").read_text())["Models"]
    assert models == [{"Name": "cmb-detector", "Version": "0.1.0", "CardThreshold": FALLBACK_THRESHOLD}]
