"""2-D maps of embeddings (t-SNE) for the plots a reviewer reads.

Why here and not in a task: every system that learns a representation (the networks
encoder today, the next classifiers tomorrow) shows where a scan falls among others;
one seeded helper keeps those pictures reproducible and consistent.

t-SNE: van der Maaten & Hinton 2008, "Visualizing data using t-SNE", JMLR, through
scikit-learn with a PCA start (Kobak & Linderman 2021, "Initialization is critical for
preserving global data structure in both t-SNE and UMAP", Nat. Biotechnol.: a PCA start
keeps the global layout and is deterministic). Perplexity is an effective number of
neighbours, so it must stay below the number of points: it is clipped to (n - 1) / 3
(at least 2, at most the ``perplexity`` asked for, and always below n).
"""

from __future__ import annotations

import numpy as np

__all__ = ["tsne_coordinates", "tsne_perplexity"]


def tsne_perplexity(n_points: int, perplexity: float = 30.0) -> float:
    """The perplexity used for ``n_points``: ``min(perplexity, max(2, (n - 1) / 3))``, below n.

    Why (n - 1) / 3: scikit-learn looks at about 3 x perplexity neighbours per point,
    which must exist; 2 keeps tiny sets from collapsing to a single neighbour.
    """
    if n_points < 2:
        raise ValueError(f"t-SNE needs at least 2 points, got {n_points}")
    value = float(min(perplexity, max(2.0, (n_points - 1) / 3)))
    return min(value, float(n_points - 1))


def tsne_coordinates(embeddings: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA start, seeded) of the rows of ``embeddings``.

    Parameters
    ----------
    embeddings : numpy.ndarray
        (n, d) one row per point.
    seed : int
        ``random_state`` of scikit-learn's TSNE: same seed and rows, same picture.
    perplexity : float
        The most asked for; clipped by :func:`tsne_perplexity` to the number of points.

    Returns
    -------
    numpy.ndarray
        (n, 2) coordinates.
    """
    from sklearn.manifold import TSNE

    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got shape {embeddings.shape}")
    p = tsne_perplexity(len(embeddings), perplexity)
    return TSNE(n_components=2, perplexity=p, init="pca", random_state=seed).fit_transform(embeddings)
