"""Matplotlib panels of the Networks widget: the two time courses, and the t-SNE.

Why matplotlib in a dock: napari has no 1D plot layer, and a radiologist reads a time
course and a scatter plot as figures. The panels only draw what
:class:`~napari_neuroreview.core.tasks.networks.compare.Comparison` holds; nothing is
computed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QHBoxLayout, QWidget

from ..core.tasks.networks.colours import NETWORK_COLOURS

#: Line/marker styles of the two scans.
STATE_STYLE = {"pre": {"color": "#d9d9d9", "marker": "o"}, "post": {"color": "#ff9f1c", "marker": "^"}}
_BACKGROUND = "#262930"  # napari's dark theme


def _style(ax: Any) -> None:
    ax.set_facecolor(_BACKGROUND)
    for spine in ax.spines.values():
        spine.set_color("#888888")
    ax.tick_params(colors="#cccccc", labelsize=8)
    ax.xaxis.label.set_color("#cccccc")
    ax.yaxis.label.set_color("#cccccc")
    ax.title.set_color("#eeeeee")


class NetworkPlots(QWidget):
    """Two figures side by side: the network's pre and post time courses, and the t-SNE."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(9, 2.6), facecolor=_BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax_tc = self.figure.add_subplot(1, 3, (1, 2))
        self.ax_tsne = self.figure.add_subplot(1, 3, 3)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.clear()

    def clear(self) -> None:
        """Empty axes with a hint of what will appear."""
        for ax, text in ((self.ax_tc, "time courses appear after Compare"), (self.ax_tsne, "t-SNE")):
            ax.clear()
            _style(ax)
            ax.text(0.5, 0.5, text, ha="center", va="center", color="#999999", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        self.canvas.draw_idle()

    def show(self, comparison: Any, network: str) -> None:
        """Draw ``network``'s two time courses and the t-SNE with the patient marked."""
        self._time_courses(comparison, network)
        self._tsne(comparison, network)
        self.canvas.draw_idle()

    def _time_courses(self, comparison: Any, network: str) -> None:
        ax = self.ax_tc
        ax.clear()
        _style(ax)
        for state in ("pre", "post"):
            session = getattr(comparison, state)
            tc = session.network_timecourse(network)
            t = np.arange(tc.size) * session.tr_s
            p = comparison.probabilities[state].get(network, float("nan"))
            ax.plot(t, tc, lw=1.0, color=STATE_STYLE[state]["color"],
                    label=f"{state} ({session.assignment.matches[network].label}, P(post) {p:.2f})")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("z")
        ax.set_title(f"{network} network time course", fontsize=9)
        legend = ax.legend(fontsize=7, loc="upper right", facecolor=_BACKGROUND, edgecolor="#888888")
        for text in legend.get_texts():
            text.set_color("#dddddd")

    def _tsne(self, comparison: Any, network: str) -> None:
        ax = self.ax_tsne
        ax.clear()
        _style(ax)
        tsne = comparison.tsne
        if tsne is None:
            ax.text(0.5, 0.5, "no reference embeddings\nin this model", ha="center", va="center",
                    color="#999999", transform=ax.transAxes, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            return
        ref, ref_net, ref_state = tsne["reference"], tsne["reference_network"], tsne["reference_state"]
        for name in NETWORK_COLOURS:
            for state, marker in (("pre", "o"), ("post", "^")):
                sel = (ref_net == name) & (ref_state == state)
                ax.scatter(ref[sel, 0], ref[sel, 1], s=6, marker=marker, color=NETWORK_COLOURS[name],
                           alpha=0.9 if name == network else 0.25, linewidths=0)
        for state in ("pre", "post"):
            xy = tsne["patient"][state]
            for k, name in enumerate(tsne["networks"]):
                big = name == network
                ax.scatter(xy[k, 0], xy[k, 1], s=90 if big else 30, marker=STATE_STYLE[state]["marker"],
                           color=NETWORK_COLOURS[name], edgecolors="white", linewidths=1.5 if big else 0.6, zorder=3)
            k = tsne["networks"].index(network)
            ax.annotate(state, xy[k], xytext=(5, 5), textcoords="offset points", color="white", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("t-SNE: reference scans (o pre, \u25b2 post), this patient large", fontsize=8)
