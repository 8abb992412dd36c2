"""Merge rules against hand-computed values and their limits."""

import pytest
import torch

from holomerge_lab.errors import UserError
from holomerge_lab.method.merging import (
    MERGE_RULES,
    MergeSettings,
    TaskModel,
    fisher_weighted_merge,
    interpolate,
)


def params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=g, dtype=torch.float64),
        "b": torch.randn(4, generator=g).double(),
    }


def positive(seed: int) -> dict[str, torch.Tensor]:
    return {k: v.abs() + 0.1 for k, v in params(seed).items()}


def test_equal_weights_reduce_to_interpolation():
    prev, new, weight = params(0), params(1), positive(2)
    merged, _ = fisher_weighted_merge(prev, new, weight, weight, alpha=0.3)
    for k in prev:
        torch.testing.assert_close(merged[k], 0.7 * prev[k] + 0.3 * new[k])


def test_alpha_one_returns_new_model():
    prev, new = params(0), params(1)
    merged, carried = fisher_weighted_merge(prev, new, positive(2), positive(3), alpha=1.0)
    for k in prev:
        torch.testing.assert_close(merged[k], new[k])
        torch.testing.assert_close(carried[k], positive(3)[k])


def test_elementwise_formula_by_hand():
    prev, new = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, -2.0])}
    f_prev, v_new = {"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([3.0, 1.0])}
    merged, carried = fisher_weighted_merge(prev, new, f_prev, v_new, alpha=0.5)
    # coordinate 0: (0.5·1·1 + 0.5·3·3) / (0.5 + 1.5) = 2.5; coordinate 1: (0.5·3·2 + 0.5·1·(−2)) / 2 = 1
    torch.testing.assert_close(merged["w"], torch.tensor([2.5, 1.0]))
    torch.testing.assert_close(carried["w"], torch.tensor([2.0, 2.0]))


def test_keys_without_weights_fall_back_to_interpolation():
    prev, new = params(0), params(1)
    weights = {"w": positive(2)["w"]}
    merged, carried = fisher_weighted_merge(prev, new, weights, weights, alpha=0.25)
    torch.testing.assert_close(merged["b"], 0.75 * prev["b"] + 0.25 * new["b"])
    assert set(carried) == {"w"}


def test_recursion_matches_a_hand_loop_over_three_tasks():
    alpha = 0.4
    models = [params(s) for s in range(3)]
    vs = [positive(10 + s) for s in range(3)]
    settings = [MergeSettings(theta0=params(99), task_index=t + 1, alpha=alpha) for t in range(3)]
    carried = None
    for t in range(3):
        task = TaskModel(params=models[t], second_moment=vs[t], steps=10, beta2=0.999)
        carried = MERGE_RULES["v-weighted"](carried, task, settings[t])
    for k in models[0]:  # the same recursion, written out element-wise with plain Python floats
        for index in range(models[0][k].numel()):
            theta = models[0][k].flatten()[index].item()
            fisher = vs[0][k].flatten()[index].item()
            for t in (1, 2):
                v, new = vs[t][k].flatten()[index].item(), models[t][k].flatten()[index].item()
                fisher_next = (1 - alpha) * fisher + alpha * v
                theta = ((1 - alpha) * fisher * theta + alpha * v * new) / fisher_next
                fisher = fisher_next
            assert carried["merged"][k].flatten()[index].item() == pytest.approx(theta, rel=1e-12)
            assert carried["weight"][k].flatten()[index].item() == pytest.approx(fisher, rel=1e-12)


def test_faithful_and_clean_differ_exactly_by_eps_and_bias_correction():
    prev, new, f_prev, v_new = params(0), params(1), positive(2), positive(3)
    steps, beta2, eps, alpha = 7, 0.999, 1e-3, 0.4
    theta0 = params(9)
    carried = {"merged": prev, "weight": f_prev}
    task = TaskModel(params=new, second_moment=v_new, steps=steps, beta2=beta2)
    clean = MergeSettings(theta0=theta0, task_index=2, alpha=alpha, eps=eps, bias_correct=True)
    out_clean = MERGE_RULES["v-weighted"](carried, task, clean)
    corrected = {k: v / (1 - beta2**steps) for k, v in v_new.items()}
    expected, expected_weight = fisher_weighted_merge(prev, new, f_prev, corrected, alpha, eps)
    faithful = MERGE_RULES["v-weighted"](
        carried, task, MergeSettings(theta0=theta0, task_index=2, alpha=alpha)
    )
    raw, _ = fisher_weighted_merge(prev, new, f_prev, v_new, alpha)
    for k in prev:
        torch.testing.assert_close(out_clean["merged"][k], expected[k], rtol=1e-14, atol=0)
        torch.testing.assert_close(out_clean["weight"][k], expected_weight[k], rtol=1e-14, atol=0)
        torch.testing.assert_close(faithful["merged"][k], raw[k], rtol=0, atol=0)
        assert not torch.equal(out_clean["merged"][k], faithful["merged"][k])


def test_coordinates_with_zero_weight_in_both_models_fall_back_to_interpolation():
    prev, new = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    weight = {"w": torch.tensor([0.0, 1.0])}
    merged, carried = fisher_weighted_merge(prev, new, weight, {"w": torch.tensor([0.0, 3.0])}, alpha=0.5)
    # coordinate 0: no information from either task -> (1 − α, α) interpolation; coordinate 1: 1·1 / (1 + 3)
    torch.testing.assert_close(merged["w"], torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(carried["w"], torch.tensor([0.0, 2.0]))


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_nan_or_negative_weights_are_refused(bad):
    prev, new = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    with pytest.raises(UserError, match="second moments"):
        fisher_weighted_merge(prev, new, {"w": torch.tensor([bad, 1.0])}, {"w": torch.ones(2)}, alpha=0.5)


def test_average_is_the_mean_of_task_models():
    models = [params(s) for s in range(4)]
    carried = None
    for t, m in enumerate(models, start=1):
        task = TaskModel(params=m, second_moment={}, steps=1, beta2=0.999)
        carried = MERGE_RULES["average"](carried, task, MergeSettings(theta0=params(9), task_index=t))
    for k in models[0]:
        torch.testing.assert_close(carried["merged"][k], torch.stack([m[k] for m in models]).mean(0))


def test_task_arithmetic_is_theta0_plus_scaled_sum_of_task_vectors():
    theta0, models, scale = params(9), [params(s) for s in range(3)], 0.3
    carried = None
    for t, m in enumerate(models, start=1):
        task = TaskModel(params=m, second_moment={}, steps=1, beta2=0.999)
        carried = MERGE_RULES["task-arithmetic"](
            carried, task, MergeSettings(theta0, task_index=t, scale=scale)
        )
    for k in theta0:
        expected = theta0[k] + scale * sum(m[k] - theta0[k] for m in models)
        torch.testing.assert_close(carried["merged"][k], expected)


def test_interpolate_and_sequential():
    prev, new = params(0), params(1)
    for k, v in interpolate(prev, new, 0.25).items():
        torch.testing.assert_close(v, 0.75 * prev[k] + 0.25 * new[k])
    task = TaskModel(params=new, second_moment={}, steps=1, beta2=0.999)
    out = MERGE_RULES["sequential"]({"merged": prev}, task, MergeSettings(params(9), task_index=2))
    assert all(torch.equal(out["merged"][k], new[k]) for k in new)
