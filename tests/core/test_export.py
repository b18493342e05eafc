"""Labels save on the source grid and affine; points save in world RAS mm; atomically."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.io.atomic import write_with
from napari_neuroreview.core.io.export import load_points, points_to_records, save_labels, save_points
from napari_neuroreview.core.io.layers import image_layer_data
from napari_neuroreview.core.io.nifti import load_volume

from synthetic import reorient_to, save_nifti


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "LAS"])
def test_labels_round_trip_to_the_same_world_coordinate(tmp_path: Path, ras_image, axcodes: str) -> None:
    data, affine = ras_image
    stored, stored_affine = reorient_to(data, affine, axcodes)
    volume = load_volume(save_nifti(tmp_path / "scan.nii.gz", stored, stored_affine))
    display, kwargs, _, geometry = image_layer_data(volume)
    labels = np.zeros(display.shape, np.uint16)
    target_ras = nib.affines.apply_affine(affine, [30, 10, 5])
    labels[tuple(np.rint(geometry.world_to_display(target_ras)).astype(int))] = 5
    out = save_labels(tmp_path / "labels.nii.gz", labels, geometry, volume.header)
    saved = nib.load(str(out))
    assert saved.shape == stored.shape
    np.testing.assert_allclose(saved.affine, stored_affine, atol=1e-5)
    ijk = np.argwhere(np.asarray(saved.dataobj) == 5)
    assert len(ijk) == 1
    np.testing.assert_allclose(nib.affines.apply_affine(saved.affine, ijk[0]), target_ras, atol=1e-4)
    assert saved.header["sform_code"] == 1 and np.asarray(saved.dataobj).dtype == np.uint8


def test_points_records_are_world_ras_with_voxels_and_features(tmp_path: Path, ras_image) -> None:
    data, affine = ras_image
    stored, stored_affine = reorient_to(data, affine, "LPS")
    volume = load_volume(save_nifti(tmp_path / "scan.nii.gz", stored, stored_affine))
    _, kwargs, _, geometry = image_layer_data(volume)
    target_ras = nib.affines.apply_affine(affine, [30, 10, 5])
    display_index = geometry.world_to_display(target_ras)
    records = points_to_records(
        display_index[None], kwargs["scale"], kwargs["translate"], geometry,
        {"id": [1], "score": [np.float32(0.75)], "status": ["accepted"]},
    )
    assert records[0]["world_ras_mm"] == pytest.approx(list(target_ras), abs=1e-3)
    voxel = nib.affines.apply_affine(np.linalg.inv(stored_affine), target_ras)
    assert records[0]["voxel_ijk"] == pytest.approx(list(voxel), abs=1e-3)
    assert records[0]["score"] == pytest.approx(0.75) and records[0]["status"] == "accepted"

    js = save_points(tmp_path / "pts.json", records, {"image": str(volume.path), "image_sha256": volume.sha256})
    doc = json.loads(js.read_text())
    assert doc["image_sha256"] == volume.sha256 and doc["space"] == "world RAS+ mm"
    ras, back = load_points(js)
    np.testing.assert_allclose(ras[0], target_ras, atol=1e-3)
    tsv = save_points(tmp_path / "pts.tsv", records)
    header = tsv.read_text().splitlines()[0].split("\t")
    assert header[:6] == ["x_ras_mm", "y_ras_mm", "z_ras_mm", "i", "j", "k"] and "status" in header
    ras_tsv, _ = load_points(tsv)
    np.testing.assert_allclose(ras_tsv, ras, atol=1e-3)


def test_a_crash_mid_write_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "labels.json"
    target.write_text("committed")

    def crash(tmp: Path) -> None:
        tmp.write_text("half writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_with(target, crash)
    assert target.read_text() == "committed"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_labels_must_be_integers(tmp_path: Path, ras_image) -> None:
    data, affine = ras_image
    volume = load_volume(save_nifti(tmp_path / "scan.nii.gz", data, affine))
    display, _, _, geometry = image_layer_data(volume)
    from napari_neuroreview.core.errors import GeometryError

    with pytest.raises(GeometryError):
        save_labels(tmp_path / "bad.nii.gz", display.astype(np.float32), geometry)
    assert not (tmp_path / "bad.nii.gz").exists()


def test_points_file_names_the_scan_by_file_name_and_sha_not_its_folder(tmp_path: Path, ras_image) -> None:
    """Issue 8 class 10: a folder named after the patient must not travel in an export."""
    from napari_neuroreview._writer import write_points

    data, affine = ras_image
    patient = tmp_path / "Doe_Jane_1950"
    patient.mkdir()
    volume = load_volume(save_nifti(patient / "swi.nii.gz", data, affine))
    _, kwargs, _, _ = image_layer_data(volume)
    out = tmp_path / "points.json"
    write_points(str(out), np.array([[5.0, 6.0, 7.0]]), {
        "metadata": kwargs["metadata"], "scale": kwargs["scale"], "translate": kwargs["translate"],
        "features": {"score": [float("nan")]},
    })
    text = out.read_text()
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert doc["image"] == "swi.nii.gz" and doc["image_sha256"] == volume.sha256
    assert "Doe_Jane" not in text and str(tmp_path) not in text
    assert doc["points"][0]["score"] is None
