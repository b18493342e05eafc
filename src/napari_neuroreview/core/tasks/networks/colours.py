"""One colour per network, the one table: the Networks widget's maps, table and plots, and
``neuroreview networks evaluate --tsne``.

Why one table: a reader who learns "motor is red" in the widget must find motor red in the
cohort's t-SNE too; two tables drifted apart before (the PNG used matplotlib's cycle).
Imports nothing, so the widget and the CLI's plot read it without torch or matplotlib.
"""

from __future__ import annotations

__all__ = ["NETWORK_COLOURS", "network_hex"]

#: RGB in [0, 1] for every network of ``core.anatomy.atlas.NETWORKS`` (a test checks the keys).
NETWORK_COLOURS: dict[str, tuple[float, float, float]] = {
    "motor": (0.95, 0.30, 0.25),
    "vision": (0.25, 0.60, 1.00),
    "language": (0.30, 0.85, 0.35),
    "frontal": (1.00, 0.80, 0.15),
    "temporal": (0.85, 0.35, 0.90),
}


def network_hex(network: str) -> str:
    """``#rrggbb`` of a network's colour (Qt and HTML read hex; matplotlib reads either)."""
    return "#" + "".join(f"{round(255 * c):02x}" for c in NETWORK_COLOURS[network])
