"""Property tests for the weighted merge: what must hold for any non-negative weights and any parameters."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from holomerge_lab.method.merging import fisher_weighted_merge

SHAPE = (7,)
values = arrays("float64", SHAPE, elements=st.floats(-1e3, 1e3, allow_nan=False))
weights = arrays("float64", SHAPE, elements=st.floats(0.0, 1e6, allow_nan=False))
alphas = st.floats(0.01, 1.0)


def as_dicts(*arrays_):
    return [{"a": torch.from_numpy(a.copy()), "b": torch.from_numpy(a[::-1].copy())} for a in arrays_]


@settings(max_examples=200, deadline=None)
@given(values, values, weights, weights, alphas, st.sampled_from([0.0, 1e-8]))
def test_merge_lies_between_its_inputs_and_is_finite(prev, new, w_prev, w_new, alpha, eps):
    p, n, fp, vn = as_dicts(prev, new, w_prev, w_new)
    merged, carried = fisher_weighted_merge(p, n, fp, vn, alpha, eps)
    for k in merged:
        low, high = torch.minimum(p[k], n[k]), torch.maximum(p[k], n[k])
        tolerance = 1e-9 * (1 + high.abs())
        assert torch.isfinite(merged[k]).all() and torch.isfinite(carried[k]).all()
        assert (merged[k] >= low - tolerance).all() and (merged[k] <= high + tolerance).all()


@settings(max_examples=200, deadline=None)
@given(weights, weights, alphas, st.sampled_from([0.0, 1e-8]))
def test_coefficients_sum_to_one_per_coordinate(w_prev, w_new, alpha, eps):
    """Merging constant models (prev = 1, new = 1) must return 1: the two coefficients sum to one everywhere."""
    ones = torch.ones(SHAPE, dtype=torch.float64)
    fp, vn = as_dicts(w_prev, w_new)
    merged, _ = fisher_weighted_merge({"a": ones, "b": ones}, {"a": ones, "b": ones}, fp, vn, alpha, eps)
    for k in merged:
        torch.testing.assert_close(merged[k], ones, rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(values, values, weights, weights, alphas, st.randoms())
def test_order_of_the_parameter_dict_changes_nothing(prev, new, w_prev, w_new, alpha, rnd):
    p, n, fp, vn = as_dicts(prev, new, w_prev, w_new)
    keys = list(p)
    rnd.shuffle(keys)
    shuffled = [{k: d[k] for k in keys} for d in (p, n, fp, vn)]
    merged, carried = fisher_weighted_merge(p, n, fp, vn, alpha)
    merged_s, carried_s = fisher_weighted_merge(*shuffled, alpha)
    for k in p:
        assert torch.equal(merged[k], merged_s[k]) and torch.equal(carried[k], carried_s[k])
