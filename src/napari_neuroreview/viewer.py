"""Open napari with scans (or a sample case) and the Case widget docked: ``make demo``.

Kept apart from the CLI parser so that importing the CLI stays light (no Qt) for
commands that do not open a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


#: Dock widgets opened with each sample case (the Case widget always).
SAMPLE_WIDGETS = {"cmb": ("Microbleed review",)}


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
    (napari.Viewer, CaseWidget)
    """
    import napari

    viewer = napari.Viewer(title="napari-neuroreview")
    if sample:
        viewer.open_sample("napari-neuroreview", sample)
    for path in files:
        viewer.open(path, plugin="napari-neuroreview")
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
