"""A joint t-SNE of several point sets: one embedding for all of them, so their positions can be compared.

Embedding each set on its own would give each its own arbitrary axes; only a joint embedding shows whether the
merged model's features sit where the previous model's did.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.manifold import TSNE
from torch import Tensor

from ..errors import UserError


def clamped_perplexity(perplexity: float, n_samples: int) -> float:
    """The perplexity t-SNE can use on `n_samples` points: below (n − 1) / 3, the rule of thumb that keeps each
    point's neighbourhood smaller than the data (sklearn refuses perplexity ≥ n outright)."""
    if n_samples < 4:
        raise UserError(f"t-SNE needs at least 4 points, got {n_samples}")
    return float(min(perplexity, (n_samples - 1) / 3))


def joint_tsne(
    point_sets: Mapping[str, Tensor | np.ndarray], *, perplexity: float = 30.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Embed the union of `point_sets` in 2-D with one t-SNE (PCA initialisation, fixed seed) and split it back:
    name -> [n_i, 2] coordinates, in the order given."""
    arrays = {k: np.asarray(v, dtype=np.float32).reshape(len(v), -1) for k, v in point_sets.items()}
    widths = {a.shape[1] for a in arrays.values()}
    if len(widths) != 1:
        raise UserError(f"all point sets must have the same feature size, got {sorted(widths)}")
    stacked = np.concatenate(list(arrays.values()))
    coords = TSNE(
        n_components=2, perplexity=clamped_perplexity(perplexity, len(stacked)), init="pca", random_state=seed
    ).fit_transform(stacked)
    bounds = np.cumsum([len(a) for a in arrays.values()])[:-1]
    return dict(zip(arrays, np.split(coords, bounds), strict=True))
