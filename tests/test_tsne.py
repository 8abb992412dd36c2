"""joint_tsne: one embedding of the union, split back in order; perplexity clamped below the sample size."""

import numpy as np
import pytest
from sklearn.manifold import TSNE, trustworthiness

from holomerge_lab.analysis.tsne import clamped_perplexity, joint_tsne
from holomerge_lab.errors import UserError


def _clusters(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(0, 0.1, (15, 8)) + 5,
        "b": rng.normal(0, 0.1, (10, 8)) - 5,
    }


def test_is_sklearn_tsne_of_the_union_split_in_order():
    sets = _clusters()
    coords = joint_tsne(sets, perplexity=30, seed=3)
    union = np.concatenate([sets["a"], sets["b"]]).astype(np.float32)
    expected = TSNE(2, perplexity=clamped_perplexity(30, 25), init="pca", random_state=3).fit_transform(union)
    assert list(coords) == ["a", "b"]
    assert coords["a"].shape == (15, 2) and coords["b"].shape == (10, 2)
    np.testing.assert_allclose(np.concatenate([coords["a"], coords["b"]]), expected, rtol=1e-5, atol=1e-5)


def test_same_seed_same_picture_and_clusters_stay_apart():
    sets = _clusters()
    first, second = joint_tsne(sets, seed=0), joint_tsne(sets, seed=0)
    np.testing.assert_array_equal(first["a"], second["a"])
    union = np.concatenate(list(sets.values()))
    assert trustworthiness(union, np.concatenate(list(first.values())), n_neighbors=5) > 0.9
    gap = np.linalg.norm(first["a"].mean(0) - first["b"].mean(0))
    spread = max(first["a"].std(0).max(), first["b"].std(0).max())
    assert gap > 3 * spread


def test_perplexity_is_clamped_below_the_sample_size():
    assert clamped_perplexity(30, 1000) == 30
    assert clamped_perplexity(30, 10) == 3.0
    joint_tsne({"a": np.eye(6)[:3], "b": np.eye(6)[3:]}, perplexity=50)  # sklearn alone would refuse
    with pytest.raises(UserError, match="at least 4"):
        clamped_perplexity(5, 3)
    with pytest.raises(UserError, match="same feature size"):
        joint_tsne({"a": np.zeros((5, 2)), "b": np.zeros((5, 3))})
