"""The case report (issue 14 item 5): content, key images' orientation, privacy, outputs, PDF, a real browser."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_case import REVIEWER, SAMPLE, ReviewedCase, reviewed_case

from napari_neuroreview.cli import main
from napari_neuroreview.core.report import browser
from napari_neuroreview.core.report.key_images import crop_plane

HAS_CHROMIUM = browser.available()
#: Skipped only where Chromium is absent AND this is not CI (CI installs it: .ci/run).
needs_chromium = pytest.mark.skipif(not HAS_CHROMIUM and not os.environ.get("CI"),
                                    reason="headless Chromium is not installed here")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> ReviewedCase:
    return reviewed_case(tmp_path_factory.mktemp("report") / "case")


class _Ids(HTMLParser):
    """Element ids, and each <figure>'s id with its <img> sources."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: dict[str, list[str]] = {}
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "figure":
            self._figure = a.get("id")
        if tag == "img" and self._figure:
            self.images.setdefault(self._figure, []).append(str(a.get("src")))


def _parse(html: str) -> _Ids:
    parser = _Ids()
    parser.feed(html)
    return parser


def _text(html: str) -> str:
    """The page without its embedded images (base64 may spell anything by chance)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)


def _report(case: ReviewedCase, out: Path, *extra: str, scan: str | None = None) -> str:
    code = main(["report", "--store", str(case.store), "--scan", scan or str(case.scan), "--out", str(out),
                 "--quiet", *extra])
    assert code == 0
    return out.read_text(encoding="utf-8")


def test_report_shows_each_counted_microbleed_with_key_images_and_the_review(case: ReviewedCase, tmp_path: Path) -> None:
    html = _report(case, tmp_path / "report.html")
    page = _parse(html)
    counted = case.accepted + case.added
    assert {f"cmb-{i}" for i in counted} == {i for i in page.ids if i.startswith("cmb-")}
    for fid in counted:  # one PNG per microbleed, embedded (the page is one file)
        (src,) = page.images[f"cmb-{fid}"]
        assert src.startswith("data:image/png;base64,")
    text = _text(html)
    assert "not-for-clinical-use" in page.ids and "not for clinical use" in text
    assert f"scan-{case.sha256[:8]}" in text and "sub-demo_swi.nii.gz" in text
    assert "in review (not signed off)" in text and 'id="signed-off"' not in text
    assert "2 accepted, 1 added" in text and "1 rejected" in text and "1 not reviewed" in text
    assert REVIEWER in text and "cmb-detector" in text and "1.0.1" in text
    assert "demo (trained on simulated data)" in text  # the shipped detector's card says so
    rejected = text[text.index('id="rejected"'):]
    assert f"<td class=num>{case.rejected[0]}</td>" in rejected  # listed apart, without key images
    assert "radiological convention" in text


def test_each_microbleed_has_its_side_and_mars_region(case: ReviewedCase, tmp_path: Path) -> None:
    """The sample's truth: lobar microbleeds; the patient's side is the sign of world x (RAS: x > 0 is right)."""
    truth = json.loads((SAMPLE / "sub-demo_truth.json").read_text())["cmbs"]
    html = _text(_report(case, tmp_path / "report.html"))
    for fid, spot in zip(case.accepted, truth):  # the first two detections are the first two true microbleeds
        caption = html[html.index(f'id="cmb-{fid}"'):]
        caption = caption[caption.index("region:"):caption.index("size:")]
        side = "R" if spot["world_ras_mm"][0] > 0 else "L"
        assert spot["location"] == "lobar" and f"(lobar), {side}" in caption, caption


def test_signed_off_scan_says_by_whom_and_when(case: ReviewedCase, tmp_path: Path) -> None:
    from napari_neuroreview.core.store import CaseStore
    from napari_neuroreview.core.tasks.cmb.review import ReviewSession

    store = tmp_path / "signed.sqlite"
    shutil.copy(case.store, store)
    with CaseStore.open_existing(store) as opened:
        session = ReviewSession(opened, opened.image_by_sha(case.sha256), "Dr White")
        session.accept(case.pending[0])
        state = opened.sign_off(case.sha256, "Dr White")
    code = main(["report", "--store", str(store), "--scan", str(case.scan), "--out", str(tmp_path / "r.html"), "--quiet"])
    assert code == 0
    text = _text((tmp_path / "r.html").read_text())
    signed = text[text.index('id="signed-off"'):]
    assert signed.index("Dr White") < signed.index(state.signed_at[:10]) < signed.index("UTC") < 200


def test_report_names_no_folder_and_no_login(tmp_path: Path) -> None:
    case = reviewed_case(tmp_path / "Doe_Jane_1947", reviewer=getpass.getuser())  # a folder named after a patient
    text = _text(_report(case, tmp_path / "report.html"))
    assert "Doe_Jane" not in text and str(tmp_path) not in text
    assert "unnamed reviewer" in text and f">{getpass.getuser()}<" not in text


def test_dicom_scan_report_carries_no_patient_identity(tmp_path: Path) -> None:
    import nibabel as nib
    from dicom_synthetic import IDENTITY, write_series

    from napari_neuroreview.core.io.nifti import load_volume
    from napari_neuroreview.core.store import CaseStore
    from napari_neuroreview.core.tasks.cmb.review import ReviewSession

    data = np.full((24, 20, 10), 200.0)
    data[10:13, 8:11, 4:6] = 20.0
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    series = tmp_path / "study" / "DOE_JOHN_1961-04-02"  # PACS exports often name a series' folder after the patient
    write_series(nib.Nifti1Image(data, affine), series, description="SWI phantom")
    volume = load_volume(series)
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(series), volume.sha256, volume.shape, volume.affine,
                                     reviewer="Dr Grey")
        session.accept(session.add([11.0, 9.0, 9.0]))
    code = main(["report", "--store", str(tmp_path / "cases.sqlite"), "--scan", str(series),
                 "--out", str(tmp_path / "report.html"), "--quiet"])
    assert code == 0
    html = (tmp_path / "report.html").read_text()
    for value in IDENTITY.values():
        assert value.split("^")[0].lower() not in _text(html).lower()
    assert "DOE_JOHN" not in html and "1961-04-02" not in html  # nor in "Regions: not known (...)"


def test_key_image_is_radiological_and_anterior_up() -> None:
    """A bright spot right-anterior-superior of the centre lands left-top (axial) and left-top (coronal)."""
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS storage: i runs right -> left
    affine[:3, 3] = [30.0, -30.0, -30.0]
    data = np.zeros((61, 61, 61), np.float32)
    spot = np.rint(np.linalg.solve(affine, [8.0, 8.0, 8.0, 1.0])[:3]).astype(int)  # RAS (8, 8, 8): right, anterior, up
    data[tuple(slice(s - 1, s + 2) for s in spot)] = 1.0
    for plane, centre in (("axial", (0.0, 0.0, 8.0)), ("coronal", (0.0, 8.0, 0.0))):
        crop = crop_plane(data, affine, centre, plane)
        rows, cols = np.nonzero(crop > 0.5)
        mid = (crop.shape[0] - 1) / 2
        assert rows.mean() < mid - 10 and cols.mean() < mid - 10, plane  # up and on the image's left


def test_scan_by_sha256_prefix_reads_the_stored_file(case: ReviewedCase, tmp_path: Path) -> None:
    html = _report(case, tmp_path / "by_sha.html", scan=case.sha256[:10])
    assert {f"cmb-{i}" for i in case.accepted + case.added} <= set(_parse(html).ids)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], outputs: list[Path], inputs: list[Path]) -> str:
    before = {p: p.read_bytes() for p in inputs}
    code = main([*argv, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not any(p.exists() for p in outputs if p not in inputs)
    assert {p: p.read_bytes() for p in inputs} == before
    return err


def test_changed_scan_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    case = reviewed_case(tmp_path / "case")
    img = nib.load(case.scan)
    data = np.asarray(img.dataobj, np.float32)
    data[0, 0, 0] += 1.0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), case.scan)  # re-acquired under the same name
    out = tmp_path / "r.html"
    base = ["report", "--store", str(case.store), "--out", str(out), "--scan"]
    assert "no longer holds the reviewed voxels" in _refused([*base, case.sha256[:8]], capsys, [out], [case.store])
    assert "not the ones reviewed under this path" in _refused([*base, str(case.scan)], capsys, [out], [case.store])
    other = tmp_path / "other.nii.gz"
    shutil.copy(case.scan, other)
    assert "is not in the store" in _refused([*base, str(other)], capsys, [out], [case.store])
    assert "deadbeef0" in _refused([*base, "deadbeef0"], capsys, [out], [case.store])


def test_subtype_of_another_scan_is_refused(case: ReviewedCase, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    subtype = tmp_path / "subtype.json"
    subtype.write_text(json.dumps({"image_sha256": "f" * 64, "probabilities": {"aSVD": 0.2, "CAA": 0.7, "CADASIL": 0.1},
                                   "cmbs": []}))
    err = _refused(["report", "--store", str(case.store), "--scan", str(case.scan), "--out", str(tmp_path / "r.html"),
                    "--subtype", str(subtype)], capsys, [tmp_path / "r.html"], [subtype, case.store])
    assert "another" in err or "not on" in err


@pytest.mark.parametrize("which", ["store", "subtype", "scan"])
def test_an_output_that_is_an_input_is_refused(case: ReviewedCase, tmp_path: Path, which: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    subtype = tmp_path / "subtype.html"  # an input with the output's suffix
    subtype.write_text("{}")
    target = {"store": case.store, "subtype": subtype, "scan": case.scan}[which]
    argv = ["report", "--store", str(case.store), "--scan", str(case.scan), "--out", str(tmp_path / "r.html"),
            "--pdf", str(target), "--subtype", str(subtype)]
    _refused(argv, capsys, [tmp_path / "r.html"], [case.store, case.scan, subtype])


def test_subtype_and_networks_sections(case: ReviewedCase, tmp_path: Path) -> None:
    first, second = case.accepted
    subtype = tmp_path / "subtype.json"
    subtype.write_text(json.dumps({
        "image_sha256": case.sha256, "model": {"name": "csvd-subtype", "version": "1.0.0"},
        "probabilities": {"aSVD": 0.15, "CAA": 0.8, "CADASIL": 0.05}, "prediction": "CAA",
        "cmbs": [{"id": 1, "world_ras_mm": list(case.world[first]), "region": "occipital", "mars_class": "lobar",
                  "side": "right", "attention": 0.6},
                 {"id": 2, "world_ras_mm": list(case.world[second]), "region": "thalamus", "mars_class": "deep",
                  "side": "left", "attention": 0.4}]}))
    networks = tmp_path / "networks.json"
    networks.write_text(json.dumps({"pre": "pre_bold.nii.gz", "post": "post_bold.nii.gz",
                                    "model": {"name": "network-prepost", "version": "1.0.0"},
                                    "networks": {"DMN": {"pre": {"p_post": 0.12}, "post": {"p_post": 0.91}},
                                                 "motor": {"pre": {"p_post": 0.3}, "post": {"p_post": None}}}}))
    html = _report(case, tmp_path / "r.html", "--subtype", str(subtype), "--networks", str(networks))
    text = _text(html)
    assert {"subtype", "mars", "networks"} <= set(_parse(html).ids)
    mars = text[text.index('id="mars"'):]
    assert "<td>lobar</td><td class=num>0</td><td class=num>1</td><td class=num>1</td>" in mars
    assert "<td>deep</td><td class=num>1</td><td class=num>0</td><td class=num>1</td>" in mars
    assert "80%" in text and "91%" in text and "csvd-subtype" in text and "network-prepost" in text


def test_pdf_without_chromium_is_one_sentence(case: ReviewedCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    err = _refused(["report", "--store", str(case.store), "--scan", str(case.scan), "--out", str(tmp_path / "r.html"),
                    "--pdf", str(tmp_path / "r.pdf")], capsys, [tmp_path / "r.html", tmp_path / "r.pdf"], [case.store])
    assert "install chromium" in err


@needs_chromium
def test_pdf_is_printed_with_the_html(case: ReviewedCase, tmp_path: Path) -> None:
    _report(case, tmp_path / "r.html", "--pdf", str(tmp_path / "r.pdf"))
    pdf = (tmp_path / "r.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000  # the key images are in it


@needs_chromium
def test_report_opened_in_a_real_browser(case: ReviewedCase, tmp_path: Path) -> None:
    """Chromium parses the page (DOM holds the key elements) and draws it (a screenshot that is not blank)."""
    from PIL import Image

    html = tmp_path / "report.html"
    _report(case, html)
    dom = browser.dump_dom(html)
    page = _parse(dom)
    assert {"header", "not-for-clinical-use", "microbleeds", "rejected", "orientation"} <= set(page.ids)
    assert len([i for i in page.ids if i.startswith("cmb-")]) == len(case.accepted + case.added)
    png = browser.screenshot(html, tmp_path / "report.png", (1000, 1400))
    pixels = np.asarray(Image.open(png).convert("L"), float)
    assert pixels.std() > 20  # text, tables and dark key images on white
    assert (pixels < 40).mean() > 0.05  # the key images' black surround is drawn (images decoded)


def _ica_folder(folder: Path, sha256: str, blob_ras: tuple[float, float, float]) -> Path:
    """An ICA folder whose component k (network k) is one blob; network 0's blob at ``blob_ras``."""
    from napari_neuroreview.core.anatomy.atlas import NETWORKS
    from napari_neuroreview.core.io.ica_folder import ICAComponents
    from napari_neuroreview.core.tasks.networks.assignment_io import write_ica_folder
    from napari_neuroreview.core.tasks.networks.matching import Assignment, NetworkMatch

    affine = np.array([[-4.0, 0, 0, 90], [0, 4.0, 0, -126], [0, 0, 4.0, -72], [0, 0, 0, 1]])
    ijk = np.indices((46, 55, 46)).reshape(3, -1).T
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    centres = [blob_ras, *[(-40.0 + 20 * k, -60.0, 10.0) for k in range(len(NETWORKS) - 1)]]
    maps = np.stack([np.exp(-np.sum((ras - c) ** 2, axis=1) / (2 * 8.0**2)).reshape(46, 55, 46) * 10 + 0.1
                     for c in centres], axis=-1).astype(np.float32)
    k = len(NETWORKS)
    matches = {n: NetworkMatch(n, i, 0.5, 0.1, 1, True, True) for i, n in enumerate(NETWORKS)}
    assignment = Assignment(matches=matches, scores=np.eye(k), signs=np.ones((k, k), dtype=np.int64))
    comps = ICAComponents(maps=maps, affine=affine, timecourses=np.random.default_rng(0).standard_normal((40, k)),
                          tr_s=2.0, source="bold.nii.gz", kind="neuroreview")
    write_ica_folder(folder, comps, assignment, {"source_sha256": sha256})
    return folder


def test_network_thumbnail_is_radiological_and_anterior_up() -> None:
    from napari_neuroreview.core.report.key_images import axial_mip

    affine = np.array([[-2.0, 0, 0, 40], [0, 2.0, 0, -40], [0, 0, 2.0, -40], [0, 0, 0, 1]])  # LAS storage
    data = np.zeros((41, 41, 41), np.float32)
    i, j, k = np.rint(np.linalg.solve(affine, [20.0, 20.0, 0.0, 1.0])[:3]).astype(int)  # right, anterior
    data[i - 1:i + 2, j - 1:j + 2, k] = 5.0
    mip = axial_mip(data, affine)
    rows, cols = np.nonzero(mip > 1)
    assert rows.mean() < mip.shape[0] / 2 - 5 and cols.mean() < mip.shape[1] / 2 - 5  # top, image's left


def test_networks_with_maps_show_thumbnails_and_refuse_another_scans_maps(
        case: ReviewedCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from napari_neuroreview.core.anatomy.atlas import NETWORKS

    pre = _ica_folder(tmp_path / "pre_ica", "a" * 64, (40.0, 30.0, 20.0))
    post = _ica_folder(tmp_path / "post_ica", "b" * 64, (-40.0, 30.0, 20.0))
    networks = tmp_path / "networks.json"
    doc = {"pre": "pre", "post": "post", "pre_sha256": "a" * 64, "post_sha256": "b" * 64,
           "model": {"name": "network-prepost", "version": "1.0.0"},
           "networks": {n: {"pre": {"p_post": 0.2}, "post": {"p_post": 0.7}} for n in NETWORKS}}
    networks.write_text(json.dumps(doc))
    html = _report(case, tmp_path / "r.html", "--networks", str(networks), "--network-maps", str(pre), str(post))
    section = html[html.index('id="networks"'):]
    assert section.count('<img class="thumb"') == len(NETWORKS)
    doc["post_sha256"] = "c" * 64
    networks.write_text(json.dumps(doc))
    err = _refused(["report", "--store", str(case.store), "--scan", str(case.scan), "--out", str(tmp_path / "s.html"),
                    "--networks", str(networks), "--network-maps", str(pre), str(post)],
                   capsys, [tmp_path / "s.html"], [networks, case.store])
    assert "post_ica" in err and "not the post scan" in err


def test_scan_by_sha256_is_read_where_it_was_last_opened(tmp_path: Path) -> None:
    """A scan moved and reopened is read from its new place (ScanState.path), as the worklist opens it."""
    from napari_neuroreview.core.report.write import scan_source
    from napari_neuroreview.core.store import CaseStore

    sha = "cd" * 32
    with CaseStore(tmp_path / "cases.sqlite") as store:
        store.register_image(tmp_path / "old" / "a.nii.gz", sha, (4, 4, 4), np.eye(4))
        store.register_image(tmp_path / "new" / "a.nii.gz", sha, (4, 4, 4), np.eye(4))
        source, image = scan_source(store, sha[:10])
    assert source == str(tmp_path / "new" / "a.nii.gz")
    assert image is not None and image.sha256 == sha


def test_network_maps_without_sha256_are_checked_by_name(
        case: ReviewedCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Maps with no BOLD sha256 (MELODIC folders) given POST PRE are refused: compare wrote their names."""
    from napari_neuroreview.core.anatomy.atlas import NETWORKS

    pre = _ica_folder(tmp_path / "pre", "", (40.0, 30.0, 20.0))
    post = _ica_folder(tmp_path / "post", "", (-40.0, 30.0, 20.0))
    networks = tmp_path / "networks.json"
    networks.write_text(json.dumps({"pre": "pre", "post": "post", "pre_sha256": "", "post_sha256": "",
                                    "networks": {n: {"pre": {"p_post": 0.2}, "post": {"p_post": 0.7}}
                                                 for n in NETWORKS}}))
    err = _refused(["report", "--store", str(case.store), "--scan", str(case.scan), "--out", str(tmp_path / "s.html"),
                    "--networks", str(networks), "--network-maps", str(post), str(pre)],
                   capsys, [tmp_path / "s.html"], [networks, case.store])
    assert err.endswith("post: is not the pre scan of the networks result, which names it 'pre'")
    html = _report(case, tmp_path / "r.html", "--networks", str(networks), "--network-maps", str(pre), str(post))
    assert html[html.index('id="networks"'):].count('<img class="thumb"') == len(NETWORKS)
