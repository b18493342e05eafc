"""The reader as a user meets it: File > Open puts the scan in napari correctly."""

from __future__ import annotations


import nibabel as nib
import numpy as np

from napari_neuroreview.core.io.layers import META_KEY

from synthetic import reorient_to, save_nifti


def test_open_puts_scan_axial_with_mm_scale_and_metadata(make_napari_viewer, tmp_path, ras_image) -> None:
    data, affine = ras_image
    stored, stored_affine = reorient_to(data, affine, "LPS")
    path = save_nifti(tmp_path / "scan.nii.gz", stored, stored_affine)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-neuroreview")
    layer = layers[0]
    assert layer.data.shape == (24, 48, 40)  # (S, P, L): axial slices under the slider
    np.testing.assert_allclose(layer.scale, (2.5, 1.25, 1.0))
    np.testing.assert_allclose(layer.metadata["affine"], stored_affine)
    assert layer.metadata[META_KEY]["orientation"] == "LPS"
    assert "dim" in layer.metadata["header"]
    # The bright voxel is drawn where its world coordinate says (napari frame = S, P, L mm).
    landmark = nib.affines.apply_affine(affine, [30, 10, 5])
    peak = np.array(np.unravel_index(np.argmax(layer.data), layer.data.shape))
    np.testing.assert_allclose(layer.data_to_world(peak), [landmark[2], -landmark[1], -landmark[0]])


def test_bad_file_gives_one_notification_and_no_layer(make_napari_viewer, tmp_path, notifications) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    viewer = make_napari_viewer()
    viewer.open(str(bad), plugin="napari-neuroreview")
    assert len(viewer.layers) == 0
    messages = [m for m in notifications if "broken.nii.gz" in m]
    assert len(messages) == 1 and "could not be read" in messages[0]


def test_nan_warning_is_shown(make_napari_viewer, tmp_path, ras_image, notifications) -> None:
    data, affine = ras_image
    data = data.copy()
    data[1, 1, 1] = np.nan
    path = save_nifti(tmp_path / "nan.nii.gz", data, affine)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-neuroreview")
    assert np.isfinite(viewer.layers[0].data).all()
    assert any("NaN or infinite" in m for m in notifications)


def test_label_file_opens_as_labels(make_napari_viewer, tmp_path, ras_image) -> None:
    _, affine = ras_image
    seg = np.zeros((40, 48, 24), np.uint8)
    seg[10:20, 10:20, 5:10] = 2
    path = save_nifti(tmp_path / "sub_dseg.nii.gz", seg, affine)
    viewer = make_napari_viewer()
    layer = viewer.open(str(path), plugin="napari-neuroreview")[0]
    assert layer._type_string == "labels"


def test_a_sample_file_that_fails_leaves_the_others_their_names(tmp_path, monkeypatch, notifications) -> None:
    """A torn sample file is one notification; the other layers keep their own names (none shifted)."""
    import shutil
    from pathlib import Path

    from napari_neuroreview._sample_data import sample_metastasis

    sample = Path(__file__).resolve().parents[2] / "sample_data" / "metastasis"
    folder = tmp_path / "napari-neuroreview" / "sample_data" / "metastasis"
    shutil.copytree(sample, folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (folder / "t2.nii.gz").write_bytes((folder / "t2.nii.gz").read_bytes()[:200])  # torn
    layers = sample_metastasis()
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["T1", "FLAIR", "DWI", "ADC", "CE-T1", "lesions"]
    assert [kind for _, _, kind in layers][-1] == "labels"
    assert len(notifications) == 1 and "t2.nii.gz" in str(notifications[0])
