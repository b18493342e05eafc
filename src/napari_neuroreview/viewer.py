"""Open napari with scans (or a sample case) and the plugin's widgets docked: ``make demo``.

``make demo`` opens the microbleed sample with the review widget docked and its
detections on screen, ready to accept or reject, and the small vessel disease subtype
panel under it, classifying from the review once the detections are in: the plugin's
main job, not an empty form. The window is sized to the screen first and the view fitted once the window has its
size (fitting before leaves the brain cut at the canvas edges). Kept apart from the CLI
parser so that importing the CLI stays light (no Qt) for commands that do not open a
window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


#: Dock widgets opened with each sample case (the Case widget always).
SAMPLE_WIDGETS = {"cmb": ("SWI reading", "Microbleed review"), "metastasis": ("Metastasis origin",),
                  "stroke": ("Stroke risk",)}
#: Samples whose review widget runs its detector at once (the demo shows findings, not a form).
DETECT_ON_OPEN = ("cmb",)
#: Panels docked under a sample's widgets, and run once its review has findings.
SAMPLE_PANELS = {"cmb": ("Small vessel disease subtype",)}
#: The window's share of the screen, and the smallest size at which the brain and banner are whole.
SCREEN_SHARE, MIN_WINDOW = 0.9, (1280, 800)
#: Samples that are a pre/post pair of sessions, opened in the Networks widget (not as layers).
PAIRED_SAMPLES = ("rsfmri",)


def _open_paired_sample(viewer: Any, sample: str) -> Any:
    """Dock the Networks widget and compare its sample pair (its own button does the same)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-neuroreview", "Networks (pre vs post)")
    widget.open_sample_pair()
    return widget


def open_viewer(files: Sequence[str] = (), sample: str | None = None, run: bool = True,
                store: str | None = None, viewer: Any = None) -> tuple[Any, Any]:
    """Create a napari viewer with the plugin's Case widget and the given data.

    Parameters
    ----------
    files : sequence of str
        Scans to open with this plugin's reader.
    sample : str, optional
        A sample case key from the manifest (e.g. ``"t1"``).
    run : bool
        Enter the Qt event loop (False for tests and screenshots).
    store : str, optional
        An existing annotation store for the widgets (default: the user's default store).
    viewer : napari.Viewer, optional
        Fill this viewer instead of creating one (tests pass napari's test viewer).

    Returns
    -------
    (napari.Viewer, CaseWidget or None)
        None for a paired sample (``rsfmri``), which docks the Networks widget instead.
    """
    import napari

    viewer = viewer if viewer is not None else napari.Viewer(title="napari-neuroreview")
    size_window(viewer)
    if sample in PAIRED_SAMPLES:
        _open_paired_sample(viewer, sample)
    elif sample:
        viewer.open_sample("napari-neuroreview", sample)
    for path in files:
        viewer.open(path, plugin="napari-neuroreview")
    if sample in PAIRED_SAMPLES:  # the Networks widget is the whole workflow; the Case widget would crowd it
        fit_view_when_shown(viewer)
        if run:
            napari.run()
        return viewer, None
    _, case_widget = viewer.window.add_plugin_dock_widget("napari-neuroreview", "Case")
    if store is not None:
        case_widget.store_path.setText(str(store))
        case_widget.open_store()
    # A sample's own widgets are tabbed over the Case widget: the review needs the dock's height.
    docked = [viewer.window.add_plugin_dock_widget("napari-neuroreview", name, tabify=True)[1]
              for name in SAMPLE_WIDGETS.get(sample or "", ())]
    panels = [viewer.window.add_plugin_dock_widget("napari-neuroreview", name)[1]
              for name in SAMPLE_PANELS.get(sample or "", ())]
    scan = case_widget.selected_image()
    if scan is not None:  # the scan, not a truth overlay, is what the user works on first
        viewer.layers.selection.active = scan
    viewer.dims.ndisplay = 2
    if sample in DETECT_ON_OPEN:
        for widget in docked:
            runner = getattr(widget, "runner", None)
            if runner is not None and getattr(widget, "session", None) is None:  # a stored review is shown as is
                runner.run()
            if hasattr(widget, "findings_changed"):
                for panel in panels:
                    _run_once_findings_appear(widget, panel)
    fit_view_when_shown(viewer)
    if run:
        napari.run()
    return viewer, case_widget


def _run_once_findings_appear(review: Any, panel: Any) -> None:
    """Run ``panel`` the first time ``review`` has a session (its own Classify button does the same).

    Why: the demo should show the subtype of the sample's microbleeds, not an idle button;
    after that first result the panel re-runs on edits by itself.
    """
    def go(*_: Any) -> None:
        if review.session is None or panel.runner.running or panel.result is not None:
            return
        review.findings_changed.disconnect(go)
        panel.runner.run()

    review.findings_changed.connect(go)
    go()


def size_window(viewer: Any) -> None:
    """Give the window most of the screen (napari's first window is small for a brain and two docks)."""
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    if screen is None:
        return
    area = screen.availableGeometry()
    width = max(MIN_WINDOW[0], int(area.width() * SCREEN_SHARE))
    height = max(MIN_WINDOW[1], int(area.height() * SCREEN_SHARE))
    viewer.window.resize(min(width, area.width()), min(height, area.height()))


def fit_view_when_shown(viewer: Any) -> None:
    """Fit the scan to the canvas now and again once the window is on screen with its final size.

    Why twice: napari fits to the canvas size at the time of the call; before the window
    is shown the canvas still has its initial size, and the brain ends up cut.
    """
    from qtpy.QtCore import QTimer

    viewer.reset_view()
    for delay_ms in (0, 300):
        QTimer.singleShot(delay_ms, viewer.reset_view)
