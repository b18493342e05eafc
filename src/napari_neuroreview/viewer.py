"""Open napari with scans (or a sample case) and the Case widget docked: ``make demo``.

Kept apart from the CLI parser so that importing the CLI stays light (no Qt) for
commands that do not open a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


#: Dock widgets opened with each sample case (the Case widget always).
SAMPLE_WIDGETS = {"cmb": ("Microbleed review",)}
#: Samples that are a pre/post pair of sessions, opened in the Networks widget (not as layers).
PAIRED_SAMPLES = ("rsfmri",)


def _open_paired_sample(viewer: Any, sample: str) -> Any:
    """Dock the Networks widget with the sample's pre and post sessions filled in, and compare them."""
    from ._sample_data import sample_cache_dir, sample_case_paths

    sample_case_paths(sample)  # writes the sample into the cache on first use
    subject = sample_cache_dir() / sample / "sub-001"
    _, widget = viewer.window.add_plugin_dock_widget("napari-neuroreview", "Networks (pre vs post)")
    widget.pre_path.setText(str(subject / "ses-pre"))
    widget.post_path.setText(str(subject / "ses-post"))
    widget.runner.run()
    return widget


def open_viewer(files: Sequence[str] = (), sample: str | None = None, run: bool = True) -> tuple[Any, Any]:
    """Create a napari viewer with the plugin's Case widget and the given data.

    Parameters
    ----------
    files : sequence of str
        Scans to open with this plugin's reader.
    sample : str, optional
        A sample case key from the manifest (e.g. ``"t1"``).
    run : bool
        Enter the Qt event loop (False for tests and screenshots).

    Returns
    -------
    (napari.Viewer, CaseWidget or None)
        None for a paired sample (``rsfmri``), which docks the Networks widget instead.
    """
    import napari

    viewer = napari.Viewer(title="napari-neuroreview")
    if sample in PAIRED_SAMPLES:
        _open_paired_sample(viewer, sample)
    elif sample:
        viewer.open_sample("napari-neuroreview", sample)
    for path in files:
        viewer.open(path, plugin="napari-neuroreview")
    if sample in PAIRED_SAMPLES:  # the Networks widget is the whole workflow; the Case widget would crowd it
        viewer.reset_view()
        if run:
            napari.run()
        return viewer, None
    _, case_widget = viewer.window.add_plugin_dock_widget("napari-neuroreview", "Case")
    for widget_name in SAMPLE_WIDGETS.get(sample or "", ()):
        viewer.window.add_plugin_dock_widget("napari-neuroreview", widget_name)
    scan = case_widget.selected_image()
    if scan is not None:  # the scan, not a truth overlay, is what the user works on first
        viewer.layers.selection.active = scan
    viewer.dims.ndisplay = 2
    viewer.reset_view()
    if run:
        napari.run()
    return viewer, case_widget
