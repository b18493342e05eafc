"""One table of network colours: the Networks widget and ``networks evaluate --tsne`` read the same one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from matplotlib.colors import to_rgb

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.tasks.networks import evaluate as E
from napari_neuroreview.core.tasks.networks.colours import NETWORK_COLOURS, network_hex


def test_every_network_has_its_own_colour() -> None:
    assert set(NETWORK_COLOURS) == set(atlas.NETWORKS)
    assert len(set(NETWORK_COLOURS.values())) == len(NETWORK_COLOURS)
    for name, rgb in NETWORK_COLOURS.items():
        np.testing.assert_allclose(to_rgb(network_hex(name)), rgb, atol=1 / 255)


def test_the_tsne_png_draws_each_network_in_the_table_colour() -> None:
    """The cohort's t-SNE used matplotlib's colour cycle (motor blue there, red in the widget)."""
    networks = np.repeat(list(atlas.NETWORKS), 4)
    result = SimpleNamespace(tsne=np.random.default_rng(0).normal(size=(len(networks), 2)),
                             rows={"network": networks, "label": np.tile([0, 1], len(networks) // 2)},
                             networks=list(atlas.NETWORKS))
    ax = E.tsne_figure(result).axes[0]
    drawn = {collection.get_label(): collection for collection in ax.collections}
    assert set(drawn) == {f"{name} {state}" for name in atlas.NETWORKS for state in ("pre", "post")}
    for name in atlas.NETWORKS:
        np.testing.assert_allclose(drawn[f"{name} pre"].get_edgecolor()[0][:3], NETWORK_COLOURS[name])  # hollow
        np.testing.assert_allclose(drawn[f"{name} post"].get_facecolor()[0][:3], NETWORK_COLOURS[name])
